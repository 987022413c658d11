// The extension <-> daemon boundary: every JSON-RPC 2.0 message, typed once and validated on arrival.
// Both sides import this file (the daemon in Node, the extension host), so it must stay free of Node
// and VS Code imports. Documented for humans in docs/protocol.md; keep the two in step.
import { z } from 'zod';
import { LAYER_ROLES, MAX_LAYER_SIZE, type InventoryLayer } from '../core/inventory';
import { MAX_ATTENTION_FEATURES } from '../core/attention';
import { PixelflyConfigSchema, PlanSchema, PlanTargetSchema } from './plan';

/** Bumped on any incompatible change; `hello` reports it so a client can refuse a daemon it does not understand. */
export const PROTOCOL_VERSION = 1;

/** Limits the daemon enforces, exported so clients can stay inside them. */
export const LIMITS = {
  /** Largest accepted WebSocket frame (bytes); larger frames close the connection (1009). */
  maxPayloadBytes: 1024 * 1024,
  /** Requests a connection may have in flight; more are answered at once with TOO_MANY_PENDING. */
  maxPendingRequests: 16,
  /** Subscriptions a connection may hold at once. */
  maxSubscriptions: 64,
  /** A connection that has not completed its WebSocket handshake (and authenticated) by then is closed. */
  handshakeTimeoutMs: 5000,
  /** Connections still in their handshake at once; more are closed on arrival. */
  maxPendingHandshakes: 32,
  /** Deepest nesting of arrays and objects a message may have (a spec is a few levels deep). */
  maxJsonDepth: 64,
} as const;

/** Header carrying the token at the handshake; the token may instead be offered as subprotocol `pixelfly-token.<token>`. */
export const TOKEN_HEADER = 'x-pixelfly-token';
export const TOKEN_SUBPROTOCOL_PREFIX = 'pixelfly-token.';
/** Close codes the daemon uses beyond the standard ones. */
export const CLOSE_SLOW_CONSUMER = 4001;
export const CLOSE_SHUTDOWN = 4002;

// ---------------------------------------------------------------------------------------------
// JSON-RPC 2.0 envelope

export const ErrorCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** The connection already has LIMITS.maxPendingRequests requests in flight. */
  TOO_MANY_PENDING: -32001,
  JOB_NOT_FOUND: -32002,
  /** The request is well formed but not allowed in the job's current state (e.g. resume a completed job). */
  INVALID_STATE: -32003,
  /** The model spec, plan or dataset was refused by the core or the engine (message says which and why). */
  REJECTED: -32004,
  /** The native engine is not built or failed to load. */
  ENGINE_UNAVAILABLE: -32005,
} as const;

const requestId = z.union([z.string().max(128), z.number().int()]);

export const RpcRequestSchema = z.strictObject({
  jsonrpc: z.literal('2.0'),
  id: requestId,
  method: z.string().min(1).max(64),
  params: z.unknown().optional(),
});
export type RpcRequest = z.infer<typeof RpcRequestSchema>;

export const RpcErrorSchema = z.object({
  code: z.number().int(),
  message: z.string(),
  data: z.unknown().optional(),
});
export type RpcError = z.infer<typeof RpcErrorSchema>;

export const RpcResponseSchema = z.union([
  z.object({ jsonrpc: z.literal('2.0'), id: requestId, result: z.unknown() }),
  z.object({ jsonrpc: z.literal('2.0'), id: z.union([requestId, z.null()]), error: RpcErrorSchema }),
]);
export type RpcResponse = z.infer<typeof RpcResponseSchema>;

export const RpcNotificationSchema = z.object({
  jsonrpc: z.literal('2.0'),
  method: z.string(),
  params: z.unknown(),
});
export type RpcNotification = z.infer<typeof RpcNotificationSchema>;

// ---------------------------------------------------------------------------------------------
// Shared shapes

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const positiveInt = z.number().int().positive();
const jobId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'job ids are 1-64 letters, digits, _ or -');

