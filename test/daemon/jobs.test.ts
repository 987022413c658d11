// Jobs on a real daemon process with the real native engine (tiny models on the synthetic task):
// kill -9 mid-run and restart (no flushed metric lost, the run resumes from its checkpoint),
// cancel, refused specs, bench.layers, and 20 concurrent subscribers of which one never reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, TOKEN_HEADER, type JobEvent, type JobInfo } from '../../protocol/daemon';
import { DaemonRpcError, type DaemonClient } from '../../client/daemonClient';
import { parseDeviceProfile } from '../../core/costModel';
import { engineMissing, frame, withDaemon, rawConnect, removeHome, startDaemon, tempHome, waitFor, sleep } from './harness';
import { cpuHasBf16 } from '../../native/engine';
import { kernelInfo } from '../../native/kernels';

const skipEngine = engineMissing();

const TINY_MLP = { kind: 'mlp', name: 'tiny', inputFeatures: 64, hidden: [256, 256], classes: 10 };
// An explicit plan (the planner keeps layers this small dense): fc2 256 -> 256 as Pixelfly.
const TINY_PLAN = { layers: [{ name: 'fc2', sparsify: true, config: { block: 32, butterflySize: 8, nFactors: 2, rank: 8 } }] };

function collect(client: DaemonClient, jobId: string): JobEvent[] {
  const events: JobEvent[] = [];
  client.onEvent((e) => {
    if (e.jobId === jobId) events.push(e);
  });
  return events;
}

function completeLines(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter((l) => l.length > 0);
}

