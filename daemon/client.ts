// A Node client of the daemon, for the CLI (and tests): discovery, token, typed requests,
// validated notifications, and starting the daemon when none is running.
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import WebSocket from 'ws';
import {
  describeZodError,
  JobEventSchema,
  methods,
  RpcResponseSchema,
  TOKEN_HEADER,
  type JobEvent,
  type MethodName,
  type MethodParamsIn,
  type MethodResult,
  type RpcError,
} from '../protocol/daemon';
import { ensureHome, homePaths, processAlive, readDiscovery, readToken } from './home';

export class DaemonRpcError extends Error {
  constructor(readonly error: RpcError) {
    super(error.message);
  }
}

export class DaemonClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; method: MethodName }>();
  private readonly eventListeners = new Set<(e: JobEvent) => void>();
  private closeListeners = new Set<(code: number, reason: string) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('close', (code, reason) => {
      for (const w of this.waiting.values()) w.reject(new Error(`connection closed (${code} ${reason.toString()})`));
      this.waiting.clear();
      for (const l of this.closeListeners) l(code, reason.toString());
    });
  }

  static connect(port: number, token: string, timeoutMs = 5000): Promise<DaemonClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { [TOKEN_HEADER]: token }, handshakeTimeout: timeoutMs, perMessageDeflate: false });
      ws.once('open', () => resolve(new DaemonClient(ws)));
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`the daemon refused the connection: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim()));
        ws.terminate();
      });
      ws.once('error', (err) => reject(err));
    });
  }

  request<M extends MethodName>(method: M, params: MethodParamsIn<M>): Promise<MethodResult<M>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, method });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  onEvent(listener: (e: JobEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  onClose(listener: (code: number, reason: string) => void): void {
    this.closeListeners.add(listener);
  }

  close(): void {
    this.ws.close();
  }

  private onMessage(text: string): void {
    const message = JSON.parse(text) as { id?: unknown; method?: unknown; params?: unknown };
    if (typeof message.method === 'string') {
      const event = JobEventSchema.safeParse(message.params);
      if (!event.success) throw new Error(describeZodError(event.error, `${message.method} notification`));
      for (const l of this.eventListeners) l(event.data);
      return;
    }
    const response = RpcResponseSchema.safeParse(message);
    if (!response.success) throw new Error(describeZodError(response.error, 'response'));
    const r = response.data;
    const w = typeof r.id === 'number' ? this.waiting.get(r.id) : undefined;
    if (!w) return;
    this.waiting.delete(r.id as number);
    if ('error' in r) return w.reject(new DaemonRpcError(r.error));
    const result = methods[w.method].result.safeParse(r.result);
    if (!result.success) return w.reject(new Error(describeZodError(result.error, `${w.method} result`)));
    w.resolve(result.data);
  }
}

/** Connection details of the running daemon, or undefined when none is running. */
export function discover(home: string): { port: number; token: string; pid: number } | undefined {
  const d = readDiscovery(home);
  if (!d || !processAlive(d.pid)) return undefined;
  try {
    return { port: d.port, pid: d.pid, token: readToken(home) };
  } catch {
    return undefined;
  }
}

/**
 * Starts `pixelfly daemon foreground` detached (its output goes to <home>/daemon.log) and waits
 * until it answers. `cli` is the pixelfly entry script (this process's own by default).
 */
export async function spawnDaemon(home: string, extraArgs: string[] = [], cli = process.argv[1], timeoutMs = 15000) {
  ensureHome(home);
  const logFd = openSync(homePaths(home).log, 'a', 0o600);
  const child = spawn(process.execPath, [cli, 'daemon', 'foreground', ...extraArgs], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    // Inside VS Code's extension host process.execPath is Electron: this makes it behave as Node.
    env: { ...process.env, PIXELFLY_HOME: home, ELECTRON_RUN_AS_NODE: '1' },
  });
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = discover(home);
    if (found) {
      try {
        const c = await DaemonClient.connect(found.port, found.token, 2000);
        c.close();
        return found;
      } catch {
        // Not answering yet.
      }
    }
    if (exited !== null && !found) throw new Error(`the daemon exited with status ${exited}; see ${homePaths(home).log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the daemon did not start within ${timeoutMs / 1000} s; see ${homePaths(home).log}`);
}

/** The running daemon, started first when there is none. */
export async function ensureDaemon(home: string, extraArgs: string[] = []): Promise<{ port: number; token: string; pid: number; started: boolean }> {
  const found = discover(home);
  if (found) return { ...found, started: false };
  return { ...(await spawnDaemon(home, extraArgs)), started: true };
}
