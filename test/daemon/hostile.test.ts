// Single valid-looking requests that used to kill or freeze the daemon, against a real daemon
// process: absurd model sizes, huge plans, deep nesting, endless or blocking dataset paths, gzip
// bombs, corrupt arrays, a job process killed under it, half-open and slow sockets, and running
// out of file descriptors. Each ends in a clear error; the daemon stays up, its memory stays at its
// idle level, and `hello` keeps answering quickly meanwhile.
// Cost: ~25 s on 2 idle cores (one tiny job, four failing ones, two daemons).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { ErrorCode, TOKEN_HEADER, type JobEvent, type JobInfo, type MethodParamsIn } from '../../protocol/daemon';
import { DaemonRpcError, type DaemonClient } from '../../client/daemonClient';
import { idxHeader, makeFifo, npyFile, writeGzipBomb } from '../support/dataFiles';
import { assertResponsive, describeLatency, engineMissing, frame, rawConnect, removeHome, rssOf, sampleHello, sleep, startDaemon, tempHome, waitFor, type DaemonProcess } from './harness';

const skipEngine = engineMissing();
const HANDSHAKE_MS = 800;

let daemon: DaemonProcess;
let home: string;
let client: DaemonClient;

before(async () => {
  home = tempHome();
  daemon = await startDaemon(home, ['--handshake-ms', String(HANDSHAKE_MS)]);
  client = await daemon.client();
  if (skipEngine) return;
  // One small job first: the daemon's idle level is that of a daemon whose job code has run once.
  const warm = await client.request('job.submit', { spec: { kind: 'mlp', inputFeatures: 64, hidden: [64], classes: 10 }, plan: { layers: [] }, dataset: { kind: 'synthetic' }, hyper });
  await finished(warm.jobId);
});

after(async () => {
  client.close();
  const code = await daemon.stop();
  assert.equal(code, 0, `daemon exited with ${code}:\n${daemon.log()}`);
  assert.doesNotMatch(daemon.log(), /internal error/, 'nothing reached the daemon as an unexpected error');
  removeHome(home);
});

const hyper = { epochs: 1, batchSize: 8, lr: 1e-3, maxSteps: 2, threads: 1 };
type Submit = MethodParamsIn<'job.submit'>;

async function refused(params: Submit, pattern: RegExp): Promise<DaemonRpcError> {
  let caught: DaemonRpcError | undefined;
  await assert.rejects(client.request('job.submit', params), (e: DaemonRpcError) => {
    caught = e;
    assert.equal(e.code, ErrorCode.REJECTED, e.message);
    assert.match(e.message, pattern);
    return true;
  });
  return caught as DaemonRpcError;
}

function runFolders(): string[] {
  try {
    return readdirSync(join(home, 'runs'));
  } catch {
    return [];
  }
}

async function finished(jobId: string): Promise<{ events: JobEvent[]; info: JobInfo }> {
  const events: JobEvent[] = [];
  const off = client.onEvent((e) => {
    if (e.jobId === jobId) events.push(e);
  });
  await client.request('job.subscribe', { jobId, fromSeq: 0 });
  await waitFor(() => events.some((e) => e.type === 'completed'), 60_000, `job ${jobId} to end`);
  off();
  return { events, info: await client.request('job.get', { jobId }) };
}

