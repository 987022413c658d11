// Properties of layouts and block indexes that must hold for every valid parameter set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flatBlockButterflyLayout, layoutNnz, layoutSummary, padTo, type ButterflyParams } from '../../core/layout';
import { butterflyFactorSupport, flatButterflySupport } from '../../core/butterfly';
import { blockIndexFromMask, buildBlockIndex, colCounts, density, rowCounts } from '../../core/blockIndex';
import { PixelflyConfigError } from '../../core/errors';
import { mulberry32 } from '../../core/random';

function randomValid(rand: () => number): { out: number; in: number; p: ButterflyParams } {
  for (;;) {
    const block = [8, 16, 32, 64][Math.floor(rand() * 4)];
    const butterflySize = 2 ** (1 + Math.floor(rand() * 6));
    const nFactors = 1 + Math.floor(rand() * Math.log2(butterflySize));
    const out = 1 + Math.floor(rand() * 1500);
    const inF = 1 + Math.floor(rand() * 1500);
    const globalSize = rand() < 0.3 ? Math.floor(rand() * 100) : 0;
    if (padTo(out, block) % butterflySize || padTo(inF, block) % butterflySize) continue;
    return { out, in: inF, p: { block, butterflySize, nFactors, globalSize, shuffle: rand() < 0.3 } };
  }
}

test('each butterfly factor has exactly two nonzeros per row and column, and is symmetric', () => {
  for (const n of [2, 4, 8, 16, 64]) {
    for (let i = 0; i < Math.log2(n); i++) {
      const f = butterflyFactorSupport(n, i);
      for (let r = 0; r < n; r++) {
        let row = 0;
        let col = 0;
        for (let c = 0; c < n; c++) {
          row += f[r * n + c];
          col += f[c * n + r];
          assert.equal(f[r * n + c], f[c * n + r]);
        }
        assert.equal(row, 2);
        assert.equal(col, 2);
      }
    }
  }
});

test('the flat butterfly has nFactors + 1 nonzeros in every row, with or without shuffle', () => {
  for (const n of [4, 16, 32]) {
    for (let k = 1; k <= Math.log2(n); k++) {
      for (const shuffle of [false, true]) {
        const s = flatButterflySupport(n, k, shuffle);
        for (let r = 0; r < n; r++) {
          let row = 0;
          for (let c = 0; c < n; c++) row += s[r * n + c];
          assert.equal(row, k + 1, `n=${n} k=${k} shuffle=${shuffle} row ${r}`);
        }
      }
    }
  }
});

test('square layouts without shuffle are symmetric', () => {
  for (const [n, block, s, f, g] of [
    [1024, 32, 16, 2, 0],
    [768, 16, 16, 3, 40],
    [512, 64, 8, 3, 0],
    [2048, 32, 64, 4, 64],
  ]) {
    const l = flatBlockButterflyLayout(n, n, { block, butterflySize: s, nFactors: f, globalSize: g });
    for (let r = 0; r < l.blockRows; r++) {
      for (let c = 0; c < l.blockCols; c++) assert.equal(l.mask[r * l.blockCols + c], l.mask[c * l.blockCols + r]);
    }
  }
});

test('when blocks tile support cells exactly, density is (nFactors + 1) / butterfly_size', () => {
  for (const [n, block, s] of [
    [1024, 32, 16],
    [2048, 16, 32],
    [4096, 64, 8],
  ]) {
    for (let f = 1; f <= Math.log2(s); f++) {
      const l = flatBlockButterflyLayout(n, n, { block, butterflySize: s, nFactors: f });
      assert.equal(l.density, (f + 1) / s);
      assert.equal(l.nnzBlocks, ((f + 1) / s) * l.blockRows * l.blockCols);
    }
  }
});

test('random valid layouts: fast nnz, block index, counts and densities agree with the mask', () => {
  const rand = mulberry32(7);
  for (let trial = 0; trial < 300; trial++) {
    const { out, in: inF, p } = randomValid(rand);
    const l = flatBlockButterflyLayout(out, inF, p);
    const what = JSON.stringify({ out, in: inF, ...p });
    assert.equal(layoutNnz(out, inF, p), l.nnzBlocks, what);
    assert.equal(layoutSummary(out, inF, p).nnzBlocks, l.nnzBlocks, what);
    assert.equal(l.outPadded % p.block, 0);
    assert.ok(l.outPadded - out < p.block && l.inPadded - inF < p.block);
    const idx = buildBlockIndex(l);
    assert.equal(idx.nnz, l.nnzBlocks);
    const rc = rowCounts(idx);
    const cc = colCounts(idx);
    for (let r = 0; r < l.blockRows; r++) {
      let n = 0;
      for (let c = 0; c < l.blockCols; c++) n += l.mask[r * l.blockCols + c];
      assert.equal(rc[r], n);
      for (let k = idx.rowPtr[r]; k < idx.rowPtr[r + 1]; k++) {
        assert.equal(l.mask[r * l.blockCols + idx.colIdx[k]], 1);
        if (k > idx.rowPtr[r]) assert.ok(idx.colIdx[k] > idx.colIdx[k - 1], 'columns ascend within a row');
      }
    }
    // The transposed view visits every block exactly once, rows ascending in each column.
    const seen = new Uint8Array(idx.nnz);
    for (let c = 0; c < l.blockCols; c++) {
      let n = 0;
      for (let t = idx.colPtr[c]; t < idx.colPtr[c + 1]; t++) {
        const k = idx.tBlock[t];
        seen[k]++;
        n++;
        assert.equal(idx.colIdx[k], c);
        assert.ok(idx.rowPtr[idx.rowIdx[t]] <= k && k < idx.rowPtr[idx.rowIdx[t] + 1]);
        if (t > idx.colPtr[c]) assert.ok(idx.rowIdx[t] > idx.rowIdx[t - 1]);
      }
      assert.equal(cc[c], n);
    }
    assert.ok(seen.every((x) => x === 1));
    const d = density(l);
    assert.ok(Math.abs(d.block - l.nnzBlocks / (l.blockRows * l.blockCols)) < 1e-15);
    assert.ok(d.element > 0 && d.element <= 1 + 1e-12);
  }
});

