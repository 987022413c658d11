/**
 * Pixelfly attention: the flat block butterfly applied to the T×T attention score matrix.
 *
 * Which score blocks a head computes is a block layout over the (query, key) grid, built exactly as
 * the authors' `FlatBlockButterflySparsityConfig(butterfly_size, n_factors, block, global_size)
 * .make_layout(T_padded, T_padded)` (core/layout.ts); a causal model keeps only the blocks on or
 * below the diagonal (inside a diagonal block the kernels mask keys after the query). Dense
 * attention is the same computation over every block (the lower triangle when causal), so one
 * kernel serves both and "density" compares like with like. The method and its choices are
 * documented in native/src/kernels/ATTENTION.md.
 *
 * Pure TypeScript (no Node imports), like the rest of core/.
 */
import { PixelflyConfigError } from './errors';
import { flatBlockButterflyLayout, padTo, type BlockLayout } from './layout';
import type { ProductFlops } from './pixelflyLayer';
import { mulberry32, normals } from './random';

/** Score-block sizes the attention kernels implement. */
export const ATTENTION_BLOCK_SIZES: readonly number[] = [16, 32, 64, 128];

/** Block of the dense attention layout (every block kept): the kernels' most efficient tile. */
export const DENSE_ATTENTION_BLOCK = 64;

export interface DenseAttention {
  kind: 'dense';
}

export interface PixelflyAttention {
  kind: 'pixelfly';
  /** Score block: queries × keys per kept tile. */
  block: number;
  butterflySize: number;
  nFactors: number;
  /** The first `globalSize` tokens attend to, and are attended by, every token (the authors' global_size). */
  globalSize?: number;
  /**
   * The low-rank term (ATTENTION.md (A4)): this many Performer features (even) estimate the scores of
   * the blocks the layout drops, mixed with the sparse part by one normaliser, as the authors'
   * sparse + low-rank attention. Absent or 0: the sparse part alone. The engine runs it on the CPU.
   */
  features?: number;
}

export type AttentionSpec = DenseAttention | PixelflyAttention;

export const ATTENTION_KINDS: readonly AttentionSpec['kind'][] = ['dense', 'pixelfly'];

/** A head's score layout: the block mask over the padded T×T grid, and its cost relative to dense. */
export interface AttentionLayout {
  readonly T: number;
  readonly causal: boolean;
  readonly layout: BlockLayout;
  /**
   * Kept blocks / the blocks dense attention computes on the same grid (all of them, or the lower
   * triangle with the diagonal when causal): the fraction of dense attention's work this layout does.
   */
  readonly density: number;
}

/** Blocks dense attention computes on an n×n block grid. */
function denseBlocks(n: number, causal: boolean): number {
  return causal ? (n * (n + 1)) / 2 : n * n;
}

function withCausalCut(layout: BlockLayout, causal: boolean): BlockLayout {
  if (!causal) return layout;
  const mask = layout.mask.slice();
  let nnz = 0;
  for (let r = 0; r < layout.blockRows; r++) {
    for (let c = 0; c < layout.blockCols; c++) {
      if (c > r) mask[r * layout.blockCols + c] = 0;
      nnz += mask[r * layout.blockCols + c];
    }
  }
  return { ...layout, mask, nnzBlocks: nnz, density: nnz / (layout.blockRows * layout.blockCols) };
}

/**
 * The layout of `spec` over T tokens. Throws a PixelflyConfigError naming the parameter (prefixed
 * `attention.`) when the butterfly cannot be stretched over T padded to whole blocks.
 */
export function attentionLayout(T: number, spec: AttentionSpec, causal: boolean): AttentionLayout {
  if (!Number.isInteger(T) || T < 1) throw new PixelflyConfigError('attention.T', `must be a positive integer, got ${T}`);
  let layout: BlockLayout;
  if (spec.kind === 'dense') {
    const block = DENSE_ATTENTION_BLOCK;
    const n = padTo(T, block) / block;
    layout = {
      outFeatures: T, inFeatures: T, outPadded: n * block, inPadded: n * block, block, blockRows: n, blockCols: n,
      mask: new Uint8Array(n * n).fill(1), nnzBlocks: n * n, density: 1,
      params: { block, butterflySize: 1, nFactors: 0, globalSize: 0, shuffle: false },
    };
  } else {
    if (!ATTENTION_BLOCK_SIZES.includes(spec.block)) {
      throw new PixelflyConfigError('attention.block', `must be one of ${ATTENTION_BLOCK_SIZES.join(', ')}, got ${spec.block}`);
    }
    try {
      layout = flatBlockButterflyLayout(T, T, {
        block: spec.block, butterflySize: spec.butterflySize, nFactors: spec.nFactors, globalSize: spec.globalSize ?? 0,
      });
    } catch (e) {
      if (!(e instanceof PixelflyConfigError)) throw e;
      // The layout's messages speak of a weight's out/in features; here both are the context.
      const message = e.message.slice(e.param.length + 2).replace(/(out|in)_features/g, 'the context');
      throw new PixelflyConfigError(`attention.${e.param}`, message);
    }
  }
  const cut = withCausalCut(layout, causal);
  return { T, causal, layout: cut, density: cut.nnzBlocks / denseBlocks(cut.blockRows, causal) };
}

