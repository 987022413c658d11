/**
 * Typed, promise-based access to the native attention cores (native/src/kernels/attention.h): the
 * forward and backward of softmax attention over the kept score blocks of a layout (core/attention.ts
 * builds Pixelfly and dense ones), and their plain reference.
 *
 * Tensors are contiguous [batch][T][heads][headDim] Float32Arrays (tokens-major, as a transformer's
 * activations); lse, each query's log-sum-exp of its scaled scores, is [batch][heads][T].
 */
import type { BlockIndex } from '../core/blockIndex';
import { loadAddon } from './addon';

export interface AttentionProblem {
  /** The score layout's block index (core/attention.ts → buildBlockIndex). */
  index: BlockIndex;
  batch: number;
  heads: number;
  T: number;
  headDim: number;
  causal: boolean;
  /** Softmax scale, 1/√headDim by default. */
  scale?: number;
  /** Kernel threads for this call (default: the kernels' setting). */
  threads?: number;
  /** Run the plain reference (scalar loops, float64 sums) instead of the kernels. */
  reference?: boolean;
}

export interface AttentionInputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

function native(p: AttentionProblem) {
  const { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock } = p.index;
  return {
    layout: { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock },
    batch: p.batch, heads: p.heads, T: p.T, headDim: p.headDim, causal: p.causal,
    scale: p.scale, threads: p.threads, reference: p.reference ?? false,
  };
}

function tensorLength(p: AttentionProblem): number {
  return p.batch * p.T * p.heads * p.headDim;
}

/**
 * o = softmax(scale·q·kᵀ over the kept scores)·v, and each query's log-sum-exp. `into` reuses output
 * buffers (overwritten): a loop that allocates fresh ones pays their zeroing and page faults each call.
 */
export async function attentionForward(
  p: AttentionProblem,
  x: AttentionInputs,
  into?: { o: Float32Array; lse: Float32Array },
): Promise<{ o: Float32Array; lse: Float32Array }> {
  const o = into?.o ?? new Float32Array(tensorLength(p));
  const lse = into?.lse ?? new Float32Array(p.batch * p.heads * p.T);
  await loadAddon().attention.forward({ ...native(p), q: x.q, k: x.k, v: x.v, o, lse });
  return { o, lse };
}

/** Gradients of the inputs from dO, given the forward's o and lse (the reference recomputes them). */
export async function attentionBackward(
  p: AttentionProblem,
  x: AttentionInputs & { dO: Float32Array; o?: Float32Array; lse?: Float32Array },
  into?: { dq: Float32Array; dk: Float32Array; dv: Float32Array },
): Promise<{ dq: Float32Array; dk: Float32Array; dv: Float32Array }> {
  const n = tensorLength(p);
  const dq = into?.dq ?? new Float32Array(n);
  const dk = into?.dk ?? new Float32Array(n);
  const dv = into?.dv ?? new Float32Array(n);
  await loadAddon().attention.backward({ ...native(p), q: x.q, k: x.k, v: x.v, o: x.o, lse: x.lse, dO: x.dO, dq, dk, dv });
  return { dq, dk, dv };
}

/** Score block sizes the native kernels implement. */
export function attentionBlocks(): number[] {
  return loadAddon().attention.blocks;
}
