// The native kernels' fp32 products against a plain reference (the dense product with the layout's
// mask applied, in float64: reference.ts), on every instruction-set path this CPU has, plus
// finite-difference gradient checks and the error paths (bf16 products: bf16.test.ts). The addon is
// built by `npm test`'s set-up; a missing addon fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flatBlockButterflyLayout } from '../../core/layout';
import { buildBlockIndex } from '../../core/blockIndex';
import { KERNEL_BLOCK_SIZES } from '../../core/planner';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NativeAddonError, loadAddon, loadAddonFile } from '../../native/addon';
import {
  alignedFloat32Array,
  biasGrad,
  bsrBackwardData,
  bsrBackwardWeight,
  bsrForward,
  forceIsa,
  gemm,
  kernelInfo,
  setKernelThreads,
  validateBlockIndex,
  type BsrWeight,
  type Isa,
} from '../../native/kernels';
import {
  assertClose, assertThreadCountIndependent, cases, denseWeight, forEachGemm, gemmRef, randomArray, randomIndex, refBackwardData, refBackwardWeight, refForward, rng, type Case,
} from './reference';

async function checkProducts(c: Case, what: string): Promise<void> {
  const rand = rng(c.m * 131 + c.out);
  const { index, m, out, in: inF } = c;
  const b = index.block;
  const w = { index, out, in: inF, weights: randomArray(index.nnz * b * b, rand) };
  const wd = denseWeight(w);
  const x = randomArray(m * inF, rand);
  const dy = randomArray(m * out, rand);
  const bias = randomArray(out, rand);

  const yRef = refForward(wd, out, inF, x, m, bias);
  assertClose(await bsrForward(w, x, m, { bias }), yRef, 1e-5, `${what} forward`);

  // accumulate adds to what is there
  const start = randomArray(m * out, rand);
  const accRef = yRef.map((v, i) => v + start[i]);
  assertClose(await bsrForward(w, x, m, { bias, into: start.slice(), accumulate: true }), accRef, 1e-5, `${what} forward accumulate`);

  assertClose(await bsrBackwardData(w, dy, m), refBackwardData(wd, out, inF, dy, m), 1e-5, `${what} dX`);

  const dw = await bsrBackwardWeight(w, dy, x, m, { into: new Float32Array(index.nnz * b * b).fill(Number.NaN) });
  assertClose(dw, refBackwardWeight(index, out, inF, dy, x, m), 1e-5, `${what} dW`);

  const dbRef = new Float64Array(out);
  for (let t = 0; t < m; t++) for (let o = 0; o < out; o++) dbRef[o] += dy[t * out + o];
  assertClose(await biasGrad(dy, m, out), dbRef, 1e-5, `${what} db`);

  // The bias gradient taken with dW (summed from dY's strips where every block-row holds a kept
  // block, a separate pass otherwise): written, then accumulated like dW.
  const db = new Float32Array(out).fill(Number.NaN);
  assertClose(await bsrBackwardWeight(w, dy, x, m, { biasGradInto: db }), dw, 0, `${what} dW beside db`);
  assertClose(db, dbRef, 1e-5, `${what} db with dW`);
  const dbStart = randomArray(out, rand);
  const dbAcc = dbStart.slice();
  await bsrBackwardWeight(w, dy, x, m, { into: dw.slice(), accumulate: true, biasGradInto: dbAcc });
  assertClose(dbAcc, dbRef.map((v, i) => v + dbStart[i]), 1e-5, `${what} db with dW, accumulate`);
}

// Shapes chosen to reach every gemm path: the blocked loops (several K passes, column splits),
// narrow last column panels (N mod 32 <= 16), small K walked row panel by row panel, K split in
// chunks with partial sums (K >= 4096, small C; computed as C or Cᵀ, 14- or 7-row tiles), and the
// single row / single column products (M = 1 or N = 1).
const GEMM_SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [17, 45, 70],
  [50, 33, 300],
  [200, 70, 9],
  [37, 16, 40],
  [301, 49, 49],
  [29, 40, 1600],
  [1, 77, 300],
  [90, 1, 130],
  [1, 1, 5000],
  [37, 49, 4100],
  [49, 40, 4600],
  [5, 300, 4099],
  [200, 16, 4096],
  [16, 200, 4096],
  [1, 130, 5001],
];

