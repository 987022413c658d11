// One list of block sizes: core/planner.ts's KERNEL_BLOCK_SIZES. The planner refuses any other,
// and the copies that cannot import it (the settings schema in package.json, pixelfly_torch's
// Python constant) must equal it; the native kernels report theirs (test/native/kernels.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KERNEL_BLOCK_SIZES, planModel } from '../core/planner';
import { PixelflyConfigError } from '../core/errors';

const root = join(__dirname, '..', '..');

test('the settings schema offers exactly core\'s block sizes', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const setting = pkg.contributes.configuration.properties['pixelfly.plan.blockSize'];
  assert.deepEqual(setting.enum, [...KERNEL_BLOCK_SIZES]);
  assert.ok(KERNEL_BLOCK_SIZES.includes(setting.default));
});

test('pixelfly_torch\'s KERNEL_BLOCK_SIZES is core\'s', () => {
  const src = readFileSync(join(root, 'pytorch', 'pixelfly_torch', 'layout.py'), 'utf8');
  const m = /^KERNEL_BLOCK_SIZES = \(([^)]*)\)$/m.exec(src);
  assert.ok(m, 'KERNEL_BLOCK_SIZES = (...) in pixelfly_torch/layout.py');
  assert.deepEqual(m[1].split(',').map((x) => Number(x.trim())).filter((x) => !Number.isNaN(x)), [...KERNEL_BLOCK_SIZES]);
});

test('the planner refuses block sizes outside the list, naming the list', () => {
  const inventory = { layers: [{ name: 'fc', role: 'mlp_fc1' as const, in: 1024, out: 1024, count: 1, rowsPerSample: 64 }] };
  for (const b of [8, 48, 128]) {
    assert.throws(() => planModel(inventory, { budget: 0.5 }, { blockSizes: [b] }), (e: unknown) => e instanceof PixelflyConfigError && /16, 32 or 64/.test((e as Error).message));
  }
  for (const b of KERNEL_BLOCK_SIZES) assert.doesNotThrow(() => planModel(inventory, { budget: 0.5 }, { blockSizes: [b] }));
});
