// A training job's own process, driven over an IPC channel with protocol/engineJob.ts: the engine's
// (engineProcess.ts, a forked Node worker) or the PyTorch runner's (torchProcess.ts, a Python
// worker). The daemon holds no model and no data, so
//   - its memory is back to its idle level the moment a job's process exits, however the job ended;
//   - a native crash, an abort, an exception in the user's code or the kernel's OOM killer ends the
//     job, never the daemon;
//   - a job can be stopped at any moment, even in the middle of a step, and a step that answers
//     nothing within its time limit is taken as hung and stopped;
//   - the job's memory is watched, at every reply (each step) and between them: its peak resident
//     size is recorded, and when the machine's free memory falls below a floor, or the job grows past
//     what it was admitted with, the process is stopped with the numbers, before the kernel would
//     pick something to kill; and should the kernel act first anyway, the job process is the one it
//     picks (its OOM score is the highest), never the daemon or the editor.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { JobReply, JobRequest } from '../../protocol/engineJob';
import { formatBytes } from '../../io/userFile';
import { floorBytes, machineMemory, processMemory, type MemoryLimit } from '../memory';
import { DivergedError } from './runner';
import { CheckpointError, describeIoError, JobIoError, ModelError, RejectedError, RunnerStoppedError } from './trainer';

export type Request = JobRequest extends infer R ? (R extends JobRequest ? Omit<R, 'id'> : never) : never;

/** How often the job's memory and the machine's free memory are looked at. */
const WATCH_MS = 200;
/** The job process's stderr kept for a crash report. */
const STDERR_TAIL = 4096;

export interface JobProcessOptions {
  log(line: string): void;
  /** Free memory below which a running job is stopped (default: daemon/memory.ts floorBytes). */
  floorBytes?: () => number;
}

export class JobProcess {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; what: string }>();
  private stopReason: string | undefined;
  private stderrTail = '';
  private peak = 0;
  private readonly watch: NodeJS.Timeout;
  readonly exited: Promise<void>;

  /** Resident size above which the job is stopped; set once known. */
  limit: MemoryLimit | undefined;
  /** What the stop message calls the job's process. */
  private readonly what: string;

  /** `start` spawns the process with an IPC channel (stdio: ignore, pipe, pipe, ipc). */
  constructor(
    private readonly opts: JobProcessOptions,
    start: () => ChildProcess,
    what = 'the job process',
  ) {
    this.what = what;
    this.child = start();
    const pid = this.child.pid;
    // The kernel's out-of-memory killer takes this process before any other (raising one's own score needs no privilege).
    try {
      if (pid !== undefined) writeFileSync(`/proc/${pid}/oom_score_adj`, '1000');
    } catch {
      // Not Linux, or /proc is not writable: the watch below still stops the job first.
    }
    const lines = (data: Buffer) => {
      const text = data.toString('utf8');
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL);
      for (const line of text.split('\n')) if (line.trim()) opts.log(`job process ${pid}: ${line}`);
    };
    this.child.stdout?.on('data', lines);
    this.child.stderr?.on('data', lines);
    this.child.on('message', (m: JobReply) => this.onReply(m));
    this.exited = new Promise((resolve) => {
      const ended = (why: string) => {
        clearInterval(this.watch);
        for (const p of this.pending.values()) p.reject(new RunnerStoppedError(`${why} (while ${p.what})`));
        this.pending.clear();
        resolve();
      };
      this.child.on('error', (err) => {
        this.stop(`${this.what} could not run: ${err.message}`);
        // A process that never started (no such interpreter) will not exit either.
        if (this.child.pid === undefined) ended(this.stopReason as string);
      });
      this.child.once('exit', (code, signal) =>
        ended(
          this.stopReason ??
            (signal ? `${this.what} was killed by ${signal}${signal === 'SIGKILL' ? ' (the kernel\'s out-of-memory killer, or someone else)' : ''}` : `${this.what} exited with status ${code}`) +
              (this.stderrTail.trim() ? `: ${lastLines(this.stderrTail)}` : ''),
        ),
      );
    });
    this.watch = setInterval(() => this.check(), WATCH_MS);
    this.watch.unref();
  }

  get peakBytes(): number {
    return this.peak;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * One request; resolves with its result, rejects with the error the job should end with. A
   * request unanswered after `timeoutMs` stops the process: the job ends as hung.
   */
  call(req: Request, what: string, timeoutMs?: number): Promise<unknown> {
    if (!this.child.connected) return Promise.reject(new RunnerStoppedError(this.stopReason ?? `${this.what} has ended`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => this.stop(`hung: no answer within ${Math.round(timeoutMs / 1000)} s; stopped ${this.what}`), timeoutMs);
        timer.unref();
      }
      const done = <T>(f: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        f(v);
      };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject), what });
      this.child.send({ ...req, id } as JobRequest, (err) => {
        // A process stopped on purpose (out of memory, cancelled) fails the send with EPIPE: the reason it was stopped is the one to give.
        if (err && this.pending.delete(id)) reject(new RunnerStoppedError(this.stopReason ?? `could not reach the job process: ${err.message}`));
      });
    });
  }

  /** Ends the process now (a cancelled job, a job out of memory); pending calls fail with `reason`. */
  stop(reason: string): void {
    this.stopReason ??= reason;
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** Lets the process exit on its own (it does when the channel closes); kills it if it does not. */
  async close(): Promise<void> {
    this.recordPeak();
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.stop(`${this.what} did not exit when asked`), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  private recordPeak(): void {
    const mem = this.child.pid !== undefined ? processMemory(this.child.pid) : undefined;
    if (mem) this.peak = Math.max(this.peak, mem.peakRssBytes);
  }

  private check(): void {
    this.recordPeak();
    const rss = processMemory(this.child.pid ?? 0)?.rssBytes ?? 0;
    if (this.limit !== undefined && rss > this.limit.bytes) {
      this.stop(
        `stopped: the job grew to ${formatBytes(rss)}, past the ${formatBytes(this.limit.bytes)} it may hold (${this.limit.why}); ` +
          'stopped before it could take the machine\'s memory (a smaller batch or context fits)',
      );
      return;
    }
    const machine = machineMemory();
    const floor = (this.opts.floorBytes ?? (() => floorBytes(machine)))();
    if (machine.availableBytes < floor) {
      this.stop(
        `stopped: the machine's free memory fell to ${formatBytes(machine.availableBytes)} (this job's process held ${formatBytes(rss)}, ` +
          `at most ${formatBytes(this.peak)}); stopped before the kernel's out-of-memory killer would pick a process`,
      );
    }
  }

  private onReply(m: JobReply): void {
    if (typeof m !== 'object' || m === null || typeof m.id !== 'number') return;
    this.peak = Math.max(this.peak, m.peakRssBytes ?? 0);
    // Every step's memory is looked at as it ends, not only at the next tick.
    this.check();
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) return p.resolve(m.result);
    const e = m.error;
    switch (e.kind) {
      case 'rejected':
        return p.reject(new RejectedError(e.message));
      case 'checkpoint':
        return p.reject(new CheckpointError(e.message));
      case 'diverged':
        return p.reject(new DivergedError(e.message));
      case 'model':
        return p.reject(new ModelError(e.message));
      case 'io':
        return p.reject(new JobIoError(e.code ?? 'EIO', `${describeIoError(e.code ?? 'EIO', p.what)}: ${e.message}`));
      default:
        return p.reject(new Error(e.message));
    }
  }
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ');
}
