/**
 * Typed async wrapper of the native training engine (native/src/engine): build a model from a
 * model spec + plan + seed, train steps, evaluate, save/load checkpoints, export weights for the
 * PyTorch module. The heavy work runs on libuv worker threads inside the addon.
 *
 * File formats (documented in native/src/engine/FORMATS.md):
 *   - checkpoint: "PXFLYCK1" + u32 header length + JSON header + float32 params, Adam m, Adam v
 *     + float64 sampler order, then the SHA-256 of everything before it;
 *   - weight export: safetensors (u64 header length + JSON header + raw little-endian float32),
 *     with the spec, plan and layouts in `__metadata__`, readable without the safetensors package.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { loadAddon as loadAddonFile, NativeAddonError } from './addon';
import { kernelInfo } from './kernels';
import { flatBlockButterflyLayout, layoutRows, type BlockLayout } from '../core/layout';
import { buildBlockIndex } from '../core/blockIndex';
import type { PixelflyConfig } from '../core/pixelflyLayer';
import { parseModelSpec, specAttention, specInventory, type ModelSpec } from '../core/modelSpec';
import { attentionLayout, lowRankFeatures, performerProjection, type AttentionSpec } from '../core/attention';
import type { LoadedData } from './datasets';

// ------------------------------------------------------------------------------- addon

interface NativeDataset {
  info(): { name: string; kind: string; features: number; classes: number; train: number; test: number };
}
interface NativeModel {
  trainSteps(d: NativeDataset, steps: number): Promise<StepResult[]>;
  evaluate(d: NativeDataset, split: 'train' | 'test', maxSamples: number): Promise<EvalResult>;
  paramInfo(): ParamInfo[];
  getState(): ModelState;
  setState(s: Partial<ModelState>): void;
  probe(x: Float32Array, batch: number, dy?: Float32Array): { y: Float32Array; dx?: Float32Array; grad?: Float32Array };
  dims(): { inT: number; inD: number; outT: number; outD: number; params: number };
}
interface NativeEngine {
  createModel(o: object): Promise<NativeModel>;
  createDataset(o: object): NativeDataset;
  backend: string;
  resolveBackend(name?: string): 'cpu' | 'cuda';
}

// OpenMP workers that spin while idle steal cores from the editor, from other jobs and from each
// other (measured on a loaded 2-core machine: a Mixer step 2-10× slower than with passive waiting).
// libgomp reads this when the addon is first loaded, which the engine does lazily, after this line.
process.env.OMP_WAIT_POLICY ??= 'PASSIVE';

/** The engine area of the shared addon (native/addon.ts finds and loads it, with a how-to-fix error). */
function loadAddon(): NativeEngine {
  const engine = (loadAddonFile() as unknown as { engine?: NativeEngine }).engine;
  if (!engine) throw new NativeAddonError('the native addon was built without the engine: run `npm run build`');
  return engine;
}

export function engineBackend(): string {
  return loadAddon().backend;
}

// ------------------------------------------------------------------------------- types

export interface StepResult {
  step: number;
  /** Epochs of training data consumed so far. */
  epoch: number;
  loss: number;
  lr: number;
  /** Before clipping. */
  gradNorm: number;
  ms: {
    data: number;
    forward: number;
    backward: number;
    optimizer: number;
    total: number;
    /** Forward and backward time per part of the model ('patch_embed', 'token_mix', 'channel_mix', 'attention' (the attention cores), 'attn_proj' (the rest of the attention blocks), 'mlp', 'head', ...), in model order; repeated blocks are summed. */
    parts: Array<{ name: string; forward: number; backward: number }>;
  };
}

/** A step's forward + backward ms per part of the model, keyed by part name in model order. */
export function stepPartsMs(step: StepResult): Record<string, number> {
  return Object.fromEntries(step.ms.parts.map((p) => [p.name, p.forward + p.backward]));
}

export interface EvalResult {
  loss: number;
  samples: number;
  accuracy?: number;
  perplexity?: number;
}

export interface ParamInfo {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  decay: boolean;
}

export interface ModelState {
  params: Float32Array;
  adamM: Float32Array;
  adamV: Float32Array;
  step: number;
  samplerRng: bigint[];
  samplerEpoch: number;
  samplerPos: number;
  samplerOrder: Float64Array;
}

