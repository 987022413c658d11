// The CUDA build: where nvcc is installed (CI and these machines), the addon must embed cubins for
// sm_80 and sm_90, and must still load and report the CPU backend when there is no GPU or driver.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { addonCandidates, loadAddon } from '../../native/addon';
import { existsSync } from 'node:fs';
import { cudaInfo } from '../../native/cuda';
import { fatbinEntries } from './fatbin';

const root = join(__dirname, '..', '..', '..');
const cudaHome = spawnSync(process.execPath, [join(root, 'native', 'src', 'cuda', 'find_nvcc.js')], { encoding: 'utf8' }).stdout.trim();
const noToolkit = cudaHome === '' ? 'no CUDA toolkit (nvcc + libcudart_static.a) on this machine, so the addon is CPU-only by design' : false;
const addonFile = () => addonCandidates().find((p) => existsSync(p))!;

test('the addon loads and always has the cuda area', () => {
  loadAddon();
  const info = cudaInfo();
  assert.ok(info, 'cuda area missing');
  assert.equal(typeof info.available, 'boolean');
  if (!info.available) assert.match(info.reason ?? '', /\w/, 'an unavailable backend must say why');
  for (const d of info.devices) {
    assert.match(d.computeCapability, /^\d+\.\d+$/);
    assert.ok(d.memoryBytes > 0 && d.name.length > 0);
  }
});

test('built with nvcc: compiled in, cubins for sm_80 and sm_90 in the .node', { skip: noToolkit }, () => {
  const info = cudaInfo()!;
  assert.equal(info.compiled, true, 'nvcc is installed but the addon was built without CUDA: rebuild with `npm run build`');
  assert.deepEqual([...info.archs].sort(), [80, 90]);
  const entries = fatbinEntries(addonFile());
  const cubins = entries.filter((e) => e.kind === 'elf').map((e) => e.arch);
  assert.ok(cubins.includes(80), `no sm_80 cubin (found ${JSON.stringify(entries)})`);
  assert.ok(cubins.includes(90), `no sm_90 cubin (found ${JSON.stringify(entries)})`);
  assert.ok(entries.some((e) => e.kind === 'ptx' && e.arch === 90), 'PTX for compute_90 (newer GPUs JIT it) missing');
});

const cuobjdump = cudaHome && existsSync(join(cudaHome, 'bin', 'cuobjdump')) ? join(cudaHome, 'bin', 'cuobjdump') : '';
test('cuobjdump --list-elf lists sm_80 and sm_90', { skip: noToolkit || (cuobjdump ? false : `cuobjdump is not part of the toolkit at ${cudaHome} (the fatbin reader above checks the same)`) }, () => {
  const r = spawnSync(cuobjdump, ['--list-elf', addonFile()], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /sm_80/);
  assert.match(r.stdout, /sm_90/);
});

test('without a usable GPU the engine reports the CPU backend and the device calls reject with the reason', async (t) => {
  const info = cudaInfo()!;
  if (info.available) return t.skip(`a GPU is present (${info.devices[0]?.name}): covered by gpu.test.ts`);
  const engine = (loadAddon() as unknown as { engine: { backend: string } }).engine;
  assert.equal(engine.backend, 'cpu');
  const cuda = (loadAddon() as unknown as { cuda: { gemm(a: object): Promise<void> } }).cuda;
  const one = () => new Float32Array(1);
  await assert.rejects(cuda.gemm({ m: 1, n: 1, k: 1, a: one(), b: one(), c: one() }), /CUDA unavailable: .+/);
});
