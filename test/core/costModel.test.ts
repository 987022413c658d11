// FLOP/parameter accounting of the Pixelfly layer and the cost model's profile handling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { denseLinearCost, pixelflyLinearCost, totalFlops } from '../../core/pixelflyLayer';
import { DEFAULT_PROFILE, blockSparseEfficiency, estimateSpeedup, lowRankEfficiency, parseDeviceProfile } from '../../core/costModel';
import { flatBlockButterflyLayout } from '../../core/layout';

test('dense linear: 2·M·in·out forward, twice that backward, plus bias', () => {
  const c = denseLinearCost(768, 3072, 100);
  assert.equal(c.flops.forward, 2 * 100 * 768 * 3072 + 100 * 3072);
  assert.equal(c.flops.backward, 4 * 100 * 768 * 3072 + 100 * 3072);
  assert.equal(c.params, 768 * 3072 + 3072);
  assert.equal(c.activationBytes, 100 * 768 * 4);
});

test('pixelfly linear counts the padded sparse part, the low-rank factors, the gate and the lerp', () => {
  const cfg = { block: 32, butterflySize: 16, nFactors: 2, rank: 48 };
  const layout = flatBlockButterflyLayout(3000, 700, cfg);
  const rows = 64;
  const c = pixelflyLinearCost(700, 3000, rows, cfg);
  const sparseWeights = layout.nnzBlocks * 32 * 32;
  assert.equal(c.parts.sparse.forward, 2 * rows * sparseWeights);
  assert.equal(c.parts.sparse.backward, 4 * rows * sparseWeights);
  assert.equal(c.parts.lowRank.forward, 2 * rows * 48 * (700 + 3000));
  assert.equal(c.parts.gate.forward, 2 * rows * 700);
  assert.equal(c.params, sparseWeights + 48 * (700 + 3000) + 700 + 1 + 3000);
  assert.equal(totalFlops(c.flops), ['sparse', 'lowRank', 'gate', 'mix'].reduce((a, k) => a + totalFlops(c.parts[k as 'sparse']), 0));
  const noLowRank = pixelflyLinearCost(700, 3000, rows, { ...cfg, rank: 0 });
  assert.equal(noLowRank.parts.gate.forward, 0);
  assert.equal(noLowRank.params, sparseWeights + 3000);
});

test('speedup grows as density falls, and a measured profile changes the estimate', () => {
  const dense = denseLinearCost(1024, 4096, 4096);
  const est = (nFactors: number, butterflySize: number) => {
    const cfg = { block: 32, butterflySize, nFactors, rank: 32 };
    return estimateSpeedup(dense, pixelflyLinearCost(1024, 4096, 4096, cfg), 32);
  };
  assert.ok(est(1, 32) > est(3, 32));
  assert.ok(est(3, 32) > est(3, 8));
  const slowSparse = { ...DEFAULT_PROFILE, source: 'measured' as const, blockSparse: DEFAULT_PROFILE.blockSparse.map((p) => ({ ...p, efficiency: p.efficiency / 2 })) };
  const cfg = { block: 32, butterflySize: 32, nFactors: 2, rank: 32 };
  const pf = pixelflyLinearCost(1024, 4096, 4096, cfg);
  assert.ok(estimateSpeedup(dense, pf, 32, slowSparse) < estimateSpeedup(dense, pf, 32));
});

test('efficiency lookups interpolate in density and pick the nearest block size', () => {
  assert.equal(blockSparseEfficiency(DEFAULT_PROFILE, 32, 0.125), 0.75);
  const mid = blockSparseEfficiency(DEFAULT_PROFILE, 32, 0.1875);
  assert.ok(mid > 0.75 && mid < 0.82);
  assert.equal(blockSparseEfficiency(DEFAULT_PROFILE, 32, 0.01), 0.65, 'clamped below');
  assert.equal(blockSparseEfficiency(DEFAULT_PROFILE, 128, 0.5), 0.9, 'nearest block is 64');
  assert.equal(lowRankEfficiency(DEFAULT_PROFILE, 1000), 0.7);
});

