// `bench.layers`: measures, on this device, one training step (forward + backward) of a dense
// Linear and of the Pixelfly layer's matmuls for given shapes and configs, with the native
// kernels, and saves what it measured as the device profile core/costModel.ts reads
// (<home>/profiles/device.json), so later plans are costed with this machine's real numbers.
// Measurements are merged into the saved profile (a later call for other configs adds to it).
//
// Dense = y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x. Pixelfly = the block-sparse triple, timed per layout,
// plus the low-rank term with its per-token gate and lerp, timed per rank as the engine runs the
// layer (engine steps at rank r less rank 0); the profile splits that time between the low-rank
// products and the bandwidth term of the gate and lerp. Products run at the precision asked for
// (default 'auto': what the engine trains with here, bf16 on CPUs with bf16 instructions), so the
// profile costs what jobs run; a precision other than the default has its own profile file.
//
// With `step` (the default) it also times a few training steps of a small dense ViT on the engine
// and splits them into the parts a plan does not change (core/stepCost.ts): attention cores and
// the optimizer as the engine times them, the batch's assembly, and the rest of forward + backward
// beyond the products (timed here at the same shapes) per activation element: the pointwise and
// normalisation layers. Those rates make the estimates whole-step ones.
import { mkdirSync } from 'node:fs';
import { flatBlockButterflyLayout } from '../core/layout';
import { buildBlockIndex, type BlockIndex } from '../core/blockIndex';
import { DEFAULT_PROFILE, type BlockSparsePoint, type DenseShapePoint, type DeviceProfile, type LayerShape, type LowRankShapePoint, type BlockSparseShapePoint, type StepRates } from '../core/costModel';
import { specInventory, type VitSpec } from '../core/modelSpec';
import { modelWork } from '../core/stepCost';
import { pixelflyLinearCost, type PixelflyConfig } from '../core/pixelflyLayer';
import { createModel, EngineDataset, resolvePrecision, type EnginePrecision, type StepResult } from '../native/engine';
import { syntheticClassification } from '../native/datasets';
import { PixelflyConfigError } from '../core/errors';
import { BENCH_MAX_ELEMENTS, KERNEL_BLOCK_SIZES } from '../core/planner';
import { alignedFloat32Array, biasGrad, bsrBackwardData, bsrBackwardWeight, bsrForward, denseBackwardData, denseBackwardWeight, denseForward, kernelInfo, setKernelThreads } from '../native/kernels';
import type { MethodParams, MethodResult } from '../protocol/daemon';
import { writeFileAtomic } from '../io/home';
import { loadProfile } from './planning';
import { profileFile } from '../io/deviceProfile';
import { RejectedError } from './jobs/trainer';
import { groupBy, median } from '../core/stats';
import { interleavedMedians, interleavedMediansMs, medianMs, seededFloatsAsync } from './measure';

/** Configs that differ only in rank share a layout, and its block-sparse timing. */
const layoutKey = (c: PixelflyConfig) => JSON.stringify({ ...c, rank: 0 });

/** A shape's own configs: its `config` and its `configs` list. */
function shapeConfigs(s: MethodParams<'bench.layers'>['shapes'][number]) {
  return [...(s.config ? [s.config] : []), ...(s.configs ?? [])];
}

