// The `pixelfly` CLI as users run it: the bundled bin, real processes, stdout/stderr/exit status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flatBlockButterflyLayout, layoutRows } from '../../core/layout';

const root = join(__dirname, '..', '..', '..');
const bin = join(root, 'dist', 'pixelfly.js');

function pixelfly(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('layout --json prints the core layout and its stats', () => {
  const r = pixelfly('layout', '--out', '3072', '--in', '768', '--block', '32', '--butterfly-size', '16', '--n-factors', '2', '--json');
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const l = flatBlockButterflyLayout(3072, 768, { block: 32, butterflySize: 16, nFactors: 2 });
  assert.deepEqual(j.layout, layoutRows(l));
  assert.equal(j.nnz_blocks, 480);
  assert.equal(j.density, 480 / (96 * 24));
  assert.equal(j.row_counts.length, 96);
});

test('layout prints rows of 0/1 and a summary; --global-size and --shuffle are honoured', () => {
  const r = pixelfly('layout', '--out', '1024', '--in', '1024', '--block', '32', '--butterfly-size', '16', '--n-factors', '4', '--shuffle');
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((x) => /^[01]+$/.test(x));
  assert.deepEqual(rows, layoutRows(flatBlockButterflyLayout(1024, 1024, { block: 32, butterflySize: 16, nFactors: 4, shuffle: true })));
  assert.match(r.stdout, /320 kept, density 0\.3125/);
  const g = pixelfly('layout', '--out', '1024', '--in', '1024', '--block', '32', '--butterfly-size', '16', '--n-factors', '2', '--global-size', '32', '--json');
  assert.equal(JSON.parse(g.stdout).nnz_blocks, 244);
});

test('layout errors go to stderr with a non-zero status and name the parameter', () => {
  const cases: [string[], RegExp][] = [
    [['--out', '256', '--in', '256', '--block', '32', '--butterfly-size', '12', '--n-factors', '2'], /butterfly_size: must be a power of two/],
    [['--out', '256', '--in', '256', '--block', '32', '--butterfly-size', '16', '--n-factors', '9'], /n_factors: must be an integer in 1\.\.4/],
    [['--out', '96', '--in', '256', '--block', '32', '--butterfly-size', '64', '--n-factors', '2'], /butterfly_size: 64 does not divide out_features 96/],
    [['--in', '256', '--block', '32', '--butterfly-size', '16', '--n-factors', '2'], /--out is required/],
    [['--out', 'x', '--in', '256', '--block', '32', '--butterfly-size', '16', '--n-factors', '2'], /--out must be an integer, got 'x'/],
    [['--out', '256', '--in', '256', '--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = pixelfly('layout', ...args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, message);
  }
});

test('plan prints a table with one reason per layer, or JSON', () => {
  const inv = join(root, 'examples', 'inventories', 'vit_b16.json');
  const r = pixelfly('plan', inv, '--budget', '0.3');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /blocks\.\*\.mlp\.fc1 +mlp_fc1 +768→3072 +12 .*pixelfly b(16|32|64) S\d+ F\d+ r\d+/);
  assert.match(r.stdout, /head: Kept dense/);
  const j = JSON.parse(pixelfly('plan', inv, '--speedup', '1.5', '--json').stdout);
  assert.equal(j.targetMet, true);
  assert.ok(j.estSpeedup >= 1.5);
});

test('plan refuses missing files, bad JSON, bad inventories and bad targets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-cli-'));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ nope');
  const wrong = join(dir, 'wrong.json');
  writeFileSync(wrong, JSON.stringify({ layers: [{ name: 'x', role: 'mlp_fc1', in: 10, out: -1, count: 1, rowsPerSample: 1 }] }));
  const inv = join(root, 'examples', 'inventories', 'vit_b16.json');
  const cases: [string[], RegExp][] = [
    [[join(dir, 'missing.json'), '--budget', '0.3'], /cannot read inventory .*ENOENT/],
    [[bad, '--budget', '0.3'], /is not valid JSON/],
    [[wrong, '--budget', '0.3'], /layers\[0\] \(x\) out must be a positive integer/],
    [[inv], /exactly one of --budget or --speedup/],
    [[inv, '--budget', '2'], /budget: must be a fraction of dense FLOPs in \(0, 1\]/],
    [[inv, '--budget', '0.3', '--block', '48'], /block: must be 16, 32 or 64/],
  ];
  for (const [args, message] of cases) {
    const r = pixelfly('plan', ...args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, message);
  }
});

test('unknown commands print usage with status 2', () => {
  const r = pixelfly('frobnicate');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command 'frobnicate'[^]*commands:[^]*layout/);
});
