// Memory, against a real daemon and real job processes: the admission estimate against the job
// process's measured peak (within 25%), parameter counts against the engine's, the daemon's own
// memory back to its idle level after jobs end however they end, and `hello` answered quickly
// while a job loads a 50 MB corpus or generates its synthetic data.
// Cost: ~35 s on 2 idle cores (ten small jobs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { estimateTrainingMemory, modelMemory } from '../../core/memoryEstimate';
import { parseModelSpec } from '../../core/modelSpec';
import type { JobInfo, MethodParamsIn } from '../../protocol/daemon';
import type { DaemonClient } from '../../client/daemonClient';
import { memoryInput } from '../../daemon/memory';
import { assertResponsive, describeLatency, engineMissing, removeHome, rssOf, sampleHello, sleep, startDaemon, tempHome, type DaemonProcess } from './harness';

const skip = engineMissing();
let daemon: DaemonProcess;
let home: string;
let client: DaemonClient;

before(async () => {
  if (skip) return;
  home = tempHome();
  daemon = await startDaemon(home);
  client = await daemon.client();
});

after(async () => {
  if (skip) return;
  client.close();
  assert.equal(await daemon.stop(), 0, daemon.log());
  removeHome(home);
});

type Submit = MethodParamsIn<'job.submit'>;
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function run(params: Submit, until: (info: JobInfo) => boolean = (i) => ['completed', 'failed', 'cancelled'].includes(i.state)): Promise<JobInfo> {
  const job = await client.request('job.submit', params);
  let info = job;
  for (const deadline = Date.now() + 90_000; !until(info); ) {
    if (Date.now() > deadline) throw new Error(`job ${job.jobId} still ${info.state}`);
    await sleep(100);
    info = await client.request('job.get', { jobId: job.jobId });
  }
  return info;
}

/** The daemon's job processes still alive (worker.js engine-job children): none once a job has ended. */
function jobProcesses(daemonPid: number): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === daemonPid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('engine-job')) out.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const px = (name: string) => ({ name, sparsify: true, config: { block: 32, butterflySize: 16, nFactors: 2, rank: 16 } });