export const LayerRoleSchema = z.enum(LAYER_ROLES);

/** One matmul layer of a model as the planner sees it (core/inventory.ts InventoryLayer). */
export const InventoryLayerSchema = z.strictObject({
  name: z.string().min(1).max(256),
  role: LayerRoleSchema,
  in: positiveInt.max(MAX_LAYER_SIZE),
  out: positiveInt.max(MAX_LAYER_SIZE),
  count: z.number().int().nonnegative().max(MAX_LAYER_SIZE),
  rowsPerSample: positiveInt.max(MAX_LAYER_SIZE),
  pinnedDense: z.boolean().optional(),
  bias: z.boolean().optional(),
  causal: z.boolean().optional(),
  scoreDensity: z.number().gt(0).max(1).optional(),
  lowRankFeatures: z.number().int().nonnegative().max(MAX_ATTENTION_FEATURES).optional(),
  keptDense: z.string().min(1).max(1000).optional(),
  pixelfly: z.lazy(() => PixelflyConfigSchema).optional(),
}) satisfies z.ZodType<InventoryLayer>;

export { PixelflyConfigSchema, PlanSchema, PlanTargetSchema };

/** A JSON model spec (core/modelSpec.ts). Its structure is checked by the core's validator, which gives precise errors. */
export const ModelSpecSchema = z.record(z.string(), z.unknown());

/** Where a spec came from: the model (class or factory function) of a source file it stands in for. */
export const RunSourceSchema = z.strictObject({
  file: z.string().min(1).max(4096),
  model: z.string().min(1).max(256),
});

export const DatasetSchema = z.strictObject({
  /** `synthetic` is always available; `fashion-mnist` falls back to it (saying so) when the files are not installed. */
  kind: z.enum(['synthetic', 'fashion-mnist', 'text', 'npy']),
  /** File or folder for fashion-mnist (IDX files), text (a corpus) or npy (x.npy + y.npy); optional for fashion-mnist. */
  path: z.string().min(1).max(4096).optional(),
});

/** Who trains a job: the native engine on a stand-in spec, or the user's own PyTorch model in a Python worker. */
export const RUNNER_CHOICES = ['engine', 'torch'] as const;
export type Runner = (typeof RUNNER_CHOICES)[number];

const pythonName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a Python name').max(256);

/**
 * What a model eats, as the analysis reads it (server/analysis/inputs.ts): token ids below `vocab`,
 * `context` of them per sample; images of channels×height×width; or vectors of `features` values.
 */
export const ModelInputsSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('tokens'), vocab: positiveInt.max(1 << 24), context: positiveInt.max(1 << 20) }),
  z.strictObject({ kind: z.literal('images'), channels: positiveInt.max(4096), height: positiveInt.max(1 << 16), width: positiveInt.max(1 << 16) }),
  z.strictObject({ kind: z.literal('features'), features: positiveInt.max(1 << 24) }),
]);
export type ModelInputs = z.infer<typeof ModelInputsSchema>;

/**
 * The user's own PyTorch model, for the torch runner: the daemon imports `file` (by path, never
 * its text) in a Python worker process, builds `name` with `settings`, and trains it dense and
 * with the job's plan applied by pixelfly_torch.sparsify. Clients send it only from trusted
 * workspaces (see docs/protocol.md, Security).
 */
