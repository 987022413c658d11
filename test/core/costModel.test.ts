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
