// One client connection: JSON-RPC 2.0 requests in (validated against protocol/daemon.ts before
// anything looks at them), responses and job notifications out.
//
// Memory stays bounded whatever the client does:
//  - at most `maxPendingRequests` requests in flight; more are refused at once;
//  - notifications are PULLED from the job's event log at the pace the socket drains: while more
//    than `highWaterBytes` are unsent, a subscription just remembers its cursor (one number), so
//    a slow reader costs nothing but that;
//  - a client that stays above the high-water mark for `stallMs`, or lets unsent bytes reach four
//    times it (e.g. by flooding requests it never reads the answers to), is disconnected with
//    close code 4001; it can reconnect and resubscribe from the last seq it saw, losing nothing.
import type { WebSocket } from 'ws';
import {
  CLOSE_SLOW_CONSUMER,
  describeZodError,
  ErrorCode,
  EVENT_NOTIFICATION,
  isMethodName,
  LIMITS,
  methods,
  RpcRequestSchema,
  type RpcError,
} from '../protocol/daemon';
import { handlers, RpcFailure, toRpcError, type MethodContext } from './methods';
import type { Job } from './jobs/jobManager';

export interface ConnectionLimits {
  maxPendingRequests: number;
  maxSubscriptions: number;
  highWaterBytes: number;
  stallMs: number;
}

/** Events sent per pump turn before yielding to the event loop. */
const PUMP_BATCH = 128;
const RETRY_MS = 20;
const READ_RETRY_MS = 500;

/** The id of a request that failed validation, when it has a usable one (so the client can match the error). */
function requestIdOf(message: unknown): string | number | null {
  const raw = (message as { id?: unknown } | null)?.id;
  return (typeof raw === 'string' && raw.length <= 128) || (typeof raw === 'number' && Number.isInteger(raw)) ? raw : null;
}

/** True when `value` nests arrays and objects deeper than `max` (checked without recursion). */
function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= max) return true;
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}

class Subscription {
  private scheduled = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly unlisten: () => void;

  constructor(
    private readonly conn: Connection,
    readonly job: Job,
    private cursor: number,
  ) {
    this.unlisten = job.log.onAppend(() => this.schedule());
  }

  schedule(): void {
    if (this.scheduled || this.retry !== undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (!this.conn.open) return;
    if (!this.conn.canSend()) return this.later(RETRY_MS);
    let sent: number;
    try {
      sent = this.sendBatch();
    } catch (err) {
      // Reading an older stretch of the log failed (e.g. no file descriptor left, EMFILE): the
      // subscriber keeps its cursor and the read is tried again shortly.
      this.conn.warn(`replay of job ${this.job.id} paused: ${(err as Error).message}`);
      return this.later(READ_RETRY_MS);
    }
    // More may be waiting (a long replay): continue on a later turn so other work interleaves.
    if (sent === PUMP_BATCH) this.schedule();
  }

  private later(ms: number): void {
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.schedule();
    }, ms);
  }

  /** Sends what is left now (the daemon is stopping), as far as the socket has room. */
  drain(): void {
    while (this.conn.canSend() && this.sendBatch() > 0);
  }

  /** Sends the next batch of events after the cursor; returns how many. */
  private sendBatch(): number {
    const events = this.job.log.read(this.cursor, PUMP_BATCH);
    for (const event of events) {
      this.conn.notify(EVENT_NOTIFICATION[event.type], event);
      this.cursor = event.seq;
    }
    return events.length;
  }

  dispose(): void {
    this.unlisten();
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
  }
}

export class Connection {
  private pending = 0;
  private readonly subscriptions = new Map<string, Subscription>();
  /** When the socket was first seen above the high-water mark in the current stretch. */
  private stalledSince: number | undefined;
  private closed = false;
  private warnedAt = 0;

  constructor(
    private readonly ws: WebSocket,
    private readonly limits: ConnectionLimits,
    private readonly contextFor: (c: Connection) => MethodContext,
  ) {
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('error', () => this.close(1011, 'socket error'));
  }

  get open(): boolean {
    return !this.closed && this.ws.readyState === this.ws.OPEN;
  }

  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  /** True when the socket has room; tracks how long it has not, and drops a stalled client. */
  canSend(): boolean {
    const buffered = this.ws.bufferedAmount;
    if (buffered <= this.limits.highWaterBytes) {
      this.stalledSince = undefined;
      return true;
    }
    const now = Date.now();
    this.stalledSince ??= now;
    if (now - this.stalledSince >= this.limits.stallMs || buffered > 4 * this.limits.highWaterBytes) {
      this.contextFor(this).log(`dropping a slow consumer: ${buffered} bytes unread for ${now - this.stalledSince} ms`);
      this.close(CLOSE_SLOW_CONSUMER, 'slow consumer: reconnect and resubscribe from your last seq');
    }
    return false;
  }

