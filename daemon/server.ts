// The daemon's listening socket: HTTP on 127.0.0.1 that only upgrades to WebSocket, and only for
// local non-browser clients holding the token. Everything is checked BEFORE the upgrade, so a
// refused client never gets a WebSocket: no token or a wrong one gets 401, a browser (any Origin
// header) or a foreign Host (DNS rebinding) gets 403.
// A socket that has not completed its handshake is a cost with no one to bill: each gets
// `handshakeTimeoutMs` to finish it (a silent or slow client is closed), and at most
// `maxPendingHandshakes` may be in that state at once (more are closed on arrival).
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { CLOSE_SHUTDOWN, LIMITS, TOKEN_HEADER, TOKEN_SUBPROTOCOL_PREFIX } from '../protocol/daemon';
import { Connection, type ConnectionLimits } from './connection';
import type { MethodContext } from './methods';

export interface ServerOptions extends ConnectionLimits {
  host: string;
  port: number;
  token: string;
  maxPayloadBytes: number;
  maxConnections: number;
  handshakeTimeoutMs: number;
  maxPendingHandshakes: number;
}

export const DEFAULT_SERVER_LIMITS: Omit<ServerOptions, 'host' | 'port' | 'token'> = {
  maxPayloadBytes: LIMITS.maxPayloadBytes,
  maxConnections: 64,
  maxPendingRequests: LIMITS.maxPendingRequests,
  maxSubscriptions: LIMITS.maxSubscriptions,
  handshakeTimeoutMs: LIMITS.handshakeTimeoutMs,
  maxPendingHandshakes: LIMITS.maxPendingHandshakes,
  /** Above this many unsent bytes on a socket, replay pauses until the client reads. */
  highWaterBytes: 1024 * 1024,
  /** A subscriber stuck above the high-water mark this long is disconnected (it can resubscribe from its last seq). */
  stallMs: 10_000,
};

function tokenMatches(offered: string, expected: string): boolean {
  const a = Buffer.from(offered);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The token from the header, or from a `pixelfly-token.<token>` subprotocol. */
function offeredToken(req: IncomingMessage): { token: string; protocol?: string } | undefined {
  const header = req.headers[TOKEN_HEADER];
  if (typeof header === 'string' && header.length > 0) return { token: header };
  const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const p = protocols.find((x) => x.startsWith(TOKEN_SUBPROTOCOL_PREFIX));
  return p ? { token: p.slice(TOKEN_SUBPROTOCOL_PREFIX.length), protocol: p } : undefined;
}

function refuse(socket: Duplex, status: number, reason: string): void {
  const body = `${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

export class DaemonServer {
  private http: Server | undefined;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<Connection>();
  /** Sockets still in their handshake, with what ends that state (upgraded: their timer is cleared). */
  private readonly handshaking = new Map<Duplex, () => void>();
  private lastAcceptError = 0;
  private portValue = 0;

  constructor(
    private readonly opts: ServerOptions,
    private readonly context: Omit<MethodContext, 'connection'>,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.maxPayloadBytes,
      // Compression would let a small frame inflate to a large message; the payload limit must mean bytes on the wire.
      perMessageDeflate: false,
      // Echo the token subprotocol when the client authenticated with it (browsers-style clients need an echo).
      handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith(TOKEN_SUBPROTOCOL_PREFIX)) ?? false,
    });
  }

  get port(): number {
    return this.portValue;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  stats() {
    let subscriptions = 0;
    for (const c of this.connections) subscriptions += c.subscriptionCount;
    return { connections: this.connections.size, subscriptions, handshaking: this.handshaking.size };
  }

  listen(): Promise<number> {
    const http = createServer((_req, res) => {
      res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close' });
      res.end('the Pixelfly daemon speaks JSON-RPC over WebSocket only\n');
    });
    http.on('connection', (socket: Socket) => this.track(socket));
    http.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    http.on('clientError', (_err, socket) => this.dropHandshake(socket));
    // Slow headers are also bounded by the handshake timer; these keep Node's own limits in step.
    http.headersTimeout = this.opts.handshakeTimeoutMs;
    http.requestTimeout = this.opts.handshakeTimeoutMs;
    this.http = http;
    return new Promise((resolve, reject) => {
      http.once('error', reject);
      http.listen(this.opts.port, this.opts.host, () => {
        http.off('error', reject);
        // Once listening, an error is a connection the system could not give us (EMFILE, ENFILE):
        // the daemon keeps serving the connections it has.
        http.on('error', (err) => this.acceptError(err));
        const addr = http.address();
        this.portValue = typeof addr === 'object' && addr ? addr.port : this.opts.port;
        resolve(this.portValue);
      });
    });
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.shutdown(CLOSE_SHUTDOWN, 'daemon shutting down');
    await new Promise<void>((resolve) => {
      if (!this.http) return resolve();
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private acceptError(err: Error): void {
    const now = Date.now();
    if (now - this.lastAcceptError < 60_000) return;
    this.lastAcceptError = now;
    this.context.log(`could not accept a connection: ${(err as NodeJS.ErrnoException).code ?? err.message} (still serving the ${this.connections.size} open ones)`);
  }

  private track(socket: Socket): void {
    if (this.handshaking.size >= this.opts.maxPendingHandshakes) {
      socket.destroy();
      return;
    }
    const timer = setTimeout(() => this.dropHandshake(socket), this.opts.handshakeTimeoutMs);
    timer.unref();
    const done = () => {
      clearTimeout(timer);
      this.handshaking.delete(socket);
    };
    this.handshaking.set(socket, done);
    socket.once('close', done);
  }

  /**
   * Ends a socket still in its handshake and takes it out of the count at once: its 'close' comes
   * only at the end of the event-loop turn, and a request read earlier in that turn (a stats call,
   * a new connection's admission) would still count it as waiting.
   */
  private dropHandshake(socket: Duplex): void {
    this.handshaking.get(socket)?.();
    socket.destroy();
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => this.dropHandshake(socket));
    // Browsers always send Origin on WebSocket handshakes; local tools and the extension host do not.
    if (req.headers.origin !== undefined) return refuse(socket, 403, 'Forbidden: browser origins are refused');
    const host = (req.headers.host ?? '').toLowerCase();
    const allowedHosts = [`127.0.0.1:${this.portValue}`, `localhost:${this.portValue}`];
    if (!allowedHosts.includes(host)) return refuse(socket, 403, 'Forbidden: unexpected Host header');
    const offered = offeredToken(req);
    if (!offered || !tokenMatches(offered.token, this.opts.token)) return refuse(socket, 401, 'Unauthorized');
    if (this.connections.size >= this.opts.maxConnections) return refuse(socket, 503, 'Service Unavailable: too many connections');
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      // Authenticated and upgraded: no longer a pending handshake.
      this.handshaking.get(socket)?.();
      const conn = new Connection(ws, this.opts, (c) => ({ ...this.context, connection: c }));
      this.connections.add(conn);
      ws.on('close', () => {
        this.connections.delete(conn);
        conn.dispose();
      });
    });
  }
}