test('kill -9 mid-run: the restarted daemon keeps every flushed metric, marks the run interrupted, resumes it from its checkpoint; then cancel', { skip: skipEngine, timeout: 60_000 }, async () => {
  const home = tempHome();
  let daemon = await startDaemon(home, ['--flush-ms', '100']);
  try {
    let client = await daemon.client();
    const job = await client.request('job.submit', {
      spec: TINY_MLP,
      plan: TINY_PLAN,
      dataset: { kind: 'synthetic' },
      hyper: { epochs: 200, batchSize: 16, lr: 1e-3, checkpointEvery: 40, threads: 1 },
    });
    assert.equal(job.compare, true);
    assert.ok(JSON.parse(readFileSync(join(job.runDir, 'plan.json'), 'utf8')).layers.some((l: { sparsify: boolean }) => l.sparsify), 'the plan sparsifies a layer');
    let events = collect(client, job.jobId);
    await client.request('job.subscribe', { jobId: job.jobId, fromSeq: 0 });
    await waitFor(() => events.some((e) => e.type === 'checkpoint' && e.step >= 80), 40_000, 'a second checkpoint');
    const steps = events.filter((e) => e.type === 'step');
    assert.ok(steps.every((e, i) => e.type === 'step' && e.step === i + 1), 'steps arrive in order without gaps');
    const last = steps[steps.length - 1] as Extract<JobEvent, { type: 'step' }>;
    assert.ok(last.dense && last.pixelfly && last.speedup! > 0, 'compare steps carry both timings and a running speedup');
    await sleep(250); // > flush interval: what we read now is on disk
    const metrics = join(job.runDir, 'metrics.jsonl');
    const flushedBefore = completeLines(metrics);
    await daemon.kill9();
    const flushedAtKill = completeLines(metrics);
    assert.deepEqual(flushedAtKill.slice(0, flushedBefore.length), flushedBefore);
    assert.ok(flushedAtKill.length >= flushedBefore.length);

    daemon = await startDaemon(home, ['--flush-ms', '100']);
    client = await daemon.client();
    const interrupted = await client.request('job.get', { jobId: job.jobId });
    assert.equal(interrupted.state, 'interrupted');
    // Why, in the run's record and (written in the background as the daemon starts) its report.
    assert.match(interrupted.endReason ?? '', /^the daemon stopped while this run was running \(killed or crashed\)/);
    const reportFile = join(job.runDir, 'report.html');
    await waitFor(() => existsSync(reportFile) && /<p class="stopped"><b>interrupted:<\/b> the daemon stopped while this run was running/.test(readFileSync(reportFile, 'utf8')), 20_000, 'the interrupted run\'s report');
    // What it trained: the engine's MLP stand-in, named by its spec (no source file was given).
    const subject = interrupted.subject!;
    assert.deepEqual({ ...subject, params: undefined }, { runner: 'engine', model: 'tiny', family: 'mlp', dataset: 'synthetic (seeded) data', batchSize: 16, params: undefined });
    assert.ok(subject.params && subject.params.pixelfly > 0 && subject.params.dense! > subject.params.pixelfly, JSON.stringify(subject.params));
    const checkpointStep = interrupted.lastCheckpointStep!;
    assert.ok(checkpointStep >= 80, `checkpoint at step ${checkpointStep}`);
    const after = completeLines(metrics);
    assert.deepEqual(after.slice(0, flushedAtKill.length), flushedAtKill, 'every flushed metric is kept');
    assert.match(after[flushedAtKill.length], /"type":"status","state":"interrupted"/);

    events = collect(client, job.jobId);
    const sub = await client.request('job.subscribe', { jobId: job.jobId, fromSeq: interrupted.lastSeq });
    assert.equal(sub.lastSeq, interrupted.lastSeq);
    await client.request('job.resume', { jobId: job.jobId });
    await waitFor(() => events.some((e) => e.type === 'step' && e.step > checkpointStep + 10), 30_000, 'steps after the resume');
    const resumed = events.find((e) => e.type === 'status' && e.state === 'running');
    assert.ok(resumed && resumed.type === 'status' && resumed.resumedFromStep === checkpointStep);
    const firstStep = events.find((e) => e.type === 'step');
    assert.equal(firstStep?.type === 'step' && firstStep.step, checkpointStep + 1, 'training continues right after the checkpoint');
    assert.ok(events.every((e, i) => i === 0 || e.seq === events[i - 1].seq + 1), 'sequence numbers continue without gaps');

    const cancelled = await client.request('job.cancel', { jobId: job.jobId });
    assert.equal(cancelled.jobId, job.jobId);
    await waitFor(() => events.some((e) => e.type === 'completed'), 20_000, 'the completion event');
    const done = events.find((e) => e.type === 'completed');
    assert.ok(done?.type === 'completed' && done.state === 'cancelled');
    const final = await client.request('job.get', { jobId: job.jobId });
    assert.equal(final.state, 'cancelled');
    assert.ok(final.summary && final.summary.steps > checkpointStep && final.summary.speedup! > 0);
    assert.equal(final.endReason, 'cancelled on request (job.cancel)');
    // The summary carries the memory figures of the run's latest session.
    assert.ok(final.summary.estimatedMemoryBytes! > 0 && final.summary.estimatedMemoryBytes === final.estimatedMemoryBytes, `${final.summary.estimatedMemoryBytes} vs ${final.estimatedMemoryBytes}`);
    assert.ok(final.summary.peakMemoryBytes! > 0 && final.summary.peakMemoryBytes === final.peakMemoryBytes, `${final.summary.peakMemoryBytes} vs ${final.peakMemoryBytes}`);
    assert.ok(existsSync(join(job.runDir, 'summary.json')));
    const report = readFileSync(join(job.runDir, 'report.html'), 'utf8');
    assert.match(report, /<svg[^>]*aria-label="Training loss"/);
    assert.match(report, /<p class="stopped"><b>cancelled:<\/b> cancelled on request \(job\.cancel\)<\/p>/);
    // Where a step goes: the engine's time per part of the model, medians over the run, both variants.
    assert.deepEqual(Object.keys(final.summary.pixelfly.partsMs ?? {}), ['fc1', 'fc2', 'head']);
    assert.deepEqual(Object.keys(final.summary.dense?.partsMs ?? {}), ['fc1', 'fc2', 'head']);
    assert.ok(Object.values(final.summary.pixelfly.partsMs!).every((ms) => ms > 0));
    assert.match(report, /<svg[^>]*aria-label="Where a step goes[^"]*">.*fc2/s);
    await assert.rejects(client.request('job.cancel', { jobId: job.jobId }), (e: DaemonRpcError) => e.code === ErrorCode.INVALID_STATE);
    client.close();
  } finally {
    await daemon.stop();
    removeHome(home);
  }
});

