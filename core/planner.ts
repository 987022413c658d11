/**
 * The planner: for each layer of a model's inventory, keep it dense or give it a Pixelfly
 * config (block, butterfly_size, n_factors, rank), to meet a target — a fraction of the
 * model's dense matmul FLOPs, or an estimated speedup of the whole training step — and say why
 * in one sentence. The plan's estimate is the whole step's (core/stepCost.ts): the products it
 * changes and the work it does not (attention cores, pointwise layers, optimizer, data).
 *
 * Following the paper: only the large projections (attention, MLP, token mixing) are
 * sparsified; embeddings, classifier/LM heads, patch embeddings and small layers stay dense.
 * Convolutions and attention cores count in the model's FLOPs and time but stay dense (an attention
 * core where Pixelfly attention pays gets that advice, core/attention.ts `adviseAttention`); a layer
 * that already is a Pixelfly layer keeps its config and counts as sparse.
 * All sparsified layers share one compute level ρ (the fraction of its dense FLOPs a layer may
 * spend), so the budget is spread in proportion to each layer's size; each layer takes its
 * densest candidate within ρ. Candidates are pruned to a Pareto front (more FLOPs ⇒ strictly
 * more time), which makes the model's FLOPs and time monotone in ρ: a tighter target never
 * yields a denser plan, and ρ is found by binary search (deterministic, fast).
 */
import { PixelflyConfigError } from './errors';
import { layoutSummary, padTo, type ButterflyParams, type LayoutSummary } from './layout';
import { denseLinearCost, pixelflyLinearCost, totalFlops, type PixelflyConfig } from './pixelflyLayer';
import { DEFAULT_PROFILE, denseSeconds, pixelflySeconds, type DeviceProfile } from './costModel';
import { layerDenseCost, type Inventory, type InventoryLayer, type LayerRole } from './inventory';
import { adviseAttention, type PixelflyAttention } from './attention';
import { DEFAULT_BATCH_SIZE, explainEstimate, fixedSecondsPerSample, modelWork, optimizerSeconds, stepEstimate, type StepEstimate } from './stepCost';

/**
 * Block sizes the native kernels implement: the one list. The settings schema (package.json),
 * pixelfly_torch and the native kernels (kernels/block_sizes.h) keep copies that tests check
 * against this one (test/blockSizes.test.ts, test/native/kernels.test.ts).
 */
export const KERNEL_BLOCK_SIZES: readonly number[] = [16, 32, 64];
/** "16, 32 or 64", for messages. */
export const KERNEL_BLOCK_SIZES_TEXT = `${KERNEL_BLOCK_SIZES.slice(0, -1).join(', ')} or ${KERNEL_BLOCK_SIZES[KERNEL_BLOCK_SIZES.length - 1]}`;

export type PlanTarget = { budget: number } | { speedup: number };

/**
 * The target every planner caller uses when the user gives none (the editor's setting default,
 * the CLI, a job without a plan): a quarter of the dense FLOPs, where the paper's models train
 * at dense accuracy.
 */
export const DEFAULT_BUDGET = 0.25;
export const DEFAULT_TARGET: PlanTarget = { budget: DEFAULT_BUDGET };

export interface PlanOptions {
  profile?: DeviceProfile;
  /**
   * Block sizes the engine may use (of KERNEL_BLOCK_SIZES; all by default): the
   * cost model weighs a small block's lower efficiency against the sparser butterflies it allows.
   */
  blockSizes?: number[];
  /** Layers with min(in, out) below this stay dense. */
  minDim?: number;
  /** Per-layer estimated speedup below which a candidate is not worth it. */
  minSpeedup?: number;
  /** Samples per step the whole-step estimate assumes (the optimizer runs once per step). */
  batchSize?: number;
}

/** Which device profile a plan was costed with, so every view can say it. */
export interface PlanDevice {
  name: string;
  source: 'default' | 'measured';
  measuredAt?: string;
}

export type LayerDecision = {
  name: string;
  role: LayerRole;
  in: number;
  out: number;
  count: number;
  sparsify: boolean;
  config?: Required<PixelflyConfig>;
  /** Kept blocks / blocks, of the block-sparse part. */
  density?: number;
  /** Training FLOPs (forward + backward) per sample, all instances. */
  denseFlops: number;
  planFlops: number;
  denseParams: number;
  planParams: number;
  estSpeedup: number;
  reason: string;
  /**
   * An attention core where Pixelfly attention pays (long contexts): the layout to use and its
   * estimates. Advice only: the plan's totals keep the core dense, because changing the model's
   * attention is the user's call (a spec's `attention`, or pixelfly_torch.PixelflyAttention).
   */
  attention?: { spec: PixelflyAttention; density: number; coreSpeedup: number; stepSpeedup: number };
};

