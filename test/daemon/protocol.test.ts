// The daemon's boundary, against a real daemon process and real sockets: handshake security,
// frame limits, malformed and unknown messages, bounded pending requests, a fuzz run, and
// discovery (a second daemon finds the first).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ErrorCode, LIMITS, methods, TOKEN_HEADER, TOKEN_SUBPROTOCOL_PREFIX } from '../../protocol/daemon';
import { mulberry32 } from '../../core/random';
import { CaseTable, CLI, frame, idleRss, rawConnect, removeHome, startDaemon, tempHome, waitFor, type DaemonProcess } from './harness';

let daemon: DaemonProcess;
let home: string;

before(async () => {
  home = tempHome();
  daemon = await startDaemon(home);
});

after(async () => {
  const code = await daemon.stop();
  assert.equal(code, 0, `daemon exited with ${code}:\n${daemon.log()}`);
  removeHome(home);
});

type Answer = { id?: unknown; result?: unknown; error?: { code: number; message: string } };

async function authed(): Promise<Awaited<ReturnType<typeof rawConnect>>> {
  const c = await rawConnect(daemon.port, { [TOKEN_HEADER]: daemon.token });
  assert.match(c.status, / 101 /);
  return c;
}

async function ask(c: Awaited<ReturnType<typeof rawConnect>>, payload: string | Buffer, opts?: Parameters<typeof frame>[1]): Promise<Answer> {
  const before = c.messages.length;
  c.socket.write(frame(payload, opts));
  await waitFor(() => c.messages.length > before, 5000, 'an answer');
  return c.messages[before] as Answer;
}

test('discovery file and token are private to the user; a second daemon finds the first', () => {
  assert.equal(statSync(join(home, 'token')).mode & 0o777, 0o600);
  assert.equal(statSync(join(home, 'daemon.json')).mode & 0o777, 0o600);
  assert.ok(daemon.token.length >= 32, 'token is long and random');
  const second = spawnSync(process.execPath, [CLI, 'daemon', 'foreground'], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 10000 });
  assert.equal(second.status, 1);
  assert.match(second.stderr, new RegExp(`already running \\(pid ${daemon.pid}\\)`));
  const start = spawnSync(process.execPath, [CLI, 'daemon', 'start'], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 10000 });
  assert.equal(start.status, 0);
  assert.match(start.stdout, new RegExp(`already running: pid ${daemon.pid}, 127.0.0.1:${daemon.port}`));
  const status = spawnSync(process.execPath, [CLI, 'daemon', 'status'], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 10000 });
  assert.equal(status.status, 0, status.stderr);
  assert.match(status.stdout, /cpu: /);
});

test('a daemon whose folder is deleted (nobody can find it any more) stops by itself', { timeout: 20_000 }, async () => {
  const orphanHome = tempHome();
  const orphan = await startDaemon(orphanHome);
  removeHome(orphanHome);
  assert.equal(await orphan.exited, 0);
  assert.match(orphan.log(), /no longer names this daemon: stopping/);
});

