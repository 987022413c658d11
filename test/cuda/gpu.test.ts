// The CUDA backend on a real GPU, against the CPU: every block-sparse product in fp32 (vs the CPU
// kernels), bf16 (vs the host reference fed the same bf16 rounding) and fp16, dense products through
// cuBLAS (or our fallback), device-resident timings; then the engine on the CUDA backend, where every
// layer computes on the device with weights and activations resident there: each probe layer's
// output, input gradient and parameter gradients vs the CPU, training steps of an MLP, a Mixer, a ViT
// and a GPT vs the CPU engine (losses, parameters, evaluation), and two models training at once on
// their own streams. Without a usable GPU every test here is SKIPPED, with the reason the CUDA
// runtime gave (no driver, no device, too old, or not compiled in); emulatedAddon.test.ts runs them
// all on the host emulation of the device.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bsrBackwardData, bsrBackwardWeight, bsrForward, gemm } from '../../native/kernels';
import { cudaInfo, nativeCuda, nativeLayoutOf, type CudaPrecision } from '../../native/cuda';
import { createModel, createProbe, EngineDataset, pixelflyLayerConfig, type EnginePrecision, type PlanLike } from '../../native/engine';
import { syntheticClassification, syntheticTokens } from '../../native/datasets';
import { productCases, relError, type ProductCase } from './cases';
import { mulberry32 } from '../../core/random';
import { MIXER, MIXER_PLAN, PF } from '../engine/fixtures';
import type { ModelSpec } from '../../core/modelSpec';

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

// ---------------------------------------------------------------- the engine on the CUDA backend

/** A probe (one layer alone) on a chosen backend. */
const probeOn = (backend: 'cpu' | 'cuda', model: Record<string, unknown>, seed = 3) => createProbe(model, seed, 1, { backend });

