// Whole-step estimates: the work a plan does not change bounds the speedup (Amdahl), the parts add
// up, a speedup target is the step's, and the step rates of a profile are validated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PROFILE, parseDeviceProfile, type DeviceProfile } from '../../core/costModel';
import { attentionCoreFlops, attentionLayout, lowRankAttentionFlops, SPARSE_ATTENTION_EFFICIENCY } from '../../core/attention';
import { specInventory, type GptSpec } from '../../core/modelSpec';
import { totalFlops } from '../../core/pixelflyLayer';
import { DEFAULT_TARGET, planModel } from '../../core/planner';
import { fixedSecondsPerSample, modelWork, stepEstimate } from '../../core/stepCost';

const GPT: GptSpec = { kind: 'gpt', vocab: 512, context: 256, dim: 512, depth: 4, heads: 8, mlpHidden: 2048 };

test("a spec's work: its attention cores' FLOPs, its layers' outputs, its input tokens", () => {
  const w = modelWork(specInventory(GPT).layers);
  assert.equal(w.attentionFlops, GPT.depth * totalFlops(attentionCoreFlops(GPT.context, GPT.dim, true)));
  const T = GPT.context;
  const perBlock = T * (3 * GPT.dim + GPT.dim + GPT.mlpHidden + GPT.dim);
  assert.equal(w.pointwiseElements, T * GPT.dim /* embedding */ + GPT.depth * perBlock + T * GPT.vocab /* head */);
  assert.equal(w.inputValues, T);
  assert.equal(w.sparseAttentionFlops, 0);
});

test("a spec with Pixelfly attention: its cores cost their kept score blocks, at the block-sparse kernels' efficiency", () => {
  const attention = { kind: 'pixelfly' as const, block: 32, butterflySize: 32, nFactors: 2 };
  const sparse = { ...GPT, context: 1024, attention };
  const dense = { ...sparse, attention: { kind: 'dense' as const } };
  const { density } = attentionLayout(1024, attention, true);
  assert.ok(density < 0.5, `${density}`);
  const ws = modelWork(specInventory(sparse).layers);
  const wd = modelWork(specInventory(dense).layers);
  assert.equal(ws.attentionFlops, 0);
  assert.ok(Math.abs(ws.sparseAttentionFlops - wd.attentionFlops * density) < 1e-6 * wd.attentionFlops);
  const t = (w: typeof ws) => fixedSecondsPerSample(w, DEFAULT_PROFILE).attention;
  assert.ok(Math.abs(t(ws) / t(wd) - density / SPARSE_ATTENTION_EFFICIENCY) < 1e-9);
  // The model's FLOPs (hints' shares, the plan's fractions) stay the dense core's: like with like.
  assert.deepEqual(specInventory(sparse).layers.find((l) => l.role === 'attn_core'), { ...specInventory(dense).layers.find((l) => l.role === 'attn_core'), scoreDensity: density });
});

test('Pixelfly attention with its low-rank term: the cores also cost the Performer features, at the dense cores\' rate', () => {
  const attention = { kind: 'pixelfly' as const, block: 32, butterflySize: 32, nFactors: 2 };
  const spec = { ...GPT, context: 1024, attention };
  const withFeatures = { ...spec, attention: { ...attention, features: 64 } };
  const core = specInventory(withFeatures).layers.find((l) => l.role === 'attn_core');
  assert.equal(core?.lowRankFeatures, 64);
  const extra = modelWork(specInventory(withFeatures).layers).attentionFlops - modelWork(specInventory(spec).layers).attentionFlops;
  // Forward 6·T·m·d a core (features of q and k, the key blocks' sums, each query's product), backward twice that.
  assert.equal(extra, GPT.depth * 18 * 1024 * 64 * GPT.dim);
  assert.equal(totalFlops(lowRankAttentionFlops(1024, GPT.dim, 64)), 18 * 1024 * 64 * GPT.dim);
});

