// Test harness: a real daemon process (`pixelfly daemon foreground`, the compiled CLI) in a
// temporary Pixelfly home, and raw sockets that can send exactly the bytes a test wants.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DaemonClient, daemonUrl } from '../../client/daemonClient';
import { DAEMON_NODE_FLAGS } from '../../client/discovery';

export const CLI = join(__dirname, '..', '..', 'cli', 'main.js');
/** Where each hostile-case test file writes its figures (`npm run bench:hostile` gathers them). */
export const FIGURES_DIR = resolve(__dirname, '..', '..', '..', 'test-artifacts', 'hostile');

export function tempHome(): string {
  return mkdtempSync(join(tmpdir(), 'pixelfly-daemon-test-'));
}

export interface DaemonProcess {
  home: string;
  proc: ChildProcess;
  port: number;
  token: string;
  pid: number;
  /** Everything the process wrote to stderr so far. */
  log(): string;
  client(): Promise<DaemonClient>;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
  exited: Promise<number | null>;
}

/**
 * Starts `pixelfly daemon foreground` in `home`, with the Node flags `pixelfly daemon start` and the
 * extension give it. `wrap` runs it through another command (e.g.
 * `prlimit --nofile=64:64 --`), which then execs node, so the pid is still the daemon's.
 */
export async function startDaemon(home: string, args: string[] = [], env: Record<string, string> = {}, timeoutMs = 15000, wrap: string[] = []): Promise<DaemonProcess> {
  const discovery = join(home, 'daemon.json');
  const command = [...wrap, process.execPath, ...DAEMON_NODE_FLAGS, CLI, 'daemon', 'foreground', ...args];
  const proc = spawn(command[0], command.slice(1), {
    env: { ...process.env, ...env, PIXELFLY_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += String(d)));
  proc.stdout!.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(discovery)) {
      const d = JSON.parse(readFileSync(discovery, 'utf8')) as { port: number; pid: number };
      if (d.pid === proc.pid) {
        const token = readFileSync(join(home, 'token'), 'utf8').trim();
        return {
          home,
          proc,
          port: d.port,
          token,
          pid: d.pid,
          log: () => stderr,
          client: () => DaemonClient.connect(daemonUrl(d.port), token),
          exited,
          stop: async () => {
            proc.kill('SIGTERM');
            return exited;
          },
          kill9: async () => {
            proc.kill('SIGKILL');
            await exited;
          },
        };
      }
    }
    if (proc.exitCode !== null) throw new Error(`daemon exited with ${proc.exitCode} before listening:\n${stderr}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`daemon did not start within ${timeoutMs} ms:\n${stderr}`);
    }
    await sleep(50);
  }
}

/**
 * `run` against a fresh daemon in a temporary home, with a connected client; the client is closed,
 * the daemon stopped and the home removed afterwards, whatever happens.
 */
export async function withDaemon(
  run: (client: DaemonClient, daemon: DaemonProcess) => Promise<void>,
  args: string[] = [],
  env: (home: string) => Record<string, string> = () => ({}),
): Promise<void> {
  const home = tempHome();
  const daemon = await startDaemon(home, args, env(home));
  try {
    const client = await daemon.client();
    try {
      await run(client, daemon);
    } finally {
      client.close();
    }
  } finally {
    await daemon.stop();
    removeHome(home);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function removeHome(home: string): void {
  rmSync(home, { recursive: true, force: true });
}

/** One client-to-server WebSocket frame (masked, as clients must), with any opcode and flags. */
export function frame(payload: Buffer | string, opts: { opcode?: number; fin?: boolean; rsv?: number; mask?: boolean } = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const { opcode = 1, fin = true, rsv = 0, mask = true } = opts;
  const len = data.length;
  const head: number[] = [(fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f)];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127, 0, 0, 0, 0);
    head.push((len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), data]);
  const key = randomBytes(4);
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = data[i] ^ key[i & 3];
  return Buffer.concat([Buffer.from(head), key, masked]);
}

export interface RawConnection {
  socket: Socket;
  /** HTTP status line of the handshake answer, e.g. 'HTTP/1.1 101 Switching Protocols'. */
  status: string;
  /** Server frames decoded so far (text payloads; close frames as {close: code}). */
  messages: unknown[];
  closeCode?: number;
  closed: Promise<void>;
}

/** A handshake with exactly the given headers; returns once the server has answered it. */
export function rawConnect(port: number, headers: Record<string, string>, opts: { read?: boolean } = {}): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let conn: RawConnection | undefined;
    let closedResolve: () => void = () => undefined;
    const closed = new Promise<void>((r) => (closedResolve = r));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closedResolve();
      if (!conn) reject(new Error('socket closed before the handshake answer'));
    });
    socket.on('connect', () => {
      const lines = [
        'GET / HTTP/1.1',
        `Host: ${headers.Host ?? `127.0.0.1:${port}`}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        ...Object.entries(headers)
          .filter(([k]) => k !== 'Host')
          .map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!conn) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = buf.subarray(0, buf.indexOf('\r\n')).toString();
        buf = buf.subarray(end + 4);
        conn = { socket, status, messages: [], closed };
        resolve(conn);
        if (opts.read === false) socket.pause();
        if (!status.includes(' 101 ')) return;
      }
      // Decode unmasked server frames.
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const opcode = buf[0] & 0x0f;
        const payload = buf.subarray(off, off + len);
        if (opcode === 1) conn.messages.push(JSON.parse(payload.toString('utf8')));
        else if (opcode === 8) conn.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        buf = buf.subarray(off + len);
      }
    });
  });
}

