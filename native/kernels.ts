/**
 * Typed, promise-based access to the native Pixelfly kernels.
 *
 * Shapes: activations are UNPADDED row-major arrays (x: m×in, y/dy: m×out); the weight is out×in
 * stored as packed blocks [nnz][block][block] in core's block order (core/blockIndex.ts).
 * Padding up to whole blocks happens inside the kernels. Every call checks its arguments and
 * rejects with an Error naming the bad one; outputs are allocated (fp32) unless the caller passes a
 * buffer to reuse (and `accumulate: true` adds into it instead of overwriting).
 *
 * Precision: arrays are Float32Array (fp32) or Uint16Array (bf16 bits, see toBf16). A product is
 * a bf16 product (inputs rounded to bf16, fp32 accumulation) when `precision: 'bf16'` or when any
 * input is bf16; a bf16 output is rounded once from the fp32 result (native/README.md).
 */
import type { BlockIndex } from '../core/blockIndex';
import { loadAddon, type Isa, type KernelArray, type KernelInfo, type KernelPrecision, type NativeLayout } from './addon';

export type { Bf16Path, Isa, KernelArray, KernelInfo, KernelPrecision } from './addon';

/** A block-sparse weight: the layout's index, the logical shape, and (for products reading W) its blocks. */
export interface BsrShape {
  index: BlockIndex;
  out: number;
  in: number;
}

export interface BsrWeight extends BsrShape {
  /** [nnz][block][block] */
  weights: KernelArray;
}

export interface OutputOptions<T extends KernelArray = KernelArray> {
  /** Buffer to write into (must have the output's exact length): fp32, or bf16 bits. */
  into?: T;
  /** Add to `into` instead of overwriting it. */
  accumulate?: boolean;
  /** 'bf16' rounds fp32 inputs to bf16 (fp32 accumulation); bf16 inputs imply it. */
  precision?: KernelPrecision;
}

function kernels() {
  return loadAddon().kernels;
}

function nativeLayout(index: BlockIndex): NativeLayout {
  const { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock } = index;
  return { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock };
}

function output<T extends KernelArray>(name: string, length: number, opts: OutputOptions<T> | undefined): T {
  if (opts?.accumulate && !opts.into) throw new TypeError(`${name}: accumulate needs an 'into' buffer to add to`);
  return opts?.into ?? (new Float32Array(length) as T);
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

/** fp32 → bf16 bits (round to nearest even, as the kernels round their inputs). */
export function toBf16(a: Float32Array): Uint16Array {
  return kernels().toBf16(a);
}

/** bf16 bits → fp32 (exact). */
export function toF32(a: Uint16Array): Float32Array {
  return kernels().toF32(a);
}

/** '' when the index is consistent, else what is wrong. */
export function validateBlockIndex(index: BlockIndex): string {
  return kernels().validateLayout(nativeLayout(index));
}

/** y[m×out] = x[m×in]·Wᵀ (+ bias). */
export async function bsrForward<T extends KernelArray = Float32Array>(
  w: BsrWeight,
  x: KernelArray,
  m: number,
  opts?: OutputOptions<T> & { bias?: Float32Array },
): Promise<T> {
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
    precision: opts?.precision,
  });
  return y;
}

/** dx[m×in] = dy[m×out]·W. */
export async function bsrBackwardData<T extends KernelArray = Float32Array>(w: BsrWeight, dy: KernelArray, m: number, opts?: OutputOptions<T>): Promise<T> {
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
    precision: opts?.precision,
  });
  return dx;
}

/**
 * dW[nnz][block][block] = (dyᵀ·x) at the kept blocks only. With `biasGradInto` (length out), the
 * bias gradient too — dy's column sums, as biasGrad gives — taken while dW reads dy (written, or
 * added with `accumulate`, like dW).
 */
export async function bsrBackwardWeight<T extends KernelArray = Float32Array>(
  shape: BsrShape,
  dy: KernelArray,
  x: KernelArray,
  m: number,
  opts?: OutputOptions<T> & { biasGradInto?: Float32Array },
): Promise<T> {
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
    db: opts?.biasGradInto,
    accumulate: opts?.accumulate ?? false,
    precision: opts?.precision,
  });
  return dw;
}

/** db[n] = column sums of dy[m×n]. */
export async function biasGrad<T extends KernelArray = Float32Array>(dy: KernelArray, m: number, n: number, opts?: OutputOptions<T>): Promise<T> {
  const db = output('biasGrad', n, opts);
  await kernels().biasGrad({ m: rows('biasGrad', m), n, dy, db, accumulate: opts?.accumulate ?? false });
  return db;
}

export interface GemmOptions<T extends KernelArray = KernelArray> {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Scales `into` before adding (default 0: overwrite). */
  beta?: number;
  into?: T;
  precision?: KernelPrecision;
}

/** c[m×n] = alpha·op(a)·op(b) + beta·c, row-major; op(a) is m×k, op(b) is k×n. */
export async function gemm<T extends KernelArray = Float32Array>(a: KernelArray, b: KernelArray, m: number, n: number, k: number, opts?: GemmOptions<T>): Promise<T> {
  if ((opts?.beta ?? 0) !== 0 && !opts?.into) throw new TypeError('gemm: beta != 0 needs an \'into\' buffer');
  const c = opts?.into ?? (new Float32Array(rows('gemm', m) * n) as T);
  await kernels().gemm({ transA: opts?.transA, transB: opts?.transB, m, n, k, alpha: opts?.alpha, beta: opts?.beta, a, b, c, precision: opts?.precision });
  return c;
}

/** Dense Linear layer (W is out×in, as nn.Linear): y[m×out] = x[m×in]·Wᵀ. */
export function denseForward<T extends KernelArray = Float32Array>(x: KernelArray, w: KernelArray, m: number, inF: number, out: number, opts?: OutputOptions<T>) {
  return gemm<T>(x, w, m, out, inF, { transB: true, into: opts?.into, beta: opts?.accumulate ? 1 : 0, precision: opts?.precision });
}

/** dx[m×in] = dy[m×out]·W */
export function denseBackwardData<T extends KernelArray = Float32Array>(dy: KernelArray, w: KernelArray, m: number, inF: number, out: number, opts?: OutputOptions<T>) {
  return gemm<T>(dy, w, m, inF, out, { into: opts?.into, beta: opts?.accumulate ? 1 : 0, precision: opts?.precision });
}

/** dW[out×in] = dyᵀ·x */
export function denseBackwardWeight<T extends KernelArray = Float32Array>(dy: KernelArray, x: KernelArray, m: number, inF: number, out: number, opts?: OutputOptions<T>) {
  return gemm<T>(dy, x, out, inF, m, { transA: true, into: opts?.into, beta: opts?.accumulate ? 1 : 0, precision: opts?.precision });
}