async function checkGemm(isa: string): Promise<void> {
  const rand = rng(99);
  await forEachGemm(GEMM_SHAPES, async (m, n, k, transA, transB) => {
    const a = randomArray(m * k, rand);
    const b = randomArray(k * n, rand);
    const c0 = randomArray(m * n, rand);
    const ref = gemmRef(m, n, k, a, transA ? m : k, b, transB ? k : n, { transA, transB, alpha: 0.5, beta: 2, c0 });
    const c = await gemm(a, b, m, n, k, { transA, transB, alpha: 0.5, beta: 2, into: c0.slice() });
    // Long sums (K up to 5001) in float32, summed in order within a row or chunk: the rounding error grows
    // up to linearly with K.
    assertClose(c, ref, 1e-5 * Math.max(1, k / 300), `${isa} gemm ${m}x${n}x${k} tA=${transA} tB=${transB}`);
    // beta = 1 adds to C; beta = 0 must not read C (NaNs there stay out of the result).
    const acc = gemmRef(m, n, k, a, transA ? m : k, b, transB ? k : n, { transA, transB, alpha: 1, beta: 1, c0 });
    const tol = 1e-5 * Math.max(1, k / 300);
    assertClose(await gemm(a, b, m, n, k, { transA, transB, beta: 1, into: c0.slice() }), acc, tol, `${isa} gemm beta=1 ${m}x${n}x${k}`);
    const plain = gemmRef(m, n, k, a, transA ? m : k, b, transB ? k : n, { transA, transB, alpha: 1, beta: 0 });
    assertClose(await gemm(a, b, m, n, k, { transA, transB, into: new Float32Array(m * n).fill(Number.NaN) }), plain, tol, `${isa} gemm beta=0 ${m}x${n}x${k}`);
  });
}

/** Operands that are slices of wider rows (ld > columns): the padding between rows is never read
 * (it holds NaN) and C's padding is never written. */
async function checkStridedGemm(isa: string): Promise<void> {
  const rand = rng(5);
  const native = loadAddon().kernels;
  const shapes: Array<[number, number, number]> = [[33, 40, 70], [301, 49, 49], [37, 49, 4100], [1, 77, 300], [90, 1, 130], [200, 16, 9]];
  await forEachGemm(shapes, async (m, n, k, transA, transB) => {
    const aRows = transA ? k : m, aCols = transA ? m : k;
    const bRows = transB ? n : k, bCols = transB ? k : n;
    const lda = aCols + 3, ldb = bCols + 5, ldc = n + 2;
    const strided = (rows: number, cols: number, ld: number) => {
      const x = new Float32Array((rows - 1) * ld + cols).fill(Number.NaN);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) x[r * ld + c] = rand() * 2 - 1;
      return x;
    };
    const a = strided(aRows, aCols, lda);
    const b = strided(bRows, bCols, ldb);
    const c = strided(m, n, ldc);
    for (let i = 0; i + 1 < m; i++) for (let j = n; j < ldc; j++) c[i * ldc + j] = 12345;
    const ref = gemmRef(m, n, k, a, lda, b, ldb, { transA, transB, alpha: 1.5, beta: 1, c0: c, ldc });
    for (let i = 0; i + 1 < m; i++) for (let j = n; j < ldc; j++) ref[i * ldc + j] = 12345;
    await native.gemm({ transA, transB, m, n, k, alpha: 1.5, beta: 1, a, b, c, lda, ldb, ldc });
    assertClose(c, ref, 1e-5 * Math.max(1, k / 300), `${isa} strided gemm ${m}x${n}x${k} tA=${transA} tB=${transB}`);
  });
}

