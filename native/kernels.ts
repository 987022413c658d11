/**
 * Typed, promise-based access to the native Pixelfly kernels.
 *
 * Shapes: activations are UNPADDED row-major Float32Arrays (x: m×in, y/dy: m×out); the weight is
 * out×in stored as packed blocks [nnz][block][block] in core's block order (core/blockIndex.ts).
 * Padding up to whole blocks happens inside the kernels. Every call checks its arguments and
 * rejects with an Error naming the bad one; outputs are allocated unless the caller passes a
 * buffer to reuse (and `accumulate: true` adds into it instead of overwriting).
 */
import type { BlockIndex } from '../core/blockIndex';
import { loadAddon, type Isa, type KernelInfo, type NativeLayout } from './addon';

export type { Isa, KernelInfo } from './addon';

/** A block-sparse weight: the layout's index, the logical shape, and (for products reading W) its blocks. */
export interface BsrShape {
  index: BlockIndex;
  out: number;
  in: number;
}

export interface BsrWeight extends BsrShape {
  /** [nnz][block][block] */
  weights: Float32Array;
}

export interface OutputOptions {
  /** Buffer to write into (must have the output's exact length). */
  into?: Float32Array;
  /** Add to `into` instead of overwriting it. */
  accumulate?: boolean;
}

function kernels() {
  return loadAddon().kernels;
}

function nativeLayout(index: BlockIndex): NativeLayout {
  const { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock } = index;
  return { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock };
}

function output(name: string, length: number, opts: OutputOptions | undefined): Float32Array {
  if (opts?.accumulate && !opts.into) throw new TypeError(`${name}: accumulate needs an 'into' buffer to add to`);
  return opts?.into ?? new Float32Array(length);
}

function rows(name: string, m: number): number {
  if (!Number.isInteger(m) || m < 0) throw new RangeError(`${name}: m must be an integer >= 0, got ${m}`);
  return m;
}

export function kernelInfo(): KernelInfo {
  return kernels().info();
}

/** Worker threads used inside each kernel call. */
export function setKernelThreads(n: number): void {
  kernels().setThreads(n);
}

/** Forces an instruction-set path (tests, benchmarks); throws if this CPU lacks it. */
export function forceIsa(isa: Isa): void {
  kernels().forceIsa(isa);
}

/**
 * A zero-filled Float32Array with 64-byte aligned data. Products that write an output bigger than
 * the caches into aligned memory (ld a multiple of 16) use non-temporal stores, which skip reading
 * each line before writing it; Node's own ArrayBuffers are only 16-byte aligned.
 */
export function alignedFloat32Array(length: number): Float32Array {
  return kernels().alignedFloat32Array(length);
}

/** '' when the index is consistent, else what is wrong. */
export function validateBlockIndex(index: BlockIndex): string {
  return kernels().validateLayout(nativeLayout(index));
}

/** y[m×out] = x[m×in]·Wᵀ (+ bias). */
export async function bsrForward(
  w: BsrWeight,
  x: Float32Array,
  m: number,
  opts?: OutputOptions & { bias?: Float32Array },
): Promise<Float32Array> {
  const y = output('bsrForward', rows('bsrForward', m) * w.out, opts);
  await kernels().bsrForward({
    layout: nativeLayout(w.index),
    out: w.out,
    in: w.in,
    m,
    weights: w.weights,
    x,
    y,
    bias: opts?.bias,
    accumulate: opts?.accumulate ?? false,
  });
  return y;
}

/** dx[m×in] = dy[m×out]·W. */
export async function bsrBackwardData(w: BsrWeight, dy: Float32Array, m: number, opts?: OutputOptions): Promise<Float32Array> {
  const dx = output('bsrBackwardData', rows('bsrBackwardData', m) * w.in, opts);
  await kernels().bsrBackwardData({
    layout: nativeLayout(w.index),
    out: w.out,
    in: w.in,
    m,
    weights: w.weights,
    dy,
    dx,
    accumulate: opts?.accumulate ?? false,
  });
  return dx;
}

/** dW[nnz][block][block] = (dyᵀ·x) at the kept blocks only. */
export async function bsrBackwardWeight(
  shape: BsrShape,
  dy: Float32Array,
  x: Float32Array,
  m: number,
  opts?: OutputOptions,
): Promise<Float32Array> {
  const { block, nnz } = shape.index;
  const dw = output('bsrBackwardWeight', nnz * block * block, opts);
  await kernels().bsrBackwardWeight({
    layout: nativeLayout(shape.index),
    out: shape.out,
    in: shape.in,
    m: rows('bsrBackwardWeight', m),
    dy,
    x,
    dw,
    accumulate: opts?.accumulate ?? false,
  });
  return dw;
}

/** db[n] = column sums of dy[m×n]. */
export async function biasGrad(dy: Float32Array, m: number, n: number, opts?: OutputOptions): Promise<Float32Array> {
  const db = output('biasGrad', n, opts);
  await kernels().biasGrad({ m: rows('biasGrad', m), n, dy, db, accumulate: opts?.accumulate ?? false });
  return db;
}

export interface GemmOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Scales `into` before adding (default 0: overwrite). */
  beta?: number;
  into?: Float32Array;
}

/** c[m×n] = alpha·op(a)·op(b) + beta·c, row-major; op(a) is m×k, op(b) is k×n. */
export async function gemm(a: Float32Array, b: Float32Array, m: number, n: number, k: number, opts?: GemmOptions): Promise<Float32Array> {
  if ((opts?.beta ?? 0) !== 0 && !opts?.into) throw new TypeError('gemm: beta != 0 needs an \'into\' buffer');
  const c = opts?.into ?? new Float32Array(rows('gemm', m) * n);
  await kernels().gemm({ transA: opts?.transA, transB: opts?.transB, m, n, k, alpha: opts?.alpha, beta: opts?.beta, a, b, c });
  return c;
}

/** Dense Linear layer (W is out×in, as nn.Linear): y[m×out] = x[m×in]·Wᵀ. */
export function denseForward(x: Float32Array, w: Float32Array, m: number, inF: number, out: number, opts?: OutputOptions) {
  return gemm(x, w, m, out, inF, { transB: true, into: opts?.into, beta: opts?.accumulate ? 1 : 0 });
}

/** dx[m×in] = dy[m×out]·W */
export function denseBackwardData(dy: Float32Array, w: Float32Array, m: number, inF: number, out: number, opts?: OutputOptions) {
  return gemm(dy, w, m, inF, out, { into: opts?.into, beta: opts?.accumulate ? 1 : 0 });
}

/** dW[out×in] = dyᵀ·x */
export function denseBackwardWeight(dy: Float32Array, x: Float32Array, m: number, inF: number, out: number, opts?: OutputOptions) {
  return gemm(dy, x, out, inF, m, { transA: true, into: opts?.into, beta: opts?.accumulate ? 1 : 0 });
}
