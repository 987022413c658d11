/**
 * JSON-RPC 2.0 over one WebSocket to the daemon. Every response and notification is validated
 * with protocol/daemon.ts before anyone sees it: the daemon is another process (maybe another
 * version), so its data is untrusted input here.
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
} from '../../protocol/daemon';

export class DaemonRpcError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    message: string,
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

export interface RpcClientEvents {
  onEvent: (method: string, event: JobEvent) => void;
  onClose: (code: number, reason: string) => void;
  /** A message from the daemon that does not match the protocol (logged, then dropped). */
  onProtocolError: (message: string) => void;
}

export class RpcClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(
    private readonly ws: WebSocket,
    private readonly events: RpcClientEvents,
  ) {
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('close', (code, reason) => {
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new DaemonRpcError(p.method, -1, `connection closed (${code}) before the answer`));
      }
      this.pending.clear();
      events.onClose(code, String(reason));
    });
  }

  /** Opens the socket with the token at the handshake; rejects with a readable reason (401, refused…). */
  static connect(url: string, token: string, events: RpcClientEvents, timeoutMs = 5000): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: { [TOKEN_HEADER]: token }, maxPayload: 64 * LIMITS.maxPayloadBytes, handshakeTimeout: timeoutMs });
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
        ws.on('error', (e) => events.onProtocolError(`socket error: ${e.message}`));
        resolve(new RpcClient(ws, events));
      });
    });
  }

  request<M extends MethodName>(method: M, params: MethodParamsIn<M>, timeoutMs = 30000): Promise<MethodResult<M>> {
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

  close(): void {
    this.ws.close(1000, 'client closing');
  }

  private onMessage(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.events.onProtocolError(`not JSON: ${text.slice(0, 80)}`);
      return;
    }
    if (typeof msg === 'object' && msg !== null && 'id' in msg) {
      const r = RpcResponseSchema.safeParse(msg);
      if (!r.success) return this.events.onProtocolError(describeZodError(r.error, 'response'));
      const p = typeof r.data.id === 'number' ? this.pending.get(r.data.id) : undefined;
      if (!p) return this.events.onProtocolError(`response to unknown request id ${String(r.data.id)}`);
      this.pending.delete(r.data.id as number);
      clearTimeout(p.timer);
      if ('error' in r.data) return p.reject(new DaemonRpcError(p.method, r.data.error.code, r.data.error.message));
      const result = methods[p.method].result.safeParse(r.data.result);
      if (!result.success) return p.reject(new DaemonRpcError(p.method, -1, describeZodError(result.error, `${p.method} result`)));
      p.resolve(result.data);
      return;
    }
    const n = RpcNotificationSchema.safeParse(msg);
    if (!n.success) return this.events.onProtocolError(describeZodError(n.error, 'notification'));
    const schema = (notifications as Record<string, (typeof notifications)[keyof typeof notifications]>)[n.data.method];
    if (!schema) return this.events.onProtocolError(`unknown notification ${n.data.method}`);
    const ev = schema.safeParse(n.data.params);
    if (!ev.success) return this.events.onProtocolError(describeZodError(ev.error, n.data.method));
    this.events.onEvent(n.data.method, ev.data);
  }
}
