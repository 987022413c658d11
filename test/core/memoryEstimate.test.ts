// The peak-memory estimate's arithmetic (its agreement with the engine's measured peak is checked
// against real job processes in test/daemon/memory.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { estimateTorchMemory, estimateTrainingMemory, modelMemory, suggestFit, suggestTorchFit, TORCH_BACKWARD_FACTOR, type TorchMemoryInput, type TrainingMemoryInput } from '../../core/memoryEstimate';
import { parseModelSpec, specInventory, type MixerSpec } from '../../core/modelSpec';
import { denseLinearCost } from '../../core/pixelflyLayer';

const MIXER = parseModelSpec({ kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 256, depth: 2, tokenHidden: 128, channelHidden: 1024, classes: 10 }) as MixerSpec;
const GPT = parseModelSpec({ kind: 'gpt', vocab: 4096, context: 128, dim: 256, depth: 2, heads: 4, mlpHidden: 1024 });
const input = (over: Partial<TrainingMemoryInput> = {}): TrainingMemoryInput => ({
  spec: MIXER,
  pixelfly: [],
  batch: 64,
  evalCount: 1024,
  resuming: false,
  compare: true,
  threads: 2,
  dataset: { residentBytes: 40e6, loadPeakBytes: 60e6, trainSamples: 4096 },
  overheadBytes: 64e6,
  ...over,
});

test('a dense model counts every parameter of its matmuls, norms and embeddings once', () => {
  // Every matmul of the inventory (dense, with bias) plus LayerNorms and the GPT's embeddings.
  for (const spec of [MIXER, GPT]) {
    const m = modelMemory(spec, [], 8, 8, 1);
    // (An attention core is in the inventory for its FLOPs; it has no parameters.)
    const matmuls = specInventory(spec).layers.filter((l) => l.role !== 'attn_core').reduce((a, l) => a + l.count * denseLinearCost(l.in, l.out, 1, l.role !== 'embedding').params, 0);
    assert.ok(m.params >= matmuls, `${spec.kind}: ${m.params} ≥ ${matmuls}`);
    assert.ok(m.params < matmuls * 1.05, `${spec.kind}: norms and positions add little (${m.params} vs ${matmuls})`);
    assert.equal(m.paramBytes, 16 * m.params, 'parameters, gradients and two AdamW moments in fp32');
  }
});

test('the estimate grows with the batch, the depth and a compare job, and names its peak phase', () => {
  const base = estimateTrainingMemory(input());
  assert.ok(estimateTrainingMemory(input({ batch: 256 })).totalBytes > base.totalBytes);
  assert.ok(estimateTrainingMemory(input({ spec: { ...MIXER, depth: 8 } })).totalBytes > base.totalBytes);
  assert.ok(estimateTrainingMemory(input({ compare: false })).totalBytes < base.totalBytes);
  assert.equal(base.peakPhase, 'train');
  assert.equal(base.phases.resume, 0, 'no checkpoint to read');
  assert.ok(estimateTrainingMemory(input({ resuming: true })).phases.resume > 0);
  const p = base.parts;
  assert.equal(p.gradients, p.parameters);
  assert.equal(p.optimizer, 2 * p.parameters);
  // A small test split caps the evaluation batch: a GPT's logits for 4 windows, not 128.
  const few = estimateTrainingMemory(input({ spec: GPT, batch: 8, evalCount: 4 }));
  const many = estimateTrainingMemory(input({ spec: GPT, batch: 8, evalCount: 1000 }));
  assert.ok(many.parts.activations > 4 * few.parts.activations);
});

test('a size that fits: the largest batch when the batch is the problem, else a width or the depth', () => {
  const big = input({ batch: 4096 });
  const need = estimateTrainingMemory(big).totalBytes;
  const budget = estimateTrainingMemory(input({ batch: 100 })).totalBytes;
  assert.ok(need > budget);
  const fit = suggestFit(big, budget);
  assert.deepEqual(fit, { batchSize: 100 });
  // Parameters too big for any batch: a smaller depth or width.
  const deep = input({ spec: { ...MIXER, depth: 2000 } });
  const knob = suggestFit(deep, budget);
  assert.ok(knob && 'field' in knob, JSON.stringify(knob));
  assert.ok(estimateTrainingMemory({ ...deep, spec: { ...MIXER, depth: 2000, [knob.field]: knob.value }, batch: knob.batchSize }).totalBytes <= budget);
  assert.equal(suggestFit(input({ overheadBytes: 1e15 }), budget), undefined, 'nothing fits when the fixed cost alone does not');
});

const torchInput = (over: Partial<TorchMemoryInput> = {}): TorchMemoryInput => ({
  params: { pixelfly: 1e6, dense: 3e6 },
  activationBytesPerSample: { pixelfly: 2e6, dense: 3e6 },
  batch: 16,
  baseBytes: 250e6,
  dataset: { residentBytes: 1e6, loadPeakBytes: 2e6, trainSamples: 0 },
  compare: true,
  resuming: false,
  context: 64,
  ...over,
});

test("a PyTorch runner job: both models' weights, grads and AdamW moments, one model's activations at a time (the steps alternate)", () => {
  const e = estimateTorchMemory(torchInput());
  assert.equal(e.peakPhase, 'train');
  assert.equal(e.parts.parameters + e.parts.gradients + e.parts.optimizer, 16 * (1e6 + 3e6));
  // The larger model's activations, not their sum.
  assert.equal(e.parts.activations, TORCH_BACKWARD_FACTOR * 3e6 * 16);
  assert.equal(e.totalBytes, 250e6 + 1e6 + 16 * 4e6 + TORCH_BACKWARD_FACTOR * 3e6 * 16 + 12 * 3e6);
  const alone = estimateTorchMemory(torchInput({ compare: false }));
  assert.equal(alone.parts.activations, TORCH_BACKWARD_FACTOR * 2e6 * 16);
  assert.ok(alone.totalBytes < e.totalBytes);
  assert.ok(estimateTorchMemory(torchInput({ batch: 32 })).totalBytes > e.totalBytes);
});

test('a PyTorch runner job that does not fit: the largest batch that does, else a shorter context at batch 1', () => {
  const input = torchInput({ batch: 64 });
  const budget = estimateTorchMemory(torchInput({ batch: 20 })).totalBytes;
  assert.deepEqual(suggestTorchFit(input, budget), { batchSize: 20 });
  const one = estimateTorchMemory(torchInput({ batch: 1 })).totalBytes;
  const fit = suggestTorchFit(input, one - 1e6);
  assert.ok(fit && 'field' in fit && fit.field === 'context' && fit.value < 64 && fit.batchSize === 1, JSON.stringify(fit));
  assert.equal(suggestTorchFit(input, 100e6), undefined, 'below the process itself nothing fits');
});
