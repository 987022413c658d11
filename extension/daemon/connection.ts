/**
 * The extension's one connection to the daemon: finds it through the discovery file (or starts it
 * when the user allows), says hello, reconnects with backoff when it drops, and resubscribes every
 * followed job from the last event it saw, so a daemon restart or network blip loses no metrics.
 * No VS Code imports: the unit tests drive it against a real WebSocket server.
 */
import { DaemonClient, daemonUrl } from '../../client/daemonClient';
import { discover, spawnDaemon } from '../../client/discovery';
import { homePaths, pixelflyHome } from '../../io/home';
import type { JobEvent, MethodName, MethodParamsIn, MethodResult } from '../../protocol/daemon';
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff';

export type ConnectionState =
  | { kind: 'disconnected'; reason: string }
  | { kind: 'connecting' }
  | { kind: 'starting' }
  | { kind: 'connected'; hello: MethodResult<'hello'> };

export interface ConnectionOptions {
  /** PIXELFLY_HOME override; defaults to the daemon's own rule (env, then ~/.pixelfly). */
  home?: string;
  /** Start the daemon when none is found. */
  autostart: boolean;
  /** Port for an autostarted daemon (0: the daemon picks). */
  port: number;
  /** The bundled CLI (dist/pixelfly.js) used to start the daemon. */
  cliPath: string;
  backoff?: BackoffOptions;
  log: (line: string) => void;
}

export interface ConnectionListener {
  onState?(s: ConnectionState): void;
  onEvent?(e: JobEvent): void;
}

export class DaemonConnection {
  private client: DaemonClient | null = null;
  private stateValue: ConnectionState = { kind: 'disconnected', reason: 'not started' };
  private readonly backoff: Backoff;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private disposed = false;
  private connecting: Promise<DaemonClient> | null = null;
  /** Followed jobs and the last event seq seen for each: the resubscribe point after a reconnect. */
  private readonly followed = new Map<string, number>();
  private readonly listeners = new Set<ConnectionListener>();

  constructor(private readonly opts: ConnectionOptions) {
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_BACKOFF);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  listen(l: ConnectionListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Resolves with a connected client, connecting (and autostarting) if needed. */
  ensure(): Promise<DaemonClient> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connectOnce().finally(() => (this.connecting = null));
    return this.connecting;
  }

  /** The connected daemon's hello (what it said when this connection was made), connecting if needed. */
  async hello(): Promise<MethodResult<'hello'>> {
    await this.ensure();
    const s = this.stateValue;
    return s.kind === 'connected' ? s.hello : this.call('hello', { client: 'pixelfly-vscode' });
  }

  async call<M extends MethodName>(method: M, params: MethodParamsIn<M>, timeoutMs?: number): Promise<MethodResult<M>> {
    const c = await this.ensure();
    return c.request(method, params, timeoutMs);
  }

  /** Follows a job's events from `fromSeq` (0 = its whole history); kept across reconnects. */
  async follow(jobId: string, fromSeq = 0): Promise<MethodResult<'job.subscribe'>> {
    const known = this.followed.get(jobId);
    this.followed.set(jobId, known !== undefined ? Math.min(known, fromSeq) : fromSeq);
    const c = await this.ensure();
    return c.request('job.subscribe', { jobId, fromSeq: this.followed.get(jobId) });
  }

  dispose(): void {
    this.disposed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.client?.close();
    this.client = null;
  }

  private setState(s: ConnectionState): void {
    this.stateValue = s;
    for (const l of this.listeners) l.onState?.(s);
  }

  private get home(): string {
    return this.opts.home ?? pixelflyHome();
  }

  private endpoint(): { url: string; token: string } | null {
    const d = discover(this.home);
    return d ? { url: daemonUrl(d.port), token: d.token } : null;
  }

  private async connectOnce(): Promise<DaemonClient> {
    this.setState({ kind: 'connecting' });
    try {
      let ep = this.endpoint();
      if (!ep && this.opts.autostart) {
        this.setState({ kind: 'starting' });
        await this.startDaemon();
        ep = this.endpoint();
      }
      if (!ep) {
        throw new Error(
          this.opts.autostart
            ? `the daemon did not come up (see ${homePaths(this.home).log})`
            : `no daemon running (no live ${homePaths(this.home).discovery}); run 'pixelfly daemon start' or enable pixelfly.daemon.autostart`,
        );
      }
      const client = await DaemonClient.connect(ep.url, ep.token);
      client.onEvent((e) => this.onEvent(e));
      client.onClose((code, reason) => this.onClose(client, code, reason));
      client.onProtocolError((m) => this.opts.log(`daemon protocol error: ${m}`));
      const hello = await client.request('hello', { client: 'pixelfly-vscode' }, 10000);
      this.client = client;
      this.backoff.reset();
      this.opts.log(`connected to daemon ${hello.version} (pid ${hello.pid}) at ${ep.url}`);
      this.setState({ kind: 'connected', hello });
      for (const [jobId, seq] of this.followed) {
        client.request('job.subscribe', { jobId, fromSeq: seq }).then(
          () => this.opts.log(`resubscribed to ${jobId} from seq ${seq}`),
          (e: Error) => this.opts.log(`resubscribe ${jobId} failed: ${e.message}`),
        );
      }
      return client;
    } catch (e) {
      this.setState({ kind: 'disconnected', reason: (e as Error).message });
      this.scheduleRetry();
      throw e;
    }
  }

  private onEvent(e: JobEvent): void {
    const seen = this.followed.get(e.jobId);
    if (seen !== undefined && e.seq > seen) this.followed.set(e.jobId, e.seq);
    for (const l of this.listeners) l.onEvent?.(e);
  }

  private onClose(client: DaemonClient, code: number, reason: string): void {
    if (this.client !== client) return;
    this.client = null;
    this.opts.log(`daemon connection closed (${code}${reason ? `: ${reason}` : ''})`);
    this.setState({ kind: 'disconnected', reason: `connection closed (${code})` });
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.disposed || this.retryTimer) return;
    const delay = this.backoff.next();
    this.opts.log(`reconnecting to the daemon in ${delay} ms (attempt ${this.backoff.attempts})`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.disposed && !this.client) this.ensure().catch(() => undefined);
    }, delay);
  }

  /**
   * Starts `pixelfly daemon foreground` detached, the daemon's own way (client/discovery.ts), and waits
   * until it answers. The extension host runs with ELECTRON_RUN_AS_NODE=1 in desktop VS Code, so
   * process.execPath runs the CLI as plain Node there too.
   */
  private async startDaemon(): Promise<void> {
    const extra = this.opts.port > 0 ? ['--port', String(this.opts.port)] : [];
    this.opts.log(`starting the daemon: ${this.opts.cliPath} daemon foreground ${extra.join(' ')} (home ${this.home})`);
    const d = await spawnDaemon(this.home, extra, this.opts.cliPath);
    this.opts.log(`daemon started (pid ${d.pid}, port ${d.port})`);
  }
}
