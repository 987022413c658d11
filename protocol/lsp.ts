/**
 * The extension <-> language server boundary (LSP): the names and argument types of the server's
 * CodeLens commands (which the extension registers), of the commands the server itself executes,
 * and of its custom requests. Both sides import this file, so it stays free of Node and VS Code
 * imports. Documented in server/README.md; the extension's `AnalyzedModel` (extension/modelView.ts)
 * reads the CodeLens arguments.
 */
import type { PixelflyConfig } from '../core/pixelflyLayer';
import type { InventoryLayer, LayerRole } from '../core/inventory';
import type { ModelSpec } from '../core/modelSpec';
import type { LayerDecision, Plan as CorePlan, PlanTarget } from '../core/planner';
import type { StepEstimate } from '../core/stepCost';
import type { Plan } from './plan';

/** CodeLens commands, registered by the extension. */
export const PREVIEW_MASKS = 'pixelfly.previewMasks';
export const TRAIN = 'pixelfly.train';
/** Executed by the server: write layer configs into the source (the mask preview's "Apply to code"). */
export const APPLY_LAYER_CONFIG = 'pixelfly.applyLayerConfig';
/**
 * Registered by the extension, run after a sparsify quick fix: checks that the interpreter the file
 * runs under can import `pixelfly_torch` and offers to install it (argument `{uri}`).
 */
export const ENSURE_TORCH_PACKAGE = 'pixelfly.ensureTorchPackage';
/**
 * Request `AnalysisParams` → `AnalysisJson`: the analysis of a document the client has open, with
 * the server's settings (the one the hints and lenses show); `pixelfly analyze --json` prints the same.
 */
export const ANALYSIS_REQUEST = 'pixelfly/analysis';
/**
 * CodeLens command, registered by the extension, on a file that defines several models: a quick
 * pick of them (argument `ChooseModelArgs`); the choice comes back as MODEL_CHOICE_NOTIFICATION.
 */
export const CHOOSE_MODEL = 'pixelfly.chooseModel';
/**
 * Notification, client to server: the model the user chose for a document (`ModelChoiceParams`);
 * the hints, CodeLens, preview and runs of that document then use it. The client also passes every
 * choice it keeps in `initializationOptions.modelChoices` (uri -> model), so a restarted server keeps them.
 */
export const MODEL_CHOICE_NOTIFICATION = 'pixelfly/modelChoice';

export interface ModelChoiceParams {
  uri: string;
  /** A class or factory function of the document; null goes back to the default. */
  model: string | null;
}

/** A model of the file, as the quick pick lists it (server/analysis/analyze.ts ModelCandidate). */
export interface ModelCandidateInfo {
  name: string;
  kind: 'class' | 'function';
  /** 1-based line of its definition. */
  line: number;
  /** A model of its own rather than a part other models use. */
  top: boolean;
}

/** Argument of `pixelfly.chooseModel`. */
export interface ChooseModelArgs {
  uri: string;
  /** The model the analysis uses now. */
  current: string;
  /** The model used when none is chosen. */
  defaultModel: string | null;
  models: ModelCandidateInfo[];
}

export interface AnalysisParams {
  uri: string;
}

/** One matmul layer the analysis found; sizes it could not resolve are the expressions, as text. */
export interface AnalysisLayerJson {
  file: string;
  /** 0-based line of the call that builds it. */
  line: number;
  name: string;
  class: string;
  in: number | string;
  out: number | string;
  /** Instances in the model; 0 for a layer written but never built. */
  count: number | string;
  role: LayerRole;
  flops_share: number | null;
  decision: Pick<LayerDecision, 'sparsify' | 'config' | 'density' | 'estSpeedup' | 'denseParams' | 'planParams' | 'reason'> | null;
  pinnedDense?: true;
  note?: string;
  /** Rows a sample feeds the layer (tokens; 1 for a head after pooling), what its FLOPs are counted with. */
  rowsPerSample: number | null;
  bias?: false;
  causal?: true;
}

export interface AnalysisJson {
  file: string;
  model: { name: string; kind: 'class' | 'function'; line: number } | null;
  /** Other models the file defines (`--model NAME` picks one). */
  candidates: string[];
  /** Every model of the file, its own ones and their parts (what the model choice lists). */
  models: ModelCandidateInfo[];
  /** The model analysed when none is chosen. */
  defaultModel: string | null;
  tokensPerSample: number;
  /** Where tokensPerSample came from, in words. */
  tokensSource: string;
  target: PlanTarget;
  layers: AnalysisLayerJson[];
  plan: Omit<CorePlan, 'layers'> | null;
  /** The whole training step, dense and planned (plan.estimate): `estimate.speedup` is the step's. */
  estimate: StepEstimate | null;
  /** What `pixelfly train FILE` and the editor's Train lens train: the engine spec and this plan on its layers, or why there is none. */
  engine: { spec: ModelSpec; plan: CorePlan } | { error: string };
  /** Names whose values the analysis needs pinned. */
  unresolved: string[];
  pins: Record<string, string>;
  notes: string[];
  pragmaErrors: Array<{ file: string; line: number; message: string }>;
}

/** One resolved, built layer of the model (unresolved or unbuilt layers are left out): the planner's inventory layer, located. */
export interface LensLayer extends Omit<InventoryLayer, 'pinnedDense'> {
  /** 0-based line of the call that builds it, in `file`. */
  line: number;
  file: string;
  decision: LayerDecision | null;
}

/** Argument of `pixelfly.previewMasks` (an `AnalyzedModel` for the extension). */
export interface PreviewMasksArgs {
  uri: string;
  name: string;
  kind: 'class' | 'function';
  tokensPerSample: number;
  layers: LensLayer[];
  /** Set when the lens is for one layer: the preview opens on it. */
  focus?: string;
}

/** Argument of `pixelfly.train`: a model spec for the engine (see core/modelSpec.ts), or why there is none. */
/** A layer of the plan the PyTorch runner applies with pixelfly_torch.sparsify (server/analysis analysisPlan). */
export interface TorchPlanLayer {
  name: string;
  role: string;
  in: number;
  out: number;
  count: number;
  sparsify: boolean;
  config?: PixelflyConfig;
}

export interface TrainLensArgs {
  uri: string;
  name: string;
  spec?: Record<string, unknown>;
  /** The plan the lens shows, on the spec's layers: job.submit carries it unchanged (the daemon does not re-plan). */
  plan?: Plan;
  /** Why the model could not be mapped onto an engine family (the extension shows it). */
  specError?: string;
  /** For the PyTorch runner: the same decisions under the source's layer names (server/analysis/analyze.ts analysisPlan) and the settings it built the model with. */
  torchPlan?: { layers: TorchPlanLayer[]; summary?: string };
  settings?: Record<string, number | string | boolean | null>;
}

/** Argument of `pixelfly.applyLayerConfig`. */
export interface ApplyLayerConfigArgs {
  uri: string;
  layers: Array<{ name: string; line?: number; config: Required<PixelflyConfig> }>;
}