test('absurd sizes are refused before anything is allocated, with the numbers and a size that fits; RSS and hello unchanged', { skip: skipEngine, timeout: 60_000 }, async () => {
  const other = await daemon.client();
  const idle = rssOf(daemon.pid);
  const sampler = sampleHello(other, daemon.pid);
  const folders = runFolders().length;
  const cases: Array<[string, Submit['spec'], RegExp]> = [
    ['an MLP of hidden 10^6', { kind: 'mlp', inputFeatures: 784, hidden: [1_000_000, 1_000_000], classes: 10 }, /hidden\[\d\] \d+|batchSize/],
    ['a Mixer of dim 10^6', { kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 1_000_000, depth: 2, tokenHidden: 64, channelHidden: 256, classes: 10 }, /dim \d+/],
    ['a Mixer of depth 10^4', { kind: 'mixer', image: { channels: 3, height: 224, width: 224 }, patch: 16, dim: 768, depth: 10_000, tokenHidden: 384, channelHidden: 3072, classes: 1000 }, /depth \d+/],
    ['a ViT of image 1024×1024', { kind: 'vit', image: { channels: 1, height: 1024, width: 1024 }, patch: 1024, dim: 64, depth: 1, heads: 1, mlpHidden: 64, classes: 10 }, /./],
    ['an MLP of inputFeatures 2^20', { kind: 'mlp', inputFeatures: 2 ** 20, hidden: [64], classes: 10 }, /./],
    ['a GPT of vocab and width 2^20', { kind: 'gpt', vocab: 2 ** 20, context: 64, dim: 2 ** 20, depth: 1, heads: 1, mlpHidden: 64 }, /dim \d+|vocab \d+|no batch size/],
  ];
  for (const [what, spec, fits] of cases) {
    // Without a plan, the daemon plans first (in a helper process), then admits.
    const e = await refused({ spec, dataset: { kind: 'synthetic' }, hyper }, /this job needs about [\d.]+ [GT]B of memory \(parameters .*activations .*dataset .*\), but only [\d.]+ [GM]B can be given to it/);
    assert.match(e.message, /a size that fits: |no batch size or single width fits/, what);
    assert.match(e.message, fits, `${what}: ${e.message}`);
    const data = e.data as { reason: string; neededBytes: number; budgetBytes: number };
    assert.equal(data.reason, 'memory', what);
    assert.ok(data.neededBytes > data.budgetBytes, what);
  }
  assert.equal(runFolders().length, folders, 'no run folder was created');
  const rtts = await sampler.stop();
  const after = rssOf(daemon.pid);
  other.close();
  assert.ok(after <= 1.1 * idle, `daemon RSS ${(idle / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB`);
  assertResponsive(rtts, 'during the refusals');
  process.stderr.write(`# absurd specs: daemon RSS ${(idle / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB; ${describeLatency(rtts)}\n`);
});

test('plan.suggest: a 2^30-wide layer is refused naming the field; 4096 wide layers plan off the event loop', { timeout: 120_000 }, async () => {
  await assert.rejects(
    client.request('plan.suggest', { inventory: { layers: [{ name: 'fc', role: 'mlp_fc1', in: 2 ** 30, out: 2 ** 30, count: 1, rowsPerSample: 1 }] }, target: { budget: 0.5 } }),
    (e: DaemonRpcError) => e.code === ErrorCode.INVALID_PARAMS && /inventory\.layers\.0\.in: .*1048576/.test(e.message),
  );
  const wide = await client.request('plan.suggest', { inventory: { layers: [{ name: 'fc', role: 'mlp_fc1', in: 2 ** 20, out: 2 ** 20, count: 1, rowsPerSample: 1 }] }, target: { budget: 0.5 } });
  assert.equal(wide.layers[0].sparsify, true);
  // Thousands of distinct widths (nothing cached): seconds of planning, none of it on the daemon's loop.
  const other = await daemon.client();
  const sampler = sampleHello(other, daemon.pid);
  const layers = Array.from({ length: 4096 }, (_, i) => ({ name: `l${i}`, role: 'mlp_fc1' as const, in: 2 ** 20 - 16 * (i + 1), out: 2 ** 20 - 16 * (i + 7), count: 1, rowsPerSample: 1 }));
  const t0 = Date.now();
  const plan = await client.request('plan.suggest', { inventory: { layers }, target: { budget: 0.5 } }, 110_000);
  const ms = Date.now() - t0;
  const rtts = await sampler.stop();
  other.close();
  assert.equal(plan.layers.length, 4096);
  // Measuring speed with operands no machine holds is refused before anything is allocated.
  await assert.rejects(
    client.request('bench.layers', { shapes: [{ name: 'huge', in: 65536, out: 65536, rows: 1 }], configs: [{ block: 32, butterflySize: 8, nFactors: 2, rank: 8 }] }),
    (e: DaemonRpcError) => e.code === ErrorCode.REJECTED && /shape huge: in x out = 4294967296 weights exceeds 16777216/.test(e.message),
  );
  process.stderr.write(`# plan.suggest of 4096 layers: ${ms} ms; meanwhile ${describeLatency(rtts)}\n`);
  // Validating and answering a 360 kB request and a 2 MB plan still happen on the loop: a few tens of ms.
  assertResponsive(rtts, 'during planning');
});

