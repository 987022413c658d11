// What the native kernels' tests compare against: product cases reaching every kernel path (block
// sizes, padding, odd M, empty block-rows/columns, deep dW chunks) and plain float64 references of
// the products (the dense product with the layout's mask applied).
import assert from 'node:assert/strict';
import { flatBlockButterflyLayout } from '../../core/layout';
import { buildBlockIndex, blockIndexFromMask, type BlockIndex } from '../../core/blockIndex';
import { kernelInfo, setKernelThreads } from '../../native/kernels';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function randomArray(n: number, rand: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rand() * 2 - 1;
  return a;
}

export function randomIndex(out: number, inF: number, block: number, keep: number, rand: () => number): BlockIndex {
  const rows = Math.ceil(out / block);
  const cols = Math.ceil(inF / block);
  const mask = new Uint8Array(rows * cols);
  for (let i = 0; i < mask.length; i++) mask[i] = rand() < keep ? 1 : 0;
  return blockIndexFromMask(mask, rows, cols, block);
}

/** A block-sparse weight's layout and logical shape, with fp32 block values. */
export interface RefWeight {
  index: BlockIndex;
  out: number;
  in: number;
  weights: Float32Array;
}

/** The out×in dense weight (float64) that the packed blocks represent, zero outside kept blocks. */
export function denseWeight(w: RefWeight): Float64Array {
  const { index, out, in: inF } = w;
  const b = index.block;
  const d = new Float64Array(out * inF);
  for (let r = 0; r < index.blockRows; r++) {
    for (let k = index.rowPtr[r]; k < index.rowPtr[r + 1]; k++) {
      const c = index.colIdx[k];
      for (let i = 0; i < b; i++) {
        for (let j = 0; j < b; j++) {
          const o = r * b + i;
          const q = c * b + j;
          if (o < out && q < inF) d[o * inF + q] = w.weights[k * b * b + i * b + j];
        }
      }
    }
  }
  return d;
}

/** y[m×out] = x·Wᵀ (+ bias), W given dense. */
export function refForward(wd: Float64Array, out: number, inF: number, x: Float32Array, m: number, bias?: Float32Array): Float64Array {
  const y = new Float64Array(m * out);
  for (let i = 0; i < m; i++)
    for (let o = 0; o < out; o++) {
      let s = bias ? bias[o] : 0;
      for (let q = 0; q < inF; q++) s += x[i * inF + q] * wd[o * inF + q];
      y[i * out + o] = s;
    }
  return y;
}

/** dx[m×in] = dy·W. */
export function refBackwardData(wd: Float64Array, out: number, inF: number, dy: Float32Array, m: number): Float64Array {
  const dx = new Float64Array(m * inF);
  for (let i = 0; i < m; i++)
    for (let q = 0; q < inF; q++) {
      let s = 0;
      for (let o = 0; o < out; o++) s += dy[i * out + o] * wd[o * inF + q];
      dx[i * inF + q] = s;
    }
  return dx;
}

/** dW at the kept blocks: the dense dyᵀ·x there; padded positions exactly 0. */
export function refBackwardWeight(index: BlockIndex, out: number, inF: number, dy: Float32Array, x: Float32Array, m: number): Float64Array {
  const b = index.block;
  const dw = new Float64Array(index.nnz * b * b);
  for (let r = 0; r < index.blockRows; r++)
    for (let k = index.rowPtr[r]; k < index.rowPtr[r + 1]; k++)
      for (let i = 0; i < b; i++)
        for (let j = 0; j < b; j++) {
          const o = r * b + i;
          const q = index.colIdx[k] * b + j;
          if (o >= out || q >= inF) continue;
          let s = 0;
          for (let t = 0; t < m; t++) s += dy[t * out + o] * x[t * inF + q];
          dw[k * b * b + i * b + j] = s;
        }
  return dw;
}