export interface TrainConfig {
  batch: number;
  lr: number;
  /** Steps of the cosine schedule (after warm-up the rate decays to lr·minLrRatio at this step). */
  totalSteps: number;
  warmupSteps?: number;
  minLrRatio?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Global gradient-norm clip; 0 disables. */
  clipNorm?: number;
}

/** The part of a core Plan the engine reads: which layers are Pixelfly and their configs. */
export interface PlanLike {
  layers: Array<{ name: string; sparsify: boolean; config?: PixelflyConfig }>;
}

export interface CreateModelOptions {
  spec: unknown;
  plan?: PlanLike;
  train: TrainConfig;
  seed?: number;
  /** Threads for this model's calls (kernels and the engine's own loops). */
  threads?: number;
  /** Compute backend: 'auto' (CUDA when a GPU is usable, else CPU; the default unless $PIXELFLY_BACKEND says otherwise), 'cpu' or 'cuda'. */
  backend?: 'auto' | 'cpu' | 'cuda';
  /**
   * Input precision of the products: 'fp32' (default), 'bf16' (CUDA tensor cores; on the CPU AMX
   * tiles or AVX512-BF16, else the fp32 kernels on rounded inputs) or 'fp16' (CUDA only), with fp32
   * accumulation; weights, gradients and AdamW state stay fp32, like torch.autocast. 'auto' is bf16
   * on CUDA and on CPUs with bf16 instructions, fp32 elsewhere (see resolvePrecision).
   */
  precision?: EnginePrecision | 'auto';
}

export type EnginePrecision = 'fp32' | 'bf16' | 'fp16';

/** Whether this CPU computes bf16 products natively (AMX tiles or AVX512-BF16), not on the fp32 fallback. */
export function cpuHasBf16(): boolean {
  return kernelInfo().supportedIsas.some((isa) => isa === 'avx512bf16' || isa === 'amx');
}

/**
 * What a precision option means on a backend: 'auto' is bf16 on CUDA (tensor cores) and on CPUs with
 * bf16 instructions, fp32 on other CPUs (there bf16 would only add conversions to fp32 products);
 * unset is fp32.
 */
export function resolvePrecision(backend: 'cpu' | 'cuda', p: EnginePrecision | 'auto' | undefined): EnginePrecision {
  if (p === 'auto') return backend === 'cuda' || cpuHasBf16() ? 'bf16' : 'fp32';
  return p ?? 'fp32';
}

/**
 * How a model's products run, for run summaries: on the CPU the kernels' instruction set and, for
 * bf16, the bf16 path ('avx512 kernels', 'avx512bf16 kernels, bf16 on avx512bf16', 'avx512 kernels,
 * bf16 on fp32-fallback'); on CUDA 'cuda'.
 */
export function kernelsDescription(backend: 'cpu' | 'cuda', precision: EnginePrecision): string {
  if (backend === 'cuda') return 'cuda';
  const info = kernelInfo();
  return precision === 'bf16' ? `${info.isa} kernels, bf16 on ${info.bf16}` : `${info.isa} kernels`;
}

export class EngineConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineConfigError';
  }
}

// ------------------------------------------------------------------------------- spec → engine

interface ResolvedLayer {
  name: string;
  config: PixelflyConfig;
  layout: BlockLayout;
}

/** Checks the plan against the spec's inventory and computes each Pixelfly layer's layout. */
export function resolvePlan(spec: ModelSpec, plan: PlanLike | undefined): ResolvedLayer[] {
  if (!plan) return [];
  if (!Array.isArray(plan.layers)) throw new EngineConfigError('plan.layers: must be an array');
  const inventory = new Map(specInventory(spec).layers.map((l) => [l.name, l]));
  const out: ResolvedLayer[] = [];
  for (const d of plan.layers) {
    const layer = inventory.get(d.name);
    if (!layer) {
      throw new EngineConfigError(`plan layer '${d.name}': not a matmul of this ${spec.kind} spec (its layers: ${[...inventory.keys()].join(', ')})`);
    }
    if (!d.sparsify) continue;
    if (layer.role === 'embedding') throw new EngineConfigError(`plan layer '${d.name}': an embedding is a lookup and cannot be Pixelfly`);
    if (layer.role === 'attn_core') throw new EngineConfigError(`plan layer '${d.name}': an attention core has no weights; its score layout is the spec's "attention" field`);
    if (!d.config) throw new EngineConfigError(`plan layer '${d.name}': sparsify is true but config is missing`);
    const c = d.config;
    if (!Number.isInteger(c.rank) || c.rank < 0 || c.rank > Math.min(layer.in, layer.out)) {
      throw new EngineConfigError(`plan layer '${d.name}': rank must be an integer in 0..${Math.min(layer.in, layer.out)}, got ${c.rank}`);
    }
    let layout: BlockLayout;
    try {
      layout = flatBlockButterflyLayout(layer.out, layer.in, c);
    } catch (e) {
      throw new EngineConfigError(`plan layer '${d.name}' (${layer.out}×${layer.in}): ${(e as Error).message}`);
    }
    out.push({ name: d.name, config: c, layout });
  }
  return out;
}

