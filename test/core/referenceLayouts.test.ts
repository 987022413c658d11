// The authors' make_layout output (../shared/reference) is the ground truth for our layouts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { flatBlockButterflyLayout, layoutRows } from '../../core/layout';

interface ReferenceCase {
  out_features: number;
  in_features: number;
  block: number;
  butterfly_size: number;
  n_factors: number;
  global_size: number;
  shuffle: boolean;
  nnz_blocks: number;
  density: number;
  layout: string[];
}

// Compiled tests live in out/test/core; the shared folder sits beside the checkout.
const referencePath = join(__dirname, '..', '..', '..', '..', 'shared', 'reference', 'flat-block-butterfly-layouts.json');
const cases: ReferenceCase[] = JSON.parse(readFileSync(referencePath, 'utf8')).cases;

test('reference file has cases', () => {
  assert.ok(cases.length >= 24, `expected ≥ 24 reference cases in ${referencePath}, got ${cases.length}`);
});

for (const c of cases) {
  const name = `out=${c.out_features} in=${c.in_features} block=${c.block} S=${c.butterfly_size} F=${c.n_factors} g=${c.global_size}${c.shuffle ? ' shuffle' : ''}`;
  test(`layout matches the authors' make_layout: ${name}`, () => {
    const layout = flatBlockButterflyLayout(c.out_features, c.in_features, {
      block: c.block,
      butterflySize: c.butterfly_size,
      nFactors: c.n_factors,
      globalSize: c.global_size,
      shuffle: c.shuffle,
    });
    assert.deepEqual(layoutRows(layout), c.layout);
    assert.equal(layout.nnzBlocks, c.nnz_blocks);
    assert.ok(Math.abs(layout.density - c.density) < 1e-12);
  });
}