test('job.submit refuses bad specs, plans and data with messages that name the problem', { skip: skipEngine, timeout: 30_000 }, async () => {
  await withDaemon(async (client, daemon) => {
    const hyper = { epochs: 1, batchSize: 8, lr: 1e-3 };
    const refused = async (params: Parameters<DaemonClient['request']>[1], pattern: RegExp) => {
      await assert.rejects(client.request('job.submit', params as never), (e: DaemonRpcError) => {
        assert.equal(e.code, ErrorCode.REJECTED, e.message);
        assert.match(e.message, pattern);
        return true;
      });
    };
    await refused({ spec: { kind: 'mlp', inputFeatures: 64, hidden: [0], classes: 10 }, dataset: { kind: 'synthetic' }, hyper }, /hidden\[0\]/);
    await refused({ spec: { kind: 'cnn' }, dataset: { kind: 'synthetic' }, hyper }, /kind/);
    await refused(
      { spec: TINY_MLP, plan: { layers: [{ name: 'fc9', sparsify: true }] }, dataset: { kind: 'synthetic' }, hyper },
      /fc9/,
    );
    // Data problems surface when the job starts: it fails with the file named.
    const source = { file: join(daemon.home, 'net.py'), model: 'Net' };
    const job = await client.request('job.submit', { spec: TINY_MLP, dataset: { kind: 'npy', path: join(daemon.home, 'missing') }, hyper, source });
    const events = collect(client, job.jobId);
    await client.request('job.subscribe', { jobId: job.jobId, fromSeq: 0 });
    await waitFor(() => events.some((e) => e.type === 'completed'), 20_000, 'the failed job to complete');
    const failed = await client.request('job.get', { jobId: job.jobId });
    assert.equal(failed.state, 'failed');
    assert.match(failed.error ?? '', /missing\/x\.npy: file not found/);
    assert.equal(failed.endReason, failed.error, 'a failed run says why in its record');
    assert.deepEqual([failed.subject?.model, failed.subject?.file, failed.subject?.dataset], ['Net', source.file, `.npy arrays in ${join(daemon.home, 'missing')}`]);
    assert.match(readFileSync(join(failed.runDir, 'report.html'), 'utf8'), /<p class="stopped"><b>failed:<\/b> [^<]*file not found/);
    // fp16 where only the CPU runs: the job fails saying so (the CPU computes fp32 or bf16 products).
    const fp16 = await client.request('job.submit', { spec: TINY_MLP, dataset: { kind: 'synthetic' }, hyper: { ...hyper, backend: 'cpu', precision: 'fp16' } });
    const fp16Events = collect(client, fp16.jobId);
    await client.request('job.subscribe', { jobId: fp16.jobId, fromSeq: 0 });
    await waitFor(() => fp16Events.some((e) => e.type === 'completed'), 20_000, 'the fp16-on-CPU job to complete');
    const refusedFp16 = await client.request('job.get', { jobId: fp16.jobId });
    assert.equal(refusedFp16.state, 'failed');
    assert.match(refusedFp16.error ?? '', /precision: 'fp16' runs on the CUDA backend only/);
  });
});

