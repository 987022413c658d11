// What a run keeps through crashes, corrupt files and a full disk, against real daemon processes:
// kill -9 right after a checkpoint (every metric before it is on disk), a corrupt newest checkpoint
// and a truncated state.json (the run is listed, and resumes from the older intact checkpoint,
// saying which it skipped and why), and a disk that fills up mid-run (the job fails saying so, the
// daemon stays up, restarts on the full disk and says why runs cannot start), and a write that
// fails for another reason (a run's checkpoints folder replaced by a file: no root needed). Each
// case is checked against the Target (harness.ts CaseTable) and its figures written as JSON.
// Cost: ~40 s on 2 idle cores.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, type JobEvent, type JobInfo } from '../../protocol/daemon';
import type { DaemonClient, DaemonRpcError } from '../../client/daemonClient';
import { CaseTable, engineMissing, idleRss, killAfterCheckpoint, removeHome, sleep, startDaemon, tempHome, waitFor, type DaemonProcess } from './harness';

const skipEngine = engineMissing();
const table = new CaseTable('durability');
after(() => table.write());
const TINY_MLP = { kind: 'mlp', name: 'tiny', inputFeatures: 64, hidden: [256, 256], classes: 10 };
const TINY_PLAN = { layers: [{ name: 'fc2', sparsify: true, config: { block: 32, butterflySize: 8, nFactors: 2, rank: 8 } }] };

function completeLines(file: string): JobEvent[] {
  const text = readFileSync(file, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as JobEvent);
}

function follow(client: DaemonClient, jobId: string): JobEvent[] {
  const events: JobEvent[] = [];
  client.onEvent((e) => {
    if (e.jobId === jobId) events.push(e);
  });
  return events;
}

