/**
 * Whole-step estimates: what one training step of a model costs, dense and as planned, from its
 * inventory and a device profile. The planner's products are only part of a step; the rest —
 * attention cores, pointwise and normalisation layers (LayerNorm, GELU, residual adds, biases,
 * the loss), the AdamW update over every parameter and the batch's assembly — runs the same
 * whatever the plan (the optimizer only shrinks with the parameters), so it bounds the speedup
 * (Amdahl). Every term is per sample except the optimizer's, which is per step: a step's estimate
 * depends on its batch size.
 */
import { stepRates, type DeviceProfile } from './costModel';
import { layerDenseCost, type InventoryLayer } from './inventory';
import { totalFlops } from './pixelflyLayer';
import { lowRankAttentionFlops, SPARSE_ATTENTION_EFFICIENCY } from './attention';

/** The batch size estimates assume when the caller does not say (the training settings' default). */
export const DEFAULT_BATCH_SIZE = 64;

/** The work of a step a plan does not change, per sample, counted from a model's inventory. */
export interface ModelWork {
  /** Activation elements the layers write per sample (their outputs): what pointwise layers read and write. */
  pointwiseElements: number;
  /** Training FLOPs of the dense attention cores per sample. */
  attentionFlops: number;
  /** Training FLOPs of the Pixelfly attention cores' kept score blocks per sample (run at SPARSE_ATTENTION_EFFICIENCY of the dense rate). */
  sparseAttentionFlops: number;
  /** Input values per sample: pixels (the patch embedding's inputs), tokens, or features. */
  inputValues: number;
}

export function modelWork(layers: readonly InventoryLayer[]): ModelWork {
  let pointwiseElements = 0;
  let attentionFlops = 0;
  let sparseAttentionFlops = 0;
  for (const l of layers) {
    const rows = l.count * l.rowsPerSample;
    if (l.role !== 'attn_core') pointwiseElements += rows * l.out;
    else if (l.scoreDensity === undefined) attentionFlops += totalFlops(layerDenseCost(l, rows).flops);
    else sparseAttentionFlops += totalFlops(layerDenseCost(l, rows).flops) * l.scoreDensity;
    // The low-rank term's products are small dense ones: costed at the dense cores' rate.
    if (l.role === 'attn_core' && l.lowRankFeatures) attentionFlops += l.count * totalFlops(lowRankAttentionFlops(l.rowsPerSample, l.in, l.lowRankFeatures));
  }
  const first = layers.find((l) => l.count > 0 && l.role !== 'attn_core');
  const inputValues = !first ? 0 : first.role === 'embedding' ? first.rowsPerSample : first.in * first.rowsPerSample;
  return { pointwiseElements, attentionFlops, sparseAttentionFlops, inputValues };
}

export type StepPart = 'products' | 'attention' | 'pointwise' | 'optimizer' | 'data';

export type StepEstimate = {
  batchSize: number;
  /** Estimated ms per training step (forward, backward, optimizer, data) of the dense model and of the plan's. */
  denseMs: number;
  planMs: number;
  /** denseMs / planMs: the whole step, not the products alone. */
  speedup: number;
  /** The products alone (the planner's layers, attention cores excluded): dense / planned time. */
  productsSpeedup: number;
  /** ms per step of each part, dense and planned; only `products` and `optimizer` differ. */
  parts: Record<StepPart, { denseMs: number; planMs: number }>;
  /** Share of the planned step in work the plan leaves dense (layers kept dense, attention, pointwise, optimizer, data). */
  denseShare: number;
  /** Amdahl's bound: the speedup were the sparsified products free (null when nothing else remains). */
  bound: number | null;
};

export interface StepInput {
  work: ModelWork;
  /** Seconds per sample of the products (attention cores excluded): dense, as planned, and the planned time of the layers the plan sparsifies. */
  products: { dense: number; plan: number; sparsified: number };
  params: { dense: number; plan: number };
}

/** Seconds per sample of the work a plan does not change (attention cores, pointwise layers, data). */
export function fixedSecondsPerSample(work: ModelWork, profile: DeviceProfile): { attention: number; pointwise: number; data: number } {
  const r = stepRates(profile);
  return {
    attention: (work.attentionFlops + work.sparseAttentionFlops / SPARSE_ATTENTION_EFFICIENCY) / (r.attentionGflops * 1e9),
    pointwise: work.pointwiseElements * r.pointwiseNsPerElement * 1e-9,
    data: work.inputValues * r.dataNsPerValue * 1e-9,
  };
}

/** The optimizer's seconds per step for `params` parameters. */
export function optimizerSeconds(params: number, profile: DeviceProfile): number {
  return params * stepRates(profile).optimizerNsPerParam * 1e-9;
}

export function stepEstimate(input: StepInput, profile: DeviceProfile, batchSize = DEFAULT_BATCH_SIZE): StepEstimate {
  const fixed = fixedSecondsPerSample(input.work, profile);
  const ms = (secondsPerSample: number) => secondsPerSample * batchSize * 1e3;
  const parts: StepEstimate['parts'] = {
    products: { denseMs: ms(input.products.dense), planMs: ms(input.products.plan) },
    attention: { denseMs: ms(fixed.attention), planMs: ms(fixed.attention) },
    pointwise: { denseMs: ms(fixed.pointwise), planMs: ms(fixed.pointwise) },
    optimizer: { denseMs: optimizerSeconds(input.params.dense, profile) * 1e3, planMs: optimizerSeconds(input.params.plan, profile) * 1e3 },
    data: { denseMs: ms(fixed.data), planMs: ms(fixed.data) },
  };
  const all = Object.values(parts);
  const denseMs = all.reduce((a, p) => a + p.denseMs, 0);
  const planMs = all.reduce((a, p) => a + p.planMs, 0);
  const sparsifiedMs = ms(input.products.sparsified);
  const rest = planMs - sparsifiedMs;
  return {
    batchSize,
    denseMs,
    planMs,
    speedup: planMs > 0 ? denseMs / planMs : 1,
    productsSpeedup: input.products.plan > 0 ? input.products.dense / input.products.plan : 1,
    parts,
    denseShare: planMs > 0 ? rest / planMs : 1,
    bound: rest > 0 ? denseMs / rest : null,
  };
}

/** One sentence for hovers and summaries: where the step goes and why the speedup is what it is (Amdahl). */
export function explainEstimate(e: StepEstimate): string {
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  const share = (p: StepPart) => (e.denseMs > 0 ? e.parts[p].denseMs / e.denseMs : 0);
  const others = (['attention', 'pointwise', 'optimizer', 'data'] as const)
    .filter((p) => share(p) >= 0.005)
    .map((p) => `${p === 'pointwise' ? 'pointwise and norm layers' : p} ${pct(share(p))}`);
  const bound = e.bound !== null ? `${e.bound.toFixed(2)}×` : 'unbounded';
  return (
    `A dense step (batch ${e.batchSize}) is estimated at ${e.denseMs.toFixed(1)} ms: products ${pct(share('products'))}` +
    (others.length ? `, ${others.join(', ')}` : '') +
    `. The plan makes the products ${e.productsSpeedup.toFixed(2)}× faster; ${pct(e.denseShare)} of the planned step stays dense, ` +
    `so the step is ${e.speedup.toFixed(2)}× faster (at most ${bound} were the sparse products free).`
  );
}