export const TorchModelSchema = z.strictObject({
  /** Absolute path of the model's .py file. */
  file: z.string().min(1).max(4096),
  /** The class or factory/registry function to build (the analysis' --model). */
  name: pythonName,
  /**
   * Settings (the analysis' pins, --set NAME=VALUE): constructor or factory keyword arguments, or
   * fields of the config object the model takes.
   */
  settings: z
    .record(pythonName, z.union([finite, z.string().max(4096), z.boolean(), z.null()]))
    .refine((r) => Object.keys(r).length <= 256, 'at most 256 settings')
    .default({}),
  /** The interpreter (the one the editor's Python extension selected); default python3 on the daemon's PATH. */
  python: z.string().min(1).max(4096).optional(),
  /** Folders the model's imports are looked up in after the file's own (workspace folders, extra library paths). */
  paths: z.array(z.string().min(1).max(4096)).max(64).default([]),
  /** What the model eats (from the analysis); read off the built model when omitted. */
  inputs: ModelInputsSchema.optional(),
  /** A step, evaluation or checkpoint that answers nothing for this long counts as hung and ends the job (default 600; the import, build and data loading get at least 300). */
  stepTimeoutS: finite.refine((v) => v > 0 && v <= 86400, 'stepTimeoutS must be in (0, 86400]').optional(),
  /**
   * The client vouches that `file` lies in a workspace its user trusts (VS Code's workspace trust;
   * on the command line, the user named the file). The daemon refuses a torch job without it: it
   * runs the file's code.
   */
  trusted: z.boolean().default(false),
});
export type TorchModel = z.infer<typeof TorchModelSchema>;

/** Compute backends and product precisions a run may ask for (the CLI's and the extension's choices too). */
export const BACKEND_CHOICES = ['auto', 'cpu', 'cuda'] as const;
export const PRECISION_CHOICES = ['auto', 'fp32', 'bf16', 'fp16'] as const;

export const HyperparametersSchema = z.strictObject({
  epochs: finite.refine((v) => v > 0 && v <= 1000, 'epochs must be in (0, 1000]'),
  batchSize: positiveInt.max(65536),
  lr: finite.refine((v) => v > 0 && v < 10, 'lr must be in (0, 10)'),
  weightDecay: finite.refine((v) => v >= 0 && v < 10, 'weightDecay must be in [0, 10)').default(0.01),
  warmupSteps: z.number().int().nonnegative().default(0),
  gradClip: finite.refine((v) => v >= 0, 'gradClip must be >= 0').default(1),
  seed: z.number().int().nonnegative().max(2 ** 31 - 1).default(0),
  /** Evaluate every N steps (0: only at the end of each epoch). */
  evalEvery: z.number().int().nonnegative().default(0),
  /** Cap on the number of steps, whatever `epochs` says (0: no cap). Handy for smoke runs. */
  maxSteps: z.number().int().nonnegative().default(0),
  /** Save checkpoints every N steps (0: at the end of each epoch only). */
  checkpointEvery: z.number().int().nonnegative().default(0),
  /** Test samples per evaluation (0: the whole test split). */
  evalSamples: z.number().int().nonnegative().default(0),
  /** Engine threads; 0 lets the engine choose. */
  threads: z.number().int().nonnegative().max(256).default(0),
  /**
   * At most this many bytes for the job's process (0: what the machine has free, less its reserve).
   * A job estimated above it is refused with a size that fits; a running job that grows past it is stopped.
   */
  memoryLimitBytes: z.number().int().nonnegative().max(2 ** 50).default(0),
  /** Compute backend: 'auto' = CUDA when the daemon's machine has a usable GPU, else CPU; 'cpu' forces the CPU. */
  backend: z.enum(BACKEND_CHOICES).default('auto'),
  /** Products' input precision: 'auto' = bf16 on CUDA (tensor cores) and on CPUs with bf16 instructions (AMX, AVX512-BF16), else fp32; master weights stay fp32. */
  precision: z.enum(PRECISION_CHOICES).default('auto'),
});
export type Hyperparameters = z.infer<typeof HyperparametersSchema>;

export const JobStateSchema = z.enum(['queued', 'running', 'completed', 'failed', 'cancelled', 'interrupted']);
export type JobState = z.infer<typeof JobStateSchema>;
export const TERMINAL_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled'];