/**
 * SIGKILLs the daemon the moment it reports a checkpoint of `jobId` at step `minStep` or later (no
 * flush timer has had a chance since); resolves with that step once the daemon has exited.
 */
export async function killAfterCheckpoint(daemon: DaemonProcess, client: DaemonClient, jobId: string, minStep: number): Promise<number> {
  let killedAt = 0;
  client.onEvent((e) => {
    if (e.jobId === jobId && e.type === 'checkpoint' && e.step >= minStep && killedAt === 0) {
      killedAt = e.step;
      daemon.proc.kill('SIGKILL');
    }
  });
  await client.request('job.subscribe', { jobId, fromSeq: 0 });
  await daemon.exited;
  return killedAt;
}

export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Why engine tests cannot run here, or undefined when the native addon loads. */
export function engineMissing(): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('../../native/engine').engineBackend();
    return undefined;
  } catch (err) {
    return `SKIPPED: the native engine is not built (${(err as Error).message}); run \`npm run build\``;
  }
}

/** A process's resident memory in bytes (VmRSS), from /proc. */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** CPU time (ms) the process's main thread (its event loop) has used, from /proc (10 ms ticks). */
export function mainThreadCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export interface HelloSample {
  /** Round trip of one `hello`, ms. */
  rtt: number;
  /** CPU the daemon's main thread used meanwhile, ms: work that held its event loop. */
  cpu: number;
}

/**
 * Asks `hello` back to back (one in flight, 20 ms apart) until stop() is called; stop() resolves
 * with every round trip and the CPU the daemon's event-loop thread used during it.
 */
export function sampleHello(client: DaemonClient, pid: number): { stop(): Promise<HelloSample[]> } {
  const samples: HelloSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const c0 = mainThreadCpuMs(pid);
        const t0 = performance.now();
        await client.request('hello', {});
        samples.push({ rtt: performance.now() - t0, cpu: mainThreadCpuMs(pid) - c0 });
      } catch {
        // The client was closed (a test that failed early): no more samples.
        return;
      }
      await sleep(20);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

/**
 * The 95th percentile, leaving out at least the slowest sample: a case short enough for fewer than 40
 * hellos would otherwise be judged by its single slowest one, which is what the Target below prints
 * rather than asserts.
 */
function withoutSlowest(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.max(0, sorted.length - 1 - Math.max(1, Math.floor(0.05 * sorted.length)))];
}

/** "hello median 3.1 ms, p95 8.0 ms, max 12.0 ms; event loop busy at most 10 ms in one (n=140)" */
export function describeLatency(samples: HelloSample[]): string {
  const rtt = samples.map((s) => s.rtt);
  const f = (p: number) => percentile(rtt, p).toFixed(1);
  return `hello median ${f(0.5)} ms, p95 ${f(0.95)} ms, max ${f(1)} ms; event loop busy at most ${percentile(samples.map((s) => s.cpu), 1)} ms during one (n=${samples.length})`;
}