const info = kernelInfo();

test('the addon reports its instruction-set paths and threads', () => {
  assert.ok(loadAddon().areas.includes('kernels'));
  assert.ok(info.supportedIsas.includes('portable'));
  assert.ok(info.supportedIsas.includes(info.bestIsa), 'best path is supported');
  assert.equal(info.isa, info.bestIsa, 'the best path is chosen at load');
  assert.ok(info.maxThreads >= 1 && info.threads >= 1);
  assert.deepEqual(info.blocks, [...KERNEL_BLOCK_SIZES], 'the kernels implement the block sizes core plans with');
});

test('the kernels start with OMP_NUM_THREADS threads when it is set, else one per hardware thread', () => {
  const threadsWith = (omp: string | undefined): number => {
    const env = { ...process.env };
    if (omp === undefined) delete env.OMP_NUM_THREADS;
    else env.OMP_NUM_THREADS = omp;
    const script = `process.stdout.write(String(require(${JSON.stringify(join(__dirname, '..', '..', 'native', 'kernels.js'))}).kernelInfo().threads))`;
    const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return Number(r.stdout);
  };
  assert.equal(threadsWith('1'), 1);
  assert.equal(threadsWith('3,1'), 3, 'a nested list: the outer level');
  assert.equal(threadsWith(undefined), info.maxThreads);
  assert.equal(threadsWith('none'), info.maxThreads, 'an unreadable value is ignored');
});

for (const isa of info.supportedIsas as Isa[]) {
  test(`${isa}: Pixelfly forward, dX, dW and db match the masked dense reference`, async () => {
    forceIsa(isa);
    try {
      assert.equal(kernelInfo().isa, isa);
      for (const c of cases()) await checkProducts(c, `${isa} ${c.label} m=${c.m} ${c.out}x${c.in}`);
    } finally {
      forceIsa(info.bestIsa);
    }
  });

  test(`${isa}: dense gemm, every path and transpose, alpha and beta`, async () => {
    forceIsa(isa);
    try {
      await checkGemm(isa);
    } finally {
      forceIsa(info.bestIsa);
    }
  });

  test(`${isa}: dense gemm on strided operands (lda, ldb, ldc > columns)`, async () => {
    forceIsa(isa);
    try {
      await checkStridedGemm(isa);
    } finally {
      forceIsa(info.bestIsa);
    }
  });
}

test('results do not depend on the thread count (bitwise)', async () => {
  const rand = rng(3);
  const bl = flatBlockButterflyLayout(512, 256, { block: 32, butterflySize: 8, nFactors: 2 });
  const w: BsrWeight = { index: buildBlockIndex(bl), out: 512, in: 256, weights: randomArray(bl.nnzBlocks * 1024, rand) };
  const m = 333;
  const x = randomArray(m * 256, rand);
  const dy = randomArray(m * 512, rand);
  const dyLong = randomArray(4600 * 49, rand);
  const xLong = randomArray(4600 * 40, rand);
  const run = async () => [
    await bsrForward(w, x, m),
    await bsrBackwardData(w, dy, m),
    await bsrBackwardWeight(w, dy, x, m),
    await (async () => {
      const db = new Float32Array(512);
      await bsrBackwardWeight(w, dy, x, m, { biasGradInto: db });
      return db;
    })(),
    await gemm(dy, x, 512, 256, m, { transA: true }),
    // K split in chunks (weight gradient over many rows), single-row and single-column products
    await gemm(dyLong, xLong, 49, 40, 4600, { transA: true }),
    await gemm(dyLong.subarray(0, 4600), xLong, 1, 40, 4600, { transA: true }),
    await gemm(xLong, dyLong.subarray(0, 4600), 40, 1, 4600, { transA: true }),
    await biasGrad(dyLong, 4600, 49),
    await biasGrad(dyLong, 49 * 4600, 1),
  ];
  await assertThreadCountIndependent(run);
});