/** Forward + backward ms per part of the model ('patch_embed', 'token_mix', 'channel_mix', 'attention' (the attention cores), 'attn_proj', 'mlp', 'head', ...), in model order. */
const PartsMsSchema = z.record(z.string().max(64), finite);
const VariantStepSchema = z.object({ loss: finite, stepMs: finite, tokensPerSec: finite, partsMs: PartsMsSchema.optional() });
const VariantEvalSchema = z.object({
  loss: finite,
  accuracy: finite.optional(),
  perplexity: finite.optional(),
});

export const VariantSummarySchema = z.object({
  params: z.number().int().nonnegative(),
  finalLoss: finite.optional(),
  medianStepMs: finite.optional(),
  tokensPerSec: finite.optional(),
  /** Median forward + backward ms per part of the model over the run's steps. */
  partsMs: PartsMsSchema.optional(),
  eval: VariantEvalSchema.optional(),
});

export const RunSummarySchema = z.object({
  steps: z.number().int().nonnegative(),
  epochsDone: finite,
  wallMs: finite,
  /** The job's peak memory as estimated before it was admitted (latest session), in bytes. */
  estimatedMemoryBytes: z.number().nonnegative().optional(),
  /** The job process's measured peak resident memory (VmHWM, latest session), in bytes: the most any step took. */
  peakMemoryBytes: z.number().nonnegative().optional(),
  pixelfly: VariantSummarySchema,
  dense: VariantSummarySchema.optional(),
  /** Median dense step time / median Pixelfly step time, both measured in the same alternating run. */
  speedup: finite.optional(),
  /** The plan's whole-step estimate of that speedup (plan.estimate.speedup), when the run has both. */
  estimatedSpeedup: finite.optional(),
  reportPath: z.string().optional(),
});
export type RunSummary = z.infer<typeof RunSummarySchema>;

export const DatasetInfoSchema = z.object({
  kind: z.string(),
  name: z.string(),
  /** True when the run trains on the synthetic task (asked for, or substituted for a missing dataset). */
  synthetic: z.boolean(),
  note: z.string().optional(),
  trainSize: z.number().int().nonnegative(),
  testSize: z.number().int().nonnegative(),
});

/**
 * What a run trains, in the words the metrics panel, the runs view and the report use: the model
 * and its file, the runner (the native engine's stand-in for it, or the user's own PyTorch model),
 * the dataset, both variants' parameter counts (once built), the batch and the context.
 */
export const RunSubjectSchema = z.object({
  /** 'engine': the native engine trains a stand-in built from a spec; 'torch': the user's own model in a Python worker. */
  runner: z.enum(RUNNER_CHOICES),
  /** The model: a class or factory function of `file`, else the spec's name. */
  model: z.string(),
  /** The model's source file, when the run came from one. */
  file: z.string().optional(),
  /** The engine's stand-in family ('gpt', 'vit', 'mixer', 'mlp'); absent for the user's own model. */
  family: z.string().optional(),
  /** The dataset asked for, in words ('text corpus /data/tiny.txt', 'Fashion-MNIST', 'synthetic'). */
  dataset: z.string(),
  batchSize: z.number().int().positive(),
  /** Tokens per sample (a GPT's context, a ViT's or Mixer's patches; a PyTorch model's token context once built); absent for feature vectors. */
  context: z.number().int().positive().optional(),
  /** A PyTorch model's images (channels × height × width), read off the built model. */
  image: z.object({ channels: z.number().int().positive(), height: z.number().int().positive(), width: z.number().int().positive() }).optional(),
  /** What trains a PyTorch model, once its worker has started ('PyTorch 1.13.1, Python 3.11.2'). */
  runtime: z.string().optional(),
  /** Parameter counts of the built models, once the job has started. */
  params: z.object({ pixelfly: z.number().int().nonnegative(), dense: z.number().int().nonnegative().optional() }).optional(),
});
export type RunSubject = z.infer<typeof RunSubjectSchema>;