export type Plan = {
  target: PlanTarget;
  profile: string;
  layers: LayerDecision[];
  denseFlops: number;
  planFlops: number;
  flopFraction: number;
  denseParams: number;
  planParams: number;
  /** The whole training step's estimated speedup (estimate.speedup). */
  estSpeedup: number;
  /** The whole step, dense and planned, part by part. */
  estimate: StepEstimate;
  device: PlanDevice;
  targetMet: boolean;
  /** The compute level ρ all sparsified layers share. */
  level: number;
  summary: string;
};

/** Why each role the planner never sparsifies stays dense, given the layer's share of the model's dense FLOPs. */
const KEPT_ROLES: Partial<Record<LayerRole, (share: number) => string>> = {
  embedding: () => 'an embedding is a table lookup, not a matmul',
  // The paper's reason is accuracy; "a small share" is only said when it is true.
  head: (share) =>
    share < 0.1
      ? `classifier and LM heads stay dense, as in the paper: they are a small share of FLOPs (${pct(share)}) and sensitive to sparsity`
      : `classifier and LM heads stay dense, as in the paper, because the output layer is sensitive to sparsity, although at ${pct(share)} of this model's FLOPs it limits the speedup`,
  patch_embed: (share) =>
    share < 0.1
      ? `the patch embedding stays dense, as in the paper: it is small (${pct(share)} of FLOPs) and sees raw pixels`
      : `the patch embedding stays dense, as in the paper, because it sees raw pixels, although it is ${pct(share)} of this model's FLOPs`,
  conv: () => 'a convolution with a spatial kernel, a stride or groups is not a linear map over channels, and Pixelfly replaces only those',
};

interface Candidate {
  config: Required<PixelflyConfig>;
  layout: LayoutSummary;
  /** Fraction of the layer's dense training FLOPs. */
  fraction: number;
  /** Estimated seconds per row (token); every cost scales linearly with rows. */
  secondsPerRow: number;
  /** Parameters of one instance. */
  params: number;
}

interface LayerState {
  layer: InventoryLayer;
  /** Rows per sample over all instances. */
  rows: number;
  denseFlops: number;
  denseSeconds: number;
  denseParams: number;
  /** Pareto front, ascending in fraction and seconds; empty when the layer stays dense. */
  front: Candidate[];
  /** A layer that already is a Pixelfly layer: its config, whatever the level. */
  fixed?: Candidate;
  keptReason?: string;
  attention?: LayerDecision['attention'];
}

function roundUp(n: number, m: number): number {
  return Math.max(m, Math.ceil(n / m) * m);
}

/**
 * Butterfly sizes the planner proposes: S divides both padded sizes (the layouts Pixelfly accepts)
 * and each support cell spans at least one block on each side (S ≤ blocks per side), so the block
 * mask is itself a stretched butterfly. Finer supports are valid layouts too, but once a block
 * straddles many cells the pooled mask loses the butterfly's structure; users who want more
 * sparsity get it from smaller blocks.
 */
function butterflySizes(outPadded: number, inPadded: number, block: number): number[] {
  const sizes: number[] = [];
  const limit = Math.min(outPadded, inPadded) / block;
  for (let s = 2; s <= limit && outPadded % s === 0 && inPadded % s === 0; s *= 2) sizes.push(s);
  return sizes;
}

/** The layouts the planner weighs for a layer: each butterfly of each block size, up to density 3/4. */
function candidateLayouts(layer: { in: number; out: number }, blockSizes: readonly number[]): { params: Required<ButterflyParams>; layout: LayoutSummary }[] {
  const found = [];
  for (const block of blockSizes) {
    for (const butterflySize of butterflySizes(padTo(layer.out, block), padTo(layer.in, block), block)) {
      for (let nFactors = 1; 2 ** nFactors <= butterflySize; nFactors++) {
        const params = { block, butterflySize, nFactors, globalSize: 0, shuffle: false };
        const layout = layoutSummary(layer.out, layer.in, params);
        if (layout.density <= 0.75) found.push({ params, layout });
      }
    }
  }
  return found;
}

