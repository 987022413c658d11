// bf16 products (inputs rounded to bf16, fp32 accumulation) against the float64 reference fed the
// same rounded inputs (reference.ts), on every instruction-set path this CPU has: natively where it
// has AVX512-BF16 or AMX, on the fp32 fallback (rounded copies, fp32 kernels) elsewhere. Inputs are
// stored bf16 (Uint16Array) or fp32 with precision 'bf16' (rounded while packed: bitwise the same
// product), outputs fp32 or bf16 (rounded once). The rounding itself is checked against a JS model
// of VCVTNEPS2BF16. The AMX path's layout logic is checked on an emulation of its tile instructions
// (amxEmulation.test.ts) where the CPU has no AMX.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flatBlockButterflyLayout } from '../../core/layout';
import { buildBlockIndex } from '../../core/blockIndex';
import {
  biasGrad,
  bsrBackwardData,
  bsrBackwardWeight,
  bsrForward,
  forceIsa,
  gemm,
  kernelInfo,
  toBf16,
  toF32,
  type Isa,
} from '../../native/kernels';
import { assertClose, assertThreadCountIndependent, cases, denseWeight, forEachGemm, gemmRef, randomArray, refBackwardData, refBackwardWeight, refForward, rng, type Case } from './reference';

const info = kernelInfo();

/** fp32 → bf16 bits as VCVTNEPS2BF16 rounds: nearest even, NaN quieted, denormals flushed to ±0. */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  if ((u & 0x7f800000) === 0) return (u >>> 16) & 0x8000;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return Math.floor((u + 0x7fff + ((u >>> 16) & 1)) / 65536) & 0xffff;
}

/** The fp32 values a bf16 array holds. */
const widened = (a: Uint16Array) => toF32(a);
/** bf16 rounding of an fp32 array, as fp32 values. */
const rounded = (a: Float32Array) => toF32(toBf16(a));

/** Worst error of a bf16 output: one rounding of the fp32 result (2^-8 relative) on top of the product's own. */
const BF16_OUTPUT_TOL = 8e-3;

async function onIsa(isa: Isa, body: () => Promise<void>): Promise<void> {
  forceIsa(isa);
  try {
    assert.equal(kernelInfo().isa, isa);
    await body();
  } finally {
    forceIsa(info.bestIsa);
  }
}

test('bf16 paths: reported as they are chosen', () => {
  const native = info.supportedIsas.filter((i) => i === 'amx' || i === 'avx512bf16');
  assert.equal(info.bf16, native.length ? native.includes('amx') ? 'amx' : 'avx512bf16' : 'fp32-fallback');
  if (info.supportedIsas.includes('amx')) assert.equal(info.amxUnavailable, undefined);
  else assert.ok(info.amxUnavailable && info.amxUnavailable.length > 10, 'says why AMX is not used');
  if (!native.length) console.log(`# this CPU has no bf16 instructions: bf16 products run on the fp32 fallback only`);
});

// The fallback (rounded copies through the fp32 kernels) is the same code in dispatch.cc on every
// ISA without bf16 instructions, so its products are checked on the best of those; every ISA's own
// conversion routine is checked.
const isNative = (isa: Isa) => isa === 'amx' || isa === 'avx512bf16';
const fallbacks = (info.supportedIsas as Isa[]).filter((i) => !isNative(i));
const productIsas = [...(info.supportedIsas as Isa[]).filter(isNative), fallbacks[fallbacks.length - 1]];

for (const isa of info.supportedIsas as Isa[]) {
  test(`${isa}: fp32 → bf16 rounding equals VCVTNEPS2BF16's (ties to even, NaN, ±Inf, denormals, overflow)`, async () => {
    await onIsa(isa, async () => {
      const rand = rng(3);
      const specials = [0, -0, 1, -1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 3.4028234663852886e38, -3.3e38,
        Infinity, -Infinity, NaN, 1e-39, -1e-40, 1.1754943508222875e-38, 65504, 2 ** -126 * 1.5];
      const values = new Float32Array(4099);  // 16-value vectors and a scalar tail
      values.set(specials);
      for (let i = specials.length; i < values.length; i++) values[i] = (rand() * 2 - 1) * 2 ** Math.floor(rand() * 60 - 30);
      const bits = toBf16(values);
      for (let i = 0; i < values.length; i++) assert.equal(bits[i], bf16Bits(values[i]), `value ${values[i]} (index ${i})`);
      const back = toF32(bits);
      const expect = new Float32Array(new Uint32Array(Array.from(bits, (h) => h * 65536)).buffer);
      assert.deepEqual(back, expect);
    });
  });
}