/**
 * Training FLOPs of one attention core (QKᵀ, softmax, ·V over all heads; the qkv and output
 * projections are matmul layers of their own) per sample: forward 4·T²·d for d = heads × head
 * dimension, halved when causal, times the layout's density; backward twice the forward (dV, dP,
 * dQ, dK), as for a matmul. The flash-style kernels also recompute the scores in backward (another
 * half forward), which is an implementation cost, not counted here.
 */
export function attentionCoreFlops(T: number, dim: number, causal: boolean, density = 1): ProductFlops {
  const forward = 4 * T * T * dim * (causal ? 0.5 : 1) * density;
  return { forward, backward: 2 * forward };
}

/** Most Performer features a low-rank term may take (the authors use at most a few hundred). */
export const MAX_ATTENTION_FEATURES = 1024;

/** The Performer features of a layout's low-rank term (ATTENTION.md (A4)); 0 when it has none. */
export function lowRankFeatures(spec: AttentionSpec | undefined): number {
  return spec?.kind === 'pixelfly' ? spec.features ?? 0 : 0;
}

/**
 * Training FLOPs of the low-rank term of one attention core per sample (ATTENTION.md (A4)): the
 * features of q and k (T·m·d multiply-adds), the key blocks' sums φ(k)·vᵀ and each query's
 * φ(q)·Σ (T·m·d each): forward 6·T·m·d, backward twice that.
 */
export function lowRankAttentionFlops(T: number, dim: number, features: number): ProductFlops {
  const forward = 6 * T * features * dim;
  return { forward, backward: 2 * forward };
}

/**
 * The projections of `count` attention cores' low-rank terms, drawn once from `seed` (the model's):
 * per core the m/2 rows ω_r of a Gaussian orthogonal random matrix (head_dim each), the authors'
 * `gaussian_orthogonal_random_matrix` with scaling 0 — blocks of head_dim orthonormal rows (Gram–
 * Schmidt of Gaussian rows), each row scaled by the norm of a Gaussian vector. [count][m/2][head_dim].
 */
export function performerProjection(count: number, features: number, headDim: number, seed: number): Float32Array {
  const half = features / 2;
  const out = new Float32Array(count * half * headDim);
  const normal = normals(mulberry32((seed ^ 0x5eed1234) >>> 0));
  for (let l = 0; l < count; l++) {
    for (let r0 = 0; r0 < half; r0 += headDim) {
      const rows: Float64Array[] = [];
      for (let r = r0; r < Math.min(half, r0 + headDim); r++) {
        let v: Float64Array;
        for (;;) {
          v = Float64Array.from({ length: headDim }, normal);
          for (const u of rows) {
            let dot = 0;
            for (let c = 0; c < headDim; c++) dot += v[c] * u[c];
            for (let c = 0; c < headDim; c++) v[c] -= dot * u[c];
          }
          const norm = Math.hypot(...v);
          if (norm > 1e-6) {
            for (let c = 0; c < headDim; c++) v[c] /= norm;
            break;
          }
        }
        rows.push(v);
      }
      for (const [i, u] of rows.entries()) {
        const scale = Math.hypot(...Array.from({ length: headDim }, normal));
        out.set(Array.from(u, (x) => x * scale), (l * half + r0 + i) * headDim);
      }
    }
  }
  return out;
}

/**
 * How fast the block-sparse kernels run per kept score block, relative to dense attention's own
 * blocks (a row with few kept blocks amortises its packing and online-softmax rescaling over less
 * work): the bar bench:attention holds Pixelfly attention to ("≥ 0.7/density × as fast as our dense
 * attention"), so an estimate built on it is one the kernels are measured against.
 */