/** Low-rank ranks the planner weighs for a layer: 1/32, 1/16 and 1/8 of its smaller side, in multiples of 8. */
function candidateRanks(layer: { in: number; out: number }): number[] {
  const minDim = Math.min(layer.in, layer.out);
  return [...new Set([32, 16, 8].map((d) => roundUp(minDim / d, 8)))];
}

/** Layers with a side below this stay dense unless a caller says otherwise (PlanOptions.minDim). */
const DEFAULT_MIN_DIM = 256;

/**
 * Most values one operand of a `bench.layers` measurement may hold (rows × features, in × out):
 * the daemon refuses more, and callers size their rows to it (~64 MB per fp32 buffer).
 */
export const BENCH_MAX_ELEMENTS = 16 << 20;

/** Most configs measured per shape by `calibrationShapes` (bench.layers takes at most 64). */
const CALIBRATION_CONFIGS = 64;

/** A product to measure on a device: rows as one step of the model multiplies, and the layouts to time. */
export interface CalibrationShape {
  name: string;
  in: number;
  out: number;
  rows: number;
  /** Pixelfly configs to time at this shape; none: the shape's dense rate only. */
  configs: Required<PixelflyConfig>[];
}

/**
 * What `bench.layers` measures so that this planner costs a model with the device's own numbers:
 * every product's dense rate at the rows one step of `batchSize` samples multiplies (at most 16M
 * values per operand), and for each layer the planner may sparsify a layout of each block size and
 * density (up to 1/2) it would weigh and each rank it weighs. Shapes that repeat are measured once.
 */
export function calibrationShapes(inventory: Inventory, batchSize: number, minDim = DEFAULT_MIN_DIM): CalibrationShape[] {
  const plannable = (layer: InventoryLayer) =>
    !layer.pixelfly && !layer.pinnedDense && !layer.keptDense && !KEPT_ROLES[layer.role] && Math.min(layer.in, layer.out) >= minDim;
  const byShape = new Map<string, InventoryLayer[]>();
  for (const layer of inventory.layers) {
    if (layer.count === 0 || layer.role === 'attn_core' || layer.role === 'embedding' || layer.role === 'conv') continue;
    const key = `${layer.in}x${layer.out}`;
    byShape.set(key, [...(byShape.get(key) ?? []), layer]);
  }
  return [...byShape.values()].map((layers) => {
    // A shape one layer keeps dense (a patch embedding) and another may sparsify gets the configs.
    const layer = layers.find(plannable) ?? layers[0];
    const rows = Math.max(1, Math.min(Math.floor(BENCH_MAX_ELEMENTS / Math.max(layer.in, layer.out)), batchSize * Math.max(...layers.map((l) => l.rowsPerSample))));
    const configs: Required<PixelflyConfig>[] = [];
    if (plannable(layer)) {
      // The profile keeps one efficiency per (block, density) and one per rank: one layout of
      // each, at the first rank, and each other rank once.
      const [rank, ...otherRanks] = candidateRanks(layer);
      const seenLayouts = new Set<string>();
      for (const { params, layout } of candidateLayouts(layer, KERNEL_BLOCK_SIZES)) {
        const key = `${params.block}/${layout.density.toFixed(4)}`;
        if (layout.density > 0.5 || seenLayouts.has(key)) continue;
        seenLayouts.add(key);
        configs.push({ ...params, rank });
      }
      if (configs.length > 0) configs.push(...otherRanks.map((r) => ({ ...configs[0], rank: r })));
    }
    return { name: layer.name, in: layer.in, out: layer.out, rows, configs: configs.slice(-CALIBRATION_CONFIGS) };
  });
}