test('the handshake is refused without the token, with a wrong one, from a browser origin or a foreign host', async () => {
  const none = await rawConnect(daemon.port, {});
  assert.match(none.status, / 401 /);
  const wrong = await rawConnect(daemon.port, { [TOKEN_HEADER]: daemon.token.slice(0, -1) + (daemon.token.endsWith('a') ? 'b' : 'a') });
  assert.match(wrong.status, / 401 /);
  const short = await rawConnect(daemon.port, { [TOKEN_HEADER]: 'x' });
  assert.match(short.status, / 401 /);
  const browser = await rawConnect(daemon.port, { [TOKEN_HEADER]: daemon.token, Origin: 'https://evil.example' });
  assert.match(browser.status, / 403 /);
  const rebinding = await rawConnect(daemon.port, { [TOKEN_HEADER]: daemon.token, Host: `evil.example:${daemon.port}` });
  assert.match(rebinding.status, / 403 /);
  // The ws library's client (what the extension uses) sees the same refusal as an error.
  await assert.rejects(
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${daemon.port}/`);
      ws.on('open', resolve);
      ws.on('error', reject);
    }),
    /401/,
  );
});

test('the token is accepted as a header or as a subprotocol (echoed back)', async () => {
  const viaHeader = await authed();
  assert.equal(((await ask(viaHeader, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'hello' }))).result as { name: string }).name, 'pixelfly-daemon');
  viaHeader.socket.destroy();
  const ws = new WebSocket(`ws://127.0.0.1:${daemon.port}/`, [`${TOKEN_SUBPROTOCOL_PREFIX}${daemon.token}`]);
  await new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  assert.equal(ws.protocol, `${TOKEN_SUBPROTOCOL_PREFIX}${daemon.token}`);
  ws.close();
});

test('hello reports version, protocol, CPU features and threads, and validates against the protocol', async () => {
  const client = await daemon.client();
  const hello = await client.request('hello', { client: 'test' });
  assert.equal(hello.pid, daemon.pid);
  assert.equal(hello.protocol, 1);
  assert.ok(hello.threads >= 1);
  assert.ok(Array.isArray(hello.cpu.features));
  assert.equal(hello.home, home);
  client.close();
});

test('malformed, binary, batch and unknown-method messages get JSON-RPC errors; the connection stays usable', async () => {
  const c = await authed();
  assert.equal((await ask(c, '{"jsonrpc": "2.0", "id": 1, "method": ')).error?.code, ErrorCode.PARSE_ERROR);
  assert.equal((await ask(c, Buffer.from([1, 2, 3]), { opcode: 2 })).error?.code, ErrorCode.PARSE_ERROR);
  assert.equal((await ask(c, '[{"jsonrpc":"2.0","id":1,"method":"hello"}]')).error?.code, ErrorCode.INVALID_REQUEST);
  const noVersion = await ask(c, '{"id": 7, "method": "hello"}');
  assert.equal(noVersion.error?.code, ErrorCode.INVALID_REQUEST);
  assert.equal(noVersion.id, 7);
  const unknown = await ask(c, JSON.stringify({ jsonrpc: '2.0', id: 'u', method: 'system.exec', params: { cmd: 'touch /tmp/pwned' } }));
  assert.equal(unknown.error?.code, ErrorCode.METHOD_NOT_FOUND);
  assert.match(unknown.error!.message, /unknown method 'system\.exec'/);
  const badParams = await ask(c, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'job.get', params: { jobId: '../../etc' } }));
  assert.equal(badParams.error?.code, ErrorCode.INVALID_PARAMS);
  assert.match(badParams.error!.message, /jobId/);
  const missing = await ask(c, JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'job.get', params: { jobId: 'nope' } }));
  assert.equal(missing.error?.code, ErrorCode.JOB_NOT_FOUND);
  const badPlan = await ask(c, JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'plan.suggest', params: { inventory: { layers: [] }, target: { budget: 2 } } }));
  assert.equal(badPlan.error?.code, ErrorCode.INVALID_PARAMS);
  assert.match(badPlan.error!.message, /inventory\.layers|budget/);
  assert.equal(((await ask(c, JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'hello' }))).result as { pid: number }).pid, daemon.pid);
  c.socket.destroy();
});

