/**
 * Cost model: estimated wall-clock speedup of a Pixelfly layer over dense, from FLOPs and a
 * device profile saying how efficiently this device runs each kind of product relative to its
 * dense GEMM.
 *
 * Profile format (JSON, version 1) — the daemon's `bench.layers` writes measured ones:
 * {
 *   "version": 1,
 *   "device": "cpu: 2 threads, avx512",        // free text shown to users
 *   "source": "default" | "measured",
 *   "measuredAt": "2026-11-25T06:00:00Z",       // optional
 *   "denseGflops": 290,                         // dense fp32 GEMM throughput, fwd+bwd average
 *   "blockSparse": [                            // efficiency of block-sparse products relative
 *     {"block": 32, "density": 0.125, "efficiency": 0.75},   // to dense GEMM at the same FLOPs;
 *     …                                         // interpolated linearly in density, clamped at
 *   ],                                          // the ends; the nearest measured block size is used
 *   "lowRank": [{"rank": 16, "efficiency": 0.35}, …],  // skinny GEMMs (x·V, ·Uᵀ), by rank
 *   "lowRankShapes": [{"in": 512, "out": 2048, "rank": 16, "nsPerRow": 1180}, …],  // optional: the
 *                                               // low-rank term, gate and lerp as the engine ran them
 *   "elementwiseGBps": 20,                      // memory bandwidth for the gate and lerp
 *   "precision": "bf16",                        // the products' inputs when this was measured
 *   "step": {                                   // the rest of a training step (core/stepCost.ts),
 *     "attentionGflops": 40,                    // measured on an engine training step: attention
 *     "pointwiseNsPerElement": 1.5,             // cores; LayerNorm/GELU/residuals/biases per
 *     "optimizerNsPerParam": 1.2,               // activation element; AdamW per parameter;
 *     "dataNsPerValue": 0.5                     // batch assembly per input value
 *   }
 * }
 */
import { totalFlops, type LayerCost, type PixelflyCost } from './pixelflyLayer';
import { groupBy } from './stats';

export interface DenseShapePoint {
  in: number;
  out: number;
  gflops: number;
}

export interface LowRankShapePoint {
  in: number;
  out: number;
  rank: number;
  nsPerRow: number;
}

export interface BlockSparsePoint {
  block: number;
  density: number;
  efficiency: number;
}

export interface BlockSparseShapePoint extends BlockSparsePoint {
  in: number;
  out: number;
}

export interface DeviceProfile {
  version: 1;
  device: string;
  source: 'default' | 'measured';
  measuredAt?: string;
  denseGflops: number;
  blockSparse: BlockSparsePoint[];
  lowRank: { rank: number; efficiency: number }[];
  elementwiseGBps: number;
  /**
   * Dense GEMM throughput measured at given layer shapes (fwd+bwd GFLOP/s): small or skinny
   * products (a Mixer's token mixing) run far below `denseGflops`. A layer takes the rate of the
   * nearest measured shape; none within a factor of 4 (in × out on a log scale): `denseGflops`.
   */
  denseShapes?: DenseShapePoint[];
  /**
   * The low-rank term with its gate and lerp, measured as the engine runs the layer, per layer shape
   * and rank: ns per row. A layer takes the nearest measured shape's point of its rank (scaled by
   * in + out), none within a factor of 4: the `lowRank` efficiency and the bandwidth term.
   */
  lowRankShapes?: LowRankShapePoint[];
  /**
   * Block-sparse efficiencies measured per layer shape: a layer takes the curve of the nearest
   * measured shape (within a factor of 4), so one shape's timing never prices another's; none: `blockSparse`.
   */
  blockSparseShapes?: BlockSparseShapePoint[];
  /** The products' input precision the rates were measured at (the engine's default on this device). */
  precision?: 'fp32' | 'bf16' | 'fp16';
  /** Rates of the work a plan does not change; a profile measured before they were taken uses the prior's. */
  step?: StepRates;
}

/**
 * What the rest of a training step costs on a device, per unit of work core/stepCost.ts counts:
 * measured by `bench.layers` from a dense engine step, whose parts it splits (the product time at
 * the measured GEMM rate, the attention cores and the optimizer as the engine times them, the rest
 * of forward + backward over the activations).
 */