/** Work that holds the daemon's event loop longer than this is a bug (planning, loading data and synthetic data run elsewhere). */
export const LOOP_BUSY_LIMIT_MS = 50;

/**
 * The daemon answered `hello` while it worked: 95% within the Target's 100 ms, and its event
 * loop's thread never worked 50 ms during one `hello` (a loop blocked by planning or by loading
 * data works for seconds). The slowest round trip is printed, not asserted: on a shared 2-core
 * machine the OS can stall any process that long while its loop is idle, which the CPU figure
 * tells apart. (The CPU clock ticks in 10 ms: 50 means five ticks or more.)
 */
export function assertResponsive(samples: HelloSample[], what: string): void {
  assert.ok(samples.length > 0, `no hello answered ${what}`);
  assert.ok(withoutSlowest(samples.map((s) => s.rtt)) < 100, `${what}: ${describeLatency(samples)}`);
  assert.ok(Math.max(...samples.map((s) => s.cpu)) < LOOP_BUSY_LIMIT_MS, `${what}: ${describeLatency(samples)}`);
}

/** The process's resident memory once it has settled: polled until at most `limit` bytes, or `ms` have passed. */
export async function settledRss(pid: number, limit: number, ms = 3000): Promise<number> {
  let rss = rssOf(pid);
  for (const deadline = Date.now() + ms; rss > limit && Date.now() < deadline; rss = rssOf(pid)) await sleep(100);
  return rss;
}

/**
 * The daemon's idle resident memory, as a daemon in use has it: it has ended a tiny job each way
 * (completed, failed; when the engine is built), which compiles those code paths, and answered a
 * few thousand requests, which grows the allocator to its working size (it levels off after
 * ~3,000). What a hostile case leaves beyond this is what the case cost. `jobs: false` skips the
 * jobs (a daemon that cannot run any, e.g. on a full disk).
 */
export async function idleRss(daemon: DaemonProcess, client: DaemonClient, opts: { jobs?: boolean } = {}): Promise<number> {
  if ((opts.jobs ?? true) && !engineMissing()) {
    const hyper = { epochs: 1, batchSize: 8, lr: 1e-3, maxSteps: 2, threads: 1 };
    for (const dataset of [{ kind: 'synthetic' as const }, { kind: 'npy' as const, path: join(daemon.home, 'no-such-folder') }]) {
      const job = await client.request('job.submit', { spec: { kind: 'mlp', inputFeatures: 64, hidden: [64], classes: 10 }, plan: { layers: [] }, dataset, hyper });
      let info = job;
      for (const deadline = Date.now() + 60_000; !['completed', 'failed', 'cancelled'].includes(info.state) && Date.now() < deadline; ) {
        await sleep(50);
        info = await client.request('job.get', { jobId: job.jobId });
      }
    }
  }
  for (let i = 0; i < 1500; i++) await Promise.all([client.request('hello', {}), client.request('job.list', {})]);
  await sleep(300);
  return rssOf(daemon.pid);
}

/**
 * How long a case's RSS may take to come back to idle. V8 keeps a burst's garbage in the heap until
 * its memory reducer runs, which starts only after allocation has slowed for some seconds: 3 s after
 * the 12,000-message fuzz the daemon still held 98.7 MiB (idle 75.6); given longer, it was back at
 * 73.9 MiB (idle 73.5) 14.7 s after the burst (24.8 s in another run), with no request in between.
 * A leak would stay; this waits the reducer out, and the table says how long each case took.
 */
export const RSS_SETTLE_MS = 60_000;

/** One hostile case, as the Target measures it. */
export interface CaseFigures {
  case: string;
  /** The error the client was given (or, for work that must succeed, what it did). */
  outcome: string;
  rssIdleMiB: number;
  rssAfterMiB: number;
  helloCount: number;
  helloP95Ms: number;
  helloMaxMs: number;
  /** CPU the daemon's event-loop thread used during one `hello`, at most (10 ms ticks). */
  loopBusyMaxMs: number;
  /** How late the daemon's event loop ran its 10 ms timer, at most (wall-clock: OS stalls count). */
  loopDelayMaxMs: number | null;
  wallMs: number;
  /** How long the RSS took to come back within 10% of idle after the case (RSS_SETTLE_MS when it did not). */
  rssSettleMs: number;
}