for (const isa of productIsas) {
  test(`${isa}${isNative(isa) ? '' : ' (fp32 fallback)'}: bf16 Pixelfly forward, dX, dW and db match the reference on rounded inputs (bf16 and fp32 storage, fp32 and bf16 outputs)`, async () => {
    await onIsa(isa, async () => {
      for (const c of cases()) await checkBf16Products(c, `${isa} ${c.label} m=${c.m} ${c.out}x${c.in}`);
    });
  });

  test(`${isa}${isNative(isa) ? '' : ' (fp32 fallback)'}: bf16 dense gemm, every path and transpose, alpha and beta`, async () => {
    await onIsa(isa, () => checkBf16Gemm(isa));
  });
}

async function checkBf16Products(c: Case, what: string): Promise<void> {
  const rand = rng(c.m * 17 + c.in);
  const { index, m, out, in: inF } = c;
  const b = index.block;
  const weights = randomArray(index.nnz * b * b, rand), x = randomArray(m * inF, rand), dy = randomArray(m * out, rand);
  const bias = randomArray(out, rand);
  const w16 = toBf16(weights), x16 = toBf16(x), dy16 = toBf16(dy);
  const wd = denseWeight({ index, out, in: inF, weights: widened(w16) });
  const xr = widened(x16), dyr = widened(dy16);
  const shape = { index, out, in: inF };

  // Forward: bf16 storage; fp32 storage rounded while packed gives bitwise the same product.
  const yRef = refForward(wd, out, inF, xr, m, bias);
  const y = await bsrForward({ ...shape, weights: w16 }, x16, m, { bias });
  assertClose(y, yRef, 1e-5, `${what} forward`);
  assert.deepEqual(await bsrForward({ ...shape, weights }, x, m, { bias, precision: 'bf16' }), y, `${what} forward: fp32 inputs rounded while packed`);
  // The fp32 product of the same fp32 inputs is measurably different (the rounding happened).
  const y32 = await bsrForward({ ...shape, weights }, x, m, { bias });
  assert.ok(y32.some((v, i) => v !== y[i]), `${what}: bf16 and fp32 products differ`);
  // A bf16 output, accumulated: the old value widened, added, rounded once.
  const start16 = toBf16(randomArray(m * out, rand));
  const acc = await bsrForward({ ...shape, weights: w16 }, x16, m, { bias, into: start16.slice(), accumulate: true });
  assertClose(widened(acc), yRef.map((v, i) => v + widened(start16)[i]), BF16_OUTPUT_TOL, `${what} forward into bf16, accumulate`);

  // dX: bf16 dy, fp32 weights at precision bf16.
  const dxRef = refBackwardData(wd, out, inF, dyr, m);
  assertClose(await bsrBackwardData({ ...shape, weights }, dy16, m, { precision: 'bf16' }), dxRef, 1e-5, `${what} dX`);
  assertClose(widened(await bsrBackwardData({ ...shape, weights: w16 }, dy16, m, { into: new Uint16Array(m * inF) })), dxRef, BF16_OUTPUT_TOL, `${what} dX into bf16`);

  // dW: mixed storage (fp32 dy, bf16 x) makes a bf16 product; fp32 and bf16 outputs.
  const dwRef = refBackwardWeight(index, out, inF, dyr, xr, m);
  const dw = await bsrBackwardWeight(shape, dy, x16, m, { into: new Float32Array(index.nnz * b * b).fill(Number.NaN) });
  assertClose(dw, dwRef, 1e-5, `${what} dW`);
  assert.deepEqual(await bsrBackwardWeight(shape, dy16, x16, m), dw, `${what} dW: bf16 storage`);
  assertClose(widened(await bsrBackwardWeight(shape, dy16, x16, m, { into: new Uint16Array(index.nnz * b * b) })), dwRef, BF16_OUTPUT_TOL, `${what} dW into bf16`);

  const dbRef = new Float64Array(out);
  for (let t = 0; t < m; t++) for (let o = 0; o < out; o++) dbRef[o] += dyr[t * out + o];
  assertClose(await biasGrad(dy16, m, out), dbRef, 1e-5, `${what} db of bf16 dy`);
  // With dW: the sums of dY as stored (bf16 here; fp32 dY is summed unrounded, like biasGrad).
  const db16 = new Float32Array(out);
  await bsrBackwardWeight(shape, dy16, x16, m, { biasGradInto: db16 });
  assertClose(db16, dbRef, 1e-5, `${what} db with dW, bf16 dy`);
  const db32 = new Float32Array(out);
  await bsrBackwardWeight(shape, dy, x16, m, { biasGradInto: db32 });
  assertClose(db32, await biasGrad(dy, m, out) as Float32Array, 1e-5, `${what} db with dW, fp32 dy`);
}

