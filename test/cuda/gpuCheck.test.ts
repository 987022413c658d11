// The Node-less GPU check (native/gpu_check, issue 8) end to end on the host emulation: the kit
// written by scripts/gpu-check.mjs --small (core/'s layouts), built by native/gpu_check/build.sh
// --emulate, run; every section must have run and every check passed. On a GPU machine the same
// program is built with nvcc (native/src/cuda/README.md, "On a GPU machine without Node").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..', '..');
const hasCompiler = spawnSync('sh', ['-c', 'command -v g++ && command -v bash'], { encoding: 'utf8' }).status === 0;
const skip = hasCompiler ? false : 'g++ or bash is missing: native/gpu_check/build.sh cannot build the check here';

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

let dir = '';
let binary = '';
function built(): string {
  if (binary) return binary;
  dir = mkdtempSync(join(tmpdir(), 'pixelfly-gpucheck-'));
  const kit = run(process.execPath, [join(root, 'scripts', 'gpu-check.mjs'), '--small', '--dir', dir]);
  assert.equal(kit.status, 0, kit.out);
  // The CPU kernels are the same objects as the addon's build (npm test builds it first): link
  // those, as the emulated addon does, rather than compile five instruction sets again.
  const kernelLibs = join(root, 'native', 'build', 'Release', 'obj.target');
  const reuse = existsSync(join(kernelLibs, 'kernels_portable.a')) ? ['--kernel-libs', kernelLibs] : [];
  const b = run('bash', [join(root, 'native', 'gpu_check', 'build.sh'), '--emulate', '--out-dir', join(dir, 'build'), ...reuse]);
  assert.equal(b.status, 0, b.out);
  binary = join(dir, 'build', 'gpu_check');
  return binary;
}
test.after(() => dir && rmSync(dir, { recursive: true, force: true }));

test('gpu_check on the host emulation: products, timing table and JSON, Mixer training CPU vs CUDA all pass', { skip, timeout: 300_000 }, () => {
  const bin = built();
  const rowsFile = join(dir, 'rows.json');
  // Timing at 64 rows: the emulated fallback GEMM standing in for cuBLAS takes seconds a product at
  // the kit's 256, and emulated times mean nothing; the path is what is checked here.
  const r = run(bin, [join(dir, 'layouts.txt'), '--out', rowsFile, '--timing-m', '64']);
  assert.equal(r.status, 0, r.out);
  for (const section of ['== device (HOST EMULATION', '== products: 5 layouts', '== timing', '== training: mixer (3 Pixelfly layers', 'all checks passed'])
    assert.ok(r.out.includes(section), `missing '${section}' in:\n${r.out}`);
  assert.doesNotMatch(r.out, /FAILED/);
  // Every layout (2 bench + 3 plan) × 3 precisions × 3 products compared.
  const products = r.out.split('\n').filter((l) => /^ {2}ok {5}products /.test(l));
  assert.equal(products.length, 5 * 3 * 3, r.out);
  for (const p of ['fp32', 'bf16', 'fp16'])
    for (const op of ['fwd', 'dX', 'dW']) assert.ok(products.some((l) => l.includes(` ${p} ${op} `)), `no ${p} ${op} check`);
  // 5 steps × (fp32, bf16) + "bf16 differs from fp32".
  assert.equal(r.out.split('\n').filter((l) => /^ {2}ok {5}training[ :]/.test(l)).length, 11, r.out);
  // Without cuBLAS (the emulation) only fp32 is timed: one row per bench layout, with the target.
  const rows = JSON.parse(readFileSync(rowsFile, 'utf8')) as Array<Record<string, unknown>>;
  assert.equal(rows.length, 2);
  for (const row of rows) {
    assert.equal(row.precision, 'fp32');
    assert.equal(row.emulated, true);
    assert.equal(row.m, 64);
    assert.ok((row.pixelfly_fwd_bwd_ms as number) > 0 && (row.dense_fwd_bwd_ms as number) > 0);
    assert.ok(Math.abs((row.target_vs_dense as number) - 0.7 / (row.density as number)) < 1e-2);
  }
  assert.match(r.out, /fp32 {2}256 {3}512 {3}0\.1250 +\|.*\| +[\d.]+x \| 5\.6x (met|MISSED)/);
});

test('gpu_check refuses a bad layouts file with the file, line and problem', { skip, timeout: 300_000 }, () => {
  const bin = built();
  const good = readFileSync(join(dir, 'layouts.txt'), 'utf8').split('\n');
  const bad = join(dir, 'bad.txt');
  // The first layout's colIdx line (header, bench line, layout line, rowPtr, colIdx) loses a value.
  const broken = [...good];
  broken[4] = broken[4].split(' ').slice(1).join(' ');
  writeFileSync(bad, broken.join('\n'));
  let r = run(bin, [bad]);
  assert.equal(r.status, 1);
  assert.match(r.out, /bad\.txt:5: layout 256x512@0\.1250 colIdx: \d+ values, expected \d+/);
  writeFileSync(bad, 'hello\n');
  r = run(bin, [bad]);
  assert.equal(r.status, 1);
  assert.match(r.out, /bad\.txt:1: not a layouts file of scripts\/gpu-check\.mjs/);
  r = run(bin, [join(dir, 'missing.txt')]);
  assert.equal(r.status, 1);
  assert.match(r.out, /missing\.txt: cannot open the layouts file/);
});
