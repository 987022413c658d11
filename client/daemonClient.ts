/**
 * The one JSON-RPC 2.0 client of the daemon (CLI, VS Code extension, tests): one WebSocket, typed
 * requests with timeouts, and every response and notification validated with protocol/daemon.ts
 * before anyone sees it. The daemon is another process (maybe another version), so its data is
 * untrusted input: a bad frame is reported to the protocol-error listeners and dropped, never
 * thrown inside the socket handler (which would take the CLI or the extension host down).
 * No VS Code imports; discovery and starting the daemon are in ./discovery.ts.
 */
import WebSocket from 'ws';
import {
  describeZodError,
  LIMITS,
  methods,
  notifications,
  RpcNotificationSchema,
  RpcResponseSchema,
  TOKEN_HEADER,
  type JobEvent,
  type MethodName,
  type MethodParamsIn,
  type MethodResult,
} from '../protocol/daemon';

/** The daemon's WebSocket address for a port (it only listens on loopback). */
export function daemonUrl(port: number): string {
  return `ws://127.0.0.1:${port}/`;
}

/** A request that failed: the daemon's JSON-RPC error (its code), or -1 for a local failure (timeout, closed, invalid result). */
export class DaemonRpcError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    message: string,
    /** The error's `data` (e.g. a REJECTED job's memory numbers), unvalidated. */
    readonly data?: unknown,
  ) {
    super(`daemon ${method}: ${message}`);
    this.name = 'DaemonRpcError';
  }
}

interface Pending {
  method: MethodName;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Default time a request may wait for its answer. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30000;

export class DaemonClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly eventListeners = new Set<(e: JobEvent, method: string) => void>();
  private readonly closeListeners = new Set<(code: number, reason: string) => void>();
  private readonly problemListeners = new Set<(message: string) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('error', (e) => this.problem(`socket error: ${e.message}`));
    ws.on('close', (code, reason) => {
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new DaemonRpcError(p.method, -1, `connection closed (${code}) before the answer`));
      }
      this.pending.clear();
      for (const l of this.closeListeners) l(code, String(reason));
    });
  }

  /** Opens the socket with the token at the handshake; rejects with a readable reason (401, refused…). */
  static connect(url: string, token: string, timeoutMs = 5000): Promise<DaemonClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: { [TOKEN_HEADER]: token }, maxPayload: 64 * LIMITS.maxPayloadBytes, handshakeTimeout: timeoutMs, perMessageDeflate: false });
      const fail = (e: Error) => {
        ws.removeAllListeners();
        ws.on('error', () => undefined);
        ws.terminate();
        reject(e);
      };
      ws.once('unexpected-response', (_req, res) =>
        fail(new Error(res.statusCode === 401 ? 'the daemon refused our token (401): it was restarted or the token file changed' : `handshake refused with HTTP ${res.statusCode}`)),
      );
      ws.once('error', (e) => fail(e));
      ws.once('open', () => {
        ws.removeAllListeners('error');
        ws.removeAllListeners('unexpected-response');
        resolve(new DaemonClient(ws));
      });
    });
  }

  request<M extends MethodName>(method: M, params: MethodParamsIn<M>, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<MethodResult<M>> {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new DaemonRpcError(method, -1, 'not connected'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DaemonRpcError(method, -1, `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject, timer });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  /** Validated job events (every notification method); returns the unsubscribe function. */
  onEvent(listener: (e: JobEvent, method: string) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  onClose(listener: (code: number, reason: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Messages from the daemon that do not match the protocol (dropped after the listeners saw them). */
  onProtocolError(listener: (message: string) => void): () => void {
    this.problemListeners.add(listener);
    return () => this.problemListeners.delete(listener);
  }

  close(): void {
    this.ws.close(1000, 'client closing');
  }

  private problem(message: string): void {
    for (const l of this.problemListeners) l(message);
  }

  private onMessage(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return this.problem(`not JSON: ${text.slice(0, 80)}`);
    }
    if (typeof msg === 'object' && msg !== null && 'id' in msg) {
      const r = RpcResponseSchema.safeParse(msg);
      if (!r.success) return this.problem(describeZodError(r.error, 'response'));
      const p = typeof r.data.id === 'number' ? this.pending.get(r.data.id) : undefined;
      if (!p) return this.problem(`response to unknown request id ${String(r.data.id)}`);
      this.pending.delete(r.data.id as number);
      clearTimeout(p.timer);
      if ('error' in r.data) return p.reject(new DaemonRpcError(p.method, r.data.error.code, r.data.error.message, r.data.error.data));
      const result = methods[p.method].result.safeParse(r.data.result);
      if (!result.success) return p.reject(new DaemonRpcError(p.method, -1, describeZodError(result.error, `${p.method} result`)));
      p.resolve(result.data);
      return;
    }
    const n = RpcNotificationSchema.safeParse(msg);
    if (!n.success) return this.problem(describeZodError(n.error, 'notification'));
    const schema = (notifications as Record<string, (typeof notifications)[keyof typeof notifications]>)[n.data.method];
    if (!schema) return this.problem(`unknown notification ${n.data.method}`);
    const ev = schema.safeParse(n.data.params);
    if (!ev.success) return this.problem(describeZodError(ev.error, n.data.method));
    for (const l of this.eventListeners) l(ev.data, n.data.method);
  }
}
