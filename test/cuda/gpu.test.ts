// The CUDA backend on a real GPU, against the CPU: every block-sparse product in fp32 (vs the CPU
// kernels), bf16 (vs the host reference fed the same bf16 rounding) and fp16, dense products through
// cuBLAS (or our fallback), device-resident timings, and whole training steps of a Pixelfly Mixer on
// the CUDA backend vs the CPU engine. Without a usable GPU every test here is SKIPPED, with the
// reason the CUDA runtime gave (no driver, no device, too old, or not compiled in).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bsrBackwardData, bsrBackwardWeight, bsrForward, gemm } from '../../native/kernels';
import { cudaInfo, nativeCuda, nativeLayoutOf, type CudaPrecision } from '../../native/cuda';
import { createModel, EngineDataset } from '../../native/engine';
import { syntheticClassification } from '../../native/datasets';
import { productCases, relError, type ProductCase } from './cases';
import { mulberry32 } from '../support/random';
import { MIXER, MIXER_PLAN } from '../engine/fixtures';

const info = cudaInfo();
const skip = !info
  ? 'the native addon did not load'
  : !info.available
    ? `no usable GPU here — GPU tests not run: ${info.reason}`
    : false;

const args = (c: ProductCase, precision: CudaPrecision) => ({ layout: nativeLayoutOf(c.index), out: c.out, in: c.in, m: c.m, precision });

// fp32: only summation order differs from the CPU. bf16 vs a reference with the same input rounding:
// only summation order. fp16 vs fp32 CPU: 11-bit mantissa inputs.
const TOL = { fp32: 2e-5, bf16: 1e-4, fp16: 5e-3 } as const;

async function expected(c: ProductCase, p: CudaPrecision, op: 'fwd' | 'dx' | 'dw'): Promise<Float32Array> {
  const w = { index: c.index, out: c.out, in: c.in, weights: c.weights };
  if (p === 'bf16') {
    const ref = nativeCuda().reference;
    if (op === 'fwd') {
      const y = new Float32Array(c.m * c.out);
      await ref.bsrForward({ ...args(c, p), weights: c.weights, x: c.x, y, bias: c.bias });
      return y;
    }
    if (op === 'dx') {
      const dx = new Float32Array(c.m * c.in);
      await ref.bsrBackwardData({ ...args(c, p), weights: c.weights, dy: c.dy, dx });
      return dx;
    }
    const dw = new Float32Array(c.weights.length);
    await ref.bsrBackwardWeight({ ...args(c, p), dy: c.dy, x: c.x, dw, chunkRows: Math.max(64, Math.ceil(c.m / 64) * 64) });
    return dw;
  }
  if (op === 'fwd') return bsrForward(w, c.x, c.m, { bias: c.bias });
  if (op === 'dx') return bsrBackwardData(w, c.dy, c.m);
  return bsrBackwardWeight(w, c.dy, c.x, c.m);
}

for (const precision of ['fp32', 'bf16', 'fp16'] as const) {
  test(`GPU ${precision} block-sparse products = CPU (every block size, padding, odd M, empty rows/columns)`, { skip }, async () => {
    const cuda = nativeCuda();
    for (const c of productCases()) {
      const y = new Float32Array(c.m * c.out).fill(Number.NaN);  // overwrite must not read it
      await cuda.bsrForward({ ...args(c, precision), weights: c.weights, x: c.x, y, bias: c.bias });
      const ey = await expected(c, precision, 'fwd');
      assert.ok(relError(y, ey) < TOL[precision], `${c.name} forward: ${relError(y, ey)}`);

      const dx = new Float32Array(c.m * c.in).fill(Number.NaN);
      await cuda.bsrBackwardData({ ...args(c, precision), weights: c.weights, dy: c.dy, dx });
      const edx = await expected(c, precision, 'dx');
      assert.ok(relError(dx, edx) < TOL[precision], `${c.name} dX: ${relError(dx, edx)}`);

      const dw = new Float32Array(c.weights.length).fill(Number.NaN);
      await cuda.bsrBackwardWeight({ ...args(c, precision), dy: c.dy, x: c.x, dw });
      const edw = await expected(c, precision, 'dw');
      // bf16 dW: the GPU's chunking depends on the SM count, so the order of sums differs more.
      assert.ok(relError(dw, edw) < (precision === 'bf16' ? 1e-3 : TOL[precision]), `${c.name} dW: ${relError(dw, edw)}`);

      const acc = y.slice();
      await cuda.bsrForward({ ...args(c, precision), weights: c.weights, x: c.x, y: acc, bias: c.bias, accumulate: true });
      assert.ok(relError(acc, y.map((v) => 2 * v)) < TOL[precision], `${c.name} accumulate`);
    }
  });
}