async function ended(client: DaemonClient, jobId: string, timeoutMs = 60_000): Promise<JobInfo> {
  let info = await client.request('job.get', { jobId });
  for (const deadline = Date.now() + timeoutMs; !['completed', 'failed', 'cancelled', 'interrupted'].includes(info.state); ) {
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${info.state}`);
    await sleep(100);
    info = await client.request('job.get', { jobId });
  }
  return info;
}

/** A run of the tiny MLP checkpointing every 5 steps, its daemon killed (kill -9) right after a checkpoint at step 10 or later. */
async function killAfterCheckpointOf(daemon: DaemonProcess): Promise<{ job: JobInfo; killedAt: number }> {
  const client = await daemon.client();
  const job = await client.request('job.submit', { spec: TINY_MLP, plan: TINY_PLAN, dataset: { kind: 'synthetic' }, hyper: { epochs: 200, batchSize: 16, lr: 1e-3, checkpointEvery: 5, threads: 1 } });
  const killedAt = await killAfterCheckpoint(daemon, client, job.jobId, 10);
  assert.ok(killedAt >= 10, 'killed right after a checkpoint');
  return { job, killedAt };
}

test('kill -9 right after a checkpoint, then a corrupt newest checkpoint and a truncated state.json: nothing flushed is lost, the run resumes from the older intact checkpoint', { skip: skipEngine, timeout: 90_000 }, async () => {
  const home = tempHome();
  // Metrics wait up to a second in memory: only the checkpoint's own flush puts them on disk in time.
  let daemon = await startDaemon(home, ['--flush-ms', '1000']);
  try {
    const { job, killedAt } = await killAfterCheckpointOf(daemon);
    let client: DaemonClient;
    const metrics = join(job.runDir, 'metrics.jsonl');
    const steps = new Set(completeLines(metrics).flatMap((e) => (e.type === 'step' ? [e.step] : [])));
    const missing = Array.from({ length: killedAt }, (_, i) => i + 1).filter((s) => !steps.has(s));
    assert.deepEqual(missing, [], `steps before the checkpoint at ${killedAt} missing from metrics.jsonl`);

    // Damage: the newest checkpoint's Pixelfly file gets a flipped byte, state.json is cut in half.
    const newest = join(job.runDir, 'checkpoints', `step-${killedAt}`, 'pixelfly.ckpt');
    const older = killedAt - 5;
    assert.ok(existsSync(join(job.runDir, 'checkpoints', `step-${older}`)), 'the older checkpoint is kept');
    const bytes = readFileSync(newest);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(newest, bytes);
    const state = join(job.runDir, 'state.json');
    truncateSync(state, statSync(state).size >> 1);

    daemon = await startDaemon(home, ['--flush-ms', '1000']);
    client = await daemon.client();
    const listed = (await client.request('job.list', {})).jobs.find((j) => j.jobId === job.jobId);
    assert.ok(listed, 'the run is listed');
    assert.equal(listed.state, 'interrupted');
    assert.match(daemon.log(), /state\.json is missing or damaged .*rebuilt from its metrics and checkpoints as interrupted/);
    const restarted = daemon;
    const c = client;
    await table.check(restarted, await idleRss(restarted, c), 'kill -9 after a checkpoint, corrupt newest checkpoint, truncated state.json: resume', async () => {
      const events = follow(c, job.jobId);
      await c.request('job.subscribe', { jobId: job.jobId, fromSeq: listed.lastSeq });
      await c.request('job.resume', { jobId: job.jobId });
      await waitFor(() => events.some((e) => e.type === 'step'), 30_000, 'a step after the resume');
      const running = events.find((e) => e.type === 'status' && e.state === 'running');
      assert.ok(running?.type === 'status');
      assert.equal(running.resumedFromStep, older);
      assert.match(running.message ?? '', new RegExp(`resumed from the checkpoint at step ${older}; skipped step ${killedAt} \\(.*checksum mismatch: the file is corrupt or truncated\\)`));
      const first = events.find((e) => e.type === 'step');
      assert.equal(first?.type === 'step' && first.step, older + 1);
      assert.ok(existsSync(join(job.runDir, 'checkpoints', `corrupt-step-${killedAt}`)), 'the corrupt checkpoint is set aside');
      await c.request('job.cancel', { jobId: job.jobId });
      assert.equal((await ended(c, job.jobId)).state, 'cancelled');
      return `${missing.length} of ${killedAt} steps before the checkpoint missing from metrics.jsonl; ${running.message}`;
    });
    client.close();
  } finally {
    await daemon.stop();
    removeHome(home);
  }
});

test('kill -9 between a checkpoint and its record in state.json: the restarted daemon names the newest checkpoint on disk, and resume takes it', { skip: skipEngine, timeout: 90_000 }, async () => {
  const home = tempHome();
  let daemon = await startDaemon(home, ['--flush-ms', '100']);
  try {
    const { job, killedAt } = await killAfterCheckpointOf(daemon);
    let client: DaemonClient;
    // The kill landed after the checkpoint's folder was renamed into place, before state.json said so.
    const stateFile = join(job.runDir, 'state.json');
    writeFileSync(stateFile, JSON.stringify({ ...JSON.parse(readFileSync(stateFile, 'utf8')), lastCheckpointStep: killedAt - 5 }));
    daemon = await startDaemon(home, ['--flush-ms', '100']);
    client = await daemon.client();
    const interrupted = await client.request('job.get', { jobId: job.jobId });
    assert.equal(interrupted.state, 'interrupted');
    assert.equal(interrupted.lastCheckpointStep, killedAt);
    assert.match(interrupted.endReason ?? '', new RegExp(`resume continues from the newest intact checkpoint \\(step ${killedAt}\\)`));
    const events = follow(client, job.jobId);
    await client.request('job.subscribe', { jobId: job.jobId, fromSeq: interrupted.lastSeq });
    await client.request('job.resume', { jobId: job.jobId });
    await waitFor(() => events.some((e) => e.type === 'step'), 30_000, 'a step after the resume');
    const running = events.find((e) => e.type === 'status' && e.state === 'running');
    assert.equal(running?.type === 'status' && running.resumedFromStep, killedAt);
    await client.request('job.cancel', { jobId: job.jobId });
    assert.equal((await ended(client, job.jobId)).state, 'cancelled');
    client.close();
  } finally {
    await daemon.stop();
    removeHome(home);
  }
});

/** Why a small tmpfs cannot be mounted here, or undefined. */
function tmpfsMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'SKIPPED: mounting a small tmpfs for the full-disk test needs root';
  const probe = mkdtempSync(join(tmpdir(), 'pixelfly-tmpfs-probe-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { encoding: 'utf8' });
  spawnSync('umount', [probe]);
  rmSync(probe, { recursive: true, force: true });
  return r.status === 0 ? undefined : `SKIPPED: cannot mount a tmpfs here (${r.stderr.trim()})`;
}

/** Fills the file system with one file until the first ENOSPC; returns its path. */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return file;
}

test('a disk that fills up mid-run: the job fails saying so and keeps its checkpoints; the daemon stays up, restarts on the full disk and says why runs cannot start', { skip: skipEngine ?? tmpfsMissing(), timeout: 90_000 }, async () => {
  const home = tempHome();
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', home]).status, 0);
  let daemon: DaemonProcess | undefined;
  try {
    daemon = await startDaemon(home);
    let client = await daemon.client();
    const first = daemon;
    const c = client;
    let filler = '';
    let job: JobInfo | undefined;
    await table.check(first, await idleRss(first, c), 'a disk (40 MB tmpfs) that fills up mid-run', async () => {
      job = await c.request('job.submit', { spec: TINY_MLP, plan: TINY_PLAN, dataset: { kind: 'synthetic' }, hyper: { epochs: 500, batchSize: 16, lr: 1e-3, checkpointEvery: 3, threads: 1 } });
      const events = follow(c, job.jobId);
      await c.request('job.subscribe', { jobId: job.jobId, fromSeq: 0 });
      await waitFor(() => events.some((e) => e.type === 'checkpoint' && e.step >= 6), 30_000, 'two checkpoints');
      filler = fill(home);
      const failed = await ended(c, job.jobId);
      assert.equal(failed.state, 'failed');
      assert.match(failed.error ?? '', /no space left on device while (writing the checkpoint at step \d+ .*removed the partial checkpoint, freeing .*; the checkpoints and metrics already written are kept|writing .*metrics\.jsonl; the metrics and checkpoints already written are kept)/);
      assert.ok(failed.lastCheckpointStep !== undefined && existsSync(join(job.runDir, 'checkpoints', `step-${failed.lastCheckpointStep}`)), 'the last checkpoint is kept');
      assert.equal((await c.request('hello', {})).pid, first.pid, 'the daemon is up');
      await assert.rejects(
        c.request('job.submit', { spec: TINY_MLP, dataset: { kind: 'synthetic' }, hyper: { epochs: 1, batchSize: 16, lr: 1e-3 } }),
        (e: DaemonRpcError) => e.code === ErrorCode.REJECTED && /not enough disk space for this run: .* has [\d.]+ (bytes|kB|MB) free/.test(e.message),
      );
      return failed.error as string;
    });
    assert.ok(job);
    client.close();
    assert.equal(await daemon.stop(), 0, daemon.log());

    // A restart on the full disk: it starts, and says why runs cannot.
    fill(home);
    daemon = await startDaemon(home);
    client = await daemon.client();
    const full = daemon;
    const c2 = client;
    await table.check(full, await idleRss(full, c2, { jobs: false }), 'a daemon started on a full disk', async () => {
      const hello = await c2.request('hello', {});
      assert.match(hello.storage?.problem ?? '', /is full .*runs cannot start until space is freed/);
      assert.match(full.log(), /WARNING: the disk holding .* is full/);
      assert.equal((await c2.request('job.get', { jobId: job!.jobId })).state, 'failed', 'past runs are listed');
      let refusal = '';
      await assert.rejects(c2.request('job.submit', { spec: TINY_MLP, dataset: { kind: 'synthetic' }, hyper: { epochs: 1, batchSize: 16, lr: 1e-3 } }), (e: DaemonRpcError) => {
        refusal = e.message;
        return e.code === ErrorCode.REJECTED && /not enough disk space/.test(e.message);
      });
      return `hello: ${hello.storage?.problem}; job.submit: ${refusal}`;
    });
    rmSync(filler);
    rmSync(join(home, 'filler'), { force: true });
    const again = await client.request('job.submit', { spec: TINY_MLP, plan: TINY_PLAN, dataset: { kind: 'synthetic' }, hyper: { epochs: 1, batchSize: 16, lr: 1e-3, maxSteps: 3, threads: 1 } });
    assert.equal((await ended(client, again.jobId)).state, 'completed', 'with space again, runs run');
    client.close();
  } finally {
    await daemon?.stop();
    spawnSync('umount', [home]);
    removeHome(home);
  }
});

test('a write that fails mid-run for another reason (the checkpoints folder replaced by a file): the job fails saying which write, the daemon runs the next job', { skip: skipEngine, timeout: 90_000 }, async () => {
  const home = tempHome();
  const daemon = await startDaemon(home);
  try {
    const client = await daemon.client();
    await table.check(daemon, await idleRss(daemon, client), 'a checkpoint write that fails (ENOTDIR/EEXIST)', async () => {
      const job = await client.request('job.submit', { spec: TINY_MLP, plan: TINY_PLAN, dataset: { kind: 'synthetic' }, hyper: { epochs: 500, batchSize: 16, lr: 1e-3, checkpointEvery: 3, threads: 1 } });
      const events = follow(client, job.jobId);
      await client.request('job.subscribe', { jobId: job.jobId, fromSeq: 0 });
      await waitFor(() => events.some((e) => e.type === 'checkpoint'), 30_000, 'a checkpoint');
      const checkpoints = join(job.runDir, 'checkpoints');
      // Moved away in one rename (the job may be writing into it this moment), then a file in its
      // place; the job may make the folder again in between (it checkpoints every 3 steps): again.
      for (let i = 0; ; i++) {
        renameSync(checkpoints, `${checkpoints}-moved-${i}`);
        try {
          writeFileSync(checkpoints, 'not a folder', { flag: 'wx' });
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i >= 20) throw e;
        }
      }
      const failed = await ended(client, job.jobId);
      assert.equal(failed.state, 'failed');
      assert.match(failed.error ?? '', /while writing the checkpoint at step \d+/);
      const steps = completeLines(join(job.runDir, 'metrics.jsonl')).filter((e) => e.type === 'step').length;
      assert.ok(steps >= 3, `the metrics already written are kept (${steps} steps)`);
      const next = await client.request('job.submit', { spec: TINY_MLP, plan: TINY_PLAN, dataset: { kind: 'synthetic' }, hyper: { epochs: 1, batchSize: 16, lr: 1e-3, maxSteps: 3, threads: 1 } });
      assert.equal((await ended(client, next.jobId)).state, 'completed', 'the next job runs');
      return failed.error as string;
    });
    client.close();
  } finally {
    assert.equal(await daemon.stop(), 0, daemon.log());
    removeHome(home);
  }
});