test('the estimate is within 25% of the job process\'s measured peak, and counts the engine\'s parameters exactly', { skip, timeout: 240_000 }, async () => {
  const cases: Array<[string, Submit]> = [
    ['mlp', { spec: { kind: 'mlp', inputFeatures: 1024, hidden: [2048, 2048], classes: 10 }, plan: { layers: [px('fc2')] }, dataset: { kind: 'synthetic' }, hyper: { epochs: 1, batchSize: 64, lr: 1e-3, maxSteps: 2, threads: 2 } }],
    [
      'mixer',
      {
        spec: { kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 256, depth: 2, tokenHidden: 128, channelHidden: 1024, classes: 10 },
        plan: { layers: [px('blocks.channel_mix.fc1'), px('blocks.channel_mix.fc2')] },
        dataset: { kind: 'synthetic' },
        hyper: { epochs: 1, batchSize: 32, lr: 1e-3, maxSteps: 2, threads: 2, evalSamples: 64 },
      },
    ],
    [
      'vit',
      {
        spec: { kind: 'vit', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 256, depth: 2, heads: 4, mlpHidden: 1024, classes: 10 },
        plan: { layers: [px('blocks.mlp.fc1'), px('blocks.mlp.fc2')] },
        dataset: { kind: 'synthetic' },
        hyper: { epochs: 1, batchSize: 32, lr: 1e-3, maxSteps: 2, threads: 2, evalSamples: 64 },
      },
    ],
    [
      'gpt',
      {
        spec: { kind: 'gpt', vocab: 1024, context: 128, dim: 256, depth: 2, heads: 4, mlpHidden: 1024 },
        plan: { layers: [px('blocks.mlp.fc1'), px('blocks.mlp.fc2')] },
        dataset: { kind: 'synthetic' },
        hyper: { epochs: 1, batchSize: 16, lr: 1e-3, maxSteps: 2, threads: 2, evalSamples: 2048 },
      },
    ],
  ];
  const rows: string[] = [];
  for (const [name, params] of cases) {
    const info = await run(params);
    assert.equal(info.state, 'completed', `${name}: ${info.error}`);
    // The run's summary carries both figures (what the panel, the runs view and the report show).
    const est = info.summary?.estimatedMemoryBytes ?? 0;
    const peak = info.summary?.peakMemoryBytes ?? 0;
    assert.equal(est, info.estimatedMemoryBytes, `${name}: the summary's estimate is the job's`);
    assert.equal(peak, info.peakMemoryBytes, `${name}: the summary's peak is the job's`);
    rows.push(`${name}: estimated ${MiB(est)}, measured peak ${MiB(peak)} (ratio ${(est / peak).toFixed(2)})`);
    assert.ok(peak > 0 && Math.abs(est - peak) <= 0.25 * peak, rows[rows.length - 1]);
    // Measured every step: each step event carries the job process's peak so far, never above the final one.
    const stepPeaks = readFileSync(join(info.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'step').map((e) => e.peakMemoryBytes as number);
    assert.ok(stepPeaks.length > 0 && stepPeaks.every((b, i) => b > 0 && b <= peak && (i === 0 || b >= stepPeaks[i - 1])), `${name}: step peaks ${stepPeaks.map(MiB).join(', ')}`);
    // The job's memory went back to the system: its process has exited.
    assert.deepEqual(jobProcesses(daemon.pid), [], `${name}: no job process left once the job ended`);
    // The same arithmetic, here: its parameter counts are the engine's.
    const spec = parseModelSpec(params.spec);
    const request = { ...params, spec, plan: params.plan ?? { layers: [] }, compare: true, hyper: { ...params.hyper, evalSamples: params.hyper.evalSamples ?? 0 } } as Parameters<typeof memoryInput>[1];
    const input = memoryInput(spec, request, 2, false);
    assert.equal(estimateTrainingMemory(input).totalBytes, est, `${name}: the daemon's estimate is core/memoryEstimate's`);
    assert.equal(modelMemory(input.spec, input.pixelfly, 1, 1, 1).params, info.summary?.pixelfly.params, `${name}: Pixelfly parameters`);
    assert.equal(modelMemory(input.spec, [], 1, 1, 1).params, info.summary?.dense?.params, `${name}: dense parameters`);
  }
  process.stderr.write(`# memory estimate vs measured peak (job process VmHWM):\n${rows.map((r) => `#   ${r}`).join('\n')}\n`);
});

test('a job\'s own memory limit: refused above it with the batch that fits, which then trains within the limit', { skip, timeout: 120_000 }, async () => {
  const limit = 1e9;
  const params: Submit = {
    spec: { kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 256, depth: 2, tokenHidden: 128, channelHidden: 1024, classes: 10 },
    plan: { layers: [px('blocks.channel_mix.fc1'), px('blocks.channel_mix.fc2')] },
    dataset: { kind: 'synthetic' },
    hyper: { epochs: 1, batchSize: 4096, lr: 1e-3, maxSteps: 3, threads: 2, evalSamples: 256, memoryLimitBytes: limit },
  };
  const refusal = await client.request('job.submit', params).then(
    () => assert.fail('a job far above its memory limit was admitted'),
    (e: Error & { data?: { budgetBytes: number; fits?: { batchSize: number } } }) => e,
  );
  assert.match(refusal.message, /but only 850 MB can be given to it \(the job's memory limit of 1\.0 GB, less 15% for the estimate's error; the machine could give [\d.]+ [GT]B\); a size that fits: batchSize (\d+)$/);
  assert.equal(refusal.data?.budgetBytes, 0.85 * limit);
  const batch = refusal.data?.fits?.batchSize ?? 0;
  assert.ok(batch > 1 && batch < 4096, `offered batch ${batch}`);
  const info = await run({ ...params, hyper: { ...params.hyper, batchSize: batch } });
  assert.equal(info.state, 'completed', info.error);
  const peak = info.peakMemoryBytes ?? Infinity;
  assert.ok(peak <= limit, `batch ${batch}: measured peak ${MiB(peak)} above the limit ${MiB(limit)}`);
});

test('the daemon\'s memory returns to its idle level after jobs end (completed, cancelled, failed); hello stays quick while a 50 MB corpus loads', { skip, timeout: 240_000 }, async () => {
  const other = await daemon.client();
  // Idle means a daemon in use: it has answered requests (the hello sampler runs throughout) and
  // ended a job each way (completed, cancelled, failed) with tiny models, which compiles their code
  // paths and grows the heap to its working size (~8 MB, once). What must not stay is what the
  // jobs below, with gigabytes between them, allocate.
  const cold = rssOf(daemon.pid);
  const sampler = sampleHello(other, daemon.pid);
  const tiny = { spec: { kind: 'mlp', inputFeatures: 64, hidden: [64], classes: 10 }, plan: { layers: [] }, dataset: { kind: 'synthetic' as const }, hyper: { epochs: 1, batchSize: 8, lr: 1e-3, maxSteps: 3, threads: 1 } };
  await run(tiny);
  const warm = await run({ ...tiny, hyper: { ...tiny.hyper, maxSteps: 0, epochs: 1000 } }, (i) => i.state === 'running' && i.step > 0);
  await client.request('job.cancel', { jobId: warm.jobId });
  for (let i = 0; i < 100 && (await client.request('job.get', { jobId: warm.jobId })).state !== 'cancelled'; i++) await sleep(100);
  await run({ ...tiny, dataset: { kind: 'npy', path: join(home, 'none') } });
  // And a few thousand requests: the allocator's working set for serving them is part of idle too
  // (it levels off after ~3,000; heap after a full collection stays the same: no leak).
  for (let i = 0; i < 1500; i++) await Promise.all([client.request('hello', {}), client.request('job.list', {})]);
  const idle = rssOf(daemon.pid);
  // A 50 MB character corpus (a GPT reads it whole and tokenises it in the job process).
  const corpus = join(home, 'corpus.txt');
  const alphabet = 'abcdefghijklmnopqrstuvwxyz .,\n';
  const block = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => alphabet[(i * 7919 + (i >> 5)) % alphabet.length]).join(''));
  writeFileSync(corpus, Buffer.concat(Array.from({ length: 50 }, () => block)));
  const gpt = { kind: 'gpt', vocab: 64, context: 64, dim: 64, depth: 1, heads: 2, mlpHidden: 128 };
  const completed = await run({ spec: gpt, plan: { layers: [] }, dataset: { kind: 'text', path: corpus }, hyper: { epochs: 1, batchSize: 8, lr: 1e-3, maxSteps: 2, threads: 1, evalSamples: 2048 } });
  assert.equal(completed.state, 'completed', completed.error);
  assert.equal(completed.dataset?.trainSize, 47185920, 'the whole corpus, 90% for training');
  // Synthetic data for a large input (generated in the job process), cancelled once it trains.
  const mlp = { kind: 'mlp', inputFeatures: 16384, hidden: [256], classes: 10 };
  const running = await run({ spec: mlp, plan: { layers: [] }, dataset: { kind: 'synthetic' }, hyper: { epochs: 100, batchSize: 8, lr: 1e-3, threads: 1 } }, (i) => i.state === 'running' && i.step > 0);
  // Its process is the one the kernel's out-of-memory killer would take first, never the daemon.
  const procs = jobProcesses(daemon.pid);
  assert.equal(procs.length, 1, `one job process: ${procs.join(', ')}`);
  assert.equal(readFileSync(`/proc/${procs[0]}/oom_score_adj`, 'utf8').trim(), '1000');
  await client.request('job.cancel', { jobId: running.jobId });
  for (let i = 0; i < 100 && (await client.request('job.get', { jobId: running.jobId })).state !== 'cancelled'; i++) await sleep(100);
  assert.equal((await client.request('job.get', { jobId: running.jobId })).state, 'cancelled');
  assert.deepEqual(jobProcesses(daemon.pid), [], 'the cancelled job\'s process has exited');
  const failed = await run({ spec: mlp, plan: { layers: [] }, dataset: { kind: 'npy', path: join(home, 'no-such-folder') }, hyper: { epochs: 1, batchSize: 8, lr: 1e-3 } });
  assert.equal(failed.state, 'failed');
  const rtts = await sampler.stop();
  other.close();
  await sleep(500);
  const after = rssOf(daemon.pid);
  process.stderr.write(`# daemon RSS at start ${MiB(cold)}, idle after three tiny jobs ${MiB(idle)} -> after three large ones ${MiB(after)}; corpus job peak ${MiB(completed.peakMemoryBytes ?? 0)} (estimated ${MiB(completed.estimatedMemoryBytes ?? 0)}); meanwhile ${describeLatency(rtts)}\n`);
  assert.ok(after <= 1.1 * idle, `daemon RSS ${MiB(idle)} -> ${MiB(after)}`);
  assertResponsive(rtts, 'while jobs load data and train');
});
