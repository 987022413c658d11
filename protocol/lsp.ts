/**
 * The extension <-> language server boundary (LSP): the names and argument types of the server's
 * CodeLens commands (which the extension registers), of the commands the server itself executes,
 * and of its custom requests. Both sides import this file, so it stays free of Node and VS Code
 * imports. Documented in server/README.md; the extension's `AnalyzedModel` (extension/modelView.ts)
 * reads the CodeLens arguments.
 */
import type { PixelflyConfig } from '../core/pixelflyLayer';
import type { InventoryLayer } from '../core/inventory';
import type { LayerDecision } from '../core/planner';
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
/** Request: the analysis of an open document, as `pixelfly analyze --json` prints it. */
export const ANALYSIS_REQUEST = 'pixelfly/analysis';

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