const PROBE_PF = { block: 16, butterflySize: 4, nFactors: 2 };
/** A lone Pixelfly layer features → classes on PROBE_PF's layout, with low-rank part `rank`. */
const pixelflyProbe = (features: number, classes: number, probeT: number, rank: number) => ({
  probeLayer: 'pixelfly', features, classes, probeT,
  pixelfly: { layer: pixelflyLayerConfig(features, classes, { ...PROBE_PF, rank }) },
});
const PROBES: Array<{ name: string; model: Record<string, unknown>; batch: number; ids?: number }> = [
  { name: 'linear', model: { probeLayer: 'linear', features: 24, classes: 20, probeT: 3 }, batch: 2 },
  {
    name: 'pixelfly, in ≤ out (gate scales x)',
    model: pixelflyProbe(40, 72, 3, 4),
    batch: 3,
  },
  {
    name: 'pixelfly, in > out (gate applied by the row pass)',
    model: pixelflyProbe(64, 36, 3, 3),
    batch: 2,
  },
  {
    // 80 rows: the gate weight's gradient sums two chunks of rows (64 a chunk), added in order.
    name: 'pixelfly, rows in two column-sum chunks',
    model: pixelflyProbe(40, 24, 40, 2),
    batch: 2,
  },
  {
    name: 'pixelfly, block-sparse only (rank 0)',
    model: pixelflyProbe(64, 64, 2, 0),
    batch: 2,
  },
  { name: 'gelu', model: { probeLayer: 'gelu', dim: 10, probeT: 3 }, batch: 2 },
  { name: 'layernorm', model: { probeLayer: 'layernorm', dim: 12, probeT: 3 }, batch: 2 },
  // Rows wider than a row group (32 lanes): every lane sums several columns before the tree.
  { name: 'layernorm, rows wider than a row group', model: { probeLayer: 'layernorm', dim: 45, probeT: 3 }, batch: 3 },
  { name: 'transpose', model: { probeLayer: 'transpose', dim: 5, probeT: 3 }, batch: 2 },
  { name: 'pool_mean', model: { probeLayer: 'pool_mean', dim: 6, probeT: 4 }, batch: 2 },
  { name: 'pool_cls', model: { probeLayer: 'pool_cls', dim: 6, probeT: 4 }, batch: 2 },
  { name: 'cls_pos', model: { probeLayer: 'cls_pos', dim: 6, probeT: 4 }, batch: 2 },
  // 70 samples: the class-token and position gradients sum the batch in two chunks (64 a chunk).
  { name: 'cls_pos, batch in two chunks', model: { probeLayer: 'cls_pos', dim: 6, probeT: 4 }, batch: 70 },
  { name: 'patchify', model: { probeLayer: 'patchify', channels: 2, height: 4, width: 6, patch: 2 }, batch: 2 },
  { name: 'embedding', model: { probeLayer: 'embedding', vocab: 11, dim: 8, probeT: 5 }, batch: 2, ids: 11 },
  { name: 'embedding, batch in two chunks', model: { probeLayer: 'embedding', vocab: 11, dim: 8, probeT: 5 }, batch: 70, ids: 11 },
  { name: 'mixer_block, dense', model: { probeLayer: 'mixer_block', dim: 8, probeT: 6, tokenHidden: 5, channelHidden: 12 }, batch: 2 },
  {
    name: 'mixer_block, Pixelfly channel and token mixing',
    model: {
      probeLayer: 'mixer_block', dim: 32, probeT: 16, tokenHidden: 32, channelHidden: 64,
      pixelfly: {
        'blocks.channel_mix.fc1': pixelflyLayerConfig(32, 64, { ...PROBE_PF, rank: 2 }),
        'blocks.channel_mix.fc2': pixelflyLayerConfig(64, 32, { ...PROBE_PF, rank: 2 }),
        'blocks.token_mix.fc1': pixelflyLayerConfig(16, 32, { ...PROBE_PF, butterflySize: 2, nFactors: 1, rank: 2 }),
      },
    },
    batch: 2,
  },
  { name: 'transformer_block, non-causal', model: { probeLayer: 'transformer_block', dim: 8, probeT: 5, heads: 2, mlpHidden: 16 }, batch: 2 },
  // More keys than a row group has lanes: the attention kernels' key loops stride (and, causal, stop mid-stride).
  { name: 'transformer_block, causal, 37 keys', model: { probeLayer: 'transformer_block', dim: 8, probeT: 37, heads: 2, mlpHidden: 16, causal: true }, batch: 2 },
  // Pixelfly attention: kept score blocks only (a butterfly with a global token), a partial last block.
  {
    name: 'transformer_block, causal, Pixelfly attention (50 keys)',
    model: {
      probeLayer: 'transformer_block', dim: 8, probeT: 50, heads: 2, mlpHidden: 16, causal: true,
      attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, globalSize: 1 },
    },
    batch: 2,
  },
  // Its low-rank term (Performer features over the dropped score blocks, one normaliser with the
  // sparse part): more keys than a row group's lanes, a partial last block; then not causal, a global token.
  {
    name: 'transformer_block, causal, Pixelfly attention with its low-rank term (50 keys)',
    model: {
      probeLayer: 'transformer_block', dim: 8, probeT: 50, heads: 2, mlpHidden: 16, causal: true,
      attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, features: 6 },
    },
    batch: 2,
  },
  {
    name: 'transformer_block, Pixelfly attention with its low-rank term, not causal, a global token',
    model: {
      probeLayer: 'transformer_block', dim: 8, probeT: 40, heads: 2, mlpHidden: 16,
      attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, globalSize: 1, features: 4 },
    },
    batch: 2,
  },
  {
    name: 'transformer_block, causal, Pixelfly qkv/proj/mlp',
    model: {
      probeLayer: 'transformer_block', dim: 32, probeT: 4, heads: 4, mlpHidden: 64, causal: true,
      pixelfly: {
        'blocks.attn.qkv': pixelflyLayerConfig(32, 96, { ...PROBE_PF, butterflySize: 2, nFactors: 1, rank: 2 }),
        'blocks.attn.proj': pixelflyLayerConfig(32, 32, { ...PROBE_PF, butterflySize: 2, nFactors: 1, rank: 2 }),
        'blocks.mlp.fc2': pixelflyLayerConfig(64, 32, { ...PROBE_PF, rank: 2 }),
      },
    },
    batch: 2,
  },
];

// fp32 on both sides: only the order of sums differs (and erf/exp: the CPU's own, the device's).
const PROBE_TOL = 1e-4;

for (const c of PROBES) {
  test(`probe ${c.name}: CUDA = CPU (y, dx, every parameter gradient)`, { skip }, async () => {
    const cpu = await probeOn('cpu', c.model);
    const gpu = await probeOn('cuda', c.model);
    const dims = cpu.dims();
    assert.deepEqual(gpu.dims(), dims);
    assert.deepEqual(gpu.getState().params, cpu.getState().params, 'the same seed gives the same initial parameters');
    const rand = mulberry32(11);
    const x = Float32Array.from({ length: c.batch * dims.inT * dims.inD }, () => (c.ids ? Math.floor(rand() * c.ids) : rand() * 2 - 1));
    const dy = Float32Array.from({ length: c.batch * dims.outT * dims.outD }, () => rand() * 2 - 1);
    const want = cpu.probe(x, c.batch, dy);
    const got = gpu.probe(x, c.batch, dy);
    assert.ok(relError(got.y, want.y) < PROBE_TOL, `y: ${relError(got.y, want.y)}`);
    if (!c.ids) assert.ok(relError(got.dx!, want.dx!) < PROBE_TOL, `dx: ${relError(got.dx!, want.dx!)}`);
    assert.ok(want.grad!.length === 0 || relError(got.grad!, want.grad!) < PROBE_TOL, `grad: ${relError(got.grad!, want.grad!)}`);
  });
}

