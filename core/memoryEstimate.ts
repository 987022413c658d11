/**
 * Peak memory of a training job, before anything is allocated: what admission compares with the
 * machine's free memory, and what a refusal quotes ("needs 7.2 GB: parameters …, activations …").
 *
 * The estimate mirrors what the native engine allocates (native/src/engine): per model, one
 * ParamStore holding parameters, gradients and the two AdamW moments (4 fp32 arrays of the
 * parameter count); every layer's output buffer and what it saves for backward, sized for the
 * largest batch that runs through it (training batch, or evaluation's max(batch, 128)); the
 * backward's per-layer gradient buffers; the data batch. A compare job holds both models at once.
 * Around that steady state, the job passes through phases with their own transients, and the
 * peak is the largest of them:
 *   load    decoding the dataset (the caller says how much that takes);
 *   build   each Pixelfly layer's initialisation draws a dense padded matrix (and, with a low-rank
 *           term, a dense out×in matrix for its SVD) and frees it;
 *   resume  a checkpoint is read whole, copied into arrays and copied again into the engine;
 *   train   steady state, plus a checkpoint's copy of parameters and moments while it is written.
 * Pure arithmetic over a model spec (no Node imports); another runner passes its own per-model
 * accounting (TrainingMemoryInput.modelMemory) and keeps the phases, the dataset and the suggestions.
 * The PyTorch runner's estimate (estimateTorchMemory, below) starts from what its worker measured
 * on the built model instead of a spec.
 */
import { lowRankFeatures } from './attention';
import { layoutSummary } from './layout';
import { patchTokens, type GptSpec, type ModelSpec, type VitSpec } from './modelSpec';
import { pixelflyLinearCost, type PixelflyConfig } from './pixelflyLayer';

const F32 = 4;
/** Evaluation runs batches of at least this many samples (native/src/engine/model.cc). */
const EVAL_BATCH = 128;

/** What the loaded dataset costs, as the loader knows it (daemon/memory.ts computes it per kind). */
export interface DatasetMemory {
  /** Bytes held while training: the decoded arrays, in JavaScript and in the engine's copy. */
  residentBytes: number;
  /** Peak while decoding (file buffer, text, intermediate arrays). */
  loadPeakBytes: number;
  /** Training samples (the batch sampler keeps an int64 order over them), 0 for token streams. */
  trainSamples: number;
}

export interface TrainingMemoryInput {
  spec: ModelSpec;
  /** Layers trained as Pixelfly, by inventory name (the plan's sparsified layers); empty: dense. */
  pixelfly: ReadonlyArray<{ name: string; config: PixelflyConfig }>;
  batch: number;
  /**
   * Samples (or, for a language model, context windows) one evaluation covers: the engine
   * evaluates in batches of max(batch, 128) of them, fewer when there are fewer.
   */
  evalCount: number;
  /** The job starts from a checkpoint (reading one is a phase of its own). */
  resuming: boolean;
  /** Train the dense model too (a compare job). */
  compare: boolean;
  /** Engine threads (per-thread scratch of the fused token-mixing MLP). */
  threads: number;
  dataset: DatasetMemory;
  /** Fixed cost of the runner itself (the job process: Node, its modules, the native addon). */
  overheadBytes: number;
  /**
   * One model's memory for another runner (a PyTorch worker keeps other buffers than the engine);
   * default: the native engine's (modelMemory below). Phases, the dataset and the refusal's
   * suggestions work the same with either.
   */
  modelMemory?: typeof modelMemory;
}

/** One model's memory. */
export interface ModelMemory {
  params: number;
  /** Parameters, gradients, AdamW m and v: 4 fp32 arrays. */
  paramBytes: number;
  activationBytes: number;
  /** Largest transient of its initialisation. */
  buildBytes: number;
}

export type MemoryPhase = 'load' | 'build' | 'resume' | 'train';

export interface MemoryEstimate {
  /** The peak: the largest phase. */
  totalBytes: number;
  peakPhase: MemoryPhase;
  phases: Record<MemoryPhase, number>;
  /** The training phase's parts (what a refusal lists). */
  parts: {
    parameters: number;
    gradients: number;
    optimizer: number;
    activations: number;
    dataset: number;
    checkpoint: number;
    overhead: number;
  };
  pixelfly: ModelMemory;
  dense?: ModelMemory;
}