test('without Fashion-MNIST installed, a fashion-mnist job trains on the synthetic task and says so', { skip: skipEngine, timeout: 30_000 }, async () => {
  await withDaemon(
    async (client) => {
      const spec = { kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 7, dim: 32, depth: 1, tokenHidden: 16, channelHidden: 64, classes: 10 };
      const job = await client.request('job.submit', { spec, dataset: { kind: 'fashion-mnist' }, hyper: { epochs: 1, batchSize: 8, lr: 1e-3, maxSteps: 3 } });
      const events = collect(client, job.jobId);
      await client.request('job.subscribe', { jobId: job.jobId, fromSeq: 0 });
      await waitFor(() => events.some((e) => e.type === 'completed'), 20_000, 'the job to complete');
      const running = events.find((e) => e.type === 'status' && e.state === 'running');
      assert.match((running?.type === 'status' && running.message) || '', /Fashion-MNIST is not installed .*not-installed.*training on the synthetic task instead/);
      const info = await client.request('job.get', { jobId: job.jobId });
      assert.equal(info.state, 'completed');
      assert.equal(info.dataset?.synthetic, true);
      assert.ok(info.backend === 'cpu' || info.backend === 'cuda', `backend ${info.backend}`);
      // hyper.precision 'auto': bf16 on CUDA and on CPUs with bf16 instructions; the kernels that ran are named.
      assert.equal(info.precision, info.backend === 'cuda' || cpuHasBf16() ? 'bf16' : 'fp32');
      const k = kernelInfo();
      assert.equal(info.kernels, info.backend === 'cuda' ? 'cuda' : info.precision === 'bf16' ? `${k.isa} kernels, bf16 on ${k.bf16}` : `${k.isa} kernels`);
      const report = readFileSync(join(job.runDir, 'report.html'), 'utf8');
      assert.match(report, /synthetic task/);
      assert.ok(report.includes(`Engine: ${info.backend}, ${info.precision} products (${info.kernels}).`), 'the report names the engine and its kernels');
    },
    [],
    (home) => ({ PIXELFLY_FASHION_MNIST: join(home, 'not-installed') }),
  );
});