test('deep nesting, a 100k-layer MLP and dataset paths that are not data: short errors naming what was sent, nothing left behind', { skip: skipEngine, timeout: 30_000 }, async () => {
  const folders = runFolders().length;
  const raw = await rawConnect(daemon.port, { [TOKEN_HEADER]: daemon.token });
  const deep = '['.repeat(10_000) + ']'.repeat(10_000);
  raw.socket.write(frame(`{"jsonrpc":"2.0","id":7,"method":"job.submit","params":{"spec":{"kind":"mlp","inputFeatures":4,"hidden":${deep},"classes":2},"dataset":{"kind":"synthetic"},"hyper":{"epochs":1,"batchSize":8,"lr":0.001}}}`));
  await waitFor(() => raw.messages.length > 0, 5000, 'an answer');
  const answer = raw.messages[0] as { id: number; error: { code: number; message: string } };
  assert.equal(answer.id, 7);
  assert.equal(answer.error.code, ErrorCode.INVALID_REQUEST);
  assert.match(answer.error.message, /nests arrays and objects more than 64 levels deep/);
  raw.socket.destroy();

  // A client's plan is checked before admission computes with it.
  const fc = (config: Record<string, number>) => ({ layers: [{ name: 'fc1', sparsify: true, config: { block: 16, butterflySize: 8, nFactors: 2, rank: 8, ...config } }] });
  const wide = { kind: 'mlp', inputFeatures: 1024, hidden: [1024], classes: 10 };
  await refused({ spec: wide, plan: fc({ butterflySize: 3 }), dataset: { kind: 'synthetic' }, hyper }, /plan layer 'fc1' \(1024×1024\): .*butterfly_size.*must be a power of two, got 3/);
  await refused({ spec: wide, plan: fc({ rank: 5000 }), dataset: { kind: 'synthetic' }, hyper }, /plan layer 'fc1' \(1024×1024\): rank must be in 0\.\.1024, got 5000/);
  await refused({ spec: { ...wide, inputFeatures: 2 ** 20, hidden: [2 ** 20] }, plan: fc({ butterflySize: 2 ** 16, nFactors: 16 }), dataset: { kind: 'synthetic' }, hyper }, /too large to build/);

  const many = await refused({ spec: { kind: 'mlp', inputFeatures: 64, hidden: Array(100_000).fill(8), classes: 10 }, dataset: { kind: 'synthetic' }, hyper }, /hidden: at most 4096 layers, got 100000/);
  assert.ok(many.message.length < 500, `a short message (${many.message.length} characters)`);

  const fifo = join(home, 'corpus.fifo');
  makeFifo(fifo);
  const gpt = { kind: 'gpt', vocab: 64, context: 16, dim: 32, depth: 1, heads: 2, mlpHidden: 64 };
  await refused({ spec: gpt, dataset: { kind: 'text', path: '/dev/zero' }, hyper }, /dataset: \/dev\/zero is a device, not a file/);
  await refused({ spec: gpt, dataset: { kind: 'text', path: '/dev/urandom' }, hyper }, /dataset: \/dev\/urandom is a device/);
  await refused({ spec: gpt, dataset: { kind: 'text', path: fifo }, hyper }, /corpus\.fifo is a named pipe \(FIFO\)/);
  await refused({ spec: { kind: 'mlp', inputFeatures: 4, hidden: [], classes: 2 }, dataset: { kind: 'npy', path: '/dev/zero' }, hyper }, /dataset: \/dev\/zero is a device; a npy dataset is a folder/);
  assert.equal(runFolders().length, folders, 'no run folder was created');
  assert.equal((await client.request('hello', {})).pid, daemon.pid);
});