/** The runner in the words every client shows: the engine's stand-in for the model, or the user's own PyTorch model (and what trains it). */
export function describeRunner(s: Pick<RunSubject, 'runner' | 'family' | 'runtime'>): string {
  return s.runner === 'torch' ? `your PyTorch model${s.runtime ? ` (${s.runtime})` : ''}` : `engine stand-in${s.family ? ` (${s.family})` : ''}`;
}

/** A sample's shape in words: 'batch 16 × context 128', 'batch 64 × 3×32×32 images', 'batch 32'. */
export function describeShape(s: Pick<RunSubject, 'batchSize' | 'context' | 'image'>): string {
  const per = s.context !== undefined ? ` × context ${s.context}` : s.image ? ` × ${s.image.channels}×${s.image.height}×${s.image.width} images` : '';
  return `batch ${s.batchSize}${per}`;
}

export const JobInfoSchema = z.object({
  jobId,
  name: z.string(),
  state: JobStateSchema,
  createdAt: z.string(),
  startedAt: z.string().optional(),
  endedAt: z.string().optional(),
  compare: z.boolean(),
  step: z.number().int().nonnegative(),
  totalSteps: z.number().int().nonnegative(),
  epochs: finite,
  dataset: DatasetInfoSchema.optional(),
  /** Where the models computed ('cpu' or 'cuda'), known once the job has started. */
  backend: z.string().optional(),
  /** The products' input precision there ('fp32', 'bf16' or 'fp16'). */
  precision: z.string().optional(),
  /** Why that precision, where the runner decided it (the PyTorch runner's 'auto': whether the model trains under torch.autocast). */
  precisionNote: z.string().optional(),
  /** How the products ran: the CPU kernels' instruction set and bf16 path (e.g. 'avx512bf16 kernels, bf16 on avx512bf16'), or 'cuda'. */
  kernels: z.string().optional(),
  lastSeq: z.number().int().nonnegative(),
  runDir: z.string(),
  lastCheckpointStep: z.number().int().nonnegative().optional(),
  /** Why a run that did not complete ended or stopped (failed, cancelled, interrupted), in words. */
  endReason: z.string().optional(),
  /** What the run trains (absent in runs recorded before it existed). */
  subject: RunSubjectSchema.optional(),
  /** The job's peak memory as estimated before it was admitted, in bytes. */
  estimatedMemoryBytes: z.number().nonnegative().optional(),
  /** The job process's measured peak resident memory, in bytes, once it has run. */
  peakMemoryBytes: z.number().nonnegative().optional(),
  error: z.string().optional(),
  /** A job that failed for memory, where the same model fits at a smaller batch: that batch (the error says the rest). */
  fits: z.object({ batchSize: positiveInt }).optional(),
  summary: RunSummarySchema.optional(),
});
export type JobInfo = z.infer<typeof JobInfoSchema>;

/**
 * The batch a memory refusal's `data` (daemon/memory.ts MemoryRefusal) says the same model fits
 * with — a batch alone, not a smaller width or context — else undefined.
 */
export function refusalBatch(data: unknown): number | undefined {
  const d = data as { reason?: unknown; fits?: { batchSize?: unknown; field?: unknown } | null } | null | undefined;
  if (d?.reason !== 'memory' || !d.fits || d.fits.field !== undefined) return undefined;
  const b = d.fits.batchSize;
  return typeof b === 'number' && Number.isInteger(b) && b >= 1 ? b : undefined;
}

// ---------------------------------------------------------------------------------------------
// Job events: appended to the run's metrics.jsonl (one per line) and pushed to subscribers as
// notifications. `seq` counts from 1 per job with no gaps, so `job.subscribe {fromSeq}` can replay.

const eventBase = { jobId, seq: positiveInt, t: z.number() /* ms since epoch */ };