test('large frames are checked off the event loop: the same answers, in the order the client sent them, and a bounded number at once', { timeout: 60_000 }, async () => {
  const c = await authed();
  // An inventory of 1200 layers is over 64 kB (OFF_LOOP_BYTES): its check runs in a helper process.
  const layers = Array.from({ length: 1200 }, (_, i) => ({ name: `fc${i}`, role: 'mlp_fc1', in: 1024, out: 4096, count: 1, rowsPerSample: 64 }));
  const big = (id: number, budget: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'plan.suggest', params: { inventory: { layers }, target: { budget } } });
  assert.ok(big(1, 2).length > 64 * 1024);
  // One TCP write: an invalid large request, then a small one. The small one is checked at once, but
  // answered after the large one's error: requests reach their handlers in the order sent.
  c.socket.write(Buffer.concat([frame(big(1, 2)), frame(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'hello' }))]));
  await waitFor(() => c.messages.length >= 2, 20_000, 'two answers');
  const [first, second] = c.messages as Answer[];
  assert.equal(first.id, 1);
  assert.equal(first.error?.code, ErrorCode.INVALID_PARAMS);
  assert.match(first.error!.message, /budget/);
  assert.equal(second.id, 2);
  assert.equal((second.result as { pid: number }).pid, daemon.pid);
  // A valid large request is planned as a small one would be.
  const planned = await ask(c, big(3, 0.3));
  assert.equal(planned.id, 3);
  assert.equal((planned.result as { layers: unknown[] }).layers.length, 1200, JSON.stringify(planned.error));
  // Twenty at once: at most maxPendingRequests are checked or handled at a time; the rest are refused at once, and every frame gets one answer.
  const before = c.messages.length;
  c.socket.write(Buffer.concat(Array.from({ length: 20 }, (_, i) => frame(big(100 + i, 2)))));
  await waitFor(() => c.messages.length >= before + 20, 40_000, '20 answers');
  const flood = c.messages.slice(before) as Answer[];
  const refused = flood.filter((a) => a.error?.code === ErrorCode.TOO_MANY_PENDING).length;
  assert.equal(flood.filter((a) => a.error?.code === ErrorCode.INVALID_PARAMS).length + refused, 20);
  assert.ok(refused >= 20 - LIMITS.maxPendingRequests, `${refused} refused`);
  c.socket.destroy();
});

test('plan.suggest plans through the core', async () => {
  const client = await daemon.client();
  const plan = await client.request('plan.suggest', {
    inventory: { layers: [{ name: 'fc1', role: 'mlp_fc1', in: 1024, out: 4096, count: 4, rowsPerSample: 64 }, { name: 'head', role: 'head', in: 1024, out: 10, count: 1, rowsPerSample: 1 }] },
    target: { budget: 0.3 },
  });
  assert.equal(plan.layers.length, 2);
  assert.equal(plan.layers.find((l) => l.name === 'head')?.sparsify, false);
  assert.equal(plan.layers.find((l) => l.name === 'fc1')?.sparsify, true);
  client.close();
});

test('a frame over the size limit closes the connection with 1009', async () => {
  const c = await authed();
  c.socket.write(frame('x'.repeat(LIMITS.maxPayloadBytes + 1)));
  await c.closed;
  assert.equal(c.closeCode, 1009);
});

test('requests in flight per connection are bounded', async () => {
  const c = await authed();
  const n = 200;
  // One TCP write: the daemon sees all 200 before any is answered.
  c.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'job.list' })))));
  await waitFor(() => c.messages.length >= n, 10000, `${n} answers`);
  const answers = c.messages as Answer[];
  const refused = answers.filter((a) => a.error?.code === ErrorCode.TOO_MANY_PENDING).length;
  const ok = answers.filter((a) => a.result !== undefined).length;
  assert.equal(ok + refused, n, 'every request gets exactly one answer');
  assert.ok(refused > 0, 'some requests were refused');
  assert.ok(ok >= LIMITS.maxPendingRequests);
  c.socket.destroy();
});