/** Floats a module chain allocates, split by the batch size that sizes them. */
interface Floats {
  /** Sized by the largest batch through the forward (training or evaluation). */
  forward: number;
  /** Sized by the training batch (backward only). */
  backward: number;
  /** Independent of the batch. */
  fixed: number;
}

/** A module as the estimate sees it: its input width (floats per sample) and what it allocates per sample. */
interface Mod {
  inSize: number;
  outSize: number;
  floats: Floats;
  /** Extra backward floats per sample when it is the first module of the model (nobody wants its input gradient). */
  firstBackward?: number;
  buildFloats?: number;
}

const none = (): Floats => ({ forward: 0, backward: 0, fixed: 0 });

class ModelWalk {
  params = 0;
  build = 0;
  constructor(
    private readonly pixelfly: ReadonlyMap<string, PixelflyConfig>,
    private readonly threads: number,
  ) {}

  /** nn.Linear over the last axis, dense or Pixelfly per the plan; T tokens per sample. */
  linear(planKey: string, T: number, inF: number, outF: number): Mod {
    const cfg = this.pixelfly.get(planKey);
    const f = none();
    f.forward = T * outF;
    if (!cfg) {
      this.params += inF * outF + outF;
      return { inSize: T * inF, outSize: T * outF, floats: f };
    }
    const layout = layoutSummary(outF, inF, cfg);
    this.params += pixelflyLinearCost(inF, outF, 1, cfg, layout).params;
    const r = cfg.rank;
    let first = 0;
    if (r > 0) {
      // Forward: h and g∘h (T·r), the gate (T), and (1 − g)∘x (T·in) when in ≤ out; backward: dh, dz.
      f.forward += T * (2 * r + 1) + (inF <= outF ? T * inF : 0);
      f.fixed += inF > outF ? r * outF : 0;
      f.backward += T * (r + 1) + (inF > outF ? T * outF : 0);
      first = T * inF;
    }
    // Initialisation: the dense padded weight, and the dense matrix the low-rank factors come from.
    const buildFloats = layout.outPadded * layout.inPadded + (r > 0 ? outF * inF + 3 * (outF + inF) * (r + 8) : 0);
    this.build = Math.max(this.build, buildFloats * F32);
    return { inSize: T * inF, outSize: T * outF, floats: f, firstBackward: first };
  }

  pointwise(size: number, extraForward = 0): Mod {
    return { inSize: size, outSize: size, floats: { forward: size + extraForward, backward: 0, fixed: 0 } };
  }

  layerNorm(T: number, D: number): Mod {
    this.params += 2 * D;
    return this.pointwise(T * D, 2 * T);
  }

  /** A Sequential: children in order; the backward keeps dL/d(output) of every child but the last. */
  sequential(mods: Mod[]): Mod {
    const f = none();
    mods.forEach((m, i) => {
      f.forward += m.floats.forward;
      f.backward += m.floats.backward + (i > 0 ? m.inSize : 0);
      f.fixed += m.floats.fixed;
    });
    return { inSize: mods[0].inSize, outSize: mods[mods.length - 1].outSize, floats: f, firstBackward: mods[0].firstBackward };
  }

  residual(body: Mod): Mod {
    const m = this.sequential([body]);
    m.floats.forward += body.outSize;
    m.firstBackward = (m.firstBackward ?? 0) + body.inSize;
    return m;
  }

  mlpBlock(what: string, T: number, D: number, hidden: number): Mod {
    return this.residual(
      this.sequential([this.layerNorm(T, D), this.linear(`blocks.${what}.fc1`, T, D, hidden), this.pointwise(T * hidden), this.linear(`blocks.${what}.fc2`, T, hidden, D)]),
    );
  }

  mixerBlock(T: number, D: number, tokenHidden: number, channelHidden: number): Mod[] {
    const norm = this.layerNorm(T, D);
    let tokenMix: Mod;
    if (!this.pixelfly.has('blocks.token_mix.fc1') && !this.pixelfly.has('blocks.token_mix.fc2')) {
      // The fused per-sample MLP (CPU): no saved activations, per-thread hidden scratch and gradient partials.
      this.params += 2 * tokenHidden * T + tokenHidden + T;
      const perThread = 3 * tokenHidden * D + 2 * tokenHidden * T + tokenHidden + T;
      tokenMix = { inSize: T * D, outSize: T * D, floats: { forward: T * D, backward: 0, fixed: this.threads * perThread } };
    } else {
      tokenMix = this.sequential([
        this.pointwise(T * D),
        this.linear('blocks.token_mix.fc1', D, T, tokenHidden),
        this.pointwise(D * tokenHidden),
        this.linear('blocks.token_mix.fc2', D, tokenHidden, T),
        this.pointwise(T * D),
      ]);
    }
    return [this.residual(this.sequential([norm, tokenMix])), this.mlpBlock('channel_mix', T, D, channelHidden)];
  }