export const JobEventSchema = z.discriminatedUnion('type', [
  z.object({
    ...eventBase,
    type: z.literal('status'),
    state: JobStateSchema,
    message: z.string().optional(),
    /** Set when a run restarts from a checkpoint: steps after it are trained (and reported) again. */
    resumedFromStep: z.number().int().nonnegative().optional(),
  }),
  z.object({
    ...eventBase,
    type: z.literal('step'),
    step: positiveInt,
    epoch: finite,
    /** Learning rate used for this step, when the engine reports it. */
    lr: finite.optional(),
    pixelfly: VariantStepSchema,
    dense: VariantStepSchema.optional(),
    /** Running speedup: median dense / median Pixelfly step time over the recent window. */
    speedup: finite.optional(),
    /** The job process's peak resident memory so far (VmHWM), in bytes, when the runner measures it. */
    peakMemoryBytes: z.number().nonnegative().optional(),
  }),
  z.object({
    ...eventBase,
    type: z.literal('eval'),
    step: z.number().int().nonnegative(),
    epoch: finite,
    pixelfly: VariantEvalSchema,
    dense: VariantEvalSchema.optional(),
  }),
  z.object({
    ...eventBase,
    type: z.literal('progress'),
    step: z.number().int().nonnegative(),
    totalSteps: z.number().int().nonnegative(),
    epoch: finite,
    epochs: finite,
    elapsedMs: finite,
    etaMs: finite.optional(),
  }),
  z.object({
    ...eventBase,
    type: z.literal('checkpoint'),
    step: z.number().int().nonnegative(),
  }),
  z.object({
    ...eventBase,
    type: z.literal('error'),
    message: z.string(),
    fatal: z.boolean(),
  }),
  z.object({
    ...eventBase,
    type: z.literal('completed'),
    state: z.enum(['completed', 'failed', 'cancelled']),
    summary: RunSummarySchema,
  }),
]);
export type JobEvent = z.infer<typeof JobEventSchema>;
export type JobEventType = JobEvent['type'];
/** An event before the job log has numbered it. */
export type JobEventBody = JobEvent extends infer E ? (E extends JobEvent ? Omit<E, 'jobId' | 'seq' | 't'> : never) : never;

/** Notification method that carries each event type: metrics, progress, completion, errors. */
export const EVENT_NOTIFICATION: Record<JobEventType, string> = {
  status: 'job.status',
  step: 'job.metrics',
  eval: 'job.metrics',
  progress: 'job.progress',
  checkpoint: 'job.checkpoint',
  error: 'job.error',
  completed: 'job.completed',
};

// ---------------------------------------------------------------------------------------------
// Methods: params and result schemas, one entry per method.

export const CpuInfoSchema = z.object({
  model: z.string(),
  cores: z.number().int().nonnegative(),
  features: z.array(z.string()),
});
export const GpuInfoSchema = z.object({
  name: z.string(),
  memoryMiB: z.number().nonnegative().optional(),
  /** "major.minor", from the CUDA runtime when the addon's CUDA backend can query the device. */
  computeCapability: z.string().optional(),
});

export const BenchShapeSchema = z.strictObject({
  name: z.string().max(256).optional(),
  in: positiveInt.max(65536),
  out: positiveInt.max(65536),
  /** Rows of the activation matrix (batch x tokens). */
  rows: positiveInt.max(1 << 20),
  /** This shape's own Pixelfly config: measured with it alone instead of with every entry of `configs`; with neither, the shape is measured dense only (its GEMM rate). */
  config: PixelflyConfigSchema.optional(),
  /** This shape's own list of configs (the layouts the planner weighs at this shape), instead of the request's `configs`. */
  configs: z.array(PixelflyConfigSchema).max(64).optional(),
});