const IMAGE = { channels: 1, height: 8, width: 8 };
const TRAINED: Array<{ name: string; spec: ModelSpec; plan?: PlanLike; data: () => EngineDataset }> = [
  {
    name: 'mlp',
    spec: { kind: 'mlp', inputFeatures: 64, hidden: [64], classes: 4 },
    plan: { layers: [{ name: 'fc1', sparsify: true, config: PF }] },
    data: () => new EngineDataset(syntheticClassification({ features: 64, classes: 4, train: 512, test: 128, seed: 3 })),
  },
  { name: 'mixer', spec: MIXER, plan: MIXER_PLAN, data: () => new EngineDataset(syntheticClassification({ features: 64, classes: 4, train: 512, test: 128, seed: 3 })) },
  {
    name: 'vit (class-token pool)',
    spec: { kind: 'vit', image: IMAGE, patch: 4, dim: 16, depth: 1, heads: 2, mlpHidden: 32, classes: 4, pool: 'cls' },
    plan: { layers: [{ name: 'blocks.mlp.fc1', sparsify: true, config: PF }] },
    data: () => new EngineDataset(syntheticClassification({ features: 64, classes: 4, train: 512, test: 128, seed: 3 })),
  },
  {
    name: 'gpt',
    spec: { kind: 'gpt', vocab: 16, context: 8, dim: 16, depth: 1, heads: 2, mlpHidden: 32 },
    plan: { layers: [{ name: 'blocks.mlp.fc1', sparsify: true, config: PF }] },
    data: () => new EngineDataset(syntheticTokens({ vocab: 16, train: 2048, test: 256 })),
  },
  {
    name: 'gpt, Pixelfly attention with its low-rank term',
    spec: {
      kind: 'gpt', vocab: 16, context: 64, dim: 16, depth: 1, heads: 2, mlpHidden: 32,
      attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, features: 8 },
    },
    plan: { layers: [{ name: 'blocks.mlp.fc1', sparsify: true, config: PF }] },
    data: () => new EngineDataset(syntheticTokens({ vocab: 16, train: 4096, test: 512 })),
  },
  {
    // More classes than a row group has lanes: the loss kernel's max, argmax and Σ stride over the row.
    name: 'mlp, 40 classes',
    spec: { kind: 'mlp', inputFeatures: 64, hidden: [64], classes: 40 },
    data: () => new EngineDataset(syntheticClassification({ features: 64, classes: 40, train: 512, test: 128, seed: 3 })),
  },
];
const STEPS = 5;

async function trained(t: (typeof TRAINED)[number], backend: 'cpu' | 'cuda', seed = 3, precision: EnginePrecision = 'fp32') {
  const m = await createModel({ spec: t.spec, plan: t.plan, seed, threads: 1, train: { batch: 8, lr: 1e-3, totalSteps: 10 }, backend, precision });
  assert.equal(m.backend, backend);
  assert.equal(m.precision, precision);
  const data = t.data();
  const losses = (await m.trainSteps(data, STEPS)).map((s) => s.loss);
  return { m, data, losses };
}

