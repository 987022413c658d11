// The job process backend on its own (jobs/engineProcess.ts), with real job processes: a job is
// stopped, with the numbers, when the machine's free memory falls below the floor; an abort stops it
// at once, even while it loads its data; a corrupt checkpoint is reported as such.
// Cost: ~5 s on 2 idle cores (four tiny job processes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineProcessBackend } from '../../daemon/jobs/engineProcess';
import { CheckpointError, RunnerStoppedError, type TrainingRequest } from '../../daemon/jobs/trainer';
import { HyperparametersSchema } from '../../protocol/daemon';
import { engineMissing } from './harness';

const skip = engineMissing();
const request = (over: Partial<TrainingRequest> = {}): TrainingRequest => ({
  spec: { kind: 'mlp', inputFeatures: 64, hidden: [64], classes: 10 },
  plan: { layers: [] },
  dataset: { kind: 'synthetic' },
  hyper: HyperparametersSchema.parse({ epochs: 1, batchSize: 8, lr: 1e-3, threads: 1 }),
  compare: true,
  ...over,
});
const log = () => undefined;

test('a job process is stopped with the numbers when free memory falls below the floor', { skip, timeout: 30_000 }, async () => {
  // A floor above any machine's memory: the first look (within 200 ms) stops the job.
  const backend = new EngineProcessBackend({ log, floorBytes: () => Number.MAX_SAFE_INTEGER });
  const setup = await backend.prepare(request(), { maxDataBytes: 1e9 }).catch((e: Error) => e);
  const err = setup instanceof Error ? setup : await (async () => {
    try {
      for (;;) await setup.pixelfly.step();
    } catch (e) {
      await setup.close();
      return e as Error;
    }
  })();
  assert.ok(err instanceof RunnerStoppedError, String(err));
  assert.match(err.message, /^stopped: the machine's free memory fell to [\d.]+ \w+ \(this job's process held [\d.]+ \w+, at most [\d.]+ \w+\); stopped before the kernel's out-of-memory killer would pick a process/);
});

test('a job process is stopped with the numbers when it grows past the job\'s memory limit', { skip, timeout: 30_000 }, async () => {
  // A limit below any process's resident size: the first look stops the job.
  const backend = new EngineProcessBackend({ log });
  const req = request();
  const setup = await backend.prepare({ ...req, hyper: { ...req.hyper, memoryLimitBytes: 1e6 } }, { maxDataBytes: 1e9 }).catch((e: Error) => e);
  const err = setup instanceof Error ? setup : await setup.pixelfly.step().then(() => setup.close().then(() => new Error('a step ran past the limit')), async (e: Error) => (await setup.close(), e));
  assert.ok(err instanceof RunnerStoppedError, String(err));
  assert.match(err.message, /^stopped: the job grew to [\d.]+ MB, past the 1\.0 MB it may hold \(the job's memory limit\)/);
});

test('an abort stops the job at once, even while it loads its data; a corrupt checkpoint is reported as one', { skip, timeout: 30_000 }, async () => {
  const backend = new EngineProcessBackend({ log });
  const abort = new AbortController();
  // A large synthetic input takes a while to generate: the abort lands while it does.
  const pending = backend.prepare(request({ spec: { kind: 'mlp', inputFeatures: 16384, hidden: [8], classes: 10 } }), { maxDataBytes: 1e9, signal: abort.signal });
  setTimeout(() => abort.abort('cancelled by the test'), 300);
  const t0 = Date.now();
  await assert.rejects(pending, (e: Error) => e instanceof RunnerStoppedError && /^cancelled by the test \(while loading the data and building the models\)/.test(e.message));
  assert.ok(Date.now() - t0 < 5000, `stopped in ${Date.now() - t0} ms`);

  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-ckpt-'));
  try {
    const setup = await backend.prepare(request(), { maxDataBytes: 1e9 });
    await setup.pixelfly.step();
    const file = join(dir, 'pixelfly.ckpt');
    await setup.pixelfly.save(file);
    await setup.pixelfly.load(file);
    const bytes = readFileSync(file);
    bytes[100] ^= 1;
    writeFileSync(file, bytes);
    await assert.rejects(setup.pixelfly.load(file), (e: Error) => e instanceof CheckpointError && /checksum mismatch/.test(e.message));
    assert.ok((setup.peakMemoryBytes?.() ?? 0) > 0, "the peak is measured");
    await setup.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