test('bench.layers measures dense vs Pixelfly and saves the profile the planner then uses', { skip: skipEngine, timeout: 120_000 }, async () => {
  await withDaemon(async (client, daemon) => {
    const r = await client.request('bench.layers', {
      shapes: [{ name: 'fc', in: 256, out: 512, rows: 256 }],
      configs: [{ block: 32, butterflySize: 8, nFactors: 2, rank: 8 }],
      repeats: 3,
      threads: 1,
  });
  assert.equal(r.rows.length, 1);
  assert.ok(r.rows[0].denseMs > 0 && r.rows[0].pixelflyMs > 0);
  assert.equal(r.profilePath, join(daemon.home, 'profiles', 'device.json'));
  const profile = parseDeviceProfile(JSON.parse(readFileSync(r.profilePath, 'utf8')));
  assert.equal(profile.source, 'measured');
  // The step rates, from dense engine steps (the default): what whole-step estimates cost the rest of a step with.
  assert.match(profile.step?.measuredWith ?? '', /^dense vit engine steps/);
  for (const v of [profile.step!.attentionGflops, profile.step!.pointwiseNsPerElement, profile.step!.optimizerNsPerParam, profile.step!.dataNsPerValue]) assert.ok(v > 0 && Number.isFinite(v));
  const plan = await client.request('plan.suggest', {
    inventory: { layers: [{ name: 'fc', role: 'mlp_fc1', in: 1024, out: 4096, count: 1, rowsPerSample: 64 }] },
    target: { budget: 0.5 },
  });
  assert.equal(plan.profile, profile.device);

  // A second call (shapes with their own configs, as the extension sends a model's layers) adds
  // its points to the saved profile rather than replacing it.
  const again = await client.request('bench.layers', {
    shapes: [{ name: 'fc16', in: 256, out: 512, rows: 256, config: { block: 16, butterflySize: 8, nFactors: 2, rank: 4 } }],
    repeats: 3,
    threads: 1,
    step: false,
  });
  assert.deepEqual(again.rows.map((x) => [x.name, x.config.block, x.config.rank]), [['fc16', 16, 4]]);
  const merged = parseDeviceProfile(JSON.parse(readFileSync(r.profilePath, 'utf8')));
  assert.deepEqual(merged.blockSparse.map((p) => p.block), [16, 32], 'the first call\'s block-32 point is kept');
  assert.deepEqual(merged.lowRank.map((p) => p.rank), [4, 8], 'and its rank-8 point');
  // A shape without a config is measured dense only: the profile keeps its GEMM rate, which a layer of that shape is costed with.
  const denseOnly = await client.request('bench.layers', { shapes: [{ in: 96, out: 64, rows: 256 }], repeats: 1, threads: 1, step: false });
  assert.deepEqual(denseOnly.rows, []);
  const shaped = parseDeviceProfile(JSON.parse(readFileSync(r.profilePath, 'utf8')));
  assert.ok(shaped.denseShapes?.some((p) => p.in === 96 && p.out === 64 && p.gflops > 0), JSON.stringify(shaped.denseShapes));
  assert.ok(shaped.step, 'the step rates of the first call are kept');
  // A shape's own list (what `pixelfly train` sends to calibrate): a row per config; configs that
  // differ only in rank share one block-sparse timing, so their difference is the low-rank term's.
  const layout = { block: 32, butterflySize: 8, nFactors: 1 };
  const listed = await client.request('bench.layers', {
    shapes: [{ name: 'grid', in: 256, out: 512, rows: 256, configs: [{ ...layout, rank: 0 }, { ...layout, rank: 8 }, { ...layout, rank: 16 }] }, { name: 'none', in: 256, out: 512, rows: 64, configs: [] }],
    repeats: 1,
    threads: 1,
    step: false,
  });
  assert.deepEqual(listed.rows.map((x) => [x.name, x.config.rank]), [['grid', 0], ['grid', 8], ['grid', 16]], 'an empty list: dense only');
  const sparseOnly = listed.rows[0].pixelflyMs;
  assert.ok(listed.rows[1].pixelflyMs > sparseOnly && listed.rows[2].pixelflyMs > sparseOnly, JSON.stringify(listed.rows));

  // Another precision than the engine's default here (fp32 on a CPU with bf16 instructions, else
  // bf16) is measured into its own file, and a job at that precision is planned with it.
  const before = readFileSync(r.profilePath, 'utf8');
  const other = profile.precision === 'bf16' ? 'fp32' : 'bf16';
  const measuredOther = await client.request('bench.layers', { shapes: [{ name: 'fc', in: 256, out: 512, rows: 256, configs: [{ block: 32, butterflySize: 8, nFactors: 2, rank: 8 }] }], repeats: 1, threads: 1, step: false, precision: other });
  assert.equal(measuredOther.profilePath, join(daemon.home, 'profiles', `device-${other}.json`));
  assert.equal(readFileSync(r.profilePath, 'utf8'), before, `the default precision's profile is left as it was`);
  const otherProfile = parseDeviceProfile(JSON.parse(readFileSync(measuredOther.profilePath, 'utf8')));
  assert.equal(otherProfile.precision, other);
  assert.notEqual(otherProfile.device, profile.device);
  const planned = async (precision: 'auto' | 'fp32' | 'bf16') => {
    const job = await client.request('job.submit', { spec: TINY_MLP, target: { budget: 0.5 }, dataset: { kind: 'synthetic' }, hyper: { epochs: 1, batchSize: 8, lr: 1e-3, maxSteps: 1, threads: 1, precision } });
    await client.request('job.cancel', { jobId: job.jobId }).catch(() => undefined);
    return (JSON.parse(readFileSync(join(job.runDir, 'plan.json'), 'utf8')) as { profile: string }).profile;
  };
  assert.equal(await planned(other), otherProfile.device, `a ${other} job is costed with the ${other} profile`);
  assert.equal(await planned('auto'), profile.device, "an 'auto' job with the default precision's");
  });
});