export const methods = {
  hello: {
    params: z.strictObject({ client: z.string().max(128).optional(), protocol: z.number().int().optional() }).default({}),
    result: z.object({
      name: z.literal('pixelfly-daemon'),
      version: z.string(),
      protocol: z.number().int(),
      pid: z.number().int(),
      home: z.string(),
      backends: z.array(z.string()),
      engine: z.object({ available: z.boolean(), error: z.string().optional() }),
      cpu: CpuInfoSchema,
      gpus: z.array(GpuInfoSchema),
      threads: z.number().int().positive(),
      /** The machine's memory and what is free now (what admission compares a job's estimate with). */
      memory: z.object({ totalBytes: z.number().nonnegative(), availableBytes: z.number().nonnegative() }).optional(),
      /** The runs folder's file system; `problem` says why runs cannot start there (e.g. a full disk). */
      storage: z.object({ runs: z.string(), freeBytes: z.number().nonnegative().optional(), problem: z.string().optional() }).optional(),
    }),
  },
  'plan.suggest': {
    params: z.strictObject({
      inventory: z.strictObject({ layers: z.array(InventoryLayerSchema).min(1).max(4096) }),
      target: PlanTargetSchema,
    }),
    result: PlanSchema,
  },
  'bench.layers': {
    params: z.strictObject({
      shapes: z.array(BenchShapeSchema).min(1).max(64),
      /** Configs every shape without its own `config` is measured with. */
      configs: z.array(PixelflyConfigSchema).min(1).max(64).optional(),
      repeats: z.number().int().min(1).max(100).default(5),
      threads: z.number().int().nonnegative().max(256).default(0),
      /** Also time dense engine training steps, for the step rates whole-step estimates use (core/stepCost.ts). */
      step: z.boolean().default(true),
      /** The products' input precision ('auto': the engine's default here); jobs at this precision are costed with what it measures. */
      precision: z.enum(['auto', 'fp32', 'bf16']).default('auto'),
    }),
    result: z.object({
      /** Where the measured profile was saved; core/costModel.ts reads it. */
      profilePath: z.string(),
      rows: z.array(
        z.object({
          name: z.string().optional(),
          in: z.number().int(),
          out: z.number().int(),
          rows: z.number().int(),
          config: PixelflyConfigSchema,
          denseMs: finite,
          pixelflyMs: finite,
          speedup: finite,
        }),
      ),
    }),
  },
  'job.submit': {
    params: z.strictObject({
      name: z.string().min(1).max(128).optional(),
      /** 'engine' (default): train `spec` on the native engine; 'torch': train `model`, the user's own PyTorch model. */
      runner: z.enum(RUNNER_CHOICES).default('engine'),
      /** The engine's model spec (engine runner). */
      spec: ModelSpecSchema.optional(),
      /** The user's PyTorch model (torch runner). */
      model: TorchModelSchema.optional(),
      /**
       * The plan to train, as the language server or `pixelfly analyze` produced it: carried unchanged
       * to the engine (or the PyTorch runner) and kept in the run folder. Omitted or null: the daemon
       * plans the spec's inventory with `target` (default: core's DEFAULT_TARGET) and this machine's profile.
       */
      plan: PlanSchema.nullable().optional(),
      target: PlanTargetSchema.optional(),
      /** The model file and model the spec stands in for (the language server's lens), shown with the run. */
      source: RunSourceSchema.optional(),
      dataset: DatasetSchema,
      hyper: HyperparametersSchema,
      /** Train the dense model too, in alternating steps, to measure the speedup under the same conditions. */
      compare: z.boolean().default(true),
    })
      .refine((p) => p.runner !== 'engine' || p.spec !== undefined, { message: 'the engine runner needs a model spec', path: ['spec'] })
      .refine((p) => p.runner !== 'torch' || p.model !== undefined, { message: 'the torch runner needs a model: {file, name, …}', path: ['model'] })
      .refine((p) => p.runner !== 'torch' || p.spec === undefined, { message: 'a torch job trains `model`, not an engine spec', path: ['spec'] })
      .refine((p) => p.runner !== 'engine' || p.model === undefined, { message: 'a PyTorch model needs runner: \'torch\'', path: ['model'] }),
    result: JobInfoSchema,
  },
  'job.cancel': { params: z.strictObject({ jobId }), result: JobInfoSchema },
  /** Restart an interrupted (or failed) run from its last checkpoint. */
  'job.resume': { params: z.strictObject({ jobId }), result: JobInfoSchema },
  'job.list': {
    params: z.strictObject({}).default({}),
    result: z.object({ jobs: z.array(JobInfoSchema) }),
  },
  'job.get': { params: z.strictObject({ jobId }), result: JobInfoSchema },
  /**
   * Replays the job's events with seq > fromSeq as notifications, then streams new ones.
   * The result comes first; the replay follows it on the same connection.
   */
  'job.subscribe': {
    params: z.strictObject({ jobId, fromSeq: z.number().int().nonnegative().default(0) }),
    result: z.object({ jobId, state: JobStateSchema, lastSeq: z.number().int().nonnegative() }),
  },
  'job.unsubscribe': {
    params: z.strictObject({ jobId }),
    result: z.object({ jobId, subscribed: z.literal(false) }),
  },
  /** Resource use, so clients and tests can check that memory stays bounded. */
  'daemon.stats': {
    /** `resetEventLoop`: start a new window for `eventLoop` after reading it (a client measuring one stretch of work). */
    params: z.strictObject({ resetEventLoop: z.boolean().optional() }).default({}),
    result: z.object({
      connections: z.number().int().nonnegative(),
      /** Sockets still in their handshake (bounded by LIMITS.maxPendingHandshakes). */
      handshaking: z.number().int().nonnegative().optional(),
      subscriptions: z.number().int().nonnegative(),
      jobs: z.number().int().nonnegative(),
      rssBytes: z.number().nonnegative(),
      heapUsedBytes: z.number().nonnegative(),
      uptimeMs: z.number().nonnegative(),
      /**
       * How late the event loop ran a 10 ms timer since the daemon started or the last reset: what a
       * request arriving then waited before being looked at (wall-clock, so an OS that stalls the
       * whole process counts too).
       */
      eventLoop: z
        .object({ maxDelayMs: z.number().nonnegative(), p99DelayMs: z.number().nonnegative(), meanDelayMs: z.number().nonnegative(), sinceMs: z.number().nonnegative() })
        .optional(),
    }),
  },
  /** Stops the daemon: a running job stops between steps, is checkpointed and marked interrupted. */
  'daemon.shutdown': { params: z.strictObject({}).default({}), result: z.object({ stopping: z.literal(true) }) },
} as const;