test('profiles read from JSON are validated field by field', () => {
  assert.deepEqual(parseDeviceProfile(JSON.parse(JSON.stringify(DEFAULT_PROFILE))), DEFAULT_PROFILE);
  assert.throws(() => parseDeviceProfile(null), /\(root\) must be an object/);
  assert.throws(() => parseDeviceProfile({ ...DEFAULT_PROFILE, version: 2 }), /version must be 1/);
  assert.throws(() => parseDeviceProfile({ ...DEFAULT_PROFILE, denseGflops: -1 }), /denseGflops must be a positive number/);
  assert.throws(() => parseDeviceProfile({ ...DEFAULT_PROFILE, blockSparse: [] }), /blockSparse must be a non-empty array/);
  assert.throws(
    () => parseDeviceProfile({ ...DEFAULT_PROFILE, lowRank: [{ rank: 8, efficiency: 'fast' }] }),
    /lowRank\[0\]\.efficiency must be a positive number/,
  );
});

test("the gate and lerp cost the bytes the engine's layer streams, which depend on which side is wider", () => {
  const cfg = { block: 32, butterflySize: 16, nFactors: 1, rank: 16 };
  // in ≤ out: the lerp rides the products; the gate writes (1 − g)∘x and the mix backward reads x, dx and writes dx.
  assert.equal(pixelflyLinearCost(512, 2048, 10, cfg).elementwiseBytes, 10 * 5 * 512 * 4);
  // in > out: also a pass over y forward and over dy (scaled copy, bias sums) backward.
  assert.equal(pixelflyLinearCost(2048, 512, 10, cfg).elementwiseBytes, 10 * (4 * 2048 + 5 * 512) * 4);
  assert.equal(pixelflyLinearCost(512, 2048, 10, { ...cfg, rank: 0 }).elementwiseBytes, 0, 'no gate without the low-rank term');
});

test('points measured at a layer shape price that shape; other shapes keep the global curves', () => {
  const shape = { in: 512, out: 2048 };
  const cfg = { block: 32, butterflySize: 16, nFactors: 1, rank: 16 };
  const measured = {
    ...DEFAULT_PROFILE,
    source: 'measured' as const,
    blockSparseShapes: [{ ...shape, block: 32, density: 0.125, efficiency: 0.3 }],
    lowRankShapes: [{ ...shape, rank: 16, nsPerRow: 1000 }],
  };
  assert.equal(blockSparseEfficiency(measured, 32, 0.125, shape), 0.3);
  assert.equal(blockSparseEfficiency(measured, 32, 0.125, { in: 4096, out: 16384 }), 0.75, 'beyond a factor of 4: the global curve');
  const pf = pixelflyLinearCost(512, 2048, 100, cfg);
  const dense = denseLinearCost(512, 2048, 100);
  const sparseSeconds = totalFlops(pf.parts.sparse) / (DEFAULT_PROFILE.denseGflops * 1e9 * 0.3);
  // The measured low-rank time replaces the modelled products and bandwidth term: 1000 ns per row.
  const expected = totalFlops(dense.flops) / (DEFAULT_PROFILE.denseGflops * 1e9) / (sparseSeconds + 100 * 1000e-9);
  assert.ok(Math.abs(estimateSpeedup(dense, pf, 16, measured, shape) - expected) < 1e-9);
  // A rank with no point at this shape is modelled, as without any points.
  const r32 = pixelflyLinearCost(512, 2048, 100, { ...cfg, rank: 32 });
  assert.equal(estimateSpeedup(dense, r32, 32, measured, shape), estimateSpeedup(dense, r32, 32, { ...measured, lowRankShapes: [] }, shape));
  assert.throws(() => parseDeviceProfile({ ...measured, lowRankShapes: [{ in: 1, out: 2, rank: 4 }] }), /lowRankShapes\[0\]\.nsPerRow must be a positive number/);
  assert.throws(() => parseDeviceProfile({ ...measured, blockSparseShapes: [{ in: 1, out: 2, block: 32, density: 0 }] }), /blockSparseShapes\[0\]\.density must be a positive number/);
});