test('a gzip bomb, a negative .npy shape, labels of 2^40, a killed job process: the job fails saying why, the daemon stays small', { skip: skipEngine, timeout: 120_000 }, async () => {
  const other = await daemon.client();
  const idle = rssOf(daemon.pid);
  const sampler = sampleHello(other, daemon.pid);
  const mlp = { kind: 'mlp', inputFeatures: 784, hidden: [32], classes: 10 };
  const fails = async (dataset: Submit['dataset'], pattern: RegExp, spec: Submit['spec'] = mlp) => {
    const job = await client.request('job.submit', { spec, plan: { layers: [] }, dataset, hyper });
    const { info } = await finished(job.jobId);
    assert.equal(info.state, 'failed', JSON.stringify(info));
    assert.match(info.error ?? '', pattern);
  };
  // Fashion-MNIST images that inflate to 3.2 GB from 3 MB; the header says 47 MB.
  const fm = join(home, 'fm-bomb');
  mkdirSync(fm);
  writeGzipBomb(join(fm, 'train-images-idx3-ubyte.gz'), 3.2e9, idxHeader([60000, 28, 28]));
  await fails({ kind: 'fashion-mnist', path: fm }, /train-images-idx3-ubyte\.gz: holds more than the 47\.0 MB its header declares/);

  const neg = join(home, 'npy-negative');
  mkdirSync(neg);
  writeFileSync(join(neg, 'x.npy'), npyFile('<f4', '-1, 4', Buffer.alloc(64)));
  writeFileSync(join(neg, 'y.npy'), npyFile('<i8', '4,', Buffer.alloc(32)));
  await fails({ kind: 'npy', path: neg }, /x\.npy: shape \(-1, 4\): every dimension must be a non-negative integer/, { kind: 'mlp', inputFeatures: 4, hidden: [], classes: 2 });

  const labels = join(home, 'npy-labels');
  mkdirSync(labels);
  writeFileSync(join(labels, 'x.npy'), npyFile('<f4', '20, 4', Buffer.alloc(20 * 16)));
  const y = Buffer.alloc(20 * 8);
  y.writeBigInt64LE(2n ** 40n, 0);
  writeFileSync(join(labels, 'y.npy'), npyFile('<i8', '20,', y));
  await fails({ kind: 'npy', path: labels }, /y\.npy: label 1099511627776 is beyond the 1048575 a class index may be/, { kind: 'mlp', inputFeatures: 4, hidden: [], classes: 2 });

  // A job process that dies (as under a native crash or the kernel's OOM killer) ends only its job.
  const long = await client.request('job.submit', { spec: mlp, plan: { layers: [] }, dataset: { kind: 'synthetic' }, hyper: { ...hyper, maxSteps: 0, epochs: 50 } });
  const events: JobEvent[] = [];
  const off = client.onEvent((e) => void (e.jobId === long.jobId && events.push(e)));
  await client.request('job.subscribe', { jobId: long.jobId, fromSeq: 0 });
  await waitFor(() => events.some((e) => e.type === 'step'), 30_000, 'the job to train');
  const children = spawnSync('pgrep', ['-P', String(daemon.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
  assert.equal(children.length, 1, `one job process (${children.join(', ')})`);
  process.kill(Number(children[0]), 'SIGKILL');
  await waitFor(() => events.some((e) => e.type === 'completed'), 30_000, 'the job to end');
  off();
  const killed = await client.request('job.get', { jobId: long.jobId });
  assert.equal(killed.state, 'failed');
  assert.match(killed.error ?? '', /the job process was killed by SIGKILL/);
  assert.ok(killed.peakMemoryBytes && killed.peakMemoryBytes > 0, 'its peak memory was measured');

  const rtts = await sampler.stop();
  other.close();
  const after = rssOf(daemon.pid);
  process.stderr.write(`# hostile datasets: daemon RSS ${(idle / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB; ${describeLatency(rtts)}\n`);
  assert.ok(after <= 1.1 * idle, `daemon RSS ${(idle / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB`);
  assertResponsive(rtts, 'during the jobs');
});

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

test('silent and slow sockets are closed after the handshake timeout, at most 32 wait at once, and clients are served meanwhile', { timeout: 30_000 }, async () => {
  const fds = () => readdirSync(`/proc/${daemon.pid}/fd`).length;
  const before = fds();
  const silent = await Promise.all(Array.from({ length: 100 }, () => openSocket(daemon.port)));
  const closed = silent.map((s) => new Promise<void>((r) => s.once('close', () => r())));
  silent.forEach((s) => s.on('error', () => undefined));
  await sleep(100);
  const stats = await client.request('daemon.stats', {});
  assert.ok((stats.handshaking ?? 0) <= 32, `${stats.handshaking} sockets in their handshake`);
  // Slow headers: one byte every 100 ms never completes a handshake in time.
  const slow = await openSocket(daemon.port);
  slow.on('error', () => undefined);
  const slowClosed = new Promise<void>((r) => slow.once('close', () => r()));
  const drip = setInterval(() => slow.writable && slow.write('G'), 100);
  assert.equal((await client.request('hello', {})).pid, daemon.pid, 'an authenticated client is served');
  const t0 = Date.now();
  await Promise.all([...closed, slowClosed]);
  clearInterval(drip);
  assert.ok(Date.now() - t0 < HANDSHAKE_MS + 2000, `closed within the handshake timeout (${Date.now() - t0} ms)`);
  await waitFor(() => fds() <= before + 2, 5000, `the daemon's descriptors back to ${before} (now ${fds()})`);
  assert.equal((await client.request('daemon.stats', {})).handshaking, 0);
});

test('EMFILE: out of file descriptors, the daemon keeps serving; a job started then fails saying why; later jobs run', { skip: skipEngine, timeout: 90_000 }, async () => {
  const limited = tempHome();
  const small = await startDaemon(limited, [], {}, 15_000, ['prlimit', '--nofile=48:48', '--']);
  const sockets: Socket[] = [];
  try {
    const c = await small.client();
    // Authenticated connections until the daemon has no descriptor left to accept another.
    for (let i = 0; i < 60; i++) {
      const conn = await rawConnect(small.port, { [TOKEN_HEADER]: small.token }).catch(() => undefined);
      if (conn) sockets.push(conn.socket);
    }
    await sleep(200);
    assert.equal(small.proc.exitCode, null, 'the daemon is running');
    assert.equal((await c.request('hello', {})).pid, small.pid, 'the open connection is served');
    const job = await c.request('job.submit', { spec: { kind: 'mlp', inputFeatures: 64, hidden: [32], classes: 10 }, plan: { layers: [] }, dataset: { kind: 'synthetic' }, hyper }).then(
      (info) => ({ info }),
      (err: DaemonRpcError) => ({ err }),
    );
    if ('err' in job) {
      assert.match(job.err.message, /too many open files|EMFILE/);
    } else {
      let info = job.info;
      for (const deadline = Date.now() + 30_000; !['completed', 'failed'].includes(info.state) && Date.now() < deadline; ) {
        await sleep(100);
        info = await c.request('job.get', { jobId: info.jobId });
      }
      assert.equal(info.state, 'failed', `a job without descriptors: ${JSON.stringify(info)}`);
      assert.match(info.error ?? '', /EMFILE|too many open files/);
    }
    for (const s of sockets.splice(0)) s.destroy();
    await sleep(300);
    const ok = await c.request('job.submit', { spec: { kind: 'mlp', inputFeatures: 64, hidden: [32], classes: 10 }, plan: { layers: [] }, dataset: { kind: 'synthetic' }, hyper });
    let info = ok;
    for (const deadline = Date.now() + 30_000; !['completed', 'failed'].includes(info.state) && Date.now() < deadline; ) {
      await sleep(100);
      info = await c.request('job.get', { jobId: ok.jobId });
    }
    assert.equal(info.state, 'completed', JSON.stringify(info));
    c.close();
  } finally {
    for (const s of sockets) s.destroy();
    assert.equal(await small.stop(), 0, small.log());
    removeHome(limited);
  }
});