test('a large output in 64-byte aligned memory (non-temporal stores) equals the regular path bitwise', async () => {
  const rand = rng(17);
  // Y is 4096 × 1024 floats = 16 MB: the forward streams it when it is aligned.
  const bl = flatBlockButterflyLayout(1024, 128, { block: 32, butterflySize: 4, nFactors: 1 });
  const w: BsrWeight = { index: buildBlockIndex(bl), out: 1024, in: 128, weights: randomArray(bl.nnzBlocks * 1024, rand) };
  const m = 4096;
  const x = randomArray(m * 128, rand);
  const bias = randomArray(1024, rand);
  const yAligned = alignedFloat32Array(m * 1024);
  assert.equal(yAligned.length, m * 1024);
  assert.ok(yAligned.every((v) => v === 0), 'aligned arrays start zeroed');
  for (const isa of info.supportedIsas as Isa[]) {
    forceIsa(isa);
    try {
      yAligned.fill(Number.NaN);
      await bsrForward(w, x, m, { into: yAligned, bias });
      const plain = await bsrForward(w, x, m, { bias });
      assert.deepEqual(yAligned, plain, `${isa}: streamed output differs`);
    } finally {
      forceIsa(info.isa);
    }
  }
  assert.throws(() => alignedFloat32Array(-1), /alignedFloat32Array: length must be an integer/);
});

test('biasGrad over many rows (chunked row sums), narrow and wide, overwrite and accumulate', async () => {
  const rand = rng(21);
  for (const [m, n] of [[4600, 49], [70001, 1], [1500, 300], [3, 5], [0, 4]] as Array<[number, number]>) {
    const dy = randomArray(m * n, rand);
    const start = randomArray(n, rand);
    const ref = new Float64Array(n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) ref[j] += dy[i * n + j];
    const tol = 1e-5 * Math.max(1, Math.sqrt(m / 100));
    assertClose(await biasGrad(dy, m, n, { into: new Float32Array(n).fill(Number.NaN) }), ref, tol, `db ${m}x${n}`);
    const accRef = ref.map((v, j) => v + start[j]);
    assertClose(await biasGrad(dy, m, n, { into: start.slice(), accumulate: true }), accRef, tol, `db accumulate ${m}x${n}`);
  }
});

test('gradients match finite differences of a scalar loss', async () => {
  // loss = Σ g ⊙ (x·Wᵀ + bias): dL/dW = gᵀx at kept blocks, dL/dx = g·W, dL/db = Σ_rows g.
  const rand = rng(11);
  const out = 40;
  const inF = 50;
  const m = 5;
  const index = randomIndex(out, inF, 16, 0.6, rand);
  const weights = randomArray(index.nnz * 256, rand);
  const w: BsrWeight = { index, out, in: inF, weights };
  const x = randomArray(m * inF, rand);
  const bias = randomArray(out, rand);
  const g = randomArray(m * out, rand);
  const loss = async (ww: BsrWeight, xx: Float32Array, bb: Float32Array) => {
    const y = await bsrForward(ww, xx, m, { bias: bb });
    let s = 0;
    for (let i = 0; i < y.length; i++) s += g[i] * y[i];
    return s;
  };
  const eps = 1e-2;
  const fd = async (arr: Float32Array, i: number, f: () => Promise<number>) => {
    const keep = arr[i];
    arr[i] = keep + eps;
    const up = await f();
    arr[i] = keep - eps;
    const down = await f();
    arr[i] = keep;
    return (up - down) / (2 * eps);
  };
  const dW = await bsrBackwardWeight(w, g, x, m);
  const dX = await bsrBackwardData(w, g, m);
  const dB = await biasGrad(g, m, out);
  const check = (analytic: number, numeric: number, what: string) =>
    assert.ok(Math.abs(analytic - numeric) <= 2e-3 * (1 + Math.abs(numeric)), `${what}: analytic ${analytic} vs numeric ${numeric}`);
  for (let t = 0; t < 12; t++) {
    const k = Math.floor(rand() * index.nnz);
    const i = Math.floor(rand() * 256);
    check(dW[k * 256 + i], await fd(weights, k * 256 + i, () => loss(w, x, bias)), `dW[${k}][${i}]`);
    const xi = Math.floor(rand() * x.length);
    check(dX[xi], await fd(x, xi, () => loss(w, x, bias)), `dX[${xi}]`);
    const bi = Math.floor(rand() * out);
    check(dB[bi], await fd(bias, bi, () => loss(w, x, bias)), `db[${bi}]`);
  }
});