export async function benchLayers(params: MethodParams<'bench.layers'>, profilesDir: string, threads: number): Promise<MethodResult<'bench.layers'>> {
  for (const s of params.shapes) {
    const biggest = s.rows * Math.max(s.in, s.out);
    if (biggest > BENCH_MAX_ELEMENTS) throw new RejectedError(`shape ${s.name ?? `${s.in}x${s.out}`}: rows x features = ${biggest} exceeds ${BENCH_MAX_ELEMENTS}`);
    if (s.in * s.out > BENCH_MAX_ELEMENTS) throw new RejectedError(`shape ${s.name ?? `${s.in}x${s.out}`}: in x out = ${s.in * s.out} weights exceeds ${BENCH_MAX_ELEMENTS}`);
  }
  // The kernels tile by these blocks only: anything else is refused here, not by the kernel mid-measurement.
  for (const c of [...(params.configs ?? []), ...params.shapes.flatMap(shapeConfigs)]) {
    if (!KERNEL_BLOCK_SIZES.includes(c.block)) throw new RejectedError(`config ${JSON.stringify(c)}: block must be ${KERNEL_BLOCK_SIZES.join(', ')} (the kernels' block sizes), got ${c.block}`);
  }
  const nThreads = params.threads > 0 ? params.threads : threads;
  setKernelThreads(nThreads);
  const precision = resolvePrecision('cpu', params.precision);
  const p = precision === 'bf16' ? { precision: 'bf16' as const } : {};
  const rows: MethodResult<'bench.layers'>['rows'] = [];
  const gbps = await elementwiseGBps(params.repeats);
  const denseShapes: DenseShapePoint[] = [];
  const lowRankPoints: { rank: number; efficiency: number }[] = [];
  const lowRankShapes: LowRankShapePoint[] = [];
  const sparseShapes: BlockSparseShapePoint[] = [];
  for (const [si, s] of params.shapes.entries()) {
    const m = s.rows;
    const x = await seededFloatsAsync(m * s.in, 1 + si);
    const dy = await seededFloatsAsync(m * s.out, 2 + si);
    const w = await seededFloatsAsync(s.out * s.in, 3 + si);
    // A shape with no config and no `configs` is measured dense only (its rate is what the profile keeps).
    // Each layout and each rank is timed once per shape: configs that differ only in rank share
    // the block-sparse time, and those of one rank share the low-rank time.
    const configs = s.config || s.configs ? shapeConfigs(s) : (params.configs ?? []);
    const layouts = new Map<string, { index: BlockIndex; density: number; ms: number }>();
    for (const config of configs) {
      const key = layoutKey(config);
      if (layouts.has(key)) continue;
      try {
        const layout = flatBlockButterflyLayout(s.out, s.in, config);
        layouts.set(key, { index: buildBlockIndex(layout), density: layout.density, ms: 0 });
      } catch (err) {
        if (err instanceof PixelflyConfigError) throw new RejectedError(`config ${JSON.stringify(config)} for ${s.out}x${s.in}: ${err.message}`);
        throw err;
      }
    }
    // Dense and every layout in the same rounds: their ratios are the profile's efficiencies. The
    // layouts share one weight and one gradient buffer, of the largest (the values are arbitrary).
    const blockValues = Math.max(0, ...[...layouts.values()].map(({ index }) => index.nnz * index.block * index.block));
    const blockWeights = await seededFloatsAsync(blockValues, 4);
    const dw = alignedFloat32Array(blockValues);
    const y = alignedFloat32Array(m * s.out);
    const dx = alignedFloat32Array(m * s.in);
    const sparseRuns = [...layouts.values()].map(({ index }) => {
      const weight = { index, out: s.out, in: s.in, weights: blockWeights.subarray(0, index.nnz * index.block * index.block) };
      const into = dw.subarray(0, weight.weights.length);
      return async () => {
        await bsrForward(weight, x, m, { ...p, into: y });
        await bsrBackwardData(weight, dy, m, { ...p, into: dx });
        await bsrBackwardWeight(weight, dy, x, m, { ...p, into });
      };
    });
    const [denseMs, ...layoutMs] = await interleavedMediansMs(params.repeats, [denseProducts(x, dy, w, m, s.in, s.out, p), ...sparseRuns]);
    const denseFlops = 6 * m * s.in * s.out;
    const denseRate = denseFlops / (denseMs / 1e3);
    denseShapes.push({ in: s.in, out: s.out, gflops: denseRate / 1e9 });
    for (const [k, l] of [...layouts.values()].entries()) {
      l.ms = layoutMs[k];
      const sparseFlops = 6 * m * l.index.nnz * l.index.block * l.index.block;
      sparseShapes.push({ in: s.in, out: s.out, block: l.index.block, density: l.density, efficiency: sparseFlops / (l.ms / 1e3) / denseRate });
    }
    const lowRankMsOf = new Map<number, number>();
    for (const config of configs) {
      const sparseMs = (layouts.get(layoutKey(config)) as { ms: number }).ms;
      const r = config.rank;
      let lowRankMs = r > 0 ? lowRankMsOf.get(r) : 0;
      if (lowRankMs === undefined) {
        // The low-rank term with its gate and lerp, timed as the engine runs them (around the
        // block-sparse product, native/src/engine/pixelfly_linear.cc): this layer in engine steps
        // at rank r less the same layout at rank 0. Timed as separate products, the six skinny
        // GEMMs alone took a third of what the engine's layer spends on the term.
        // A difference of two timings: more repeats than the products get, or its noise sets the estimate.
        const repeats = Math.max(7, params.repeats);
        const [withRank, without] = await engineLayerMs(s.in, s.out, m, [config, { ...config, rank: 0 }], nThreads, precision, repeats);
        lowRankMs = Math.max(withRank - without, 0.01 * without);
        lowRankMsOf.set(r, lowRankMs);
        lowRankShapes.push({ in: s.in, out: s.out, rank: r, nsPerRow: (lowRankMs * 1e6) / m });
        // The profile's low-rank efficiency is what is left after the cost model's gate and lerp traffic.
        const elementwiseMs = (pixelflyLinearCost(s.in, s.out, m, config).elementwiseBytes / (gbps * 1e9)) * 1e3;
        const lowRankFlops = 6 * m * r * (s.in + s.out);
        lowRankPoints.push({ rank: r, efficiency: lowRankFlops / (Math.max(lowRankMs - elementwiseMs, 0.1 * lowRankMs) / 1e3) / denseRate });
      }
      const pixelflyMs = sparseMs + lowRankMs;
      rows.push({ name: s.name, in: s.in, out: s.out, rows: m, config, denseMs, pixelflyMs, speedup: denseMs / pixelflyMs });
    }
  }
  const measured = buildProfile({ denseShapes, sparseShapes, lowRankPoints, lowRankShapes, elementwiseGBps: gbps }, nThreads, precision);
  if (params.step) measured.step = await stepRates(nThreads, precision, params.repeats);
  mkdirSync(profilesDir, { recursive: true });
  const profilePath = profileFile(profilesDir, precision === resolvePrecision('cpu', 'auto') ? 'default' : precision);
  const profile = mergeProfiles(loadProfile(profilesDir, undefined, precision), measured);
  writeFileAtomic(profilePath, JSON.stringify(profile, null, 2) + '\n');
  return { profilePath, rows };
}

