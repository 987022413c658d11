/**
 * DaemonConnection against a real WebSocket server on 127.0.0.1 that speaks the daemon protocol's
 * hello/job.subscribe and checks the token (a stand-in daemon: the real one needs the native
 * engine; the e2e suite uses the real one). Found through a discovery file in a temp
 * PIXELFLY_HOME; the server drops the connection mid-stream and restarts on a new port with a new
 * token; the client reconnects with backoff and resubscribes from the last seq it saw, so the
 * store receives every event exactly once.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { createToken, ensureHome, writeDiscovery } from '../../io/home';
import { TOKEN_HEADER, type JobEvent } from '../../protocol/daemon';
import { DaemonConnection, type ConnectionState } from '../../extension/daemon/connection';

const home = mkdtempSync(join(tmpdir(), 'pixelfly-ext-conn-'));
after(() => rmSync(home, { recursive: true, force: true }));

const HELLO = {
  name: 'pixelfly-daemon', version: '0.1.0', protocol: 1, pid: process.pid, home, backends: ['cpu'],
  engine: { available: true }, cpu: { model: 'test cpu', cores: 2, features: ['avx2'] }, gpus: [], threads: 2,
};

/** The job's whole event log; the server replays from fromSeq like the daemon does. */
const LOG: JobEvent[] = Array.from({ length: 30 }, (_, i) => ({
  jobId: 'job1', seq: i + 1, t: 1764050000000 + i, type: 'step' as const, step: i + 1, epoch: 0, lr: 1e-3,
  pixelfly: { loss: 2 - i / 30, stepMs: 4, tokensPerSec: 100 },
}));

interface FakeDaemon {
  close(): Promise<void>;
  subscribes: number[];
  rejected: number;
}

/** Serves; `dropAfter` events into a subscription it terminates the socket (a crash). */
async function startFake(dropAfter: number | null): Promise<FakeDaemon> {
  const token = createToken(home);
  const state: FakeDaemon = { subscribes: [], rejected: 0, close: async () => undefined };
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    verifyClient: (info, cb) => {
      if (info.req.headers[TOKEN_HEADER] !== token) {
        state.rejected++;
        return cb(false, 401, 'Unauthorized');
      }
      cb(true);
    },
  });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  writeDiscovery({ port, pid: process.pid, host: '127.0.0.1', startedAt: new Date().toISOString(), version: '0.1.0' }, home);
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data) => {
      const req = JSON.parse(String(data)) as { id: number; method: string; params: { fromSeq?: number } };
      const reply = (result: unknown) => ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, result }));
      if (req.method === 'hello') return reply(HELLO);
      if (req.method === 'job.subscribe') {
        const from = req.params.fromSeq ?? 0;
        state.subscribes.push(from);
        reply({ jobId: 'job1', state: 'running', lastSeq: LOG.length });
        let sent = 0;
        for (const e of LOG.filter((x) => x.seq > from)) {
          if (dropAfter !== null && sent === dropAfter) {
            ws.terminate();
            return;
          }
          ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'job.metrics', params: e }));
          sent++;
        }
        return;
      }
      ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, error: { code: -32601, message: 'method not found' } }));
    });
  });
  state.close = () => new Promise<void>((r) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => r());
  });
  return state;
}

describe('DaemonConnection', () => {
  it('reports offline (no autostart) with a clear reason when no daemon is running', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'pixelfly-ext-none-'));
    const c = new DaemonConnection({ home: empty, autostart: false, port: 0, cliPath: '/nonexistent', log: () => undefined, backoff: { baseMs: 10000, maxMs: 10000, jitter: 0 } });
    await assert.rejects(c.ensure(), /no daemon running .*daemon\.json.*pixelfly daemon start/);
    assert.equal(c.state.kind, 'disconnected');
    c.dispose();
    rmSync(empty, { recursive: true, force: true });
  });

  it('reconnects after a crash and resubscribes from the last seq: every event exactly once', async () => {
    ensureHome(home);
    const first = await startFake(12);
    const logs: string[] = [];
    const states: ConnectionState['kind'][] = [];
    const c = new DaemonConnection({ home, autostart: false, port: 0, cliPath: '/nonexistent', log: (l) => logs.push(l), backoff: { baseMs: 400, maxMs: 800, jitter: 0 } });
    const got: number[] = [];
    c.listen({ onEvent: (e) => got.push(e.seq), onState: (s) => states.push(s.kind) });
    await c.ensure();
    assert.equal(c.state.kind, 'connected');
    assert.equal(c.state.kind === 'connected' && c.state.hello.cpu.model, 'test cpu');

    // the first daemon dies after 12 events; a new one (new port, new token) takes over
    const dropped = new Promise<void>((r) => c.listen({ onState: (s) => s.kind === 'disconnected' && r() }));
    await c.follow('job1', 0);
    await dropped;
    await first.close();
    const second = await startFake(null);
    const deadline = Date.now() + 10000;
    while (got.length < LOG.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // events arriving twice would be dropped by the RunStore, but the connection should not even ask twice
    assert.deepEqual(got, LOG.map((e) => e.seq));
    assert.deepEqual(second.subscribes, [12], 'resubscribed from the last seq seen');
    assert.ok(states.includes('disconnected') && states[states.length - 1] === 'connected');
    assert.ok(logs.some((l) => /reconnecting to the daemon in \d+ ms/.test(l)));
    c.dispose();
    await second.close();
  });

  it('refuses politely when the token is wrong (401)', async () => {
    const d = await startFake(null);
    createToken(home); // the token file changes under the running server
    const c = new DaemonConnection({ home, autostart: false, port: 0, cliPath: '/nonexistent', log: () => undefined, backoff: { baseMs: 10000, maxMs: 10000, jitter: 0 } });
    await assert.rejects(c.ensure(), /refused our token \(401\)/);
    assert.equal(d.rejected, 1);
    c.dispose();
    await d.close();
  });
});