test('bad arguments reject with an error naming the argument', async () => {
  const bl = flatBlockButterflyLayout(64, 64, { block: 32, butterflySize: 2, nFactors: 1 });
  const index = buildBlockIndex(bl);
  const w: BsrWeight = { index, out: 64, in: 64, weights: new Float32Array(index.nnz * 1024) };
  await assert.rejects(bsrForward(w, new Float32Array(10), 4), /bsrForward: x has 10 values, expected m\*in = 256/);
  await assert.rejects(bsrForward({ ...w, weights: new Float32Array(5) }, new Float32Array(256), 4), /weights has 5 values/);
  await assert.rejects(bsrForward({ ...w, out: 100 }, new Float32Array(256), 4), /out: 100 does not pad to 2 block-rows of 32/);
  await assert.rejects(bsrBackwardData(w, new Float32Array(256), 4, { into: new Float32Array(3) }), /dx has 3 values/);
  await assert.rejects(
    bsrBackwardWeight(w, new Float64Array(256) as unknown as Float32Array, new Float32Array(256), 4),
    /dy must be a Float32Array \(fp32\) or a Uint16Array \(bf16\), got a typed array of another element type/,
  );
  const corrupt = { ...index, colIdx: index.colIdx.map((c) => c + 5) };
  await assert.rejects(bsrForward({ ...w, index: corrupt }, new Float32Array(256), 4), /layout\.colIdx\[0\] is out of range/);
  assert.match(validateBlockIndex(corrupt), /colIdx\[0\] is out of range/);
  assert.equal(validateBlockIndex(index), '');
  const wrongT = { ...index, tBlock: index.tBlock.slice().reverse() };
  if (index.nnz > 1) assert.match(validateBlockIndex(wrongT), /tBlock\[0\] does not point at block/);
  await assert.rejects(bsrForward({ ...w, index: { ...index, block: 48 } }, new Float32Array(256), 4), /block must be|block: must be 16, 32 or 64/);
  await assert.rejects(gemm(new Float32Array(6), new Float32Array(6), 2, 2, 3, { into: new Float32Array(5) }), /gemm: c has 5 values, expected m\*n = 4/);
  await assert.rejects(gemm(new Float32Array(5), new Float32Array(6), 2, 2, 3), /gemm: a has 5 values, expected m\*k = 6/);
  await assert.rejects(gemm(new Float32Array(6), new Float32Array(6), 2.5, 2, 3), /gemm: m must be an integer/);
  assert.throws(() => forceIsa('sse9' as Isa), /forceIsa: expected 'portable', 'avx2', 'avx512', 'avx512bf16' or 'amx'/);
  assert.throws(() => setKernelThreads(0), /setThreads: threads must be an integer in 1\.\.1024/);
  // The process is still healthy after all of that.
  assert.equal((await bsrForward(w, new Float32Array(256), 4)).length, 256);
});

test('an addon that cannot load says how to fix it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-addon-'));
  const broken = join(dir, 'pixelfly.node');
  writeFileSync(broken, 'not a shared object');
  for (const file of [broken, join(dir, 'missing.node')]) {
    assert.throws(
      () => loadAddonFile(file),
      (err: unknown) =>
        err instanceof NativeAddonError && err.message.includes(file) && /run `npm run build`.*g\+\+, make and python3/.test(err.message),
    );
  }
});