/** float64 reference of alpha·op(a)·op(b) + beta·c0 with row strides (ld = columns when packed). */
export function gemmRef(
  m: number, n: number, k: number, a: Float32Array, lda: number, b: Float32Array, ldb: number,
  o: { transA: boolean; transB: boolean; alpha: number; beta: number; c0?: Float32Array; ldc?: number },
): Float64Array {
  const ldc = o.ldc ?? n;
  const ref = new Float64Array(o.c0 ? o.c0.length : m * n);
  if (o.c0) for (let i = 0; i < ref.length; i++) ref[i] = o.c0[i];
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let q = 0; q < k; q++) s += (o.transA ? a[q * lda + i] : a[i * lda + q]) * (o.transB ? b[j * ldb + q] : b[q * ldb + j]);
      ref[i * ldc + j] = o.alpha * s + (o.c0 ? o.beta * o.c0[i * ldc + j] : 0);
    }
  return ref;
}

/** f(m, n, k, transA, transB) for every shape, with each operand plain and transposed. */
export async function forEachGemm(
  shapes: Array<[number, number, number]>, f: (m: number, n: number, k: number, transA: boolean, transB: boolean) => Promise<void>,
): Promise<void> {
  for (const [m, n, k] of shapes) for (const transA of [false, true]) for (const transB of [false, true]) await f(m, n, k, transA, transB);
}

export function assertClose(actual: Float32Array, expected: Float64Array | Float32Array, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / (1 + Math.abs(expected[i]));
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  assert.ok(worst <= tol, `${what}: worst relative error ${worst} at ${at} (got ${actual[at]}, expected ${expected[at]})`);
}

export interface Case {
  m: number;
  out: number;
  in: number;
  index: BlockIndex;
  label: string;
}

export function cases(): Case[] {
  const rand = rng(7);
  const list: Case[] = [];
  for (const block of [16, 32, 64]) {
    // A real Pixelfly layout (square, padded sizes are multiples of the butterfly grid).
    const bl = flatBlockButterflyLayout(4 * block, 8 * block, { block, butterflySize: 4, nFactors: 2 });
    list.push({ m: 37, out: 4 * block, in: 8 * block, index: buildBlockIndex(bl), label: `butterfly b${block}` });
    // Random masks with odd sizes: padding inside the last block-row/column, odd M.
    list.push({ m: 19, out: 3 * block - 5, in: 2 * block + 3, index: randomIndex(3 * block - 5, 2 * block + 3, block, 0.5, rand), label: `random odd b${block}` });
    list.push({ m: 1, out: block + 1, in: 3 * block - 1, index: randomIndex(block + 1, 3 * block - 1, block, 0.6, rand), label: `random m=1 b${block}` });
  }
  // Deep enough for dW to run several row chunks (the last one partial), with padding.
  const deep = flatBlockButterflyLayout(3 * 32 + 7, 4 * 32 - 9, { block: 32, butterflySize: 4, nFactors: 2 });
  list.push({ m: 301, out: 3 * 32 + 7, in: 4 * 32 - 9, index: buildBlockIndex(deep), label: 'butterfly deep b32' });
  // Empty rows/columns must still define their outputs.
  list.push({ m: 33, out: 64, in: 96, index: blockIndexFromMask(new Uint8Array([1, 0, 0, 0, 0, 0]), 2, 3, 32), label: 'mostly empty' });
  return list;
}

/** Runs the products on one thread and on every hardware thread (at least two): the results must be bitwise equal. */
export async function assertThreadCountIndependent(run: () => Promise<ArrayLike<number>[]>): Promise<void> {
  const info = kernelInfo();
  try {
    setKernelThreads(1);
    const one = await run();
    setKernelThreads(Math.max(2, info.maxThreads));
    const many = await run();
    one.forEach((r, i) => assert.deepEqual(many[i], r, `product ${i}`));
  } finally {
    setKernelThreads(info.threads);
  }
}
