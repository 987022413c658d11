// The whole CUDA side of the addon — binding, Context (memory, launches, dW chunks, fallback GEMM,
// every layer kernel), the engine's CUDA backend — built against the host emulation of the kernels
// and the runtime (binding.gyp cuda_emulation=1), then gpu.test.ts run against that addon: every
// product in fp32, bf16 and fp16, every probe layer and MLP / Mixer / ViT / GPT training on the
// "cuda" backend vs the CPU engine, and two CUDA models training concurrently. This is how the
// CUDA host code is exercised on machines without a GPU; what it cannot cover (real hardware, cuBLAS,
// speed) is left to gpu.test.ts on a GPU. Costs a second build of the addon, less the CPU kernels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..', '..');

test('gpu.test.ts passes on the addon built against the CUDA host emulation', { timeout: 1_200_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-cuda-emulated-'));
  try {
    cpSync(join(root, 'native', 'src'), join(dir, 'src'), { recursive: true });
    cpSync(join(root, 'native', 'binding.gyp'), join(dir, 'binding.gyp'));
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const gyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    const env = { ...process.env, npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr' };
    // The CPU kernels are the same objects as the real build's (npm test builds it first): link
    // those, and build only the addon itself against the emulation.
    const kernelLibs = join(root, 'native', 'build', 'Release', 'obj.target');
    const reuse = existsSync(join(kernelLibs, 'kernels_portable.a'));
    const steps: Array<[string, string[]]> = [
      ['node-gyp configure', [process.execPath, gyp, 'configure', '--', '-Dcuda_emulation=1', ...(reuse ? [`-Dkernel_libs_from=${kernelLibs}`] : [])]],
      ['make', ['make', '-C', 'build', 'BUILDTYPE=Release', `-j${availableParallelism()}`, 'pixelfly']],
    ];
    for (const [what, [cmd, ...args]] of steps) {
      const r = spawnSync(cmd, args, { cwd: dir, env, encoding: 'utf8', maxBuffer: 1 << 26 });
      assert.equal(r.status, 0, `${what} of the emulated addon failed:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
    }
    // A fresh test run with a TAP report (NODE_TEST_CONTEXT would make it report to our runner instead).
    const childEnv: NodeJS.ProcessEnv = { ...process.env, PIXELFLY_NATIVE: join(dir, 'build', 'Release', 'pixelfly.node') };
    delete childEnv.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ['--test', '--test-reporter=tap', join(__dirname, 'gpu.test.js')], {
      env: childEnv,
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
    assert.equal(r.status, 0, `gpu.test.ts failed on the emulated addon:\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
    assert.equal(count('fail'), 0);
    // Only benchLayer (timings mean nothing here) and the "no GPU" refusal may skip: the products
    // (4 tests), the 24 probe layers, the 6 trained models, the concurrent pair and the batch above
    // the grid limit ran.
    assert.ok(count('pass') >= 37 && count('skipped') <= 2, `pass ${count('pass')}, skipped ${count('skipped')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
