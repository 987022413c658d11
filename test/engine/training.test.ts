// Whole models trained by the engine: every family learns the seeded synthetic task, runs are
// deterministic for a seed and thread count, and checkpoints continue a run exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planModel } from '../../core/planner';
import { specInventory, type ModelSpec } from '../../core/modelSpec';
import { createModel, EngineDataset, type PlanLike, type StepResult } from '../../native/engine';
import { loadTextCorpus, syntheticClassification, syntheticTokens } from '../../native/datasets';
import { MIXER, MIXER_PLAN, PF } from './fixtures';

const images = () => new EngineDataset(syntheticClassification({ features: 64, classes: 4, train: 1024, test: 256, seed: 3 }));

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

async function trainAndCheck(spec: ModelSpec, plan: PlanLike | undefined, data: EngineDataset, steps: number, lr = 3e-3) {
  const m = await createModel({ spec, plan, seed: 1, threads: 2, train: { batch: 32, lr, totalSteps: steps, warmupSteps: 5 } });
  const r = await m.trainSteps(data, steps);
  const first = mean(r.slice(0, 5).map((s) => s.loss));
  const last = mean(r.slice(-5).map((s) => s.loss));
  assert.ok(last < 0.6 * first, `${spec.kind}: loss went from ${first.toFixed(3)} to ${last.toFixed(3)}`);
  return { model: m, steps: r, evalResult: await m.evaluate(data) };
}

test('MLP classifier learns the synthetic task', async () => {
  const data = new EngineDataset(syntheticClassification({ features: 32, classes: 4, train: 1024, test: 256 }));
  const { evalResult } = await trainAndCheck({ kind: 'mlp', inputFeatures: 32, hidden: [64], classes: 4 }, undefined, data, 60);
  assert.ok((evalResult.accuracy ?? 0) > 0.9, `accuracy ${evalResult.accuracy}`);
});

test('Pixelfly MLP-Mixer learns the synthetic task', async () => {
  const { model, evalResult } = await trainAndCheck(MIXER, MIXER_PLAN, images(), 80);
  assert.ok(model.params().some((p) => p.name === 'blocks.1.channel_mix.fc1.sparse.weight'));
  assert.ok((evalResult.accuracy ?? 0) > 0.8, `accuracy ${evalResult.accuracy}`);
});

test('ViT (class token, Pixelfly MLP) learns the synthetic task', async () => {
  const spec: ModelSpec = { kind: 'vit', image: { channels: 1, height: 8, width: 8 }, patch: 2, dim: 32, depth: 2, heads: 2, mlpHidden: 64, classes: 4 };
  const plan = { layers: [{ name: 'blocks.mlp.fc1', sparsify: true, config: PF }] };
  const { evalResult } = await trainAndCheck(spec, plan, images(), 160);
  assert.ok((evalResult.accuracy ?? 0) > 0.8, `accuracy ${evalResult.accuracy}`);
});

test('char-level GPT learns the synthetic token task and reports perplexity', async () => {
  const data = new EngineDataset(syntheticTokens({ vocab: 16, train: 8192, test: 2048 }));
  const spec: ModelSpec = { kind: 'gpt', vocab: 16, context: 16, dim: 32, depth: 1, heads: 2, mlpHidden: 64 };
  const plan = { layers: [{ name: 'blocks.mlp.fc1', sparsify: true, config: PF }] };
  const { evalResult } = await trainAndCheck(spec, plan, data, 100, 1e-2);
  assert.ok(evalResult.perplexity !== undefined && evalResult.perplexity < 8, `perplexity ${evalResult.perplexity} (uniform would be 16)`);
});