test('GPU dense products (cuBLAS or fallback) = CPU gemm, every transpose', { skip }, async () => {
  const rand = mulberry32(7);
  const rnd = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
  for (const [m, n, k] of [[1, 1, 1], [33, 17, 65], [200, 96, 130]]) {
    for (const transA of [false, true])
      for (const transB of [false, true]) {
        const a = rnd(m * k), b = rnd(k * n);
        const want = await gemm(a, b, m, n, k, { transA, transB });
        for (const precision of ['fp32', 'bf16'] as const) {
          if (precision === 'bf16' && !info?.cublas) continue;  // reduced precision needs cuBLAS
          const c = new Float32Array(m * n);
          await nativeCuda().gemm({ transA, transB, m, n, k, a, b, c, precision });
          const tol = precision === 'fp32' ? 2e-5 : 2e-2;
          assert.ok(relError(c, want) < tol, `${m}x${n}x${k} ${transA}/${transB} ${precision}: ${relError(c, want)}`);
        }
      }
  }
});

// Under the host emulation (emulatedAddon.test.ts) timings mean nothing and M = 4096 takes minutes.
const emulated = info?.devices[0]?.name.includes('emulation') ? 'timing the host emulation would mean nothing (and take minutes)' : false;

test('benchLayer times the Pixelfly products and the dense ones on device-resident data', { skip: skip || emulated }, async () => {
  const c = productCases().find((p) => p.name.startsWith('butterfly b32 512x256'))!;
  const r = await nativeCuda().benchLayer({ layout: nativeLayoutOf(c.index), out: c.out, in: c.in, m: 4096, precision: 'bf16', repeats: 3 });
  for (const v of [...Object.values(r.pixelfly), ...Object.values(r.dense)]) assert.ok(v > 0 && Number.isFinite(v));
});

test('training steps on the CUDA backend follow the CPU engine', { skip }, async () => {
  const run = async (backend: 'cpu' | 'cuda') => {
    const m = await createModel({ spec: MIXER, plan: MIXER_PLAN, seed: 3, threads: 1, train: { batch: 16, lr: 1e-3, totalSteps: 10 }, backend });
    assert.equal(m.backend, backend);
    const data = new EngineDataset(syntheticClassification({ features: 64, classes: 4, train: 512, test: 128, seed: 3 }));
    const losses = (await m.trainSteps(data, 5)).map((s) => s.loss);
    return { losses, params: m.params() };
  };
  const cpu = await run('cpu');
  const gpu = await run('cuda');
  for (let i = 0; i < cpu.losses.length; i++)
    assert.ok(Math.abs(cpu.losses[i] - gpu.losses[i]) < 1e-4 * Math.max(1, Math.abs(cpu.losses[i])), `step ${i}: cpu ${cpu.losses[i]} cuda ${gpu.losses[i]}`);
  assert.deepEqual(gpu.params.map((p) => p.name), cpu.params.map((p) => p.name));
});

test('asking for the CUDA backend where it is unavailable is refused with the reason', { skip: info?.available ? 'a GPU is present' : false }, async () => {
  const { engine } = (await import('../../native/addon')).loadAddon() as unknown as { engine: { createModel(o: object): Promise<unknown> } };
  const model = { kind: 'mlp', features: 4, hidden: [4], classes: 2 };
  await assert.rejects(async () => engine.createModel({ model, backend: 'cuda' }), /backend: 'cuda' requested but .+/);
  await assert.rejects(async () => engine.createModel({ model, backend: 'tpu' }), /backend: must be 'auto', 'cpu' or 'cuda'/);
});
