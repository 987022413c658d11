// `bench.layers`: measures, on this device, one training step (forward + backward) of a dense
// Linear and of the Pixelfly layer's matmuls for given shapes and configs, with the native
// kernels, and saves what it measured as the device profile core/costModel.ts reads
// (<home>/profiles/device.json), so later plans are costed with this machine's real numbers.
// Measurements are merged into the saved profile (a later call for other configs adds to it).
//
// Dense = y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x. Pixelfly = the block-sparse triple plus the low-rank
// factors' products ((x·V)·Uᵀ forward, four skinny products backward). The per-token gate and the
// lerp are elementwise and left to the profile's bandwidth term: they are not timed here.
// Products run at the precision the engine trains with here ('auto': bf16 on CPUs with bf16
// instructions), so the profile costs what jobs run.
//
// With `step` (the default) it also times a few training steps of a small dense ViT on the engine
// and splits them into the parts a plan does not change (core/stepCost.ts): attention cores and
// the optimizer as the engine times them, the batch's assembly, and the rest of forward + backward
// beyond the products (timed here at the same shapes) per activation element: the pointwise and
// normalisation layers. Those rates make the estimates whole-step ones.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { flatBlockButterflyLayout } from '../core/layout';
import { buildBlockIndex } from '../core/blockIndex';
import { DEFAULT_PROFILE, type BlockSparsePoint, type DenseShapePoint, type DeviceProfile, type StepRates } from '../core/costModel';
import { specInventory, type VitSpec } from '../core/modelSpec';
import { modelWork } from '../core/stepCost';
import { createModel, EngineDataset, resolvePrecision, type EnginePrecision, type StepResult } from '../native/engine';
import { syntheticClassification } from '../native/datasets';
import { PixelflyConfigError } from '../core/errors';
import { KERNEL_BLOCK_SIZES } from '../core/planner';
import { biasGrad, bsrBackwardData, bsrBackwardWeight, bsrForward, denseBackwardData, denseBackwardWeight, denseForward, gemm, kernelInfo, setKernelThreads } from '../native/kernels';
import type { MethodParams, MethodResult } from '../protocol/daemon';
import { writeFileAtomic } from '../io/home';
import { loadProfile, PROFILE_FILE } from './planning';
import { RejectedError } from './jobs/trainer';
import { median } from '../core/stats';
import { medianMs, seededFloatsAsync } from './measure';

/** Largest activation (rows x features) or weight (in x out) a request may ask for: keeps memory per call bounded (~64 MB per buffer). */
const MAX_ELEMENTS = 16 * 1024 * 1024;