export interface StepRates {
  /** Attention cores (QKᵀ, softmax, scores·V), forward + backward, in GFLOP/s. */
  attentionGflops: number;
  /** LayerNorm, GELU, residual adds, biases, loss: forward + backward ns per activation element. */
  pointwiseNsPerElement: number;
  /** AdamW (and the gradient-norm clip) ns per parameter. */
  optimizerNsPerParam: number;
  /** Assembling a batch: ns per input value (pixel or token). */
  dataNsPerValue: number;
  /** What the rates were measured on (e.g. "dense vit engine step, batch 16"). */
  measuredWith?: string;
}

/**
 * A prior for a 2-core AVX-512 CPU running the native engine, used until `bench.layers` has
 * measured this device. Block-sparse products lose efficiency at low density (more per-block
 * overhead relative to work) and at small blocks (shorter inner loops); skinny low-rank GEMMs
 * are memory-bound at small rank.
 */
export const DEFAULT_PROFILE: DeviceProfile = {
  version: 1,
  device: 'default prior (2-core AVX-512 CPU)',
  source: 'default',
  denseGflops: 290,
  blockSparse: [
    { block: 16, density: 0.0625, efficiency: 0.45 },
    { block: 16, density: 0.25, efficiency: 0.55 },
    { block: 16, density: 0.5, efficiency: 0.6 },
    { block: 32, density: 0.0625, efficiency: 0.65 },
    { block: 32, density: 0.125, efficiency: 0.75 },
    { block: 32, density: 0.25, efficiency: 0.82 },
    { block: 32, density: 0.5, efficiency: 0.88 },
    { block: 64, density: 0.0625, efficiency: 0.7 },
    { block: 64, density: 0.25, efficiency: 0.85 },
    { block: 64, density: 0.5, efficiency: 0.9 },
  ],
  lowRank: [
    { rank: 8, efficiency: 0.2 },
    { rank: 32, efficiency: 0.4 },
    { rank: 64, efficiency: 0.55 },
    { rank: 128, efficiency: 0.7 },
  ],
  elementwiseGBps: 20,
  // Near what bench.layers measured on this kind of machine (AMD EPYC, 2 threads, bf16 products),
  // relative to the dense rate: the attention cores at about 0.4 of it.
  step: {
    attentionGflops: 120,
    pointwiseNsPerElement: 0.5,
    optimizerNsPerParam: 1.5,
    dataNsPerValue: 0.5,
    measuredWith: 'prior',
  },
};

/** The profile's whole-step rates, the prior's where it has none. */
export function stepRates(profile: DeviceProfile): StepRates {
  return profile.step ?? DEFAULT_PROFILE.step!;
}

/** A profile file's format for io/deviceProfile.ts: parsed with parseDeviceProfile, the default prior without one. */
export const DEVICE_PROFILE_FORMAT = { parse: (raw: unknown) => parseDeviceProfile(raw), fallback: DEFAULT_PROFILE };

