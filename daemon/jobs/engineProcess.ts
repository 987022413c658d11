// The product TrainingBackend: each job in its own process (engineChild.ts, forked from the
// daemon's worker script), driven over IPC with protocol/engineJob.ts. The daemon holds no model
// and no data, so
//   - its memory is back to its idle level the moment a job's process exits, however the job ended;
//   - a native crash, an abort or the kernel's OOM killer ends the job, never the daemon;
//   - a job can be stopped at any moment, even in the middle of a step;
//   - the job's memory is watched, at every reply (each step) and between them: its peak resident
//     size is recorded, and when the machine's free memory falls below a floor the process is
//     stopped with the numbers, before the kernel would pick something to kill; and should the
//     kernel act first anyway, the job process is the one it picks (its OOM score is the highest),
//     never the daemon or the editor.
import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { ENGINE_JOB_ROLE, type EvalReply, type JobReply, type JobRequest, type PreparedJob, type StepReply, type Variant } from '../../protocol/engineJob';
import { formatBytes } from '../../io/userFile';
import { floorBytes, machineMemory, processMemory } from '../memory';
import { workerScript } from '../workers';
import { DivergedError } from './runner';
import {
  CheckpointError,
  describeIoError,
  JobIoError,
  RejectedError,
  RunnerStoppedError,
  type ModelTrainer,
  type PrepareOptions,
  type TrainingBackend,
  type TrainingRequest,
  type TrainingSetup,
} from './trainer';

type Request = JobRequest extends infer R ? (R extends JobRequest ? Omit<R, 'id'> : never) : never;

/** How often the job's memory and the machine's free memory are looked at. */
const WATCH_MS = 200;
/** The job process's stderr kept for a crash report. */
const STDERR_TAIL = 4096;

export interface EngineProcessOptions {
  log(line: string): void;
  /** Free memory below which a running job is stopped (default: daemon/memory.ts floorBytes). */
  floorBytes?: () => number;
}

class JobProcess {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; what: string }>();
  private stopReason: string | undefined;
  private stderrTail = '';
  private peak = 0;
  private readonly watch: NodeJS.Timeout;
  readonly exited: Promise<void>;

  constructor(private readonly opts: EngineProcessOptions) {
    this.child = fork(workerScript(), [ENGINE_JOB_ROLE], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // The job process's OpenMP workers wait passively: spinning ones steal the daemon's and the editor's cores.
      env: { ...process.env, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' },
      execArgv: [],
    });
    const pid = this.child.pid;
    // The kernel's out-of-memory killer takes this process before any other (raising one's own score needs no privilege).
    try {
      if (pid !== undefined) writeFileSync(`/proc/${pid}/oom_score_adj`, '1000');
    } catch {
      // Not Linux, or /proc is not writable: the floor below still stops the job first.
    }
    const lines = (data: Buffer) => {
      const text = data.toString('utf8');
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL);
      for (const line of text.split('\n')) if (line.trim()) opts.log(`job process ${pid}: ${line}`);
    };
    this.child.stdout?.on('data', lines);
    this.child.stderr?.on('data', lines);
    this.child.on('message', (m: JobReply) => this.onReply(m));
    this.child.on('error', (err) => this.stop(`the job process could not run: ${err.message}`));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        clearInterval(this.watch);
        const why =
          this.stopReason ??
          (signal ? `the job process was killed by ${signal}${signal === 'SIGKILL' ? ' (the kernel\'s out-of-memory killer, or someone else)' : ''}` : `the job process exited with status ${code}`) +
            (this.stderrTail.trim() ? `: ${lastLines(this.stderrTail)}` : '');
        for (const p of this.pending.values()) p.reject(new RunnerStoppedError(`${why} (while ${p.what})`));
        this.pending.clear();
        resolve();
      });
    });
    this.watch = setInterval(() => this.check(), WATCH_MS);
    this.watch.unref();
  }

  get peakBytes(): number {
    return this.peak;
  }

  /** One request; resolves with its result, rejects with the error the job should end with. */
  call(req: Request, what: string): Promise<unknown> {
    if (!this.child.connected) return Promise.reject(new RunnerStoppedError(this.stopReason ?? 'the job process has ended'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, what });
      this.child.send({ ...req, id } as JobRequest, (err) => {
        if (err && this.pending.delete(id)) reject(new RunnerStoppedError(`could not reach the job process: ${err.message}`));
      });
    });
  }

  /** Ends the process now (a cancelled job, a job out of memory); pending calls fail with `reason`. */
  stop(reason: string): void {
    this.stopReason ??= reason;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** Lets the process exit on its own (it does when the channel closes); kills it if it does not. */
  async close(): Promise<void> {
    this.recordPeak();
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.stop('the job process did not exit when asked'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  private recordPeak(): void {
    const mem = this.child.pid !== undefined ? processMemory(this.child.pid) : undefined;
    if (mem) this.peak = Math.max(this.peak, mem.peakRssBytes);
  }

  private check(): void {
    this.recordPeak();
    const machine = machineMemory();
    const floor = (this.opts.floorBytes ?? (() => floorBytes(machine)))();
    if (machine.availableBytes < floor) {
      this.stop(
        `stopped: the machine's free memory fell to ${formatBytes(machine.availableBytes)} (this job's process held ${formatBytes(processMemory(this.child.pid ?? 0)?.rssBytes ?? 0)}, ` +
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

export class EngineProcessBackend implements TrainingBackend {
  constructor(private readonly opts: EngineProcessOptions) {}

  async prepare(request: TrainingRequest, options: PrepareOptions): Promise<TrainingSetup> {
    const proc = new JobProcess(this.opts);
    const { signal } = options;
    const abort = () => proc.stop(String(signal?.reason ?? 'stopped'));
    if (signal?.aborted) abort();
    signal?.addEventListener('abort', abort, { once: true });
    void proc.exited.then(() => signal?.removeEventListener('abort', abort));
    try {
      const prepared = (await proc.call({ op: 'prepare', request, maxDataBytes: options.maxDataBytes }, 'loading the data and building the models')) as PreparedJob;
      const trainer = (variant: Variant, params: number): ModelTrainer => ({
        params,
        step: () => proc.call({ op: 'step', variant }, `training the ${variant} model`) as Promise<StepReply>,
        evaluate: () => proc.call({ op: 'evaluate', variant }, `evaluating the ${variant} model`) as Promise<EvalReply>,
        save: async (file) => void (await proc.call({ op: 'save', variant, file }, `writing the ${variant} model's checkpoint ${file}`)),
        load: async (file) => void (await proc.call({ op: 'load', variant, file }, `loading the ${variant} model's checkpoint ${file}`)),
      });
      return {
        dataset: prepared.dataset,
        stepsPerEpoch: prepared.stepsPerEpoch,
        tokensPerStep: prepared.tokensPerStep,
        backend: prepared.backend,
        precision: prepared.precision,
        kernels: prepared.kernels,
        pixelfly: trainer('pixelfly', prepared.params.pixelfly),
        dense: prepared.params.dense !== undefined ? trainer('dense', prepared.params.dense) : undefined,
        close: () => proc.close(),
        peakMemoryBytes: () => proc.peakBytes,
      };
    } catch (err) {
      await proc.close();
      throw err;
    }
  }
}