test('fuzz: 12,000 random messages and frames over 4 connections at once, zero crashes; RSS back to idle, hello quick throughout', { timeout: 180_000 }, async () => {
  const names = Object.keys(methods).filter((m) => m !== 'daemon.shutdown');
  const atoms = [null, true, false, 0, -1, 1e308, -0.5, '', 'x', '../..', '\u0000', '😀', [], {}];
  /** One connection's share: `count` messages, one at a time; returns what happened. */
  const fuzz = async (seed: number, count: number) => {
    const rand = mulberry32(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const randomValue = (depth: number): unknown => {
      const r = rand();
      if (depth > 3 || r < 0.4) return r < 0.2 ? pick(atoms) : Math.floor(rand() * 2 ** 32) - 2 ** 31;
      if (r < 0.7) return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(depth + 1));
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(rand() * 4); i > 0; i--) o[pick(['jobId', 'fromSeq', 'spec', 'hyper', 'inventory', 'target', 'layers', 'kind', String(i)])] = randomValue(depth + 1);
      return o;
    };
    const payloads = (): { data: string | Buffer; opts?: Parameters<typeof frame>[1] } => {
      const r = rand();
      if (r < 0.5) return { data: JSON.stringify({ jsonrpc: pick(['2.0', '2.0', '1.0', 2]), id: pick([1, 'a', null, 1.5, {}]), method: pick([...names, 'x', '']), params: randomValue(0) }) };
      if (r < 0.7) return { data: JSON.stringify(randomValue(0)) };
      if (r < 0.8) return { data: Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256))), opts: { opcode: pick([1, 2]) } };
      if (r < 0.85) return { data: pick(['['.repeat(5000), '{"a":'.repeat(200) + '1' + '}'.repeat(200)]) };
      if (r < 0.9) return { data: 'x', opts: { opcode: pick([0, 3, 7, 9, 10, 11, 15]), rsv: pick([0, 1, 4]) } };
      if (r < 0.95) return { data: '{"jsonrpc":"2.0","id":1,"method":"hello"}', opts: { fin: rand() < 0.5, mask: rand() < 0.5 } };
      return { data: Buffer.from([0xc3, 0x28, 0xa0, 0xa1]) }; // invalid UTF-8 in a text frame
    };
    let conn = await authed();
    let sent = 0;
    let answered = 0;
    let reconnects = 0;
    for (let i = 0; i < count; i++) {
      if (conn.socket.destroyed || conn.closeCode !== undefined) {
        conn.socket.destroy();
        conn = await authed();
        reconnects += 1;
      }
      const p = payloads();
      const before = conn.messages.length;
      conn.socket.write(frame(p.data, p.opts));
      sent += 1;
      // One at a time: wait for the answer, or the close a protocol violation earns, or (frames
      // that get no text answer) a short while.
      const silent = p.opts?.fin === false || p.opts?.opcode === 9 || p.opts?.opcode === 10; // fragment start, ping, pong
      const deadline = Date.now() + (silent ? 10 : 2000);
      while (conn.messages.length === before && conn.closeCode === undefined && !conn.socket.destroyed && Date.now() < deadline) {
        await new Promise((r) => setImmediate(r));
      }
      if (conn.messages.length > before) answered += 1;
    }
    conn.socket.destroy();
    return { sent, answered, reconnects };
  };
  const client = await daemon.client();
  const idle = await idleRss(daemon, client);
  const table = new CaseTable('protocol');
  try {
    const heapBefore = (await client.request('daemon.stats', {})).heapUsedBytes;
    await table.check(daemon, idle, 'fuzz: 12,000 random messages and frames', async () => {
      const results = await Promise.all([1234, 5678, 9012, 3456].map((seed) => fuzz(seed, 3000)));
      const total = results.reduce((a, r) => ({ sent: a.sent + r.sent, answered: a.answered + r.answered, reconnects: a.reconnects + r.reconnects }), { sent: 0, answered: 0, reconnects: 0 });
      assert.equal(total.sent, 12_000);
      assert.ok(total.answered > 6000, `most messages were answered (${total.answered})`);
      assert.ok(total.reconnects > 0, 'protocol violations closed some connections (and nothing else happened)');
      assert.equal(daemon.proc.exitCode, null, 'the daemon is still running');
      const heapAfter = (await client.request('daemon.stats', {})).heapUsedBytes;
      const mb = (b: number) => (b / 2 ** 20).toFixed(1);
      return `${total.sent} sent, ${total.answered} answered with a result or a JSON-RPC error, ${total.reconnects} connections closed for protocol violations, 0 crashes; JS heap used ${mb(heapBefore)} -> ${mb(heapAfter)} MiB`;
    });
  } finally {
    table.write();
    client.close();
  }
  assert.doesNotMatch(daemon.log(), /internal error/, 'no handler threw unexpectedly');
});