/** A layout's block index as the C++ side parses it (engine/binding.cc's parseIndex). */
function nativeIndex(layout: BlockLayout): Record<string, unknown> {
  const ix = buildBlockIndex(layout);
  return {
    block: ix.block, blockRows: ix.blockRows, blockCols: ix.blockCols, nnz: ix.nnz,
    rowPtr: ix.rowPtr, colIdx: ix.colIdx, colPtr: ix.colPtr, rowIdx: ix.rowIdx, tBlock: ix.tBlock,
  };
}

/** One Pixelfly layer as the C++ side parses it: the core's block index plus the rank. */
function nativeLayerConfig(layout: BlockLayout, rank: number): Record<string, unknown> {
  return { rank, ...nativeIndex(layout) };
}

/** The score layout of T-token attention cores (dense when `spec` is absent), as the C++ side parses it. */
function nativeAttention(T: number, spec: AttentionSpec | undefined, causal: boolean): Record<string, unknown> {
  try {
    return nativeIndex(attentionLayout(T, spec ?? { kind: 'dense' }, causal).layout);
  } catch (e) {
    throw new EngineConfigError((e as Error).message);
  }
}

/**
 * The `count` cores' fixed projections of a low-rank term ([count][m/2][headDim]), drawn from the
 * model's seed (so a resumed run, built from the same seed, has the same ones; the weight export
 * writes these), or undefined without a low-rank term.
 */
function lowRankProjections(spec: AttentionSpec | undefined, count: number, headDim: number, seed: number): Float32Array | undefined {
  const m = lowRankFeatures(spec);
  return m > 0 ? performerProjection(count, m, headDim, seed) : undefined;
}

/** The low-rank term's fields of ModelConfig: its feature count and the cores' projections. */
function nativeLowRank(spec: AttentionSpec | undefined, count: number, headDim: number, seed: number): Record<string, unknown> {
  const projection = lowRankProjections(spec, count, headDim, seed);
  return projection ? { attentionFeatures: lowRankFeatures(spec), attentionProjection: projection } : {};
}

/** The flat object the C++ side parses (model.h's ModelConfig). */
export function engineModelConfig(spec: ModelSpec, layers: ResolvedLayer[], seed: number): Record<string, unknown> {
  const pixelfly: Record<string, unknown> = {};
  for (const l of layers) pixelfly[l.name] = nativeLayerConfig(l.layout, l.config.rank);
  const att = specAttention(spec);
  const attention = att && { attention: nativeAttention(att.T, att.attention, att.causal), ...nativeLowRank(att.attention, att.count, att.dim / att.heads, seed) };
  switch (spec.kind) {
    case 'mlp':
      return { kind: 'mlp', features: spec.inputFeatures, hidden: spec.hidden, classes: spec.classes, dim: 1, pixelfly };
    case 'mixer':
      return {
        kind: 'mixer', ...spec.image, patch: spec.patch, dim: spec.dim, depth: spec.depth,
        tokenHidden: spec.tokenHidden, channelHidden: spec.channelHidden, classes: spec.classes, pixelfly,
      };
    case 'vit':
      return {
        kind: 'vit', ...spec.image, patch: spec.patch, dim: spec.dim, depth: spec.depth, heads: spec.heads,
        mlpHidden: spec.mlpHidden, classes: spec.classes, pool: spec.pool ?? 'cls', pixelfly, ...attention,
      };
    case 'gpt':
      return {
        kind: 'gpt', vocab: spec.vocab, context: spec.context, dim: spec.dim, depth: spec.depth,
        heads: spec.heads, mlpHidden: spec.mlpHidden, pixelfly, ...attention,
      };
  }
}

// ------------------------------------------------------------------------------- datasets