/** Validates a profile read from disk or the network; errors name the offending field. */
export function parseDeviceProfile(value: unknown): DeviceProfile {
  const fail = (field: string, what: string): never => {
    throw new Error(`device profile: ${field} ${what}`);
  };
  if (typeof value !== 'object' || value === null) fail('(root)', 'must be an object');
  const v = value as Record<string, unknown>;
  if (v.version !== 1) fail('version', `must be 1, got ${JSON.stringify(v.version)}`);
  if (typeof v.device !== 'string') fail('device', 'must be a string');
  if (v.source !== 'default' && v.source !== 'measured') fail('source', 'must be "default" or "measured"');
  if (v.measuredAt !== undefined && typeof v.measuredAt !== 'string') fail('measuredAt', 'must be a string');
  const positive = (field: string, x: unknown): number =>
    typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : fail(field, `must be a positive number, got ${JSON.stringify(x)}`);
  positive('denseGflops', v.denseGflops);
  positive('elementwiseGBps', v.elementwiseGBps);
  const list = (field: string): Record<string, unknown>[] => {
    const x = v[field];
    if (!Array.isArray(x) || x.length === 0) fail(field, 'must be a non-empty array');
    return x as Record<string, unknown>[];
  };
  if (v.precision !== undefined && v.precision !== 'fp32' && v.precision !== 'bf16' && v.precision !== 'fp16') fail('precision', 'must be "fp32", "bf16" or "fp16"');
  if (v.step !== undefined) {
    if (typeof v.step !== 'object' || v.step === null) fail('step', 'must be an object');
    const st = v.step as Record<string, unknown>;
    for (const f of ['attentionGflops', 'pointwiseNsPerElement', 'optimizerNsPerParam', 'dataNsPerValue']) positive(`step.${f}`, st[f]);
    if (st.measuredWith !== undefined && typeof st.measuredWith !== 'string') fail('step.measuredWith', 'must be a string');
  }
  if (v.denseShapes !== undefined) {
    if (!Array.isArray(v.denseShapes)) fail('denseShapes', 'must be an array');
    (v.denseShapes as Record<string, unknown>[]).forEach((p, i) => {
      positive(`denseShapes[${i}].in`, p?.in);
      positive(`denseShapes[${i}].out`, p?.out);
      positive(`denseShapes[${i}].gflops`, p?.gflops);
    });
  }
  if (v.blockSparseShapes !== undefined) {
    if (!Array.isArray(v.blockSparseShapes)) fail('blockSparseShapes', 'must be an array');
    (v.blockSparseShapes as Record<string, unknown>[]).forEach((p, i) => {
      for (const f of ['in', 'out', 'block', 'density', 'efficiency']) positive(`blockSparseShapes[${i}].${f}`, p?.[f]);
    });
  }
  if (v.lowRankShapes !== undefined) {
    if (!Array.isArray(v.lowRankShapes)) fail('lowRankShapes', 'must be an array');
    (v.lowRankShapes as Record<string, unknown>[]).forEach((p, i) => {
      for (const f of ['in', 'out', 'rank', 'nsPerRow']) positive(`lowRankShapes[${i}].${f}`, p?.[f]);
    });
  }
  list('blockSparse').forEach((p, i) => {
    positive(`blockSparse[${i}].block`, p.block);
    positive(`blockSparse[${i}].density`, p.density);
    positive(`blockSparse[${i}].efficiency`, p.efficiency);
  });
  list('lowRank').forEach((p, i) => {
    positive(`lowRank[${i}].rank`, p.rank);
    positive(`lowRank[${i}].efficiency`, p.efficiency);
  });
  return v as unknown as DeviceProfile;
}

/** Piecewise-linear interpolation over (x, y) points sorted by x, clamped at both ends. */
function interpolate(points: { x: number; y: number }[], x: number): number {
  if (x <= points[0].x) return points[0].y;
  for (let i = 1; i < points.length; i++) {
    if (x <= points[i].x) {
      const a = points[i - 1];
      const b = points[i];
      return a.y + ((b.y - a.y) * (x - a.x)) / (b.x - a.x);
    }
  }
  return points[points.length - 1].y;
}

type ByBlock = Map<number, { x: number; y: number }[]>;

interface Curves {
  byBlock: ByBlock;
  lowRank: { x: number; y: number }[];
  /** The measured shapes' own block-sparse curves, one entry per shape. */
  sparseShapes: (LayerShape & { byBlock: ByBlock })[];
  /** The low-rank term's per-shape points, by rank. */
  lowRankShapes: Map<number, LowRankShapePoint[]>;
}

/** Efficiency over density for each block size, sorted by density. */
function byBlockOf(points: BlockSparsePoint[]): ByBlock {
  const byBlock: ByBlock = new Map();
  for (const p of points) {
    const list = byBlock.get(p.block) ?? [];
    list.push({ x: p.density, y: p.efficiency });
    byBlock.set(p.block, list);
  }
  for (const list of byBlock.values()) list.sort((a, b) => a.x - b.x);
  return byBlock;
}

// Sorted interpolation curves and per-shape lookups, built once per profile object (the planner
// asks thousands of times).
const curveCache = new WeakMap<DeviceProfile, Curves>();

