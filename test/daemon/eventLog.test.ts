// The event log and the run summary, in process: crash recovery of metrics.jsonl, replay from
// any sequence number (memory tail and file), and the summary of a resumed run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventLog } from '../../daemon/jobs/eventLog';
import { summarize } from '../../daemon/jobs/runner';
import type { JobEvent, JobEventBody } from '../../protocol/daemon';
import { removeHome, tempHome } from './harness';

const step = (n: number, loss = 1, pixelflyMs = 1, denseMs = 2): JobEventBody => ({
  type: 'step',
  step: n,
  epoch: n / 100,
  pixelfly: { loss, stepMs: pixelflyMs, tokensPerSec: 1000 / pixelflyMs },
  dense: { loss, stepMs: denseMs, tokensPerSec: 1000 / denseMs },
  speedup: denseMs / pixelflyMs,
});

test('a line cut short by a crash is dropped; every complete line is kept and numbering continues', () => {
  const home = tempHome();
  try {
    const file = join(home, 'metrics.jsonl');
    const log = new EventLog(file, 'j1', 1000);
    for (let i = 1; i <= 10; i++) log.append(step(i));
    log.flush();
    log.close();
    appendFileSync(file, '{"type":"step","step":11,"epo'); // the write a kill -9 interrupted
    const reopened = new EventLog(file, 'j1', 1000);
    assert.equal(reopened.lastSeq, 10);
    assert.ok(readFileSync(file, 'utf8').endsWith('}\n'), 'the partial line is truncated away');
    const next = reopened.append({ type: 'status', state: 'interrupted' });
    assert.equal(next.seq, 11);
    reopened.close();
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  } finally {
    removeHome(home);
  }
});

test('read(fromSeq) returns exactly the events after fromSeq, from memory or from the file', () => {
  const home = tempHome();
  try {
    const file = join(home, 'metrics.jsonl');
    const log = new EventLog(file, 'j2', 1000);
    const n = 5000; // more than the in-memory tail
    for (let i = 1; i <= n; i++) log.append(step(i));
    for (const from of [0, 1, 255, 256, 257, 1000, 3999, 4500, n - 1, n]) {
      const got = log.read(from, 100);
      const want = Array.from({ length: Math.min(100, n - from) }, (_, k) => from + 1 + k);
      assert.deepEqual(got.map((e) => e.seq), want, `from ${from}`);
    }
    log.close();
    // After a restart the file alone serves every range too.
    const reopened = new EventLog(file, 'j2', 1000);
    assert.deepEqual(reopened.read(10, 3).map((e) => e.seq), [11, 12, 13]);
    assert.deepEqual(reopened.read(n - 2, 10).map((e) => e.seq), [n - 1, n]);
    reopened.close();
  } finally {
    removeHome(home);
  }
});

test('an idle log holds no file descriptor, and multi-byte text survives reads across chunk boundaries', () => {
  const home = tempHome();
  try {
    const file = join(home, 'metrics.jsonl');
    const log = new EventLog(file, 'j4', 1000);
    const message = (i: number) => `${i} é😀`.repeat(700); // ~7 KB per line: lines straddle 256 KB read chunks
    for (let i = 1; i <= 300; i++) log.append({ type: 'error', message: message(i), fatal: false });
    log.release();
    const got = log.read(0, 1000);
    assert.equal(got.length, 300);
    got.forEach((e, i) => assert.equal(e.type === 'error' && e.message, message(i + 1)));
    assert.equal(log.append({ type: 'status', state: 'running' }).seq, 301, 'appending after a release reopens the file');
    log.close();
    assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 301);
  } finally {
    removeHome(home);
  }
});

test('appended events reach the file within the flush interval, without an explicit flush', async () => {
  const home = tempHome();
  try {
    const file = join(home, 'metrics.jsonl');
    const log = new EventLog(file, 'j3', 50);
    log.append(step(1));
    assert.equal(readFileSync(file, 'utf8'), '');
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 1);
    log.close();
  } finally {
    removeHome(home);
  }
});

test('the summary of a resumed run counts each step once (its latest record), takes medians, and sums session times', () => {
  const bodies: JobEventBody[] = [
    { type: 'status', state: 'running' },
    ...[1, 2, 3, 4].map((i) => step(i, 9, 10, 10)),
    { type: 'status', state: 'interrupted' },
    { type: 'status', state: 'running', resumedFromStep: 2 },
    // Resumed from the checkpoint at step 2: steps 3 and 4 are trained again.
    ...[3, 4, 5, 6].map((i) => step(i, 1, 1, 3)),
    { type: 'eval', step: 6, epoch: 0.06, pixelfly: { loss: 0.5, accuracy: 0.9 }, dense: { loss: 0.4, accuracy: 0.92 } },
  ];
  // Session 1 spans t=1000..1005; the daemon is down until t=9000; session 2 spans 9000..9005.
  const events = bodies.map((b, i) => ({ ...b, jobId: 'j', seq: i + 1, t: i <= 5 ? 1000 + i : 9000 + (i - 6) }) as JobEvent);
  const s = summarize(events, { pixelfly: 100, dense: 400 }, 100);
  assert.equal(s.wallMs, 5 + 5);
  assert.equal(s.steps, 6);
  assert.equal(s.epochsDone, 0.06);
  // Steps 1-2 at 10 ms, 3-6 at 1 ms (Pixelfly) / 3 ms (dense).
  assert.equal(s.pixelfly.medianStepMs, 1);
  assert.equal(s.dense?.medianStepMs, 3);
  assert.equal(s.speedup, 3);
  assert.equal(s.pixelfly.eval?.accuracy, 0.9);
  assert.equal(s.dense?.params, 400);
  assert.equal(s.pixelfly.partsMs, undefined, 'no parts reported, none summarised');
});

test('the summary takes the median time of each part of the model, in the order the steps list them', () => {
  const withParts = (n: number, mix: number): JobEventBody => {
    const e = step(n) as Extract<JobEventBody, { type: 'step' }>;
    return { ...e, pixelfly: { ...e.pixelfly, partsMs: { token_mix: 5, channel_mix: mix } }, dense: { ...e.dense!, partsMs: { token_mix: 5, channel_mix: 4 * mix } } };
  };
  const events = [withParts(1, 1), withParts(2, 3), withParts(3, 2), step(4)].map((b, i) => ({ ...b, jobId: 'j', seq: i + 1, t: i }) as JobEvent);
  const s = summarize(events, { pixelfly: 1, dense: 1 }, 100);
  assert.deepEqual(s.pixelfly.partsMs, { token_mix: 5, channel_mix: 2 });
  assert.deepEqual(s.dense?.partsMs, { token_mix: 5, channel_mix: 8 });
  assert.deepEqual(Object.keys(s.pixelfly.partsMs!), ['token_mix', 'channel_mix']);
});