export class EngineDataset {
  /** @internal */ readonly native: NativeDataset;
  readonly data: LoadedData;
  constructor(data: LoadedData) {
    this.data = data;
    this.native = loadAddon().createDataset(data);
  }
  info() {
    return this.native.info();
  }
}

// ------------------------------------------------------------------------------- models

const CHECKPOINT_MAGIC = 'PXFLYCK1';
const CHECKPOINT_VERSION = 1;

export class EngineModel {
  readonly spec: ModelSpec;
  readonly plan: PlanLike | undefined;
  readonly layers: ResolvedLayer[];
  readonly seed: number;
  readonly threads: number;
  /** Where this model computes: 'cpu', or 'cuda' (set by createModel). */
  backend: 'cpu' | 'cuda' = 'cpu';
  /** The products' input precision (set by createModel). */
  precision: EnginePrecision = 'fp32';
  /** How the products run (kernelsDescription; set by createModel). */
  kernels = '';
  /** @internal */ readonly native: NativeModel;

  /** @internal use createModel() */
  constructor(native: NativeModel, spec: ModelSpec, plan: PlanLike | undefined, layers: ResolvedLayer[], seed: number, threads: number) {
    this.native = native;
    this.spec = spec;
    this.plan = plan;
    this.layers = layers;
    this.seed = seed;
    this.threads = threads;
  }

  get paramCount(): number {
    return this.native.dims().params;
  }

  params(): ParamInfo[] {
    return this.native.paramInfo();
  }

  /** Runs `steps` optimizer steps on the next batches; resolves with one result per step. */
  trainSteps(dataset: EngineDataset, steps = 1): Promise<StepResult[]> {
    return this.native.trainSteps(dataset.native, steps);
  }

  async trainStep(dataset: EngineDataset): Promise<StepResult> {
    return (await this.native.trainSteps(dataset.native, 1))[0];
  }

  /** Test split by default; `maxSamples` caps samples (classification) or predicted tokens (LM). */
  evaluate(dataset: EngineDataset, opts: { split?: 'train' | 'test'; maxSamples?: number } = {}): Promise<EvalResult> {
    return this.native.evaluate(dataset.native, opts.split ?? 'test', opts.maxSamples ?? 0);
  }

  /** Weights, optimizer state, step and batch order: loading it continues exactly where this left off. */
  async saveCheckpoint(file: string): Promise<void> {
    const s = this.native.getState();
    const header = Buffer.from(
      JSON.stringify({
        format: 'pixelfly-checkpoint',
        version: CHECKPOINT_VERSION,
        spec: this.spec,
        plan: this.plan ?? null,
        seed: this.seed,
        step: s.step,
        params: this.params().map(({ name, shape, offset, size }) => ({ name, shape, offset, size })),
        total: s.params.length,
        sampler: { rng: s.samplerRng.map((v) => v.toString(16)), epoch: s.samplerEpoch, pos: s.samplerPos, order: s.samplerOrder.length },
      }),
    );
    const lead = Buffer.alloc(12);
    lead.write(CHECKPOINT_MAGIC, 0, 'latin1');
    lead.writeUInt32LE(header.length, 8);
    const parts = [lead, header, bytes(s.params), bytes(s.adamM), bytes(s.adamV), bytes(s.samplerOrder)];
    const hash = createHash('sha256');
    for (const p of parts) hash.update(p);
    parts.push(hash.digest());
    // Written part by part (no second copy of the whole state), synced, then renamed: never a
    // half-written checkpoint under the real name, and a failed write (a full disk) leaves nothing.
    const tmp = `${file}.tmp-${process.pid}`;
    const out = await fs.open(tmp, 'w');
    try {
      for (const p of parts) {
        for (let at = 0; at < p.length; ) at += (await out.write(p, at, Math.min(p.length - at, 1 << 28))).bytesWritten;
      }
      await out.sync();
    } catch (e) {
      await out.close();
      await fs.rm(tmp, { force: true });
      throw e;
    }
    await out.close();
    await fs.rename(tmp, file);
  }

