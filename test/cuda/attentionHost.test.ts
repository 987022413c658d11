// The CUDA attention kernels on the host emulation (attention_host.cc): against the CPU's plain
// reference, and the same bits for any grid. Compiles the kernels against the emulation with the
// system C++ compiler (a few seconds); runs without a GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..', '..');

test('CUDA attention kernels match the CPU reference, with the same bits for any grid (host emulation)', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-attention-host-'));
  try {
    const exe = join(dir, 'attention_host');
    const src = join(root, 'native', 'src');
    const cc = spawnSync('c++', ['-std=c++20', '-O1', '-pthread', '-DPIXELFLY_CUDA=1', '-DPIXELFLY_CUDA_EMULATION=1', `-I${src}`,
      join(root, 'test', 'cuda', 'attention_host.cc'), join(src, 'kernels', 'attention_reference.cc'), '-o', exe], { encoding: 'utf8' });
    assert.equal(cc.status, 0, `compiling attention_host.cc failed:\n${cc.stdout}\n${cc.stderr}`);
    const r = spawnSync(exe, [], { encoding: 'utf8', timeout: 240_000 });
    assert.equal(r.status, 0, `attention kernel checks failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /all checks passed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