test('the step estimate adds its parts; only the products and the optimizer change; Amdahl bounds it', () => {
  const work = { pointwiseElements: 1e6, attentionFlops: 1e9, sparseAttentionFlops: 0, inputValues: 1e3 };
  const e = stepEstimate({ work, products: { dense: 0.01, plan: 0.004, sparsified: 0.003 }, params: { dense: 1e6, plan: 4e5 } }, DEFAULT_PROFILE, 16);
  const parts = Object.values(e.parts);
  assert.ok(Math.abs(parts.reduce((a, p) => a + p.denseMs, 0) - e.denseMs) < 1e-9);
  assert.ok(Math.abs(parts.reduce((a, p) => a + p.planMs, 0) - e.planMs) < 1e-9);
  for (const k of ['attention', 'pointwise', 'data'] as const) assert.equal(e.parts[k].denseMs, e.parts[k].planMs);
  assert.ok(e.parts.optimizer.planMs < e.parts.optimizer.denseMs);
  assert.equal(e.productsSpeedup, 2.5);
  assert.ok(e.speedup > 1 && e.speedup < e.productsSpeedup, `${e.speedup}`);
  assert.ok(e.bound !== null && e.bound > e.speedup);
  assert.ok(Math.abs(e.denseShare - (e.planMs - 0.003 * 16 * 1e3) / e.planMs) < 1e-12);
  // A larger batch spreads the optimizer over more samples: its share falls.
  const big = stepEstimate({ work, products: { dense: 0.01, plan: 0.004, sparsified: 0.003 }, params: { dense: 1e6, plan: 4e5 } }, DEFAULT_PROFILE, 256);
  assert.ok(big.parts.optimizer.denseMs / big.denseMs < e.parts.optimizer.denseMs / e.denseMs);
});

test("a plan's estimate is the whole step's: slower than its products alone, and near them when the rest is free", () => {
  const inv = specInventory(GPT);
  const plan = planModel(inv, DEFAULT_TARGET, { batchSize: 8 });
  assert.equal(plan.estSpeedup, plan.estimate.speedup);
  assert.equal(plan.estimate.batchSize, 8);
  assert.ok(plan.estimate.speedup < plan.estimate.productsSpeedup, `${plan.estimate.speedup} < ${plan.estimate.productsSpeedup}`);
  assert.ok(plan.estimate.parts.attention.denseMs > 0 && plan.estimate.parts.pointwise.denseMs > 0);
  assert.deepEqual(plan.device, { name: DEFAULT_PROFILE.device, source: 'default' });
  const free: DeviceProfile = { ...DEFAULT_PROFILE, step: { attentionGflops: 1e12, pointwiseNsPerElement: 1e-9, optimizerNsPerParam: 1e-9, dataNsPerValue: 1e-9 } };
  const ideal = planModel(inv, DEFAULT_TARGET, { profile: free, batchSize: 8 });
  assert.ok(Math.abs(ideal.estimate.speedup - ideal.estimate.productsSpeedup) < 1e-3 * ideal.estimate.productsSpeedup);
  assert.match(plan.summary, /stays dense/);
});

test('a speedup target is met by the whole step, or said to be out of reach', () => {
  const inv = specInventory(GPT);
  const met = planModel(inv, { speedup: 1.2 }, { batchSize: 8 });
  assert.ok(met.targetMet);
  assert.ok(met.estimate.denseMs / met.estimate.planMs >= 1.2);
  const far = planModel(inv, { speedup: 50 }, { batchSize: 8 });
  assert.equal(far.targetMet, false);
  assert.match(far.summary, /cannot be met/);
});

test('step rates in a profile are validated, and a profile without them is still read', () => {
  const { step: _step, ...old } = DEFAULT_PROFILE;
  void _step;
  assert.equal(parseDeviceProfile(JSON.parse(JSON.stringify(old))).step, undefined);
  assert.throws(() => parseDeviceProfile({ ...DEFAULT_PROFILE, step: { ...DEFAULT_PROFILE.step, optimizerNsPerParam: -1 } }), /step\.optimizerNsPerParam must be a positive number/);
  assert.throws(() => parseDeviceProfile({ ...DEFAULT_PROFILE, precision: 'int8' }), /precision must be/);
});
