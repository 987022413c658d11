/**
 * THE message file shared by the extension host and its two webview pages (mask preview, live
 * metrics). Every message that crosses the host↔page boundary is declared here once, as a zod
 * schema with its inferred type, so both sides agree by construction.
 *
 * Validation policy (why both directions): a page is untrusted from the host's point of view
 * (it renders data that came from a model file and a daemon), so the host parses every message
 * it receives with `parseFromPage`. Pages parse what the host sends with `parseFromHost`, which
 * turns a host/page version skew after an extension update into a visible error instead of a
 * half-drawn page. No Node or VS Code imports: this file is bundled into the browser pages too.
 */
import { z } from 'zod';
import { LAYER_ROLES } from '../core/inventory';
import type { PixelflyConfig } from '../core/pixelflyLayer';

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const nonNegInt = z.number().int().min(0);
const posInt = z.number().int().min(1);
const name = z.string().min(1).max(512);

/** The Pixelfly knobs of one layer, as the planner's decision `config` names them. */
export const LayerConfigSchema = z.object({
  block: posInt.max(1024),
  butterflySize: posInt.max(4096),
  nFactors: posInt.max(32),
  rank: nonNegInt.max(65536),
  globalSize: nonNegInt.max(1 << 20),
  shuffle: z.boolean(),
}) satisfies z.ZodType<Required<PixelflyConfig>>;
export type LayerConfig = z.infer<typeof LayerConfigSchema>;

/** One row of the model's layer list (a linear layer of the analysed model and its plan). */
export const LayerRowSchema = z.object({
  name,
  role: z.enum(LAYER_ROLES),
  in: posInt,
  out: posInt,
  count: posInt,
  /** Tokens (rows of the matmul) per sample; FLOPs are per sample. */
  rowsPerSample: posInt.default(1),
  /** The layer adds a bias (FLOPs count it; default true). */
  bias: z.boolean().optional(),
  /** attn_core: causal, half the score products. */
  causal: z.boolean().optional(),
  sparsify: z.boolean(),
  config: LayerConfigSchema,
  estimatedSpeedup: finite.nullable(),
  reason: z.string().max(2000),
  /** 0-based line of the layer's definition, for "Apply to code". */
  line: nonNegInt.optional(),
});
export type LayerRow = z.infer<typeof LayerRowSchema>;

export const ModelViewSchema = z.object({
  name,
  /** Document the model came from (string form of a vscode.Uri); absent for synthetic models. */
  uri: z.string().max(4096).optional(),
  layers: z.array(LayerRowSchema).min(1).max(10000),
});
export type ModelView = z.infer<typeof ModelViewSchema>;

/** Measured dense/Pixelfly speedups by layer name (from `bench.layers`). */
export const MeasuredSchema = z.record(z.string(), finite.positive());

// ---------------------------------------------------------------- mask preview page

export const HostToMaskSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('mask.model'), model: ModelViewSchema, focus: z.string().optional() }),
  z.object({ type: z.literal('mask.measured'), speedups: MeasuredSchema }),
  z.object({ type: z.literal('mask.applied'), ok: z.boolean(), message: z.string().max(2000) }),
]);
export type HostToMask = z.infer<typeof HostToMaskSchema>;

export const MaskToHostSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready') }),
  /** "Apply to code": write these layers' configs into the model file via the language server. */
  z.object({
    type: z.literal('applyToCode'),
    layers: z.array(z.object({ name, line: nonNegInt.optional(), config: LayerConfigSchema })).min(1).max(10000),
  }),
  /** Ask the host to run `bench.layers` for the model's layers (measured speedups). */
  z.object({ type: z.literal('measure') }),
]);
export type MaskToHost = z.infer<typeof MaskToHostSchema>;

// ---------------------------------------------------------------- live metrics page

export const ArmSchema = z.enum(['dense', 'pixelfly']);
export type Arm = z.infer<typeof ArmSchema>;

export const RunStateSchema = z.enum(['queued', 'running', 'done', 'failed', 'cancelled', 'interrupted']);
export type RunState = z.infer<typeof RunStateSchema>;

const ArmStepSchema = z.object({
  loss: finite,
  stepMs: finite.min(0),
  tokensPerSec: finite.min(0).optional(),
  /** Forward + backward ms per part of the model ('token_mix', 'channel_mix', ...), in model order. */
  partsMs: z.record(z.string().max(64), finite.min(0)).optional(),
});

/**
 * One training step: the Pixelfly arm and, in a compare run, the dense arm trained at the same
 * step (the daemon alternates them). `speedup` is the daemon's running speedup (median dense /
 * median Pixelfly step time over its recent window), passed through rather than re-derived.
 */