export async function benchLayers(params: MethodParams<'bench.layers'>, profilesDir: string, threads: number): Promise<MethodResult<'bench.layers'>> {
  for (const s of params.shapes) {
    const biggest = s.rows * Math.max(s.in, s.out);
    if (biggest > MAX_ELEMENTS) throw new RejectedError(`shape ${s.name ?? `${s.in}x${s.out}`}: rows x features = ${biggest} exceeds ${MAX_ELEMENTS}`);
    if (s.in * s.out > MAX_ELEMENTS) throw new RejectedError(`shape ${s.name ?? `${s.in}x${s.out}`}: in x out = ${s.in * s.out} weights exceeds ${MAX_ELEMENTS}`);
  }
  // The kernels tile by these blocks only: anything else is refused here, not by the kernel mid-measurement.
  for (const c of [...(params.configs ?? []), ...params.shapes.flatMap((s) => (s.config ? [s.config] : []))]) {
    if (!KERNEL_BLOCK_SIZES.includes(c.block)) throw new RejectedError(`config ${JSON.stringify(c)}: block must be ${KERNEL_BLOCK_SIZES.join(', ')} (the kernels' block sizes), got ${c.block}`);
  }
  const nThreads = params.threads > 0 ? params.threads : threads;
  setKernelThreads(nThreads);
  const precision = resolvePrecision('cpu', 'auto');
  const p = precision === 'bf16' ? { precision: 'bf16' as const } : {};
  const rows: MethodResult<'bench.layers'>['rows'] = [];
  const denseRates: number[] = [];
  const denseShapes: DenseShapePoint[] = [];
  const sparsePoints: BlockSparsePoint[] = [];
  const lowRankPoints: { rank: number; efficiency: number }[] = [];
  for (const [si, s] of params.shapes.entries()) {
    const m = s.rows;
    const x = await seededFloatsAsync(m * s.in, 1 + si);
    const dy = await seededFloatsAsync(m * s.out, 2 + si);
    const w = await seededFloatsAsync(s.out * s.in, 3 + si);
    const denseMs = await medianMs(params.repeats, async () => {
      await denseForward(x, w, m, s.in, s.out, p);
      await denseBackwardData(dy, w, m, s.in, s.out, p);
      await denseBackwardWeight(dy, x, m, s.in, s.out, p);
    });
    const denseFlops = 6 * m * s.in * s.out;
    const denseRate = denseFlops / (denseMs / 1e3);
    denseRates.push(denseRate);
    denseShapes.push({ in: s.in, out: s.out, gflops: denseRate / 1e9 });
    // A shape with no config and no `configs` is measured dense only (its rate is what the profile keeps).
    for (const config of s.config ? [s.config] : (params.configs ?? [])) {
      let layout;
      try {
        layout = flatBlockButterflyLayout(s.out, s.in, config);
      } catch (err) {
        if (err instanceof PixelflyConfigError) throw new RejectedError(`config ${JSON.stringify(config)} for ${s.out}x${s.in}: ${err.message}`);
        throw err;
      }
      const index = buildBlockIndex(layout);
      const weight = { index, out: s.out, in: s.in, weights: await seededFloatsAsync(index.nnz * index.block * index.block, 4) };
      const sparseMs = await medianMs(params.repeats, async () => {
        await bsrForward(weight, x, m, p);
        await bsrBackwardData(weight, dy, m, p);
        await bsrBackwardWeight(weight, dy, x, m, p);
      });
      const r = config.rank;
      let lowRankMs = 0;
      if (r > 0) {
        const v = await seededFloatsAsync(s.in * r, 5); // V: in x r
        const u = await seededFloatsAsync(s.out * r, 6); // U: out x r
        lowRankMs = await medianMs(params.repeats, async () => {
          const h = await gemm(x, v, m, r, s.in, p); // h = x·V
          await gemm(h, u, m, s.out, r, { transB: true, ...p }); // y = h·Uᵀ
          const dh = await gemm(dy, u, m, r, s.out, p); // dh = dy·U
          await gemm(dy, h, s.out, r, m, { transA: true, ...p }); // dU = dyᵀ·h
          await gemm(dh, v, m, s.in, r, { transB: true, ...p }); // dx = dh·Vᵀ
          await gemm(x, dh, s.in, r, m, { transA: true, ...p }); // dV = xᵀ·dh
        });
        const lowRankFlops = 6 * m * r * (s.in + s.out);
        lowRankPoints.push({ rank: r, efficiency: lowRankFlops / (lowRankMs / 1e3) / denseRate });
      }
      const sparseFlops = 6 * m * index.nnz * index.block * index.block;
      sparsePoints.push({ block: index.block, density: layout.density, efficiency: sparseFlops / (sparseMs / 1e3) / denseRate });
      const pixelflyMs = sparseMs + lowRankMs;
      rows.push({ name: s.name, in: s.in, out: s.out, rows: m, config, denseMs, pixelflyMs, speedup: denseMs / pixelflyMs });
    }
  }
  const measured = buildProfile(denseRates, sparsePoints, lowRankPoints, nThreads, precision);
  measured.elementwiseGBps = await elementwiseGBps(params.repeats);
  measured.denseShapes = denseShapes;
  if (params.step) measured.step = await stepRates(nThreads, precision, params.repeats);
  mkdirSync(profilesDir, { recursive: true });
  const profilePath = join(profilesDir, PROFILE_FILE);
  const profile = mergeProfiles(loadProfile(profilesDir), measured);
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
  const blockSparse = new Map((keep ? saved.blockSparse : []).map((p) => [sparseKey(p), p]));
  for (const p of fresh.blockSparse) blockSparse.set(sparseKey(p), p);
  const lowRank = new Map((keep ? saved.lowRank : []).map((p) => [p.rank, p]));
  for (const p of fresh.lowRank) lowRank.set(p.rank, p);
  const step = fresh.step ?? (keep ? saved.step : undefined);
  const shapes = new Map((keep ? (saved.denseShapes ?? []) : []).map((p) => [`${p.in}x${p.out}`, p]));
  for (const p of fresh.denseShapes ?? []) shapes.set(`${p.in}x${p.out}`, p);
  return {
    ...fresh,
    ...(step ? { step } : {}),
    ...(shapes.size > 0 ? { denseShapes: [...shapes.values()].sort((a, b) => a.in - b.in || a.out - b.out) } : {}),
    blockSparse: blockSparse.size > 0 ? [...blockSparse.values()].sort((a, b) => a.block - b.block || a.density - b.density) : DEFAULT_PROFILE.blockSparse,
    lowRank: lowRank.size > 0 ? [...lowRank.values()].sort((a, b) => a.rank - b.rank) : DEFAULT_PROFILE.lowRank,
  };
}

/** This call's measurements, repeated (block, density) and rank points averaged. */
function buildProfile(denseRates: number[], sparse: BlockSparsePoint[], lowRank: { rank: number; efficiency: number }[], threads: number, precision: EnginePrecision): DeviceProfile {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const group = <T>(xs: T[], key: (x: T) => string) => {
    const m = new Map<string, T[]>();
    for (const x of xs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
    return [...m.values()];
  };
  const blockSparse = group(sparse, sparseKey).map((g) => ({ block: g[0].block, density: g[0].density, efficiency: mean(g.map((p) => p.efficiency)) }));
  const ranks = group(lowRank, (p) => String(p.rank)).map((g) => ({ rank: g[0].rank, efficiency: mean(g.map((p) => p.efficiency)) }));
  const info = kernelInfo();
  return {
    version: 1,
    device: `cpu: ${threads} thread${threads > 1 ? 's' : ''}, ${info.isa} kernels${precision === 'bf16' ? `, bf16 on ${info.bf16}` : ''}`,
    source: 'measured',
    precision,
    measuredAt: new Date().toISOString(),
    denseGflops: mean(denseRates) / 1e9,
    blockSparse,
    lowRank: ranks,
    elementwiseGBps: DEFAULT_PROFILE.elementwiseGBps,
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
    productsMs +=
      l.count *
      (await medianMs(repeats, async () => {
        await denseForward(x, w, m, l.in, l.out, p);
        await denseBackwardData(dy, w, m, l.in, l.out, p);
        await denseBackwardWeight(dy, x, m, l.in, l.out, p);
      }));
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

/** Memory bandwidth for elementwise work (a Pixelfly layer's gate and lerp): a column sum streaming 64 MB. */
async function elementwiseGBps(repeats: number): Promise<number> {
  const m = 4096;
  const n = 4096;
  const dy = await seededFloatsAsync(m * n, 21);
  const into = new Float32Array(n);
  const ms = await medianMs(repeats, () => biasGrad(dy, m, n, { into }));
  return (4 * m * n) / (ms * 1e6);
}