/** A finished run written the way the daemon writes one, with `n` step events (each padded with a `pad`-character log line). */
function writePastRun(home: string, jobId: string, n: number, pad = 0): void {
  const dir = join(home, 'runs', jobId);
  mkdirSync(dir, { recursive: true });
  const request = { spec: TINY_MLP, plan: { layers: [] }, dataset: { kind: 'synthetic' }, hyper: { epochs: 1, batchSize: 8, lr: 1e-3 }, compare: true };
  writeFileSync(join(dir, 'job.json'), JSON.stringify({ jobId, name: 'past', createdAt: new Date().toISOString(), request }));
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ state: 'completed', step: n, totalSteps: n }));
  const lines: string[] = [];
  for (let i = 1; i <= n; i++) {
    const v = { loss: 2 / i, stepMs: 1.5, tokensPerSec: 1000 };
    lines.push(
      pad > 0
        ? JSON.stringify({ type: 'status', state: 'running', message: 'x'.repeat(pad), jobId, seq: i, t: 1 })
        : JSON.stringify({ type: 'step', step: i, epoch: i / n, pixelfly: v, dense: { ...v, stepMs: 3 }, speedup: 2, jobId, seq: i, t: 1 }),
    );
  }
  writeFileSync(join(dir, 'metrics.jsonl'), lines.join('\n') + '\n');
}

test('20 concurrent subscribers, one never reads: the others get everything in order, the stalled one is dropped, memory stays bounded', { timeout: 60_000 }, async () => {
  const home = tempHome();
  const jobId = 'past-run-1';
  const n = 5000;
  writePastRun(home, jobId, n);
  // A second run with big events (16 MB in all): more than the kernel's socket buffers can hide.
  const bigJob = 'past-run-2';
  writePastRun(home, bigJob, 2000, 8000);
  const daemon = await startDaemon(home, ['--high-water', '65536', '--stall-ms', '1000']);
  try {
    const control = await daemon.client();
    const listed = await control.request('job.list', {});
    assert.equal((listed.jobs.find((j: JobInfo) => j.jobId === jobId) as JobInfo).lastSeq, n);

    // The one that never reads: subscribes, then its socket is paused for good.
    const stalled = await rawConnect(daemon.port, { [TOKEN_HEADER]: daemon.token }, { read: false });
    stalled.socket.write(frame(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'job.subscribe', params: { jobId, fromSeq: 0 } })));
    stalled.socket.write(frame(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'job.subscribe', params: { jobId: bigJob, fromSeq: 0 } })));

    const readers = await Promise.all(Array.from({ length: 19 }, () => daemon.client()));
    const seen = readers.map(() => ({ count: 0, lastSeq: 0, inOrder: true }));
    readers.forEach((r, i) =>
      r.onEvent((e) => {
        const s = seen[i];
        if (e.seq !== s.lastSeq + 1) s.inOrder = false;
        s.lastSeq = e.seq;
        s.count += 1;
      }),
    );
    await Promise.all(readers.map((r) => r.request('job.subscribe', { jobId, fromSeq: 0 })));
    await waitFor(() => seen.every((s) => s.count === n), 45_000, 'all 19 readers to receive every event');
    assert.ok(seen.every((s) => s.inOrder && s.lastSeq === n));

    // The stalled subscriber is cut off (its unread data freed); the daemon stayed small.
    let stats = await control.request('daemon.stats', {});
    for (const deadline = Date.now() + 10_000; stats.connections > 20 && Date.now() < deadline; ) {
      await sleep(100);
      stats = await control.request('daemon.stats', {});
    }
    assert.equal(stats.connections, 20, 'control + 19 readers; the stalled one is gone');
    assert.match(daemon.log(), /dropping a slow consumer/);
    assert.ok(stats.rssBytes < 400 * 1024 * 1024, `rss ${(stats.rssBytes / 2 ** 20).toFixed(0)} MiB`);

    // A reader that reconnects resubscribes from its last seq and gets only what it missed (nothing).
    const again = await daemon.client();
    const got: JobEvent[] = [];
    again.onEvent((e) => got.push(e));
    const sub = await again.request('job.subscribe', { jobId, fromSeq: n - 5 });
    assert.equal(sub.lastSeq, n);
    await waitFor(() => got.length === 5, 5000, 'the 5 missed events');
    assert.deepEqual(got.map((e) => e.seq), [n - 4, n - 3, n - 2, n - 1, n]);
    for (const c of [control, again, ...readers]) c.close();
    stalled.socket.destroy();
  } finally {
    await daemon.stop();
    removeHome(home);
  }
});