function candidatesFor(layer: InventoryLayer, o: Required<PlanOptions>, cache: Map<string, Candidate[]>): Candidate[] {
  const bias = layer.bias ?? true;
  const key = `${layer.in}x${layer.out}${bias ? '' : ' no bias'}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const dense = denseLinearCost(layer.in, layer.out, 1, bias);
  const shape = { in: layer.in, out: layer.out };
  const denseT = denseSeconds(dense, o.profile, shape);
  const ranks = candidateRanks(layer);
  const all: Candidate[] = [];
  for (const { params, layout } of candidateLayouts(layer, o.blockSizes)) {
    for (const rank of ranks) {
      const config = { ...params, rank };
      const cost = pixelflyLinearCost(layer.in, layer.out, 1, config, layout, bias);
      const seconds = pixelflySeconds(cost, rank, o.profile, shape);
      if (denseT / seconds < o.minSpeedup) continue;
      all.push({ config, layout, fraction: totalFlops(cost.flops) / totalFlops(dense.flops), secondsPerRow: seconds, params: cost.params });
    }
  }
  // Deterministic order: by fraction, then time, then the config's fields.
  all.sort(
    (a, b) =>
      a.fraction - b.fraction ||
      a.secondsPerRow - b.secondsPerRow ||
      a.config.block - b.config.block ||
      a.config.butterflySize - b.config.butterflySize ||
      a.config.nFactors - b.config.nFactors ||
      a.config.rank - b.config.rank,
  );
  // Pareto front: scanning from the densest down, keep a candidate only if it is strictly faster
  // than everything denser already kept; ties in fraction keep the fastest.
  const front: Candidate[] = [];
  for (let i = all.length - 1; i >= 0; i--) {
    const c = all[i];
    const last = front[front.length - 1];
    if (last && c.fraction === last.fraction) {
      if (c.secondsPerRow < last.secondsPerRow) front[front.length - 1] = c;
      continue;
    }
    if (!last || c.secondsPerRow < last.secondsPerRow) front.push(c);
  }
  front.reverse();
  cache.set(key, front);
  return front;
}

/** The densest front candidate within level ρ (the sparsest if none fits); null = dense. */
function choose(state: LayerState, level: number): Candidate | null {
  if (state.fixed) return state.fixed;
  const { front } = state;
  if (front.length === 0 || level >= 1) return null;
  let lo = 0;
  let hi = front.length - 1;
  if (front[0].fraction > level) return front[0];
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (front[mid].fraction <= level) lo = mid;
    else hi = mid - 1;
  }
  return front[lo];
}

interface Totals {
  flops: number;
  /** Seconds per sample of the products (attention cores are in the step's fixed work). */
  seconds: number;
  /** ... of the products the plan sparsifies. */
  sparsified: number;
  params: number;
}

function totals(states: LayerState[], level: number): Totals {
  const t: Totals = { flops: 0, seconds: 0, sparsified: 0, params: 0 };
  for (const s of states) {
    const c = choose(s, level);
    t.flops += c ? c.fraction * s.denseFlops : s.denseFlops;
    t.params += c ? s.layer.count * c.params : s.denseParams;
    if (s.layer.role === 'attn_core') continue;
    t.seconds += c ? c.secondsPerRow * s.rows : s.denseSeconds;
    if (c) t.sparsified += c.secondsPerRow * s.rows;
  }
  return t;
}

function validateTarget(target: PlanTarget): void {
  if ('budget' in target) {
    if (!(typeof target.budget === 'number' && target.budget > 0 && target.budget <= 1)) {
      throw new PixelflyConfigError('budget', `must be a fraction of dense FLOPs in (0, 1], got ${target.budget}`);
    }
  } else if (!(typeof target.speedup === 'number' && target.speedup >= 1 && Number.isFinite(target.speedup))) {
    throw new PixelflyConfigError('speedup', `must be a number ≥ 1, got ${(target as { speedup: unknown }).speedup}`);
  }
}

function pct(x: number): string {
  return `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
}

function describe(c: Candidate, speedup: number, already = false): string {
  const { block, butterflySize, nFactors, rank } = c.config;
  const lowRank = rank > 0 ? ` plus a rank-${rank} low-rank term` : '';
  return (
    `${already ? 'Already a Pixelfly layer' : 'Sparsify'}: a flat butterfly (size ${butterflySize}, ${nFactors} factor${nFactors > 1 ? 's' : ''}) on ${block}×${block} blocks ` +
    `keeps ${pct(c.layout.density)} of the weights${lowRank}, for ${pct(c.fraction)} of the dense FLOPs and an estimated ${speedup.toFixed(2)}× speedup.`
  );
}

/** The candidate of a layer that already is a Pixelfly layer (its config must be a valid layout; errors name the layer). */
function fixedCandidate(layer: InventoryLayer, profile: DeviceProfile): Candidate {
  const config: Required<PixelflyConfig> = { globalSize: 0, shuffle: false, ...layer.pixelfly! };
  let layout: LayoutSummary;
  try {
    layout = layoutSummary(layer.out, layer.in, config);
  } catch (e) {
    if (!(e instanceof PixelflyConfigError)) throw e;
    throw new PixelflyConfigError(e.param, `${e.message.slice(e.param.length + 2)} (layer ${layer.name})`);
  }
  const bias = layer.bias ?? true;
  const cost = pixelflyLinearCost(layer.in, layer.out, 1, config, layout, bias);
  const dense = denseLinearCost(layer.in, layer.out, 1, bias);
  return {
    config,
    layout,
    fraction: totalFlops(cost.flops) / totalFlops(dense.flops),
    secondsPerRow: pixelflySeconds(cost, config.rank, profile, layer),
    params: cost.params,
  };
}