  /** A problem worth a log line (once a minute per connection at most). */
  warn(line: string): void {
    const now = Date.now();
    if (now - this.warnedAt < 60_000) return;
    this.warnedAt = now;
    this.contextFor(this).log(line);
  }

  notify(method: string, params: unknown): void {
    this.send({ jsonrpc: '2.0', method, params });
  }

  subscribe(job: Job, fromSeq: number): void {
    this.subscriptions.get(job.id)?.dispose();
    if (!this.subscriptions.has(job.id) && this.subscriptions.size >= this.limits.maxSubscriptions) {
      throw new RpcFailure(ErrorCode.INVALID_STATE, `at most ${this.limits.maxSubscriptions} subscriptions per connection`);
    }
    const sub = new Subscription(this, job, fromSeq);
    this.subscriptions.set(job.id, sub);
    // Runs after the response to job.subscribe has been sent: the replay follows the result.
    sub.schedule();
  }

  unsubscribe(jobId: string): void {
    this.subscriptions.get(jobId)?.dispose();
    this.subscriptions.delete(jobId);
  }

  /** The daemon is stopping: the last events (e.g. the job's `interrupted` status) go out before the close frame. */
  shutdown(code: number, reason: string): void {
    for (const s of this.subscriptions.values()) s.drain();
    this.close(code, reason);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.dispose();
    this.ws.close(code, reason);
    // A client that does not read will never take the close frame either: cut it off.
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  dispose(): void {
    for (const s of this.subscriptions.values()) s.dispose();
    this.subscriptions.clear();
  }

  private send(message: unknown): void {
    if (!this.open) return;
    this.ws.send(JSON.stringify(message));
    if (this.ws.bufferedAmount > 4 * this.limits.highWaterBytes) {
      this.contextFor(this).log(`dropping a slow consumer: ${this.ws.bufferedAmount} bytes unread`);
      this.close(CLOSE_SLOW_CONSUMER, 'slow consumer: too much unread data');
    }
  }

  private reply(id: string | number | null, result: unknown): void {
    this.send({ jsonrpc: '2.0', id, result });
  }

  private fail(id: string | number | null, error: RpcError): void {
    this.send({ jsonrpc: '2.0', id, error });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.fail(null, { code: ErrorCode.PARSE_ERROR, message: 'binary frames are not accepted; send JSON text' });
    let message: unknown;
    try {
      message = JSON.parse(data.toString('utf8'));
    } catch (err) {
      return this.fail(null, { code: ErrorCode.PARSE_ERROR, message: `not valid JSON: ${(err as Error).message}` });
    }
    if (Array.isArray(message)) {
      return this.fail(null, { code: ErrorCode.INVALID_REQUEST, message: 'batch requests are not supported; send one request per frame' });
    }
    if (nestsDeeperThan(message, LIMITS.maxJsonDepth)) {
      return this.fail(requestIdOf(message), { code: ErrorCode.INVALID_REQUEST, message: `the message nests arrays and objects more than ${LIMITS.maxJsonDepth} levels deep; a request is a few levels deep` });
    }
    const parsed = RpcRequestSchema.safeParse(message);
    if (!parsed.success) {
      return this.fail(requestIdOf(message), { code: ErrorCode.INVALID_REQUEST, message: describeZodError(parsed.error, 'request') });
    }
    const { id, method, params } = parsed.data;
    if (!isMethodName(method)) {
      return this.fail(id, { code: ErrorCode.METHOD_NOT_FOUND, message: `unknown method '${method}'; see docs/protocol.md` });
    }
    if (this.pending >= this.limits.maxPendingRequests) {
      return this.fail(id, {
        code: ErrorCode.TOO_MANY_PENDING,
        message: `too many requests in flight (limit ${this.limits.maxPendingRequests}); wait for answers first`,
      });
    }
    const checked = methods[method].params.safeParse(params);
    if (!checked.success) {
      return this.fail(id, { code: ErrorCode.INVALID_PARAMS, message: describeZodError(checked.error, `params for ${method}`) });
    }
    this.pending += 1;
    const handler = handlers[method] as (p: unknown, ctx: MethodContext) => Promise<unknown>;
    Promise.resolve()
      .then(() => handler(checked.data, this.contextFor(this)))
      .then(
        (result) => this.reply(id, result),
        (err: unknown) => this.fail(id, toRpcError(err, this.contextFor(this).log)),
      )
      .finally(() => {
        this.pending -= 1;
      });
  }
}
