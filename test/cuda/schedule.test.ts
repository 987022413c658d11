// The GPU kernels' schedule (native/src/cuda/bsr_schedule.h: tiles, walks over kept blocks, padding
// limits, chunked dW reduction), executed on the HOST by native/src/cuda/reference.h, against the CPU
// kernels of issue 3. Runs everywhere (no GPU needed): the same header is what the CUDA kernels use,
// so a wrong tile decode, a missed block or a padding slip fails here before any GPU sees it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bsrBackwardData, bsrBackwardWeight, bsrForward } from '../../native/kernels';
import { nativeCuda, nativeLayoutOf } from '../../native/cuda';
import { productCases, relError, type ProductCase } from './cases';

const ref = () => nativeCuda().reference;

function args(c: ProductCase) {
  return { layout: nativeLayoutOf(c.index), out: c.out, in: c.in, m: c.m };
}

for (const c of productCases()) {
  test(`schedule forward = CPU kernels: ${c.name}`, async () => {
    const want = await bsrForward({ index: c.index, out: c.out, in: c.in, weights: c.weights }, c.x, c.m, { bias: c.bias });
    const y = new Float32Array(c.m * c.out);
    await ref().bsrForward({ ...args(c), weights: c.weights, x: c.x, y, bias: c.bias });
    assert.ok(relError(y, want) < 1e-5, `relative error ${relError(y, want)}`);
    // accumulate adds to what is there
    const acc = y.slice();
    await ref().bsrForward({ ...args(c), weights: c.weights, x: c.x, y: acc, accumulate: true });
    const twice = await bsrForward({ index: c.index, out: c.out, in: c.in, weights: c.weights }, c.x, c.m, { into: want, accumulate: true });
    assert.ok(relError(acc, twice) < 1e-5);
  });

  test(`schedule dX = CPU kernels: ${c.name}`, async () => {
    const want = await bsrBackwardData({ index: c.index, out: c.out, in: c.in, weights: c.weights }, c.dy, c.m);
    const dx = new Float32Array(c.m * c.in).fill(Number.NaN);  // overwrite must not read it
    await ref().bsrBackwardData({ ...args(c), weights: c.weights, dy: c.dy, dx });
    assert.ok(relError(dx, want) < 1e-5, `relative error ${relError(dx, want)}`);
  });

  test(`schedule dW (chunked, ordered reduction) = CPU kernels: ${c.name}`, async () => {
    const want = await bsrBackwardWeight({ index: c.index, out: c.out, in: c.in }, c.dy, c.x, c.m);
    for (const chunkRows of [64, 128, Math.max(64, Math.ceil(c.m / 64) * 64)]) {
      const dw = new Float32Array(want.length).fill(Number.NaN);
      await ref().bsrBackwardWeight({ ...args(c), dy: c.dy, x: c.x, dw, chunkRows });
      assert.ok(relError(dw, want) < 1e-5, `chunkRows ${chunkRows}: relative error ${relError(dw, want)}`);
    }
    // Padded rows/columns of every kept block are exactly zero (the CPU's contract too).
    const dw = new Float32Array(want.length);
    await ref().bsrBackwardWeight({ ...args(c), dy: c.dy, x: c.x, dw, chunkRows: 64 });
    const { block, rowPtr, colIdx, blockRows } = c.index;
    for (let r = 0; r < blockRows; r++)
      for (let k = rowPtr[r]; k < rowPtr[r + 1]; k++)
        for (let i = 0; i < block; i++)
          for (let j = 0; j < block; j++)
            if (r * block + i >= c.out || colIdx[k] * block + j >= c.in) assert.equal(dw[(k * block + i) * block + j], 0);
  });
}

test('bf16-input reference stays within bf16 rounding of the fp32 product', async () => {
  const c = productCases().find((p) => p.name.startsWith('butterfly b32 512x256'))!;
  const y32 = new Float32Array(c.m * c.out), y16 = new Float32Array(c.m * c.out);
  await ref().bsrForward({ ...args(c), weights: c.weights, x: c.x, y: y32 });
  await ref().bsrForward({ ...args(c), weights: c.weights, x: c.x, y: y16, precision: 'bf16' });
  const e = relError(y16, y32);
  // bf16 keeps 8 bits of mantissa: per-term error ≤ 2^-8, sums of ±terms stay well under 2 %.
  assert.ok(e > 0 && e < 0.02, `bf16 vs fp32 relative error ${e}`);
});

test('dW chunk choice: multiples of 64 rows, at least minRows, enough tiles when M allows', () => {
  const pick = ref().backwardWeightChunkRows;
  for (const [nnz, m, target, minRows] of [[96, 4096, 528, 256], [1, 4096, 528, 256], [1000, 4096, 528, 256], [12, 100, 64, 64], [5, 1, 64, 64]]) {
    const rows = pick(nnz, m, target, minRows);
    assert.equal(rows % 64, 0, `${rows} not a multiple of 64`);
    assert.ok(rows >= minRows);
    const chunks = Math.ceil(m / rows);
    if (m / minRows >= Math.ceil(target / nnz)) assert.ok(nnz * chunks >= target * 0.5, `nnz ${nnz} m ${m}: ${chunks} chunks`);
  }
});

test('reference rejects bad arguments with the argument named', async () => {
  const c = productCases()[0];
  await assert.rejects(ref().bsrForward({ ...args(c), weights: c.weights.subarray(1), x: c.x, y: new Float32Array(c.m * c.out) }), /weights/);
  await assert.rejects(ref().bsrBackwardWeight({ ...args(c), dy: c.dy, x: c.x, dw: new Float32Array(c.weights.length), chunkRows: 50 }), /chunkRows/);
  await assert.rejects(ref().bsrForward({ ...args(c), weights: c.weights, x: c.x, y: new Float32Array(c.m * c.out), precision: 'fp8' as never }), /precision/);
  const broken = { ...nativeLayoutOf(c.index), colIdx: new Int32Array(c.index.nnz).fill(9999) };
  await assert.rejects(ref().bsrForward({ ...args(c), layout: broken, weights: c.weights, x: c.x, y: new Float32Array(c.m * c.out) }), /colIdx/);
});