for (const t of TRAINED) {
  test(`${t.name}: ${STEPS} training steps on CUDA follow the CPU (losses, parameters, evaluation)`, { skip }, async () => {
    const cpu = await trained(t, 'cpu');
    const gpu = await trained(t, 'cuda');
    for (let i = 0; i < STEPS; i++)
      assert.ok(Math.abs(cpu.losses[i] - gpu.losses[i]) < 1e-4 * Math.max(1, Math.abs(cpu.losses[i])), `step ${i}: cpu ${cpu.losses[i]} cuda ${gpu.losses[i]}`);
    assert.deepEqual(gpu.m.params().map((p) => p.name), cpu.m.params().map((p) => p.name));
    // AdamW divides by √v: a gradient that is ~0 with a different rounding on each side can move its
    // parameter by up to lr a step in either direction, so parameters agree to STEPS·lr, not to ulps.
    const pc = cpu.m.native.getState().params, pg = gpu.m.native.getState().params;
    assert.ok(relError(pg, pc) < 2 * STEPS * 1e-3, `parameters after ${STEPS} steps: ${relError(pg, pc)}`);
    const ec = await cpu.m.evaluate(cpu.data, { maxSamples: 64 });
    const eg = await gpu.m.evaluate(gpu.data, { maxSamples: 64 });
    assert.equal(eg.samples, ec.samples);
    assert.ok(Math.abs(eg.loss - ec.loss) < 1e-3 * Math.max(1, ec.loss), `evaluation loss: cpu ${ec.loss} cuda ${eg.loss}`);
    if (ec.accuracy !== undefined) assert.ok(Math.abs((eg.accuracy ?? -1) - ec.accuracy) <= 1 / ec.samples + 1e-12, `accuracy: cpu ${ec.accuracy} cuda ${eg.accuracy}`);
  });
}

// A timeout, so interfering launches (the emulation's shared fibers without its device mutex
// deadlock) fail here instead of hanging the run; a few seconds under the emulation.
test('two CUDA models trained concurrently (one stream each) give the losses they give one after the other', { skip, timeout: 300_000 }, async () => {
  const [mixer, gpt] = [TRAINED[1], TRAINED[3]];
  const alone = [(await trained(mixer, 'cuda', 5)).losses, (await trained(gpt, 'cuda', 6)).losses];
  const together = (await Promise.all([trained(mixer, 'cuda', 5), trained(gpt, 'cuda', 6)])).map((r) => r.losses);
  // Bitwise: every kernel sums in a fixed order, whatever runs beside it.
  assert.deepEqual(together, alone);
});

// The transpose puts the batch on grid.y, which a device caps at 65535: a larger batch is folded
// (each block row takes matrices b, b + 65535, …). The emulation runs its 65535 blocks too
// (layerKernelsHost.test.ts also checks the fold with a small grid).
test('transpose with a batch above the 65535 grid.y limit: CUDA = CPU', { skip, timeout: 120_000 }, async () => {
  const model = { probeLayer: 'transpose', dim: 2, probeT: 3 };
  const batch = 70_000;
  const cpu = await probeOn('cpu', model), gpu = await probeOn('cuda', model);
  const rand = mulberry32(5);
  const x = Float32Array.from({ length: batch * 6 }, () => rand() * 2 - 1);
  const dy = Float32Array.from({ length: batch * 6 }, () => rand() * 2 - 1);
  const want = cpu.probe(x, batch, dy), got = gpu.probe(x, batch, dy);
  assert.deepEqual(got.y, want.y);
  assert.deepEqual(got.dx, want.dx);
});

// Mixed precision: bf16 inputs to the block-sparse products (and to the dense ones where cuBLAS is
// present), fp32 accumulation, fp32 master weights and optimizer state. It must differ from the fp32
// run (the tensor-core path is really in use) by no more than bf16 rounding does (1e-4 in the loss
// under the host emulation, which rounds as the hardware converts).
test('bf16 mixed-precision training on CUDA follows the fp32 CPU run within bf16 rounding', { skip }, async () => {
  const mixer = TRAINED[1];
  const cpu = (await trained(mixer, 'cpu')).losses;
  const fp32 = (await trained(mixer, 'cuda')).losses;
  const bf16 = (await trained(mixer, 'cuda', 3, 'bf16')).losses;
  assert.notDeepEqual(bf16, fp32, 'bf16 losses equal the fp32 ones: the products did not run in bf16');
  for (let i = 0; i < STEPS; i++)
    assert.ok(Math.abs(bf16[i] - cpu[i]) < 2e-3 * Math.max(1, Math.abs(cpu[i])), `step ${i}: cpu ${cpu[i]} cuda bf16 ${bf16[i]}`);
});

test('asking for the CUDA backend where it is unavailable is refused with the reason', { skip: info?.available ? 'a GPU is present' : false }, async () => {
  const { engine } = (await import('../../native/addon')).loadAddon() as unknown as { engine: { createModel(o: object): Promise<unknown> } };
  const model = { kind: 'mlp', features: 4, hidden: [4], classes: 2 };
  await assert.rejects(async () => engine.createModel({ model, backend: 'cuda' }), /backend: 'cuda' requested but .+/);
  await assert.rejects(async () => engine.createModel({ model, backend: 'tpu' }), /backend: must be 'auto', 'cpu' or 'cuda'/);
});