test('global_size keeps its rows and columns dense', () => {
  const l = flatBlockButterflyLayout(1024, 512, { block: 32, butterflySize: 16, nFactors: 2, globalSize: 70 });
  for (let r = 0; r < l.blockRows; r++) {
    for (let c = 0; c < l.blockCols; c++) {
      if (r < 3 || c < 3) assert.equal(l.mask[r * l.blockCols + c], 1, `block (${r}, ${c})`);
    }
  }
});

test('blockIndexFromMask rejects a mask of the wrong size', () => {
  assert.throws(() => blockIndexFromMask(new Uint8Array(5), 2, 3, 16), /mask has 5 entries, expected 2×3/);
});

function rejects(fn: () => unknown, param: string, text: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof PixelflyConfigError, `expected PixelflyConfigError, got ${String(err)}`);
    assert.equal(err.param, param);
    assert.match(err.message, text);
    return true;
  });
}

test('invalid parameters are refused with the parameter named and what to change', () => {
  const ok = { block: 32, butterflySize: 16, nFactors: 2 };
  rejects(() => flatBlockButterflyLayout(0, 64, ok), 'out_features', /≥ 1, got 0/);
  rejects(() => flatBlockButterflyLayout(64, -3, ok), 'in_features', /≥ 1, got -3/);
  rejects(() => flatBlockButterflyLayout(64, 64.5, ok), 'in_features', /integer/);
  rejects(() => flatBlockButterflyLayout(64, 64, { ...ok, block: 0 }), 'block', /≥ 1/);
  rejects(() => flatBlockButterflyLayout(64, 64, { ...ok, butterflySize: 12 }), 'butterfly_size', /power of two.*try 8 or 16/);
  rejects(() => flatBlockButterflyLayout(64, 64, { ...ok, butterflySize: 1, nFactors: 1 }), 'butterfly_size', /≥ 2/);
  rejects(() => flatBlockButterflyLayout(64, 64, { ...ok, nFactors: 0 }), 'n_factors', /1\.\.4/);
  rejects(() => flatBlockButterflyLayout(64, 64, { ...ok, nFactors: 5 }), 'n_factors', /1\.\.4 \(log2 of butterfly_size 16\), got 5/);
  rejects(() => flatBlockButterflyLayout(64, 64, { ...ok, globalSize: -1 }), 'global_size', /≥ 0/);
});

test('sizes the authors code cannot honour are refused, with what to change', () => {
  // 96 padded to 96 is not divisible by 64: the authors' code would stretch to 64 and build a
  // layout of the wrong shape.
  rejects(
    () => flatBlockButterflyLayout(96, 256, { block: 32, butterflySize: 64, nFactors: 2 }),
    'butterfly_size',
    /64 does not divide out_features 96: the authors' code would silently build a layout for 64 instead of 96; use butterfly_size 32/,
  );
  // 48 (padded from 40 at block 16) over butterfly size 32: the stretched grid of 32 is not a
  // multiple of block 16? It is; 48 over 32 stretches to 32, so the shape is silently wrong.
  rejects(
    () => flatBlockButterflyLayout(64, 40, { block: 16, butterflySize: 32, nFactors: 2 }),
    'butterfly_size',
    /in_features 48 \(40 padded to a multiple of block 16\)/,
  );
  // 24 over butterfly size 16 stretches to 16, which block 24 does not divide: the authors' code fails.
  rejects(
    () => flatBlockButterflyLayout(24, 48, { block: 24, butterflySize: 16, nFactors: 2 }),
    'butterfly_size',
    /block 24 does not divide.*pad out_features to a multiple of 48/,
  );
  rejects(() => flatBlockButterflyLayout(8, 64, { block: 8, butterflySize: 16, nFactors: 2 }), 'butterfly_size', /cannot be stretched/);
});