export type MethodName = keyof typeof methods;
export type MethodParams<M extends MethodName> = z.output<(typeof methods)[M]['params']>;
/** What a client may send: defaults are filled in by the daemon. */
export type MethodParamsIn<M extends MethodName> = z.input<(typeof methods)[M]['params']>;
export type MethodResult<M extends MethodName> = z.infer<(typeof methods)[M]['result']>;

export function isMethodName(name: string): name is MethodName {
  return Object.prototype.hasOwnProperty.call(methods, name);
}

/** Notification method -> params schema, for clients validating what the daemon pushes. */
export const notifications = {
  'job.status': JobEventSchema,
  'job.metrics': JobEventSchema,
  'job.progress': JobEventSchema,
  'job.checkpoint': JobEventSchema,
  'job.error': JobEventSchema,
  'job.completed': JobEventSchema,
} as const;

/** Short, single-line description of a zod error, naming the offending fields. */
export function describeZodError(err: z.ZodError, what: string): string {
  const parts = err.issues.slice(0, 5).map((i) => {
    const path = i.path.length > 0 ? i.path.map(String).join('.') : '(root)';
    return `${path}: ${i.message}`;
  });
  const more = err.issues.length > 5 ? ` (+${err.issues.length - 5} more)` : '';
  return `invalid ${what}: ${parts.join('; ')}${more}`;
}