function curves(profile: DeviceProfile): Curves {
  let c = curveCache.get(profile);
  if (!c) {
    const lowRank = profile.lowRank.map((p) => ({ x: p.rank, y: p.efficiency })).sort((a, b) => a.x - b.x);
    const sparseShapes = [...groupBy(profile.blockSparseShapes ?? [], (p) => `${p.in}x${p.out}`).values()].map((points) => ({
      in: points[0].in,
      out: points[0].out,
      byBlock: byBlockOf(points),
    }));
    c = { byBlock: byBlockOf(profile.blockSparse), lowRank, sparseShapes, lowRankShapes: groupBy(profile.lowRankShapes ?? [], (p) => p.rank) };
    curveCache.set(profile, c);
  }
  return c;
}

export function blockSparseEfficiency(profile: DeviceProfile, block: number, density: number, shape?: LayerShape): number {
  const c = curves(profile);
  const byBlock = nearestShape(c.sparseShapes, shape)?.byBlock ?? c.byBlock;
  // Nearest measured block size on a log scale (16 is as far from 32 as 64 is).
  let nearest = -1;
  for (const b of byBlock.keys()) {
    if (nearest < 0 || Math.abs(Math.log2(b / block)) < Math.abs(Math.log2(nearest / block))) nearest = b;
  }
  return interpolate(byBlock.get(nearest)!, density);
}

export function lowRankEfficiency(profile: DeviceProfile, rank: number): number {
  return interpolate(curves(profile).lowRank, rank);
}

/** A layer's shape, when known: its dense rate is then the nearest measured shape's. */
export interface LayerShape {
  in: number;
  out: number;
}

/** The point measured at the shape nearest this one (log scale), if one is within a factor of 4 in in × out. */
function nearestShape<P extends LayerShape>(points: P[] | undefined, shape: LayerShape | undefined): P | undefined {
  if (!shape || !points?.length) return undefined;
  let best: P | undefined;
  let bestD = Infinity;
  for (const p of points) {
    const d = Math.abs(Math.log2(p.in / shape.in)) + Math.abs(Math.log2(p.out / shape.out));
    if (d < bestD) [best, bestD] = [p, d];
  }
  return bestD <= 2 ? best : undefined;
}

/** Dense GEMM GFLOP/s for a layer of this shape on the profile's device. */
export function denseGflops(profile: DeviceProfile, shape?: LayerShape): number {
  return nearestShape<DenseShapePoint>(profile.denseShapes, shape)?.gflops ?? profile.denseGflops;
}

/** Measured seconds per row of the low-rank term (with gate and lerp) at this rank near this shape, if any. */
function lowRankSecondsPerRow(profile: DeviceProfile, rank: number, shape?: LayerShape): number | undefined {
  const p = nearestShape(curves(profile).lowRankShapes.get(rank), shape);
  return p && shape ? (p.nsPerRow * 1e-9 * (shape.in + shape.out)) / (p.in + p.out) : undefined;
}

/** Estimated seconds per step of a dense layer. */
export function denseSeconds(cost: LayerCost, profile: DeviceProfile, shape?: LayerShape): number {
  return totalFlops(cost.flops) / (denseGflops(profile, shape) * 1e9);
}

/** Estimated seconds per step of a Pixelfly layer: each part at its own efficiency (relative to dense at the same shape). */
export function pixelflySeconds(cost: PixelflyCost, rank: number, profile: DeviceProfile, shape?: LayerShape): number {
  const rate = denseGflops(profile, shape) * 1e9;
  const { sparse, lowRank } = cost.parts;
  const sparseEff = blockSparseEfficiency(profile, cost.layout.block, cost.layout.density, shape);
  let t = totalFlops(sparse) / (rate * sparseEff);
  if (rank > 0) {
    const measured = lowRankSecondsPerRow(profile, rank, shape);
    if (measured !== undefined) return t + measured * cost.rows;
    t += totalFlops(lowRank) / (rate * lowRankEfficiency(profile, rank));
    // The gate and the lerp are bound by memory traffic, not by FMA throughput.
    t += cost.elementwiseBytes / (profile.elementwiseGBps * 1e9);
  }
  return t;
}

export function estimateSpeedup(dense: LayerCost, pixelfly: PixelflyCost, rank: number, profile: DeviceProfile = DEFAULT_PROFILE, shape?: LayerShape): number {
  return denseSeconds(dense, profile, shape) / pixelflySeconds(pixelfly, rank, profile, shape);
}