const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

/**
 * The Target, case by case: each case runs while a second connection samples `hello` and the
 * daemon times its event loop; then it must have ended in a clear outcome, the daemon must answer,
 * its RSS must be back within 10% of idle, and `hello` must have been quick throughout. The
 * figures go into a table, printed and written to test-artifacts/hostile/<file>.json.
 */
export class CaseTable {
  readonly rows: CaseFigures[] = [];

  constructor(private readonly file: string) {}

  async check(daemon: DaemonProcess, idleBytes: number, name: string, run: () => Promise<string>): Promise<string> {
    const watcher = await daemon.client();
    try {
      await watcher.request('daemon.stats', { resetEventLoop: true });
      const sampler = sampleHello(watcher, daemon.pid);
      const t0 = Date.now();
      let samples: HelloSample[] = [];
      let outcome: string;
      try {
        outcome = await run();
      } finally {
        samples = await sampler.stop();
      }
      const wallMs = Date.now() - t0;
      const stats = await watcher.request('daemon.stats', {});
      assert.equal((await watcher.request('hello', {})).pid, daemon.pid, `${name}: the daemon answers`);
      const settleStart = Date.now();
      const after = await settledRss(daemon.pid, 1.1 * idleBytes, RSS_SETTLE_MS);
      const rssSettleMs = Date.now() - settleStart;
      const rtt = samples.map((x) => x.rtt);
      this.rows.push({
        case: name,
        outcome,
        rssIdleMiB: mib(idleBytes),
        rssAfterMiB: mib(after),
        helloCount: samples.length,
        helloP95Ms: Math.round(percentile(rtt, 0.95) * 10) / 10,
        helloMaxMs: Math.round(percentile(rtt, 1) * 10) / 10,
        loopBusyMaxMs: Math.max(0, ...samples.map((x) => x.cpu)),
        loopDelayMaxMs: stats.eventLoop?.maxDelayMs ?? null,
        wallMs,
        rssSettleMs,
      });
      assert.ok(outcome.trim().length > 0, `${name}: a clear outcome`);
      assert.ok(after <= 1.1 * idleBytes, `${name}: daemon RSS ${mib(idleBytes)} -> ${mib(after)} MiB, more than 10% above idle`);
      assertResponsive(samples, name);
      return outcome;
    } finally {
      watcher.close();
    }
  }

  /** Prints the table (with the machine's load) and writes the figures as JSON. */
  write(): void {
    if (this.rows.length === 0) return;
    mkdirSync(FIGURES_DIR, { recursive: true });
    const load = loadavg().map((x) => x.toFixed(2)).join(' ');
    writeFileSync(join(FIGURES_DIR, `${this.file}.json`), JSON.stringify({ file: this.file, load, rows: this.rows }, null, 2) + '\n');
    process.stderr.write(`# ${this.file}: the Target case by case (load ${load})\n${formatCaseTable(this.rows).replace(/^/gm, '# ')}\n`);
  }
}

/** The figures as a fixed-width table, one case a line. */
export function formatCaseTable(rows: CaseFigures[]): string {
  const head = ['case', 'outcome (the error the client got)', 'RSS idle→after MiB (settled in)', 'hello n', 'p95 ms', 'max ms', 'loop busy ms', 'loop delay ms'];
  const cut = (t: string, n: number) => (t.length > n ? `${t.slice(0, n - 1)}…` : t);
  const lines = rows.map((r) => [
    cut(r.case, 44),
    cut(r.outcome.replace(/\s+/g, ' '), 90),
    `${r.rssIdleMiB.toFixed(1)}→${r.rssAfterMiB.toFixed(1)} (${(r.rssSettleMs / 1000).toFixed(1)} s)`,
    String(r.helloCount),
    r.helloP95Ms.toFixed(1),
    r.helloMaxMs.toFixed(1),
    String(r.loopBusyMaxMs),
    r.loopDelayMaxMs === null ? '-' : r.loopDelayMaxMs.toFixed(1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  return [head, ...lines].map((l) => l.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}
