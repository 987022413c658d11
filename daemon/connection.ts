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
import { CLOSE_SLOW_CONSUMER, ErrorCode, EVENT_NOTIFICATION, type RpcError } from '../protocol/daemon';
import { handlers, RpcFailure, toRpcError, type MethodContext } from './methods';
import { checkRequest, OFF_LOOP_BYTES, type CheckedRequest, type RequestId } from './requestCheck';
import { runTask } from './workers';
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

  /**
   * The frames still being checked off the loop and those after them, answered in arrival order:
   * a client's requests reach their handlers in the order it sent them. Null when none waits.
   */
  private backlog: Promise<void> | null = null;
  /** Large frames in their check: they count against maxPendingRequests, so a flood of them queues nothing unbounded. */
  private checking = 0;

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.fail(null, { code: ErrorCode.PARSE_ERROR, message: 'binary frames are not accepted; send JSON text' });
    const text = data.toString('utf8');
    if (data.length < OFF_LOOP_BYTES) {
      const checked = checkRequest(text);
      if (this.backlog) this.enqueue(Promise.resolve(checked));
      else this.dispatch(checked);
      return;
    }
    // Its id is not known before the check: the refusal carries none.
    if (this.pending + this.checking >= this.limits.maxPendingRequests) return this.tooMany(null);
    this.checking += 1;
    const checked = this.checkOffLoop(text).finally(() => {
      this.checking -= 1;
    });
    this.enqueue(checked);
  }

  /** checkRequest in a helper process; where none can start (no memory, no descriptors) it runs here: a slower answer, never a lost request. */
  private async checkOffLoop(text: string): Promise<CheckedRequest> {
    try {
      return await runTask('checkRequest', { text }, 'checking a large request', 30_000);
    } catch (err) {
      this.warn(`checking a ${text.length}-byte request on the event loop: ${(err as Error).message}`);
      return checkRequest(text);
    }
  }

  private enqueue(checked: Promise<CheckedRequest>): void {
    const after = (this.backlog ?? Promise.resolve()).then(async () => this.dispatch(await checked));
    this.backlog = after;
    void after.finally(() => {
      if (this.backlog === after) this.backlog = null;
    });
  }

  private dispatch(checked: CheckedRequest): void {
    if (this.closed) return;
    if (!checked.ok) return this.fail(checked.id, checked.error);
    const { id, method, params } = checked;
    if (this.pending >= this.limits.maxPendingRequests) return this.tooMany(id);
    this.pending += 1;
    const handler = handlers[method] as (p: unknown, ctx: MethodContext) => Promise<unknown>;
    Promise.resolve()
      .then(() => handler(params, this.contextFor(this)))
      .then(
        (result) => this.reply(id, result),
        (err: unknown) => this.fail(id, toRpcError(err, this.contextFor(this).log)),
      )
      .finally(() => {
        this.pending -= 1;
      });
  }

  private tooMany(id: RequestId): void {
    this.fail(id, { code: ErrorCode.TOO_MANY_PENDING, message: `too many requests in flight (limit ${this.limits.maxPendingRequests}); wait for answers first` });
  }
}