// Shapes reaching every gemm path with bf16 pairs: odd K (a half pair), blocked loops with two K
// passes (K > 1536), narrow column panels, small K walked by row panels, K split in chunks (C or Cᵀ,
// long or short tiles), and the single row / single column products.
const GEMM_SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [17, 45, 71],
  [200, 70, 9],
  [37, 16, 40],
  [301, 49, 49],
  [29, 40, 1601],
  [1, 77, 301],
  [90, 1, 130],
  [37, 49, 4101],
  [5, 300, 4099],
  [200, 16, 4096],
];

async function checkBf16Gemm(isa: string): Promise<void> {
  const rand = rng(41);
  await forEachGemm(GEMM_SHAPES, async (m, n, k, transA, transB) => {
    const a16 = toBf16(randomArray(m * k, rand));
    const b = randomArray(k * n, rand);
    const c0 = randomArray(m * n, rand);
    const tol = 1e-5 * Math.max(1, k / 300);
    const ref = gemmRef(m, n, k, widened(a16), transA ? m : k, rounded(b), transB ? k : n, { transA, transB, alpha: 0.5, beta: 2, c0 });
    // bf16 A, fp32 B: a bf16 product (B rounded while packed).
    const c = await gemm(a16, b, m, n, k, { transA, transB, alpha: 0.5, beta: 2, into: c0.slice() });
    assertClose(c, ref, tol, `${isa} bf16 gemm ${m}x${n}x${k} tA=${transA} tB=${transB}`);
    // fp32 storage at precision bf16, beta 0: C (NaN) is never read.
    const plain = gemmRef(m, n, k, widened(a16), transA ? m : k, rounded(b), transB ? k : n, { transA, transB, alpha: 1, beta: 0 });
    const c32 = await gemm(widened(a16), b, m, n, k, { transA, transB, precision: 'bf16', into: new Float32Array(m * n).fill(Number.NaN) });
    assertClose(c32, plain, tol, `${isa} bf16 gemm (fp32 storage) ${m}x${n}x${k} tA=${transA} tB=${transB}`);
  });
  // A bf16 output with beta: the old value scaled in fp32, the sum rounded once.
  const [m, n, k] = [33, 40, 70];
  const a = randomArray(m * k, rand), b = randomArray(k * n, rand), c16 = toBf16(randomArray(m * n, rand));
  const ref = gemmRef(m, n, k, rounded(a), k, rounded(b), n, { transA: false, transB: false, alpha: 1, beta: 0.5, c0: widened(c16) });
  assertClose(widened(await gemm(a, b, m, n, k, { beta: 0.5, into: c16, precision: 'bf16' })), ref, BF16_OUTPUT_TOL, `${isa} bf16 gemm into bf16`);
}

test('bf16 results do not depend on the thread count (bitwise), on the best path', async () => {
  const rand = rng(5);
  const bl = flatBlockButterflyLayout(512, 256, { block: 32, butterflySize: 8, nFactors: 2 });
  const w = { index: buildBlockIndex(bl), out: 512, in: 256, weights: toBf16(randomArray(bl.nnzBlocks * 1024, rand)) };
  const m = 333;
  const x = toBf16(randomArray(m * 256, rand));
  const dy = toBf16(randomArray(m * 512, rand));
  const dyLong = toBf16(randomArray(4600 * 49, rand));
  const xLong = randomArray(4600 * 40, rand);
  const run = async () => [
    await bsrForward(w, x, m),
    await bsrBackwardData(w, dy, m),
    await bsrBackwardWeight(w, dy, x, m),
    await gemm(dy, x, 512, 256, m, { transA: true }),
    await gemm(dyLong, xLong, 49, 40, 4600, { transA: true }),
  ];
  await assertThreadCountIndependent(run);
});

test('bf16 arguments: a bad precision or element type is refused, naming it', async () => {
  const bl = flatBlockButterflyLayout(64, 64, { block: 32, butterflySize: 2, nFactors: 1 });
  const w = { index: buildBlockIndex(bl), out: 64, in: 64, weights: new Uint16Array(bl.nnzBlocks * 1024) };
  await assert.rejects(bsrForward(w, new Uint16Array(256), 4, { precision: 'fp8' as never }), /bsrForward: precision must be 'fp32' or 'bf16', got 'fp8'/);
  await assert.rejects(bsrForward(w, new Int16Array(256) as unknown as Uint16Array, 4), /x must be a Float32Array \(fp32\) or a Uint16Array \(bf16\)/);
  await assert.rejects(gemm(new Uint16Array(5), new Uint16Array(6), 2, 2, 3), /gemm: a has 5 values, expected m\*k = 6/);
  assert.throws(() => toBf16(new Uint16Array(3) as unknown as Float32Array), /toBf16: expected a Float32Array/);
  assert.throws(() => toF32(new Float32Array(3) as unknown as Uint16Array), /toF32: expected a Uint16Array of bf16 values/);
});
