// What a run's record says about it, without a daemon: what it trains (runSubject: the model and
// its file, the runner, the dataset, parameters, batch and context), and the HTML report of a run
// that did not complete (why it stopped, first; what it trained; memory estimated and measured).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HyperparametersSchema, RunSubjectSchema, type JobEvent, type JobInfo } from '../../protocol/daemon';
import { runSubject } from '../../daemon/jobs/runSubject';
import { summarize } from '../../daemon/jobs/runner';
import { renderReport } from '../../daemon/report';
import type { TrainingRequest } from '../../daemon/jobs/trainer';
import type { ModelSpec } from '../../core/modelSpec';

const hyper = HyperparametersSchema.parse({ epochs: 1, batchSize: 16, lr: 1e-3 });
const gpt: ModelSpec = { kind: 'gpt', name: 'GPT', vocab: 256, context: 128, dim: 64, depth: 2, heads: 2, mlpHidden: 256 };
const request = (over: Partial<TrainingRequest> = {}): TrainingRequest => ({ spec: gpt, plan: { layers: [] }, dataset: { kind: 'text', path: '/data/tiny.txt' }, hyper, compare: true, ...over });

test('runSubject: an engine run names the file and model its spec stands in for, the family, the dataset, batch and context', () => {
  const s = runSubject(request({ source: { file: '/ws/nanogpt/model.py', model: 'GPT' } }), { params: { pixelfly: 1000, dense: 3000 } });
  assert.deepEqual(s, {
    runner: 'engine',
    model: 'GPT',
    file: '/ws/nanogpt/model.py',
    family: 'gpt',
    dataset: 'text corpus /data/tiny.txt',
    batchSize: 16,
    context: 128,
    params: { pixelfly: 1000, dense: 3000 },
  });
  RunSubjectSchema.parse(s);
  // Without a source: the spec's name; a Mixer's context is its patches; an MLP has none.
  const mixer: ModelSpec = { kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 64, depth: 1, tokenHidden: 32, channelHidden: 128, classes: 10 };
  assert.deepEqual(runSubject(request({ spec: mixer, dataset: { kind: 'fashion-mnist' } })), { runner: 'engine', model: 'mixer', family: 'mixer', dataset: 'Fashion-MNIST', batchSize: 16, context: 49 });
  const mlp = runSubject(request({ spec: { kind: 'mlp', name: 'tiny', inputFeatures: 64, hidden: [64], classes: 10 }, dataset: { kind: 'synthetic' } }));
  assert.equal(mlp.context, undefined);
  assert.equal(mlp.dataset, 'synthetic (seeded) data');
});

test('runSubject: a PyTorch runner\'s request is "your PyTorch model", named by its file and model; its inspect step fills context, parameters and runtime', () => {
  const { spec: _spec, ...engineOnly } = request();
  const torch = { ...engineOnly, runner: 'torch', model: { file: '/ws/hf/modeling_gpt2.py', name: 'GPT2LMHeadModel', settings: {} } } as TrainingRequest;
  // Queued: named by file and model, nothing built yet.
  assert.deepEqual(runSubject(torch), { runner: 'torch', model: 'GPT2LMHeadModel', file: '/ws/hf/modeling_gpt2.py', dataset: 'text corpus /data/tiny.txt', batchSize: 16 });
  // Once the worker has built both variants.
  const built = runSubject(torch, { params: { pixelfly: 700, dense: 2000 }, inputs: { kind: 'tokens', vocab: 96, context: 64 }, runtime: 'PyTorch 1.13.1, Python 3.11.2' });
  RunSubjectSchema.parse(built);
  assert.deepEqual(built, {
    runner: 'torch',
    model: 'GPT2LMHeadModel',
    file: '/ws/hf/modeling_gpt2.py',
    dataset: 'text corpus /data/tiny.txt',
    batchSize: 16,
    params: { pixelfly: 700, dense: 2000 },
    context: 64,
    runtime: 'PyTorch 1.13.1, Python 3.11.2',
  });
  assert.equal(built.family, undefined);
  // An image model: its image size, no context.
  const vit = runSubject(torch, { inputs: { kind: 'images', channels: 3, height: 32, width: 32 } });
  assert.deepEqual([vit.context, vit.image], [undefined, { channels: 3, height: 32, width: 32 }]);
  // The analysis' inputs in the request stand in until the model is built.
  const analysed = { ...torch, model: { ...torch.model!, inputs: { kind: 'tokens' as const, vocab: 50257, context: 1024 } } };
  assert.equal(runSubject(analysed).context, 1024);
});

test('the report of a run that did not complete says why first, what it trained, and its memory', () => {
  const events: JobEvent[] = [
    { jobId: 'j', seq: 1, t: 1000, type: 'status', state: 'running' },
    { jobId: 'j', seq: 2, t: 1100, type: 'step', step: 1, epoch: 0.01, pixelfly: { loss: 2, stepMs: 5, tokensPerSec: 100 }, dense: { loss: 2.1, stepMs: 9, tokensPerSec: 60 }, speedup: 1.8, peakMemoryBytes: 2e8 },
    { jobId: 'j', seq: 3, t: 1200, type: 'status', state: 'interrupted', message: 'the daemon was stopped; resume continues from the last checkpoint' },
  ];
  const summary = { ...summarize(events, { pixelfly: 1000, dense: 3000 }, 100), estimatedMemoryBytes: 2.5e8, peakMemoryBytes: 2e8 };
  const info: JobInfo = {
    jobId: 'j',
    name: 'GPT',
    state: 'interrupted',
    createdAt: '2026-12-03T00:00:00Z',
    compare: true,
    step: 1,
    totalSteps: 100,
    epochs: 1,
    lastSeq: 3,
    runDir: '/runs/j',
    endReason: 'the daemon was stopped; resume continues from the last checkpoint',
    subject: runSubject(request({ source: { file: '/ws/model.py', model: 'GPT' } }), { params: { pixelfly: 1000, dense: 3000 } }),
    summary,
  };
  const html = renderReport(info, events);
  assert.match(html, /<h1>[^<]*<\/h1>\s*<p class="stopped"><b>interrupted:<\/b> the daemon was stopped; resume continues from the last checkpoint<\/p>/);
  assert.match(html, /<th>model<\/th><td class="l">GPT in \/ws\/model\.py<\/td>/);
  assert.match(html, /<th>runner<\/th><td class="l">engine stand-in \(gpt\)<\/td>/);
  assert.match(html, /<th>dataset<\/th><td class="l">text corpus \/data\/tiny\.txt<\/td>/);
  assert.match(html, /<th>parameters<\/th><td class="l">dense 3,000, Pixelfly 1,000<\/td>/);
  assert.match(html, /<th>shape<\/th><td class="l">batch 16 × context 128<\/td>/);
  assert.match(html, /<th>memory<\/th><td class="l">estimated 250 MB, measured peak 200 MB \(job process\)<\/td>/);
  // A completed run has no "stopped" line.
  assert.doesNotMatch(renderReport({ ...info, state: 'completed', endReason: undefined }, events), /class="stopped"/);
});