  /**
   * lowRank: Pixelfly attention's low-rank term (native/src/engine/performer.h), m features over n
   * score-block rows: it keeps every query's and key's features (2·heads·T·m), each query block's
   * sums (n·m·(D + heads)), its output u and the sparse part's o^s (2·T·D), and a row's shift of
   * its query features and its two weights (3·heads·T);
   * its backward o^s's and lse's gradients and its own dqkv (T·D + heads·T + 3·T·D).
   */
  transformerBlock(T: number, D: number, heads: number, hidden: number, lowRank?: { features: number; blocks: number }): Mod[] {
    const qkv = this.linear('blocks.attn.qkv', T, D, 3 * D);
    const proj = this.linear('blocks.attn.proj', T, D, D);
    const m = lowRank?.features ?? 0, n = lowRank?.blocks ?? 0;
    const lowRankForward = m > 0 ? 2 * heads * T * m + n * m * (D + heads) + 2 * T * D + 3 * heads * T : 0;
    const lowRankBackward = m > 0 ? T * D + heads * T + 3 * T * D : 0;
    const attention: Mod = {
      inSize: T * D,
      outSize: T * D,
      floats: {
        // qkv and proj outputs, the softmax statistics (heads·T: the score matrix is never kept) and
        // the context; backward: dctx, dqkv.
        forward: qkv.floats.forward + proj.floats.forward + heads * T + T * D + lowRankForward,
        backward: qkv.floats.backward + proj.floats.backward + T * D + 3 * T * D + lowRankBackward,
        fixed: qkv.floats.fixed + proj.floats.fixed,
      },
      firstBackward: qkv.firstBackward,
    };
    return [this.residual(this.sequential([this.layerNorm(T, D), attention])), this.mlpBlock('mlp', T, D, hidden)];
  }
}

/** Repeats a block's modules `depth` times without walking them `depth` times (depth may be large). */
function repeat(walk: ModelWalk, depth: number, block: () => Mod[]): Mod[] {
  if (depth <= 0) return [];
  const params0 = walk.params;
  const mods = block();
  walk.params = params0 + (walk.params - params0) * depth;
  const one = walk.sequential(mods);
  return [{ ...one, floats: { forward: one.floats.forward * depth, backward: (one.floats.backward + one.inSize) * depth - one.inSize, fixed: one.floats.fixed * depth } }];
}

