// The layer kernels' launch geometry where the engine's shapes cannot reach it on the host
// emulation (layer_kernels_host.cc): the grid.y fold of batches above 65535 (run with a small grid,
// since 65535 emulated blocks take minutes) and bitwise-equal outputs for any grid. Compiles the
// kernels against the emulation with the system C++ compiler (a few seconds); runs without a GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..', '..');

test('layer kernels: grid.y folding and the same bits for any grid (host emulation)', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-layer-kernels-'));
  try {
    const exe = join(dir, 'layer_kernels_host');
    const cc = spawnSync('c++', ['-std=c++20', '-O1', '-pthread', '-DPIXELFLY_CUDA=1', '-DPIXELFLY_CUDA_EMULATION=1',
      `-I${join(root, 'native', 'src')}`, join(root, 'test', 'cuda', 'layer_kernels_host.cc'), '-o', exe], { encoding: 'utf8' });
    assert.equal(cc.status, 0, `compiling layer_kernels_host.cc failed:\n${cc.stdout}\n${cc.stderr}`);
    const r = spawnSync(exe, [], { encoding: 'utf8', timeout: 240_000 });
    assert.equal(r.status, 0, `layer kernel checks failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /all checks passed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