const sparseKey = (p: BlockSparsePoint) => `${p.block}/${p.density.toFixed(4)}`;

/**
 * The saved profile updated with new measurements: points of the same block/density or rank are
 * replaced, the others kept, so measuring one config does not forget the rest. A saved profile
 * from other conditions (the default prior, another thread count or kernel ISA) is not mixed in.
 * `fresh` lists only what was measured (either list may be empty: e.g. no rank > 0 asked for);
 * a list still empty after the merge takes the default prior's points (a profile needs both).
 */
export function mergeProfiles(saved: DeviceProfile, fresh: DeviceProfile): DeviceProfile {
  const keep = saved.source === 'measured' && saved.device === fresh.device;
  const merge = <P>(pick: (p: DeviceProfile) => P[] | undefined, key: (p: P) => string, order: (a: P, b: P) => number): P[] =>
    mergedPoints(keep ? pick(saved) : undefined, pick(fresh), key, order);
  const byShape = (a: LayerShape, b: LayerShape) => a.in - b.in || a.out - b.out;
  const bySparse = (a: BlockSparsePoint, b: BlockSparsePoint) => a.block - b.block || a.density - b.density;
  const blockSparse = merge((p) => p.blockSparse, sparseKey, bySparse);
  const lowRank = merge((p) => p.lowRank, (p) => String(p.rank), (a, b) => a.rank - b.rank);
  const denseShapes = merge((p) => p.denseShapes, shapeKey, byShape);
  const lowRankShapes = merge((p) => p.lowRankShapes, (p) => `${shapeKey(p)}/${p.rank}`, (a, b) => byShape(a, b) || a.rank - b.rank);
  const sparseShapes = merge((p) => p.blockSparseShapes, (p) => `${shapeKey(p)}/${sparseKey(p)}`, (a, b) => byShape(a, b) || bySparse(a, b));
  const step = fresh.step ?? (keep ? saved.step : undefined);
  return {
    ...fresh,
    ...(step ? { step } : {}),
    ...(denseShapes.length > 0 ? { denseShapes } : {}),
    ...(lowRankShapes.length > 0 ? { lowRankShapes } : {}),
    ...(sparseShapes.length > 0 ? { blockSparseShapes: sparseShapes } : {}),
    blockSparse: blockSparse.length > 0 ? blockSparse : DEFAULT_PROFILE.blockSparse,
    lowRank: lowRank.length > 0 ? lowRank : DEFAULT_PROFILE.lowRank,
  };
}