  async loadCheckpoint(file: string): Promise<void> {
    let buf: Buffer;
    try {
      buf = await fs.readFile(file);
    } catch (e) {
      throw new EngineConfigError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'checkpoint not found' : (e as Error).message}`);
    }
    const fail = (why: string): never => {
      throw new EngineConfigError(`${file}: ${why}`);
    };
    if (buf.length < 12 + 32 || buf.toString('latin1', 0, 8) !== CHECKPOINT_MAGIC) fail('not a Pixelfly checkpoint (bad magic)');
    const body = buf.subarray(0, buf.length - 32);
    if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.length - 32))) fail('checksum mismatch: the file is corrupt or truncated');
    const hlen = buf.readUInt32LE(8);
    let header: {
      version: number; step: number; total: number; params: Array<{ name: string; shape: number[] }>;
      sampler: { rng: string[]; epoch: number; pos: number; order: number };
    };
    try {
      header = JSON.parse(buf.toString('utf8', 12, 12 + hlen));
    } catch {
      return fail('unreadable header');
    }
    if (header.version !== CHECKPOINT_VERSION) fail(`format version ${header.version}, this engine reads ${CHECKPOINT_VERSION}`);
    const mine = this.params();
    if (header.params.length !== mine.length) fail(`written for a different model: ${header.params.length} parameter tensors, this model has ${mine.length}`);
    header.params.forEach((p, i) => {
      const m = mine[i];
      if (p.name !== m.name || p.shape.join(',') !== m.shape.join(',')) {
        fail(`written for a different model: tensor ${i} is ${p.name} [${p.shape}], this model has ${m.name} [${m.shape}]`);
      }
    });
    const n = header.total;
    let at = 12 + hlen;
    const f32 = () => {
      const a = new Float32Array(n);
      new Uint8Array(a.buffer).set(buf.subarray(at, at + 4 * n));
      at += 4 * n;
      return a;
    };
    const params = f32();
    const adamM = f32();
    const adamV = f32();
    const order = new Float64Array(header.sampler.order);
    new Uint8Array(order.buffer).set(buf.subarray(at, at + 8 * order.length));
    if (at + 8 * order.length !== body.length) fail('payload size does not match its header');
    this.native.setState({
      params, adamM, adamV, step: header.step,
      samplerRng: header.sampler.rng.map((h) => BigInt(`0x${h}`)),
      samplerEpoch: header.sampler.epoch, samplerPos: header.sampler.pos, samplerOrder: order,
    });
  }

  /** Current weights as named tensors (copies). */
  weights(): Map<string, { shape: number[]; data: Float32Array }> {
    const { params } = this.native.getState();
    return new Map(this.params().map((p) => [p.name, { shape: p.shape, data: params.slice(p.offset, p.offset + p.size) }]));
  }

  /**
   * Writes the weights as safetensors for the PyTorch module (pixelfly_torch.py). Tensor names are
   * state_dict keys; Pixelfly layers hold `sparse.weight` [nnz, block, block] in THE BLOCK ORDER,
   * and `__metadata__.layouts` gives each such layer's mask rows so the reader rebuilds its index.
   * Pixelfly attention cores are `blocks.<i>.attn.core` (a PixelflyAttention's state-dict prefix):
   * `__metadata__.attention` gives each one's layout, and one with a low-rank term has its fixed
   * Performer projection as `<core>.feature_map.projection` [m/2, head_dim].
   */
  async exportWeights(file: string): Promise<void> {
    const { params } = this.native.getState();
    const info = this.params();
    const tensors: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    let offset = 0;
    const add = (name: string, shape: number[], data: Float32Array) => {
      tensors[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + 4 * data.length] };
      chunks.push(bytes(data));
      offset += 4 * data.length;
    };
    for (const p of info) add(p.name, p.shape, params.subarray(p.offset, p.offset + p.size));
    const cores = this.attentionCores();
    for (const c of cores) if (c.projection) add(`${c.name}.feature_map.projection`, [c.projection.length / c.headDim, c.headDim], c.projection);
    const layouts: Record<string, unknown> = {};
    for (const l of this.layers) {
      layouts[l.name] = { in: l.layout.inFeatures, out: l.layout.outFeatures, ...l.config, layout: layoutRows(l.layout) };
    }
    tensors.__metadata__ = {
      format: 'pixelfly-weights',
      version: '1',
      spec: JSON.stringify(this.spec),
      plan: JSON.stringify(this.plan ?? null),
      layouts: JSON.stringify(layouts),
      attention: JSON.stringify(Object.fromEntries(cores.map((c) => [c.name, c.meta]))),
    };
    let header = Buffer.from(JSON.stringify(tensors));
    // safetensors pads the header with spaces so the data starts 8-byte aligned.
    const pad = (8 - ((8 + header.length) % 8)) % 8;
    header = Buffer.concat([header, Buffer.alloc(pad, 0x20)]);
    const lead = Buffer.alloc(8);
    lead.writeBigUInt64LE(BigInt(header.length));
    await fs.writeFile(file, Buffer.concat([lead, header, ...chunks]));
  }

  /**
   * The model's Pixelfly attention cores, as the export names them: each block's score layout and,
   * with a low-rank term, its projection (the ones the model was built with: lowRankProjections).
   */
  private attentionCores(): Array<{ name: string; headDim: number; projection?: Float32Array; meta: Record<string, unknown> }> {
    const att = specAttention(this.spec);
    if (!att || att.attention.kind !== 'pixelfly') return [];
    const headDim = att.dim / att.heads;
    const { layout } = attentionLayout(att.T, att.attention, att.causal);
    const rows = layoutRows(layout);
    const m = lowRankFeatures(att.attention);
    const all = lowRankProjections(att.attention, att.count, headDim, this.seed);
    const per = (m / 2) * headDim;
    return Array.from({ length: att.count }, (_, i) => ({
      name: `blocks.${i}.attn.core`,
      headDim,
      projection: all?.subarray(i * per, (i + 1) * per),
      meta: { T: att.T, headDim, causal: att.causal, ...att.attention, features: m, layout: rows },
    }));
  }

  /** Test hook (synchronous, small layers): forward, and backward of sum(y·dy) when dy is given. */
  probe(x: Float32Array, batch: number, dy?: Float32Array) {
    return this.native.probe(x, batch, dy);
  }

  setParams(params: Float32Array): void {
    this.native.setState({ params });
  }
}

function bytes(a: Float32Array | Float64Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Builds (and initialises, off the JS thread) a model from a spec, an optional plan and a seed. */
export async function createModel(o: CreateModelOptions): Promise<EngineModel> {
  let spec: ModelSpec;
  try {
    spec = parseModelSpec(o.spec);
  } catch (e) {
    throw new EngineConfigError((e as Error).message);
  }
  const layers = resolvePlan(spec, o.plan);
  const seed = o.seed ?? 0;
  const threads = o.threads ?? 1;
  if (!Number.isInteger(seed) || seed < 0) throw new EngineConfigError(`seed: must be a non-negative integer, got ${seed}`);
  let backend: 'cpu' | 'cuda';
  try {
    backend = loadAddon().resolveBackend(o.backend);
  } catch (e) {
    throw new EngineConfigError((e as Error).message);
  }
  const precision = resolvePrecision(backend, o.precision);
  let native: NativeModel;
  try {
    native = await loadAddon().createModel({ model: engineModelConfig(spec, layers, seed), train: o.train, seed, threads, backend, precision });
  } catch (e) {
    if (e instanceof TypeError) throw new EngineConfigError(e.message);  // bad options, e.g. fp16 on the CPU
    throw e;
  }
  const model = new EngineModel(native, spec, o.plan, layers, seed, threads);
  model.backend = backend;
  model.precision = precision;
  model.kernels = kernelsDescription(backend, precision);
  return model;
}

/**
 * A single layer alone (tests: gradient checks, PyTorch cross-checks). `model` is ModelConfig's flat
 * form, except that a transformer block's `attention` is an AttentionSpec (dense when absent), whose
 * score layout for `probeT` tokens is built here.
 */
export async function createProbe(
  model: Record<string, unknown>,
  seed = 0,
  threads = 1,
  on: { backend?: 'cpu' | 'cuda'; precision?: EnginePrecision } = {},
): Promise<NativeModel> {
  const flat: Record<string, unknown> = { kind: 'probe', ...model };
  if (model.probeLayer === 'transformer_block') {
    const spec = model.attention as AttentionSpec | undefined;
    flat.attention = nativeAttention(model.probeT as number, spec, model.causal === true);
    Object.assign(flat, nativeLowRank(spec, 1, (model.dim as number) / (model.heads as number), seed));
  }
  return loadAddon().createModel({ model: flat, train: { batch: 1 }, seed, threads, ...on });
}

/** The flat C++ form of one Pixelfly layer's config (for probes). */
export function pixelflyLayerConfig(inF: number, outF: number, c: PixelflyConfig): Record<string, unknown> {
  return nativeLayerConfig(flatBlockButterflyLayout(outF, inF, c), c.rank);
}

export type { NativeModel as ProbeModel };
