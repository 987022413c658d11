// `bench.layers`: measures, on this device, one training step (forward + backward) of a dense
// Linear and of the Pixelfly layer's matmuls for given shapes and configs, with the native
// kernels, and saves what it measured as the device profile core/costModel.ts reads
// (<home>/profiles/device.json), so later plans are costed with this machine's real numbers.
// Measurements are merged into the saved profile (a later call for other configs adds to it).
//
// Dense = y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x. Pixelfly = the block-sparse triple plus the low-rank
// factors' products ((x·V)·Uᵀ forward, four skinny products backward). The per-token gate and the
// lerp are elementwise and left to the profile's bandwidth term: they are not timed here.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { flatBlockButterflyLayout } from '../core/layout';
import { buildBlockIndex } from '../core/blockIndex';
import { DEFAULT_PROFILE, type BlockSparsePoint, type DeviceProfile } from '../core/costModel';
import { PixelflyConfigError } from '../core/errors';
import { bsrBackwardData, bsrBackwardWeight, bsrForward, denseBackwardData, denseBackwardWeight, denseForward, gemm, kernelInfo, setKernelThreads } from '../native/kernels';
import type { MethodParams, MethodResult } from '../protocol/daemon';
import { writeFileAtomic } from '../io/home';
import { loadProfile, PROFILE_FILE } from './planning';
import { RejectedError } from './jobs/trainer';
import { medianMs, seededFloatsAsync } from './measure';

/** Largest activation (rows x features) or weight (in x out) a request may ask for: keeps memory per call bounded (~64 MB per buffer). */
const MAX_ELEMENTS = 16 * 1024 * 1024;

export async function benchLayers(params: MethodParams<'bench.layers'>, profilesDir: string, threads: number): Promise<MethodResult<'bench.layers'>> {
  for (const s of params.shapes) {
    const biggest = s.rows * Math.max(s.in, s.out);
    if (biggest > MAX_ELEMENTS) throw new RejectedError(`shape ${s.name ?? `${s.in}x${s.out}`}: rows x features = ${biggest} exceeds ${MAX_ELEMENTS}`);
    if (s.in * s.out > MAX_ELEMENTS) throw new RejectedError(`shape ${s.name ?? `${s.in}x${s.out}`}: in x out = ${s.in * s.out} weights exceeds ${MAX_ELEMENTS}`);
  }
  setKernelThreads(params.threads > 0 ? params.threads : threads);
  const rows: MethodResult<'bench.layers'>['rows'] = [];
  const denseRates: number[] = [];
  const sparsePoints: BlockSparsePoint[] = [];
  const lowRankPoints: { rank: number; efficiency: number }[] = [];
  for (const [si, s] of params.shapes.entries()) {
    const m = s.rows;
    const x = await seededFloatsAsync(m * s.in, 1 + si);
    const dy = await seededFloatsAsync(m * s.out, 2 + si);
    const w = await seededFloatsAsync(s.out * s.in, 3 + si);
    const denseMs = await medianMs(params.repeats, async () => {
      await denseForward(x, w, m, s.in, s.out);
      await denseBackwardData(dy, w, m, s.in, s.out);
      await denseBackwardWeight(dy, x, m, s.in, s.out);
    });
    const denseFlops = 6 * m * s.in * s.out;
    const denseRate = denseFlops / (denseMs / 1e3);
    denseRates.push(denseRate);
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
        await bsrForward(weight, x, m);
        await bsrBackwardData(weight, dy, m);
        await bsrBackwardWeight(weight, dy, x, m);
      });
      const r = config.rank;
      let lowRankMs = 0;
      if (r > 0) {
        const v = await seededFloatsAsync(s.in * r, 5); // V: in x r
        const u = await seededFloatsAsync(s.out * r, 6); // U: out x r
        lowRankMs = await medianMs(params.repeats, async () => {
          const h = await gemm(x, v, m, r, s.in); // h = x·V
          await gemm(h, u, m, s.out, r, { transB: true }); // y = h·Uᵀ
          const dh = await gemm(dy, u, m, r, s.out); // dh = dy·U
          await gemm(dy, h, s.out, r, m, { transA: true }); // dU = dyᵀ·h
          await gemm(dh, v, m, s.in, r, { transB: true }); // dx = dh·Vᵀ
          await gemm(x, dh, s.in, r, m, { transA: true }); // dV = xᵀ·dh
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
  const measured = buildProfile(denseRates, sparsePoints, lowRankPoints, params.threads > 0 ? params.threads : threads);
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
  return {
    ...fresh,
    blockSparse: blockSparse.size > 0 ? [...blockSparse.values()].sort((a, b) => a.block - b.block || a.density - b.density) : DEFAULT_PROFILE.blockSparse,
    lowRank: lowRank.size > 0 ? [...lowRank.values()].sort((a, b) => a.rank - b.rank) : DEFAULT_PROFILE.lowRank,
  };
}

/** This call's measurements, repeated (block, density) and rank points averaged. */
function buildProfile(denseRates: number[], sparse: BlockSparsePoint[], lowRank: { rank: number; efficiency: number }[], threads: number): DeviceProfile {
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
    device: `cpu: ${threads} thread${threads > 1 ? 's' : ''}, ${info.isa} kernels`,
    source: 'measured',
    measuredAt: new Date().toISOString(),
    denseGflops: mean(denseRates) / 1e9,
    blockSparse,
    lowRank: ranks,
    elementwiseGBps: DEFAULT_PROFILE.elementwiseGBps,
  };
}