const shapeKey = (p: LayerShape) => `${p.in}x${p.out}`;

/** Saved points with the fresh ones put in their place (same key), sorted. */
function mergedPoints<P>(saved: P[] | undefined, fresh: P[] | undefined, key: (p: P) => string, order: (a: P, b: P) => number): P[] {
  const merged = new Map((saved ?? []).map((p) => [key(p), p]));
  for (const p of fresh ?? []) merged.set(key(p), p);
  return [...merged.values()].sort(order);
}

interface Measured {
  denseShapes: DenseShapePoint[];
  sparseShapes: BlockSparseShapePoint[];
  lowRankPoints: { rank: number; efficiency: number }[];
  lowRankShapes: LowRankShapePoint[];
  elementwiseGBps: number;
}

/**
 * This call's measurements as a profile: the per-shape points as measured, and the global ones
 * from them (mean dense rate; repeated (block, density) and rank points averaged).
 */
function buildProfile(m: Measured, threads: number, precision: EnginePrecision): DeviceProfile {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const group = <T>(xs: T[], key: (x: T) => string) => [...groupBy(xs, key).values()];
  const blockSparse = group(m.sparseShapes, sparseKey).map((g) => ({ block: g[0].block, density: g[0].density, efficiency: mean(g.map((p) => p.efficiency)) }));
  const ranks = group(m.lowRankPoints, (p) => String(p.rank)).map((g) => ({ rank: g[0].rank, efficiency: mean(g.map((p) => p.efficiency)) }));
  const info = kernelInfo();
  return {
    version: 1,
    device: `cpu: ${threads} thread${threads > 1 ? 's' : ''}, ${info.isa} kernels${precision === 'bf16' ? `, bf16 on ${info.bf16}` : ''}`,
    source: 'measured',
    precision,
    measuredAt: new Date().toISOString(),
    denseGflops: mean(m.denseShapes.map((p) => p.gflops)),
    blockSparse,
    lowRank: ranks,
    elementwiseGBps: m.elementwiseGBps,
    denseShapes: m.denseShapes,
    ...(m.lowRankShapes.length > 0 ? { lowRankShapes: m.lowRankShapes } : {}),
    ...(m.sparseShapes.length > 0 ? { blockSparseShapes: m.sparseShapes } : {}),
  };
}

/** The model whose dense training steps calibrate the step rates: a small ViT (attention, LayerNorm, GELU, AdamW). */
const CALIBRATION_SPEC: VitSpec = { kind: 'vit', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 192, depth: 2, heads: 3, mlpHidden: 768, classes: 10 };
const CALIBRATION_BATCH = 32;

/**
 * The step rates of core/stepCost.ts from dense engine steps of CALIBRATION_SPEC (medians over
 * `repeats` steps after two warm-ups): the engine times data, forward, backward and optimizer, and
 * the attention cores as a part; the products' share of forward + backward is timed here with the
 * kernels at the same shapes and precision, and the rest is the pointwise layers'.
 */