export const SPARSE_ATTENTION_EFFICIENCY = 0.7;
/** Pixelfly attention is suggested only when the whole step is estimated at least this much faster. */
export const ATTENTION_MIN_STEP_GAIN = 1.05;

/**
 * The layout the analysis suggests for a context of T tokens (what bench:attention measures): 64×64
 * score blocks (the kernels' most efficient tile), one butterfly cell per block — the largest power
 * of two that fits the blocks and divides the padded context — and all of its factors.
 */
export function suggestedAttention(T: number): PixelflyAttention {
  const block = DENSE_ATTENTION_BLOCK;
  const padded = padTo(T, block);
  let butterflySize = 2 ** Math.max(1, Math.floor(Math.log2(padded / block)));
  while (butterflySize > 2 && padded % butterflySize !== 0) butterflySize /= 2;
  return { kind: 'pixelfly', block, butterflySize, nFactors: Math.log2(butterflySize) };
}

export interface AttentionAdvice {
  /** The layout to use, when Pixelfly attention pays; absent when the core should stay dense. */
  suggest?: PixelflyAttention;
  /** Of the suggested layout: the fraction of dense attention's score blocks it computes. */
  density: number;
  /** Estimated speedup of the attention core alone: SPARSE_ATTENTION_EFFICIENCY / density. */
  coreSpeedup: number;
  /** Estimated speedup of the whole step, given the core's share of the step's time. */
  stepSpeedup: number;
  /** One sentence: what to do and why, with the numbers. */
  reason: string;
}

function pct(x: number): string {
  return `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
}

/**
 * Whether an attention core of `queries` queries over `keys` keys pays to become Pixelfly attention:
 * `share` is the core's share of the step's dense time (the planner's cost model). The core's
 * speedup is SPARSE_ATTENTION_EFFICIENCY / density of the suggested layout; the step's follows from
 * the share (Amdahl). Short contexts keep most blocks (no gain), and where the core is a small
 * share of the step the gain is not worth changing the model's attention.
 */
export function adviseAttention(queries: number, keys: number, causal: boolean, share: number): AttentionAdvice {
  const none = { density: 1, coreSpeedup: 1, stepSpeedup: 1 };
  if (keys !== queries) {
    return {
      ...none,
      reason: `Kept dense: each query sees ${keys} of ${queries} keys (windowed or cross attention); Pixelfly attention's butterfly is laid over a square score matrix of self-attention`,
    };
  }
  const spec = suggestedAttention(queries);
  const { density } = attentionLayout(queries, spec, causal);
  const coreSpeedup = SPARSE_ATTENTION_EFFICIENCY / density;
  const stepSpeedup = 1 / (1 - share + share / coreSpeedup);
  const layout = `a flat butterfly (size ${spec.butterflySize}, ${spec.nFactors} factor${spec.nFactors > 1 ? 's' : ''}) on ${spec.block}×${spec.block} score blocks`;
  if (coreSpeedup < 1.1) {
    return {
      ...none,
      density,
      coreSpeedup,
      stepSpeedup,
      reason: `Kept dense: at ${queries} tokens ${layout} keeps ${pct(density)} of the score blocks, too many for block-sparse attention to beat dense (it pays below about ${pct(SPARSE_ATTENTION_EFFICIENCY / 1.1)}, at longer contexts)`,
    };
  }
  if (stepSpeedup < ATTENTION_MIN_STEP_GAIN) {
    return {
      density,
      coreSpeedup,
      stepSpeedup,
      reason: `Kept dense: Pixelfly attention (${layout}, ${pct(density)} of the score blocks) would run this core an est. ${coreSpeedup.toFixed(1)}× faster, but the core is only ${pct(share)} of the step: ≈${stepSpeedup.toFixed(2)}× overall, not worth changing the model's attention`,
    };
  }
  return {
    suggest: spec,
    density,
    coreSpeedup,
    stepSpeedup,
    reason:
      `Pixelfly attention pays here: at ${queries} tokens ${layout} keeps ${pct(density)} of the score blocks${causal ? ' of the causal triangle' : ''}, ` +
      `an est. ${coreSpeedup.toFixed(1)}× faster attention core, which is ${pct(share)} of the step: ≈${stepSpeedup.toFixed(2)}× overall. ` +
      `Spec: "attention": {"kind": "pixelfly", "block": ${spec.block}, "butterflySize": ${spec.butterflySize}, "nFactors": ${spec.nFactors}}; ` +
      `PyTorch: pixelfly_torch.PixelflyAttention(head_dim, ${queries}${causal ? ', causal=True' : ''})`,
  };
}