export const StepPointSchema = z.object({
  step: nonNegInt,
  pixelfly: ArmStepSchema,
  dense: ArmStepSchema.optional(),
  speedup: finite.positive().optional(),
});
export type StepPoint = z.infer<typeof StepPointSchema>;

export const EvalPointSchema = z.object({
  arm: ArmSchema,
  step: nonNegInt,
  metric: z.enum(['accuracy', 'perplexity', 'loss']),
  value: finite,
});
export type EvalPoint = z.infer<typeof EvalPointSchema>;

/** What the run trains, for the page's header (the host words it from the daemon's run record). */
export const RunDetailsSchema = z.object({
  /** The model: a class or factory function of `file`, or the spec's name. */
  model: z.string().max(512),
  file: z.string().max(4096).optional(),
  /** 'engine stand-in (gpt)', 'your PyTorch model'. */
  runner: z.string().max(256),
  dataset: z.string().max(4096),
  params: z.object({ pixelfly: nonNegInt, dense: nonNegInt.optional() }).optional(),
  batchSize: posInt,
  /** Tokens per sample (context, patches), when the model has them. */
  context: posInt.optional(),
  /** A PyTorch model's images, when it eats images. */
  image: z.object({ channels: posInt, height: posInt, width: posInt }).optional(),
  estimatedMemoryBytes: finite.min(0).optional(),
  peakMemoryBytes: finite.min(0).optional(),
  /** The run has an HTML report: the page offers to open it (openReport). */
  report: z.boolean(),
});
export type RunDetails = z.infer<typeof RunDetailsSchema>;

export const RunInfoSchema = z.object({
  id: name,
  title: z.string().max(512),
  state: RunStateSchema,
  totalSteps: nonNegInt,
  startedAt: finite.min(0),
  error: z.string().max(4000).optional(),
  /** Why a run that did not complete stopped (failed, cancelled, interrupted). */
  reason: z.string().max(4000).optional(),
  details: RunDetailsSchema.optional(),
});
export type RunInfo = z.infer<typeof RunInfoSchema>;

export const ProgressSchema = z.object({
  step: nonNegInt,
  totalSteps: nonNegInt,
  /** Seconds to completion, null while unknown. */
  etaS: finite.min(0).nullable(),
});
export type Progress = z.infer<typeof ProgressSchema>;

/** Chunks bound every message: a 100k-point replay is sent as several appends, never one huge string. */
export const MAX_POINTS_PER_MESSAGE = 20000;

export const HostToMetricsSchema = z.discriminatedUnion('type', [
  /** Replaces everything the page shows: sent on (re)load and when the user switches runs. */
  z.object({ type: z.literal('metrics.reset'), run: RunInfoSchema, progress: ProgressSchema }),
  z.object({
    type: z.literal('metrics.append'),
    runId: name,
    steps: z.array(StepPointSchema).max(MAX_POINTS_PER_MESSAGE),
    evals: z.array(EvalPointSchema).max(MAX_POINTS_PER_MESSAGE),
  }),
  z.object({ type: z.literal('metrics.status'), run: RunInfoSchema, progress: ProgressSchema }),
]);
export type HostToMetrics = z.infer<typeof HostToMetricsSchema>;

export const MetricsToHostSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready') }),
  z.object({ type: z.literal('exportCsv'), runId: name }),
  z.object({ type: z.literal('stopRun'), runId: name }),
  /** Open the run's HTML report (the host opens it in the system's browser). */
  z.object({ type: z.literal('openReport'), runId: name }),
]);
export type MetricsToHost = z.infer<typeof MetricsToHostSchema>;

// ---------------------------------------------------------------- parsing

export class WebviewMessageError extends Error {
  constructor(
    readonly direction: 'fromPage' | 'fromHost',
    readonly detail: string,
  ) {
    super(`invalid webview message (${direction}): ${detail}`);
    this.name = 'WebviewMessageError';
  }
}

function parse<T>(schema: z.ZodType<T>, data: unknown, direction: 'fromPage' | 'fromHost'): T {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue && issue.path.length ? issue.path.join('.') : 'message';
  throw new WebviewMessageError(direction, `${where}: ${issue?.message ?? 'does not match the schema'}`);
}

/** Host side: validate a message a page sent. Throws WebviewMessageError naming the bad field. */
export function parseFromPage<T>(schema: z.ZodType<T>, data: unknown): T {
  return parse(schema, data, 'fromPage');
}

/** Page side: validate a message the host sent. */
export function parseFromHost<T>(schema: z.ZodType<T>, data: unknown): T {
  return parse(schema, data, 'fromHost');
}