/** The model's modules as the engine builds them (native/src/engine/model.cc build()). */
function modelOf(spec: ModelSpec, walk: ModelWalk): { net: Mod; rowsPerSample: number; classes: number; inputFloats: number } {
  switch (spec.kind) {
    case 'mlp': {
      const mods: Mod[] = [];
      let width = spec.inputFeatures;
      spec.hidden.forEach((h, i) => {
        mods.push(walk.linear(`fc${i + 1}`, 1, width, h), walk.pointwise(h));
        width = h;
      });
      mods.push(walk.linear('head', 1, width, spec.classes));
      return { net: walk.sequential(mods), rowsPerSample: 1, classes: spec.classes, inputFloats: spec.inputFeatures };
    }
    case 'mixer':
    case 'vit': {
      const pixels = spec.image.channels * spec.image.height * spec.image.width;
      const patches = patchTokens(spec);
      const pd = spec.image.channels * spec.patch * spec.patch;
      const mods: Mod[] = [walk.pointwise(pixels), walk.linear('patch_embed', patches, pd, spec.dim)];
      mods[0] = { ...mods[0], outSize: patches * pd };
      let T = patches;
      if (spec.kind === 'vit') {
        if (spec.pool !== 'mean') {
          T += 1;
          walk.params += spec.dim;
          mods.push(walk.pointwise(T * spec.dim));
          mods[mods.length - 1].inSize = patches * spec.dim;
        }
        walk.params += T * spec.dim;
        mods.push(walk.pointwise(T * spec.dim));
        mods.push(...repeat(walk, spec.depth, () => walk.transformerBlock(T, spec.dim, spec.heads, spec.mlpHidden, lowRankOf(spec, T))));
      } else {
        mods.push(...repeat(walk, spec.depth, () => walk.mixerBlock(T, spec.dim, spec.tokenHidden, spec.channelHidden)));
      }
      mods.push(walk.layerNorm(T, spec.dim), { inSize: T * spec.dim, outSize: spec.dim, floats: { forward: spec.dim, backward: 0, fixed: 0 } });
      mods.push(walk.linear('head', 1, spec.dim, spec.classes));
      return { net: walk.sequential(mods), rowsPerSample: 1, classes: spec.classes, inputFloats: pixels };
    }
    case 'gpt': {
      const T = spec.context;
      walk.params += spec.vocab * spec.dim + T * spec.dim;
      const mods: Mod[] = [{ inSize: T, outSize: T * spec.dim, floats: { forward: T * spec.dim, backward: 0, fixed: 0 } }];
      mods.push(...repeat(walk, spec.depth, () => walk.transformerBlock(T, spec.dim, spec.heads, spec.mlpHidden, lowRankOf(spec, T))));
      mods.push(walk.layerNorm(T, spec.dim), walk.linear('head', T, spec.dim, spec.vocab));
      return { net: walk.sequential(mods), rowsPerSample: T, classes: spec.vocab, inputFloats: T };
    }
  }
}

/** The low-rank term of a transformer spec's attention cores over T tokens: its features and score-block rows. */
function lowRankOf(spec: VitSpec | GptSpec, T: number): { features: number; blocks: number } | undefined {
  const a = spec.attention;
  const features = lowRankFeatures(a);
  return a?.kind === 'pixelfly' && features > 0 ? { features, blocks: Math.ceil(T / a.block) } : undefined;
}

/** One model on the native engine (the Pixelfly one with the plan's layers, or the dense one without). */
export function modelMemory(spec: ModelSpec, pixelfly: TrainingMemoryInput['pixelfly'], batch: number, evalBatch: number, threads: number): ModelMemory {
  const walk = new ModelWalk(new Map(pixelfly.map((l) => [l.name, l.config])), Math.max(1, threads));
  const { net, rowsPerSample, classes, inputFloats } = modelOf(spec, walk);
  const forwardBatch = Math.max(batch, evalBatch);
  const floats =
    net.floats.forward * forwardBatch +
    (net.floats.backward + (net.firstBackward ?? 0)) * batch +
    net.floats.fixed +
    // the batch (inputs and targets), then dL/dlogits
    (inputFloats + rowsPerSample) * forwardBatch +
    rowsPerSample * classes * batch;
  return { params: walk.params, paramBytes: 4 * walk.params * F32, activationBytes: floats * F32, buildBytes: walk.build };
}

/** The job's peak memory, by phase; see the file comment. */
export function estimateTrainingMemory(input: TrainingMemoryInput): MemoryEstimate {
  const { spec, batch, threads, dataset } = input;
  const evalBatch = Math.max(1, Math.min(Math.max(batch, EVAL_BATCH), input.evalCount));
  const model = input.modelMemory ?? modelMemory;
  const pixelfly = model(spec, input.pixelfly, batch, evalBatch, threads);
  const dense = input.compare ? model(spec, [], batch, evalBatch, threads) : undefined;
  const models = dense ? [pixelfly, dense] : [pixelfly];
  const paramBytes = models.reduce((a, m) => a + m.paramBytes, 0);
  const activations = models.reduce((a, m) => a + m.activationBytes, 0);
  const largest = Math.max(...models.map((m) => m.params));
  const samplerBytes = 8 * dataset.trainSamples;
  // Writing a checkpoint copies parameters and both moments out (3 arrays) and the batch order.
  const checkpoint = 3 * largest * F32 + samplerBytes;
  // Reading one: the file (3 arrays), the arrays parsed from it, and the engine's copies of them.
  const resume = 9 * largest * F32 + 2 * samplerBytes;
  const base = input.overheadBytes;
  const resident = base + dataset.residentBytes + samplerBytes;
  const phases: Record<MemoryPhase, number> = {
    load: base + dataset.loadPeakBytes,
    build: resident + paramBytes + Math.max(...models.map((m) => m.buildBytes)),
    resume: input.resuming ? resident + paramBytes + resume : 0,
    train: resident + paramBytes + activations + checkpoint,
  };
  const peakPhase = (Object.keys(phases) as MemoryPhase[]).reduce((a, b) => (phases[b] > phases[a] ? b : a));
  const quarter = paramBytes / 4;
  return {
    totalBytes: phases[peakPhase],
    peakPhase,
    phases,
    parts: {
      parameters: quarter,
      gradients: quarter,
      optimizer: 2 * quarter,
      activations,
      dataset: dataset.residentBytes + samplerBytes,
      checkpoint,
      overhead: base,
    },
    pixelfly,
    dense,
  };
}

