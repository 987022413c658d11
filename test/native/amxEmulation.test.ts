// The AMX kernels (isa_kernels.cc, PIXELFLY_ISA = 4) built against the emulation of the tile
// instructions (kernels/amx_tiles.h) and checked by amx_check.cc against a float64 reference: the
// tile layouts are tested even where the CPU has no AMX. What the emulation cannot cover (the real
// instructions, the OS's tile permission, speed) runs in bf16.test.ts on CPUs that have AMX.
// The emulated kernels still pack with AVX512-BF16 instructions, so they need that much.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelInfo } from '../../native/kernels';

const root = join(__dirname, '..', '..', '..');
const info = kernelInfo();
const skip = info.supportedIsas.includes('avx512bf16')
  ? false
  : 'SKIPPED: the emulated AMX kernels pack with AVX512-BF16 instructions, which this CPU lacks';

test('AMX kernels on emulated tiles: Pixelfly forward and dX, blocked dense GEMM match the reference', { skip, timeout: 300_000 }, () => {
  if (info.supportedIsas.includes('amx')) console.log('# this CPU has AMX: bf16.test.ts also runs the real tiles');
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-amx-'));
  try {
    const exe = join(dir, 'amx_check');
    const build = spawnSync('c++', [
      '-std=c++17', '-O1', '-fopenmp', `-I${join(root, 'native', 'src')}`, '-DPIXELFLY_ISA=4', '-DPIXELFLY_AMX_EMULATION=1',
      '-mavx512f', '-mavx512vl', '-mavx512dq', '-mavx512bw', '-mavx512bf16', '-mfma', '-mavx2',
      join(root, 'native', 'src', 'kernels', 'isa_kernels.cc'), join(root, 'test', 'native', 'amx_check.cc'), '-o', exe,
    ], { encoding: 'utf8' });
    assert.equal(build.status, 0, `building the emulated AMX check failed:\n${build.stderr.slice(-4000)}`);
    const run = spawnSync(exe, [], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2' } });
    const lines = run.stdout.trim().split('\n');
    assert.equal(run.status, 0, `emulated AMX check failed:\n${lines.filter((l) => !l.startsWith('PASS')).join('\n')}\n${run.stderr}`);
    // Every product shape ran and the tiles did the work.
    assert.ok(lines.filter((l) => l.startsWith('PASS')).length >= 30, run.stdout);
    assert.match(run.stdout, /PASS emulated tdpbf16ps executed: [1-9]\d*/);
    assert.match(run.stdout, /^0 failure\(s\)$/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