test('GPT trains on a text file corpus', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-text-'));
  try {
    const file = join(dir, 'corpus.txt');
    writeFileSync(file, 'the quick brown fox jumps over the lazy dog. '.repeat(200));
    const corpus = await loadTextCorpus(file);
    const data = new EngineDataset(corpus);
    const spec: ModelSpec = { kind: 'gpt', vocab: corpus.classes, context: 16, dim: 32, depth: 1, heads: 2, mlpHidden: 64 };
    await trainAndCheck(spec, undefined, data, 60, 1e-2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('spec → core planner → plan → engine is one path', async () => {
  const spec: ModelSpec = { ...MIXER, dim: 256, channelHidden: 1024 } as ModelSpec;
  const plan = planModel(specInventory(spec), { budget: 0.5 }, { minDim: 16 });
  assert.ok(plan.layers.some((l) => l.sparsify), `the planner sparsified nothing: ${plan.summary}`);
  const m = await createModel({ spec, plan, seed: 2, threads: 1, train: { batch: 8, lr: 1e-3, totalSteps: 10 } });
  const sparse = m.params().filter((p) => p.name.endsWith('.sparse.weight')).length;
  assert.equal(sparse, plan.layers.filter((l) => l.sparsify).reduce((a, l) => a + l.count, 0));
  const [step] = await m.trainSteps(images(), 1);
  assert.ok(Number.isFinite(step.loss));
});

test('deterministic for a seed and thread count; another seed differs', async () => {
  const run = async (seed: number) => {
    const m = await createModel({ spec: MIXER, plan: MIXER_PLAN, seed, threads: 2, train: { batch: 16, lr: 1e-3, totalSteps: 10 } });
    return (await m.trainSteps(images(), 6)).map((s) => s.loss);
  };
  const a = await run(4);
  assert.deepEqual(await run(4), a);
  assert.notDeepEqual(await run(5), a);
});

test('dense token mixing (the fused per-sample layer, per-thread gradient partials) is deterministic too', async () => {
  // Token mixing left dense, so it runs as TokenMixMlp, whose weight gradients are summed from
  // per-thread partials; Pixelfly channel mixing sums the gate's gradient the same way.
  const plan: PlanLike = { layers: MIXER_PLAN.layers.filter((l) => !l.name.startsWith('blocks.token_mix')) };
  const run = async () => {
    const m = await createModel({ spec: MIXER, plan, seed: 4, threads: 2, train: { batch: 16, lr: 1e-3, totalSteps: 10 } });
    return (await m.trainSteps(images(), 6)).map((s) => s.loss);
  };
  const a = await run();
  assert.ok(a.every(Number.isFinite), 'losses are finite');
  assert.deepEqual(await run(), a);
});

test('a step reports its time per part of the model, in model order, within the forward and backward times', async () => {
  const m = await createModel({ spec: MIXER, plan: MIXER_PLAN, seed: 1, threads: 1, train: { batch: 16, lr: 1e-3, totalSteps: 10 } });
  for (const s of await m.trainSteps(images(), 3)) {
    assert.deepEqual(s.ms.parts.map((p) => p.name), ['patch_embed', 'token_mix', 'channel_mix', 'head']);
    for (const p of s.ms.parts) assert.ok(p.forward > 0 && p.backward > 0, `${p.name}: ${JSON.stringify(p)}`);
    const sum = (k: 'forward' | 'backward') => s.ms.parts.reduce((a, p) => a + p[k], 0);
    assert.ok(sum('forward') <= s.ms.forward, `parts' forward ${sum('forward')} ms > forward ${s.ms.forward} ms`);
    assert.ok(sum('backward') <= s.ms.backward, `parts' backward ${sum('backward')} ms > backward ${s.ms.backward} ms`);
  }
  const gpt = await createModel({
    spec: { kind: 'gpt', vocab: 16, context: 8, dim: 16, depth: 2, heads: 2, mlpHidden: 32 }, seed: 1, threads: 1,
    train: { batch: 4, lr: 1e-3, totalSteps: 10 },
  });
  const [step] = await gpt.trainSteps(new EngineDataset(syntheticTokens({ vocab: 16, train: 512, test: 64 })), 1);
  // The attention core is a part of its own; the rest of the attention block (LayerNorm, qkv, proj)
  // is attn_proj, which does not count the core's time again.
  assert.deepEqual(step.ms.parts.map((p) => p.name), ['embedding', 'attention', 'attn_proj', 'mlp', 'head']);
  for (const k of ['forward', 'backward'] as const) {
    const sum = step.ms.parts.reduce((a, p) => a + p[k], 0);
    assert.ok(sum <= step.ms[k], `gpt parts' ${k} ${sum} ms > ${k} ${step.ms[k]} ms`);
    assert.ok(step.ms.parts.every((p) => p[k] > 0), `every part has ${k} time: ${JSON.stringify(step.ms.parts)}`);
  }
});

test("a GPT with Pixelfly attention and its low-rank term learns, and resumes from a checkpoint exactly (its projections come from the seed)", async () => {
  const spec = { kind: 'gpt', vocab: 16, context: 48, dim: 16, depth: 2, heads: 2, mlpHidden: 32, attention: { kind: 'pixelfly', block: 16, butterflySize: 2, nFactors: 1, features: 8 } };
  const data = new EngineDataset(syntheticTokens({ vocab: 16, train: 4096, test: 256 }));
  const make = () => createModel({ spec: spec as ModelSpec, seed: 3, threads: 1, train: { batch: 8, lr: 3e-3, totalSteps: 40 } });
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-lowrank-'));
  try {
    const a = await make();
    const first = (await a.trainSteps(data, 20)).map((s) => s.loss);
    assert.ok(first.every(Number.isFinite), 'finite losses');
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    assert.ok(mean(first.slice(-5)) < mean(first.slice(0, 5)), `the loss falls: ${first.map((l) => l.toFixed(3)).join(' ')}`);
    const file = join(dir, 'a.ckpt');
    await a.saveCheckpoint(file);
    const continued = (await a.trainSteps(data, 3)).map((s) => s.loss);
    const b = await make();
    await b.loadCheckpoint(file);
    assert.deepEqual((await b.trainSteps(data, 3)).map((s) => s.loss), continued);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkpoint round trip continues the run exactly; corrupt or foreign checkpoints are refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-ckpt-'));
  try {
    const data = images();
    const make = () => createModel({ spec: MIXER, plan: MIXER_PLAN, seed: 9, threads: 1, train: { batch: 16, lr: 1e-3, totalSteps: 20 } });
    const a = await make();
    await a.trainSteps(data, 3);
    const file = join(dir, 'a.ckpt');
    await a.saveCheckpoint(file);
    const continued = (await a.trainSteps(data, 4)).map((s: StepResult) => s.loss);

    const b = await make();
    await b.loadCheckpoint(file);
    const resumed = await b.trainSteps(data, 4);
    assert.deepEqual(resumed.map((s) => s.loss), continued);
    assert.equal(resumed[0].step, 4);

    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 0xff;
    const bad = join(dir, 'bad.ckpt');
    writeFileSync(bad, bytes);
    await assert.rejects(b.loadCheckpoint(bad), /bad\.ckpt: checksum mismatch/);
    await assert.rejects(b.loadCheckpoint(join(dir, 'missing.ckpt')), /missing\.ckpt: checkpoint not found/);
    writeFileSync(bad, 'hello');
    await assert.rejects(b.loadCheckpoint(bad), /not a Pixelfly checkpoint/);
    const dense = await createModel({ spec: MIXER, seed: 9, threads: 1, train: { batch: 16, lr: 1e-3, totalSteps: 20 } });
    await assert.rejects(dense.loadCheckpoint(file), /written for a different model/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('weight export is safetensors with the spec, plan and layouts in its metadata', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-export-'));
  try {
    const m = await createModel({ spec: MIXER, plan: MIXER_PLAN, seed: 1, threads: 1, train: { batch: 8, lr: 1e-3, totalSteps: 1 } });
    const file = join(dir, 'w.safetensors');
    await m.exportWeights(file);
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0);
    const header = JSON.parse(buf.toString('utf8', 8, 8 + n));
    const weights = m.weights();
    for (const [name, w] of weights) {
      const t = header[name];
      assert.deepEqual(t.shape, w.shape, name);
      const [lo, hi] = t.data_offsets;
      const stored = new Float32Array(buf.buffer.slice(buf.byteOffset + 8 + n + lo, buf.byteOffset + 8 + n + hi));
      assert.deepEqual(stored, w.data, name);
    }
    const layouts = JSON.parse(header.__metadata__.layouts);
    assert.deepEqual(Object.keys(layouts).sort(), MIXER_PLAN.layers.map((l) => l.name).sort());
    assert.equal(JSON.parse(header.__metadata__.spec).kind, 'mixer');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// bf16 on the CPU: every product rounds its inputs to bf16 (AMX, AVX512-BF16, or the fp32 kernels
// on rounded copies), while weights, gradients and AdamW moments stay fp32. The run must differ
// from the fp32 one (the rounding really happens), start within bf16 rounding of it, learn as well,
// and stay deterministic. Both the Pixelfly layers and the dense Mixer's fused token mixing.
test('bf16 on the CPU: Pixelfly and dense Mixers train like fp32 within bf16 rounding, deterministically', async () => {
  const data = images();
  const run = async (plan: PlanLike | undefined, precision: 'fp32' | 'bf16') => {
    const m = await createModel({ spec: MIXER, plan, seed: 1, threads: 2, backend: 'cpu', precision, train: { batch: 32, lr: 3e-3, totalSteps: 60, warmupSteps: 5 } });
    assert.equal(m.precision, precision);
    const losses = (await m.trainSteps(data, 60)).map((s) => s.loss);
    return { losses, accuracy: (await m.evaluate(data)).accuracy ?? 0 };
  };
  for (const [name, plan] of [['Pixelfly', MIXER_PLAN], ['dense', undefined]] as const) {
    const fp32 = await run(plan, 'fp32');
    const bf16 = await run(plan, 'bf16');
    assert.notDeepEqual(bf16.losses, fp32.losses, `${name}: bf16 losses equal the fp32 ones, the products did not round`);
    assert.ok(Math.abs(bf16.losses[0] - fp32.losses[0]) < 1e-2 * fp32.losses[0], `${name} first step: fp32 ${fp32.losses[0]} bf16 ${bf16.losses[0]}`);
    const first = mean(bf16.losses.slice(0, 5)), last = mean(bf16.losses.slice(-5));
    assert.ok(last < 0.6 * first, `${name} bf16: loss went from ${first.toFixed(3)} to ${last.toFixed(3)}`);
    assert.ok(Math.abs(bf16.accuracy - fp32.accuracy) < 0.05, `${name}: accuracy fp32 ${fp32.accuracy} bf16 ${bf16.accuracy}`);
    if (plan) assert.deepEqual((await run(plan, 'bf16')).losses, bf16.losses, `${name}: bf16 runs are deterministic`);
  }
});
