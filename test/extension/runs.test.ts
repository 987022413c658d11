/**
 * The host-side data path without VS Code: daemon events → RunStore (seq-ordered, replay-safe) →
 * MetricsFeed (nothing while hidden, full chunked replay for a fresh page) → CSV.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JobEvent, JobInfo } from '../../protocol/daemon';
import { HostToMetricsSchema } from '../../protocol/webview';
import { RunStore, runInfoView } from '../../extension/runs/runStore';
import { MetricsFeed } from '../../extension/panels/metricsFeed';
import { runCsv } from '../../extension/runs/csv';
import { runDescription, runDetailLines, runDetailsView, runReportPath } from '../../extension/runs/runDetails';

const JOB: JobInfo = {
  jobId: 'j1',
  name: 'mixer',
  state: 'running',
  createdAt: '2026-11-25T06:00:00.000Z',
  compare: true,
  step: 0,
  totalSteps: 100,
  epochs: 1,
  lastSeq: 0,
  runDir: '/tmp/runs/j1',
};

let seq = 0;
const t = 1764050000000;
function stepEvent(step: number, s = ++seq): JobEvent {
  return {
    jobId: 'j1', seq: s, t, type: 'step', step, epoch: step / 100, lr: 1e-3,
    pixelfly: { loss: 2 - step / 100, stepMs: 4, tokensPerSec: 1000 },
    dense: { loss: 2 - step / 90, stepMs: 9, tokensPerSec: 450 },
    speedup: 2.25,
  };
}

describe('RunStore', () => {
  it('applies events in seq order, ignores replays, and tracks progress, evals and completion', () => {
    seq = 0;
    const store = new RunStore();
    const seen: string[] = [];
    store.listen((id, what) => seen.push(`${id}:${what}`));
    store.upsert(JOB);
    const events = [stepEvent(1), stepEvent(2)];
    for (const e of events) store.apply(e);
    for (const e of events) store.apply(e); // a replay after resubscribing
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'progress', step: 2, totalSteps: 100, epoch: 0.02, epochs: 1, elapsedMs: 30, etaMs: 1500 });
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'eval', step: 2, epoch: 0.02, pixelfly: { loss: 1.1, accuracy: 0.7 }, dense: { loss: 1, accuracy: 0.72 } });
    const r = store.get('j1');
    assert.ok(r);
    assert.equal(r.steps.length, 2);
    assert.deepEqual(r.progress, { step: 2, totalSteps: 100, etaS: 1.5 });
    assert.deepEqual(r.evals, [
      { arm: 'pixelfly', step: 2, metric: 'accuracy', value: 0.7 },
      { arm: 'dense', step: 2, metric: 'accuracy', value: 0.72 },
    ]);
    store.apply({
      jobId: 'j1', seq: ++seq, t, type: 'completed', state: 'completed',
      summary: { steps: 2, epochsDone: 0.02, wallMs: 30, pixelfly: { params: 10 }, dense: { params: 20 }, speedup: 2.25 },
    });
    assert.equal(r.info.state, 'completed');
    assert.equal(runInfoView(r).state, 'done');
    assert.doesNotMatch(runInfoView(r).title, /·/, 'no engine named before the daemon says which ran');
    store.upsert({ ...JOB, backend: 'cuda', precision: 'bf16' });
    assert.match(runInfoView(store.get('j1')!).title, / · cuda, bf16$/);
    assert.equal(r.info.lastSeq, seq);
    assert.equal(r.progress.step, 100);
    assert.ok(seen.includes('j1:metrics') && seen.includes('j1:info'));
    // events of unknown jobs are ignored (no crash, nothing created)
    store.apply({ ...stepEvent(1), jobId: 'nope' });
    assert.equal(store.get('nope'), undefined);
  });

  it('drops the points a resumed run re-trains', () => {
    seq = 0;
    const store = new RunStore();
    store.upsert(JOB);
    for (let s = 1; s <= 5; s++) store.apply(stepEvent(s));
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'status', state: 'running', resumedFromStep: 3 });
    assert.deepEqual(store.get('j1')?.steps.map((p) => p.step), [1, 2, 3]);
  });

  it('keeps the failure message of a failed run', () => {
    seq = 0;
    const store = new RunStore();
    store.upsert(JOB);
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'status', state: 'failed', message: 'engine: out of memory' });
    assert.equal(runInfoView(store.get('j1')!).error, 'engine: out of memory');
  });
});

describe('why a run stopped, and no stale ETA', () => {
  const progress = (step: number, etaMs: number): JobEvent => ({ jobId: 'j1', seq: ++seq, t, type: 'progress', step, totalSteps: 100, epoch: step / 100, epochs: 1, elapsedMs: 10, etaMs });

  for (const state of ['failed', 'interrupted', 'cancelled'] as const) {
    it(`${state}: the reason shows and the ETA goes`, () => {
      seq = 0;
      const store = new RunStore();
      store.upsert(JOB);
      store.apply(stepEvent(1));
      store.apply(progress(1, 99_000));
      assert.equal(store.get('j1')!.progress.etaS, 99);
      const why = `${state} because of the test`;
      store.apply({ jobId: 'j1', seq: ++seq, t, type: 'status', state, message: why });
      const r = store.get('j1')!;
      assert.equal(r.progress.etaS, null, 'no ETA once the run stopped');
      const view = runInfoView(r);
      assert.equal(view.reason, why);
      assert.equal(view.state, state);
      // A progress event replayed after the stop (a resubscription) does not bring the ETA back.
      store.apply(progress(1, 98_000));
      assert.equal(store.get('j1')!.progress.etaS, null);
      HostToMetricsSchema.parse({ type: 'metrics.status', run: view, progress: r.progress });
    });
  }

  it('a failed run whose reason came only as its error (job.get) still says why; a resumed run forgets it', () => {
    seq = 0;
    const store = new RunStore();
    store.upsert({ ...JOB, state: 'failed', error: 'the job process was killed by SIGKILL' });
    assert.equal(runInfoView(store.get('j1')!).reason, 'the job process was killed by SIGKILL');
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'status', state: 'queued', message: 'resume requested' });
    assert.equal(store.get('j1')!.info.endReason, undefined);
    assert.equal(runInfoView(store.get('j1')!).reason, undefined);
    // A completed run: the completion sets the ETA to zero, never a reason.
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'completed', state: 'completed', summary: { steps: 1, epochsDone: 0.01, wallMs: 1, pixelfly: { params: 1 } } });
    assert.equal(store.get('j1')!.progress.etaS, 0);
    assert.equal(runInfoView(store.get('j1')!).reason, undefined);
  });

  it('a snapshot of a stopped run (job.list after a reconnect) carries no ETA', () => {
    seq = 0;
    const store = new RunStore();
    store.upsert(JOB);
    store.apply(progress(5, 50_000));
    store.upsert({ ...JOB, state: 'interrupted', endReason: 'the daemon was stopped' });
    assert.equal(store.get('j1')!.progress.etaS, null);
  });
});

describe('what a run trains (runs view, metrics page)', () => {
  const engine: JobInfo = {
    ...JOB,
    state: 'completed',
    estimatedMemoryBytes: 1.5e9,
    peakMemoryBytes: 1.25e9,
    dataset: { kind: 'text', name: 'tiny.txt', synthetic: false, trainSize: 90000, testSize: 10000 },
    subject: { runner: 'engine', model: 'GPT', file: '/ws/nanogpt/model.py', family: 'gpt', dataset: 'text corpus /ws/tiny.txt', batchSize: 16, context: 256, params: { pixelfly: 4_000_000, dense: 12_000_000 } },
    summary: { steps: 100, epochsDone: 1, wallMs: 1000, pixelfly: { params: 4_000_000 }, dense: { params: 12_000_000 }, speedup: 1.8, reportPath: '/runs/j1/report.html', estimatedMemoryBytes: 1.5e9, peakMemoryBytes: 1.3e9 },
  };

  it('names the model and file, the runner, the dataset, both parameter counts, batch and context, memory and the report', () => {
    const d = runDetailsView(engine)!;
    assert.deepEqual(d, {
      model: 'GPT',
      file: '/ws/nanogpt/model.py',
      runner: 'engine stand-in (gpt)',
      dataset: 'tiny.txt, 90,000 train / 10,000 test',
      params: { pixelfly: 4_000_000, dense: 12_000_000 },
      batchSize: 16,
      context: 256,
      estimatedMemoryBytes: 1.5e9,
      // The summary's figure wins over the job's (the summary is the run's last word).
      peakMemoryBytes: 1.3e9,
      report: true,
    });
    assert.equal(runReportPath(engine), '/runs/j1/report.html');
    const lines = runDetailLines(engine);
    assert.deepEqual(lines, [
      'GPT in model.py (/ws/nanogpt/model.py)',
      'runner: engine stand-in (gpt)',
      'dataset: tiny.txt, 90,000 train / 10,000 test',
      'parameters: dense 12,000,000, Pixelfly 4,000,000 (33% of dense)',
      'batch 16 × context 256',
      'memory: estimated 1.5 GB, measured peak 1.3 GB',
      'report: /runs/j1/report.html',
    ]);
    assert.equal(runDescription(engine), 'completed · 1.80× · step 0/100 · engine · model.py');
    // The page accepts it.
    const store = new RunStore();
    HostToMetricsSchema.parse({ type: 'metrics.reset', run: runInfoView(store.upsert(engine)), progress: { step: 0, totalSteps: 100, etaS: null } });
  });

  it('a PyTorch run is "your PyTorch model"; a queued run shows the dataset it asked for; a stopped one says why', () => {
    const torch: JobInfo = {
      ...JOB,
      state: 'interrupted',
      endReason: 'the daemon was stopped; resume continues from the last checkpoint',
      subject: { runner: 'torch', model: 'GPT2LMHeadModel', file: '/ws/hf/modeling_gpt2.py', dataset: 'synthetic (seeded) data', batchSize: 4, context: 128 },
      precision: 'fp32',
      precisionNote: "precision auto: fp32, as torch 1.13's autocast(bfloat16) fails on this model (RuntimeError: …)",
    };
    const d = runDetailsView(torch)!;
    assert.equal(d.runner, 'your PyTorch model');
    assert.equal(d.dataset, 'synthetic (seeded) data');
    assert.equal(d.params, undefined, 'no parameter counts before the models are built');
    assert.equal(d.report, false);
    assert.match(runDetailLines(torch).join('\n'), /^interrupted: the daemon was stopped; resume continues from the last checkpoint$/m);
    assert.match(runDetailLines(torch).join('\n'), /^precision auto: fp32, as torch 1\.13's autocast\(bfloat16\) fails on this model/m, 'why the runner chose its precision');
    assert.match(runDescription(torch), / · PyTorch · modeling_gpt2\.py$/);
    // A run recorded before the daemon described runs: nothing invented.
    assert.equal(runDetailsView(JOB), undefined);
    assert.deepEqual(runDetailLines(JOB), []);
  });

  it('a PyTorch run its worker has built names the runtime, both parameter counts and the image size', () => {
    const vit: JobInfo = {
      ...JOB,
      subject: { runner: 'torch', model: 'ViT', file: '/ws/vit.py', dataset: 'Fashion-MNIST', batchSize: 8, image: { channels: 3, height: 32, width: 32 }, params: { pixelfly: 600, dense: 2000 }, runtime: 'PyTorch 1.13.1, Python 3.11.2' },
    };
    const d = runDetailsView(vit)!;
    assert.equal(d.runner, 'your PyTorch model (PyTorch 1.13.1, Python 3.11.2)');
    assert.deepEqual([d.model, d.file, d.params, d.context, d.image], ['ViT', '/ws/vit.py', { pixelfly: 600, dense: 2000 }, undefined, { channels: 3, height: 32, width: 32 }]);
    const lines = runDetailLines(vit).join('\n');
    assert.match(lines, /^ViT in vit\.py \(\/ws\/vit\.py\)$/m);
    assert.match(lines, /^batch 8 × 3×32×32 images$/m);
    assert.match(lines, /^parameters: dense 2,000, Pixelfly 600 \(30% of dense\)$/m);
    // The page accepts it.
    HostToMetricsSchema.parse({ type: 'metrics.reset', run: runInfoView(new RunStore().upsert(vit)), progress: { step: 0, totalSteps: 100, etaS: null } });
  });
});

describe('MetricsFeed', () => {
  it('sends nothing while hidden, then everything; a fresh page gets a reset and a chunked replay', () => {
    seq = 0;
    const store = new RunStore();
    const r = store.upsert(JOB);
    const feed = new MetricsFeed(4);
    feed.show('j1');
    assert.deepEqual(feed.pending(r, true), [], 'no page yet');
    feed.pageLoaded();
    for (let s = 1; s <= 10; s++) store.apply(stepEvent(s));
    assert.deepEqual(feed.pending(r, false), [], 'hidden: held back');
    const first = feed.pending(r, true);
    assert.deepEqual(first.map((m) => m.type), ['metrics.reset', 'metrics.append', 'metrics.append', 'metrics.append']);
    for (const m of first) HostToMetricsSchema.parse(m); // every message is valid protocol
    const appended = first.flatMap((m) => (m.type === 'metrics.append' ? m.steps.map((p) => p.step) : []));
    assert.deepEqual(appended, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // incremental: only the new point, after a status
    store.apply(stepEvent(11));
    const next = feed.pending(r, true);
    assert.deepEqual(next.map((m) => m.type), ['metrics.status', 'metrics.append']);
    assert.deepEqual(next[1].type === 'metrics.append' && next[1].steps.map((p) => p.step), [11]);
    // the page was discarded while hidden and reloaded: full replay again
    feed.pageLoaded();
    const replay = feed.pending(r, true);
    assert.equal(replay[0].type, 'metrics.reset');
    assert.equal(replay.flatMap((m) => (m.type === 'metrics.append' ? m.steps : [])).length, 11);
    // closed panel: nothing
    feed.pageGone();
    store.apply(stepEvent(12));
    assert.deepEqual(feed.pending(r, true), []);
  });
});

describe('runCsv', () => {
  it('writes one row per step with both arms, evals in their columns', () => {
    seq = 0;
    const store = new RunStore();
    store.upsert(JOB);
    store.apply(stepEvent(1));
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'eval', step: 0, epoch: 0, pixelfly: { loss: 2.3, accuracy: 0.1 } });
    store.apply({ jobId: 'j1', seq: ++seq, t, type: 'eval', step: 1, epoch: 0, pixelfly: { loss: 2.0, perplexity: 7.4 } });
    const lines = runCsv(store.get('j1')!).trim().split('\n');
    assert.equal(lines[0], 'step,pixelfly_loss,pixelfly_step_ms,pixelfly_tokens_per_s,dense_loss,dense_step_ms,dense_tokens_per_s,running_speedup,eval_arm,eval_metric,eval_value');
    assert.equal(lines[1], `1,1.99,4,1000,${2 - 1 / 90},9,450,2.25,pixelfly,perplexity,7.4`);
    assert.equal(lines[2], '0,,,,,,,,pixelfly,accuracy,0.1');
    assert.equal(lines.length, 3);
  });
});