/** Why a target was out of reach: how much the layers kept dense need, largest first. */
function denseShare(layers: LayerDecision[], denseFlops: number): string {
  const kept = layers.filter((l) => !l.sparsify && l.denseFlops > 0).sort((a, b) => b.denseFlops - a.denseFlops);
  if (kept.length === 0 || denseFlops === 0) return 'Every eligible layer is at its sparsest layout.';
  const share = kept.reduce((a, l) => a + l.denseFlops, 0) / denseFlops;
  const top = kept.slice(0, 3).map((l) => `${l.name} ${pct(l.denseFlops / denseFlops)}`);
  return `Layers kept dense alone take ${pct(share)} of dense FLOPs (${top.join(', ')}).`;
}

export function planModel(inventory: Inventory, target: PlanTarget, options: PlanOptions = {}): Plan {
  validateTarget(target);
  const o: Required<PlanOptions> = {
    profile: options.profile ?? DEFAULT_PROFILE,
    blockSizes: options.blockSizes ?? [...KERNEL_BLOCK_SIZES],
    minDim: options.minDim ?? DEFAULT_MIN_DIM,
    minSpeedup: options.minSpeedup ?? 1.1,
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
  };
  if (!(Number.isInteger(o.batchSize) && o.batchSize > 0)) throw new PixelflyConfigError('batchSize', `must be a positive integer, got ${o.batchSize}`);
  for (const b of o.blockSizes) {
    if (!KERNEL_BLOCK_SIZES.includes(b)) throw new PixelflyConfigError('block', `must be ${KERNEL_BLOCK_SIZES_TEXT} (what the kernels support), got ${b}`);
  }
  const cache = new Map<string, Candidate[]>();
  const states: LayerState[] = inventory.layers.map((layer) => {
    const rows = layer.count * layer.rowsPerSample;
    const dense = layerDenseCost(layer, rows);
    const state: LayerState = {
      layer,
      rows,
      denseFlops: totalFlops(dense.flops),
      denseSeconds: denseSeconds(dense, o.profile, layer),
      denseParams: layer.count * layerDenseCost(layer, 1).params,
      front: [],
    };
    if (layer.count === 0) state.keptReason = 'Not built: the chosen configuration creates no instance of this layer.';
    else if (layer.pixelfly) state.fixed = fixedCandidate(layer, o.profile);
    else if (layer.pinnedDense) state.keptReason = 'Kept dense: pinned with `# pixelfly: dense`.';
    else if (layer.keptDense) state.keptReason = `Kept dense: ${layer.keptDense.replace(/\.$/, '')}.`;
    else if (KEPT_ROLES[layer.role] || layer.role === 'attn_core') state.keptReason = ''; // worded below, once the model's FLOPs and time are known
    else if (Math.min(layer.in, layer.out) < o.minDim) {
      state.keptReason = `Kept dense: at ${layer.in}→${layer.out} it is too small (below ${o.minDim}) for block-sparse kernels to beat dense.`;
    } else {
      state.front = candidatesFor(layer, o, cache);
      if (state.front.length === 0) {
        state.keptReason = `Kept dense: no butterfly layout of ${layer.out}×${layer.in} is estimated to run ${o.minSpeedup}× faster than dense on ${o.profile.device}.`;
      }
    }
    return state;
  });

  const denseFlops = states.reduce((a, s) => a + s.denseFlops, 0);
  // Truly dense: a layer that already is Pixelfly counts at its dense cost here.
  const dense: Totals = {
    flops: denseFlops,
    seconds: states.reduce((a, s) => a + (s.layer.role === 'attn_core' ? 0 : s.denseSeconds), 0),
    sparsified: 0,
    params: states.reduce((a, s) => a + s.denseParams, 0),
  };
  // The whole step per sample: the products, the work no plan changes, and the optimizer's share.
  const work = modelWork(inventory.layers);
  const fixed = Object.values(fixedSecondsPerSample(work, o.profile)).reduce((a, b) => a + b, 0);
  const stepSeconds = (t: Totals) => t.seconds + fixed + optimizerSeconds(t.params, o.profile) / o.batchSize;
  const denseTime = stepSeconds(dense);
  for (const s of states) {
    if (s.keptReason !== '' || s.layer.role !== 'attn_core') continue;
    // No weights to sparsify: whether Pixelfly attention over its score matrix pays, from its share of
    // the products' time at the GEMM rate (as adviseAttention is calibrated; not yet the whole step's).
    const productsTime = states.reduce((acc, x) => acc + x.denseSeconds, 0);
    const a = adviseAttention(s.layer.rowsPerSample, s.layer.out, s.layer.causal ?? false, productsTime > 0 ? s.denseSeconds / productsTime : 0);
    s.keptReason = `${a.reason}.`;
    if (a.suggest) s.attention = { spec: a.suggest, density: a.density, coreSpeedup: a.coreSpeedup, stepSpeedup: a.stepSpeedup };
  }
  for (const s of states) {
    const why = KEPT_ROLES[s.layer.role];
    if (s.keptReason === '' && why) s.keptReason = `Kept dense: ${why(denseFlops > 0 ? s.denseFlops / denseFlops : 0)}.`;
  }
  const levels = [...new Set(states.flatMap((s) => s.front.map((c) => c.fraction)))].sort((a, b) => a - b);
  levels.push(1);
  const meets = (level: number): boolean => {
    const t = totals(states, level);
    return 'budget' in target ? t.flops <= target.budget * denseFlops * (1 + 1e-12) : denseTime / stepSeconds(t) >= target.speedup;
  };
  // Largest level that meets the target; meets() is monotone (true for small levels) by construction.
  let lo = -1;
  let hi = levels.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (meets(levels[mid])) lo = mid;
    else hi = mid - 1;
  }
  const targetMet = lo >= 0;
  const level = levels[Math.max(lo, 0)];

  const layers: LayerDecision[] = states.map((s) => {
    const { layer } = s;
    const c = choose(s, level);
    const base = { name: layer.name, role: layer.role, in: layer.in, out: layer.out, count: layer.count, denseFlops: s.denseFlops, denseParams: s.denseParams };
    if (!c) {
      const reason = s.keptReason ?? 'Kept dense: the target is met without sparsifying this layer.';
      return { ...base, sparsify: false, planFlops: s.denseFlops, planParams: s.denseParams, estSpeedup: 1, reason, ...(s.attention ? { attention: s.attention } : {}) };
    }
    const speedup = s.denseSeconds / (c.secondsPerRow * s.rows);
    return {
      ...base,
      sparsify: true,
      config: c.config,
      density: c.layout.density,
      planFlops: c.fraction * s.denseFlops,
      planParams: layer.count * c.params,
      estSpeedup: speedup,
      reason: describe(c, speedup, c === s.fixed),
    };
  });

  const t = totals(states, level);
  const planParams = layers.reduce((a, l) => a + l.planParams, 0);
  const denseParams = layers.reduce((a, l) => a + l.denseParams, 0);
  const estimate = stepEstimate(
    { work, products: { dense: dense.seconds, plan: t.seconds, sparsified: t.sparsified }, params: { dense: dense.params, plan: t.params } },
    o.profile,
    o.batchSize,
  );
  const estSpeedup = estimate.speedup;
  const sparsified = layers.filter((l) => l.sparsify).length;
  // Attention cores are products between activations, not layers: they count in FLOPs and time only.
  const layerCount = layers.filter((l) => l.role !== 'attn_core').length;
  const wanted = 'budget' in target ? `a budget of ${pct(target.budget)} of dense FLOPs` : `a ${target.speedup}× speedup`;
  const summary =
    `${sparsified} of ${layerCount} layers sparse for ${wanted}: ${pct(denseFlops ? t.flops / denseFlops : 1)} of dense matmul FLOPs, ` +
    `a training step estimated ${estSpeedup.toFixed(2)}× faster on ${o.profile.device}${o.profile.source === 'measured' ? ' (measured profile)' : ''}` +
    (targetMet ? '.' : ` — the target cannot be met; this is the sparsest plan. ${denseShare(layers, denseFlops)}`) +
    ` ${explainEstimate(estimate)}`;
  return {
    target,
    profile: o.profile.device,
    layers,
    denseFlops,
    planFlops: t.flops,
    flopFraction: denseFlops ? t.flops / denseFlops : 1,
    denseParams,
    planParams,
    estSpeedup,
    estimate,
    device: { name: o.profile.device, source: o.profile.source, ...(o.profile.measuredAt ? { measuredAt: o.profile.measuredAt } : {}) },
    targetMet,
    level,
    summary,
  };
}