async function stepRates(threads: number, precision: EnginePrecision, repeats: number): Promise<StepRates> {
  const spec = CALIBRATION_SPEC;
  const batch = CALIBRATION_BATCH;
  const features = spec.image.channels * spec.image.height * spec.image.width;
  const dataset = new EngineDataset(syntheticClassification({ seed: 1, features, classes: spec.classes, train: 4 * batch, test: batch }));
  const model = await createModel({ spec, train: { batch, lr: 1e-3, totalSteps: 1000 }, seed: 1, threads, backend: 'cpu', precision });
  const steps: StepResult[] = [];
  for (let i = 0; i < repeats + 2; i++) steps.push(await model.trainStep(dataset));
  const timed = steps.slice(2);
  const med = (f: (s: StepResult) => number) => median(timed.map(f));
  const attentionMs = med((s) => s.ms.parts.filter((q) => q.name === 'attention').reduce((a, q) => a + q.forward + q.backward, 0));
  const passMs = med((s) => s.ms.forward + s.ms.backward);
  const inventory = specInventory(spec).layers;
  const work = modelWork(inventory);
  // The products at the same shapes, precision and threads.
  const p = precision === 'bf16' ? { precision: 'bf16' as const } : {};
  let productsMs = 0;
  for (const [i, l] of inventory.entries()) {
    if (l.role === 'attn_core' || l.role === 'embedding') continue;
    const m = batch * l.rowsPerSample;
    const x = await seededFloatsAsync(m * l.in, 11 + i);
    const dy = await seededFloatsAsync(m * l.out, 12 + i);
    const w = await seededFloatsAsync(l.out * l.in, 13 + i);
    productsMs += l.count * (await medianMs(repeats, denseProducts(x, dy, w, m, l.in, l.out, p)));
  }
  const pointwiseMs = Math.max(0.05 * passMs, passMs - productsMs - attentionMs);
  const ns = (ms: number, units: number) => Math.max(1e-3, (ms * 1e6) / units);
  return {
    attentionGflops: (work.attentionFlops * batch) / (Math.max(attentionMs, 1e-3) * 1e6),
    pointwiseNsPerElement: ns(pointwiseMs, work.pointwiseElements * batch),
    optimizerNsPerParam: ns(med((s) => s.ms.optimizer), model.paramCount),
    dataNsPerValue: ns(med((s) => s.ms.data), work.inputValues * batch),
    measuredWith: `dense vit engine steps (dim ${spec.dim}, ${spec.depth} blocks, batch ${batch}, ${precision})`,
  };
}

/**
 * A dense layer's training products (y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x) into outputs made once, as
 * the engine's layers reuse theirs. Every measurement here writes into buffers made before it is
 * timed: a fresh output per call pays page faults and zero-filling that a training step does not
 * (512→2048 at 3136 rows, bf16: 74.5 ms with fresh outputs, 35.8 ms into reused ones; 49→256 at
 * 32768 rows: 73.0 against 9.7 ms), which made measured profiles cost a Mixer's token mixing at
 * seven times what the engine takes.
 */
function denseProducts(x: Float32Array, dy: Float32Array, w: Float32Array, m: number, inF: number, out: number, p: { precision?: 'bf16' }): () => Promise<void> {
  const y = alignedFloat32Array(m * out);
  const dx = alignedFloat32Array(m * inF);
  const dw = alignedFloat32Array(out * inF);
  return async () => {
    await denseForward(x, w, m, inF, out, { ...p, into: y });
    await denseBackwardData(dy, w, m, inF, out, { ...p, into: dx });
    await denseBackwardWeight(dy, x, m, inF, out, { ...p, into: dw });
  };
}

/**
 * ms of one linear layer's forward + backward inside engine training steps, for each of `configs`
 * (medians of `repeats` after two warm-ups): the second layer of an MLP 16 → in → out, so that its
 * input gradient is computed as in a model. The models step in turn, so that a slower minute of a
 * shared host weighs on every config alike (their differences are what callers use). The part also
 * holds the GELU after the layer, the same with any config.
 */
async function engineLayerMs(inF: number, out: number, rows: number, configs: PixelflyConfig[], threads: number, precision: EnginePrecision, repeats: number): Promise<number[]> {
  const spec = { kind: 'mlp' as const, name: 'bench', inputFeatures: 16, hidden: [inF, out], classes: 2 };
  const dataset = new EngineDataset(syntheticClassification({ seed: 1, features: 16, classes: 2, train: rows, test: 1 }));
  const models = [];
  for (const config of configs) {
    models.push(await createModel({ spec, plan: { layers: [{ name: 'fc2', sparsify: true, config }] }, train: { batch: rows, lr: 1e-3, totalSteps: 1000 }, seed: 1, threads, backend: 'cpu', precision }));
  }
  const fc2Ms = (step: StepResult) => step.ms.parts.filter((q) => q.name === 'fc2').reduce((a, q) => a + q.forward + q.backward, 0);
  return interleavedMedians(repeats, models.map((model) => async () => fc2Ms(await model.trainStep(dataset))), 2);
}

/** Memory bandwidth for elementwise work (a Pixelfly layer's gate and lerp): a column sum streaming 64 MB. */
async function elementwiseGBps(repeats: number): Promise<number> {
  const m = 4096;
  const n = 4096;
  const dy = await seededFloatsAsync(m * n, 21);
  const into = new Float32Array(n);
  const ms = await medianMs(repeats, () => biasGrad(dy, m, n, { into }));
  return (4 * m * n) / (ms * 1e6);
}