/** A change that brings the estimate within a budget: a smaller batch, or a smaller width or depth. */
export type MemoryFit = { batchSize: number } | { field: string; value: number; batchSize: number };

/** Spec fields that scale memory, with the step their values must keep (heads divide dim). */
function knobs(spec: ModelSpec): Array<{ field: string; get: () => number; set: (v: number) => ModelSpec; step: number }> {
  const at = <K extends string>(field: K, step = 1) => ({
    field,
    step,
    get: () => (spec as unknown as Record<string, number>)[field],
    set: (v: number) => ({ ...spec, [field]: v }) as ModelSpec,
  });
  switch (spec.kind) {
    case 'mlp':
      return spec.hidden.map((_, i) => ({
        field: `hidden[${i}]`,
        step: 1,
        get: () => spec.hidden[i],
        set: (v: number) => ({ ...spec, hidden: spec.hidden.map((h, j) => (j === i ? v : h)) }),
      }));
    case 'mixer':
      return [at('depth'), at('dim'), at('channelHidden'), at('tokenHidden')];
    case 'vit':
      return [at('depth'), at('dim', spec.heads), at('mlpHidden')];
    case 'gpt':
      return [at('depth'), at('dim', spec.heads), at('mlpHidden'), at('context'), at('vocab')];
  }
}

/** Largest value in [lo, hi] (multiples of step) for which fits() holds, assuming it is monotone; undefined if none. */
function largest(lo: number, hi: number, step: number, fits: (v: number) => boolean): number | undefined {
  let a = Math.ceil(lo / step);
  let b = Math.floor(hi / step);
  if (a > b || !fits(a * step)) return undefined;
  while (a < b) {
    const mid = Math.floor((a + b + 1) / 2);
    if (fits(mid * step)) a = mid;
    else b = mid - 1;
  }
  return a * step;
}

/**
 * A size that fits `budgetBytes`: the largest batch below the requested one when that is enough,
 * else the largest value of one width or depth field (the others as sent, the plan's layers
 * dense, which never costs less than the Pixelfly model), at the requested batch or at batch 1.
 * Undefined when nothing of that kind fits (the dataset or the overhead alone is too big).
 */
export function suggestFit(input: TrainingMemoryInput, budgetBytes: number): MemoryFit | undefined {
  const fitsWith = (over: Partial<TrainingMemoryInput>) => estimateTrainingMemory({ ...input, ...over }).totalBytes <= budgetBytes;
  const batchSize = largest(1, input.batch - 1, 1, (b) => fitsWith({ batch: b }));
  if (batchSize !== undefined) return { batchSize };
  for (const batch of [input.batch, 1]) {
    for (const k of knobs(input.spec)) {
      const current = k.get();
      const value = largest(1, current - 1, k.step, (v) => fitsWith({ spec: k.set(v), pixelfly: [], batch }));
      if (value !== undefined) return { field: k.field, value, batchSize: batch };
    }
  }
  return undefined;
}

/**
 * What the PyTorch runner learns by building the user's model (daemon's protocol/engineJob.ts
 * InspectReply): parameter counts, and the bytes one sample's forward keeps for the backward,
 * counted by autograd's saved-tensor hooks on a batch of one.
 */
export interface TorchMemoryInput {
  params: { pixelfly: number; dense?: number };
  activationBytesPerSample: { pixelfly: number; dense: number };
  batch: number;
  /** The worker with Python, PyTorch and pixelfly_torch loaded, before the model is built. */
  baseBytes: number;
  dataset: DatasetMemory;
  compare: boolean;
  resuming: boolean;
  /** Tokens per sample (a language model's context), to suggest a shorter one; absent for classifiers. */
  context?: number;
}

/**
 * Peak memory of a PyTorch runner job. Each model holds fp32 parameters, gradients and AdamW's two
 * moments (4 arrays of its parameter count) for the whole run. The steps alternate and a step's
 * autograd graph is freed by its backward, so only one model's activations are alive at a time:
 * the larger of the two, for the batch (what the forward keeps, scaled by the batch, plus the
 * backward's gradient buffers, TORCH_BACKWARD_FACTOR of it). Writing a checkpoint serialises one
 * model's tensors through a buffer of their size; reading one holds a copy of parameters and
 * moments beside the model's own.
 */
export function estimateTorchMemory(input: TorchMemoryInput): MemoryEstimate {
  const model = (params: number, perSample: number): ModelMemory => ({
    params,
    paramBytes: 4 * params * F32,
    activationBytes: TORCH_BACKWARD_FACTOR * perSample * input.batch,
    buildBytes: 0,
  });
  const pixelfly = model(input.params.pixelfly, input.activationBytesPerSample.pixelfly);
  const dense = input.compare && input.params.dense !== undefined ? model(input.params.dense, input.activationBytesPerSample.dense) : undefined;
  const models = dense ? [pixelfly, dense] : [pixelfly];
  const paramBytes = models.reduce((a, m) => a + m.paramBytes, 0);
  const activations = Math.max(...models.map((m) => m.activationBytes));
  const largest = Math.max(...models.map((m) => m.params));
  const samplerBytes = 8 * input.dataset.trainSamples;
  const checkpoint = 3 * largest * F32 + samplerBytes;
  const resident = input.baseBytes + input.dataset.residentBytes + samplerBytes;
  const phases: Record<MemoryPhase, number> = {
    load: input.baseBytes + paramBytes / 4 + input.dataset.loadPeakBytes,
    // The dense model and its copy (sparsify replaces layers of the copy), before the optimizers exist.
    build: input.baseBytes + 2 * (input.params.dense ?? input.params.pixelfly) * F32,
    resume: input.resuming ? resident + paramBytes + 3 * largest * F32 : 0,
    train: resident + paramBytes + activations + checkpoint,
  };
  const peakPhase = (Object.keys(phases) as MemoryPhase[]).reduce((a, b) => (phases[b] > phases[a] ? b : a));
  const quarter = paramBytes / 4;
  return {
    totalBytes: phases[peakPhase],
    peakPhase,
    phases,
    parts: { parameters: quarter, gradients: quarter, optimizer: 2 * quarter, activations, dataset: input.dataset.residentBytes + samplerBytes, checkpoint, overhead: input.baseBytes },
    pixelfly,
    dense,
  };
}

/**
 * The backward's own buffers (each saved activation's gradient while it is in flight, the
 * allocator's slack) as a multiple of what the forward keeps. Measured under PyTorch 1.13 on the
 * CPU with the corpus' nanoGPT (2 layers, width 256) where activations dominate: context 256 at
 * batch 32, estimate/peak 0.96; batch 16, 0.87; context 128 at batch 32, 0.94.
 */
export const TORCH_BACKWARD_FACTOR = 1.5;

/** A PyTorch job that fits `budgetBytes`: a smaller batch, else a shorter context at batch 1; undefined when neither does. */
export function suggestTorchFit(input: TorchMemoryInput, budgetBytes: number): MemoryFit | undefined {
  const fits = (over: Partial<TorchMemoryInput>) => estimateTorchMemory({ ...input, ...over }).totalBytes <= budgetBytes;
  const batchSize = largest(1, input.batch - 1, 1, (b) => fits({ batch: b }));
  if (batchSize !== undefined) return { batchSize };
  if (input.context === undefined) return undefined;
  // Activations grow at least linearly with the context: scaling them down is an upper bound.
  const T = input.context;
  const scaled = (t: number): Partial<TorchMemoryInput> => ({
    batch: 1,
    activationBytesPerSample: { pixelfly: (input.activationBytesPerSample.pixelfly * t) / T, dense: (input.activationBytesPerSample.dense * t) / T },
  });
  const context = largest(1, T - 1, 1, (t) => fits(scaled(t)));
  return context === undefined ? undefined : { field: 'context', value: context, batchSize: 1 };
}
