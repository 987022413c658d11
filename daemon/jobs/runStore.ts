// One folder per run under <home>/runs/<jobId>/:
//   job.json      what was asked (name, creation time, the full request) — written once
//   spec.json     the model spec (model.json: the PyTorch model's file, name and settings), plan.json
//                 the plan actually trained (copies, for people and tools)
//   state.json    current state, step, checkpoint — rewritten atomically (write, fsync, rename) on
//                 every change; a damaged one is rebuilt from the rest of the folder
//   metrics.jsonl the event log (eventLog.ts)
//   summary.json  written at the end; report.html the self-contained report
//   checkpoints/step-<N>/  pixelfly.ckpt [dense.ckpt]; a checkpoint exists once its folder is renamed
//                 into place; one found corrupt is renamed corrupt-step-<N> and never used again
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describeIoError, errnoCode, JobIoError, type DatasetInfo, type TrainingRequest } from './trainer';
import type { JobEvent, JobState, ModelInputs, RunSummary } from '../../protocol/daemon';
import { formatBytes } from '../../io/userFile';
import { parseModelSpec } from '../../core/modelSpec';
import { writeFileAtomic } from '../../io/home';

export interface RunRecord {
  jobId: string;
  name: string;
  createdAt: string;
  request: TrainingRequest;
}

export interface RunState {
  state: JobState;
  startedAt?: string;
  endedAt?: string;
  step: number;
  totalSteps: number;
  dataset?: DatasetInfo;
  /** Where the models computed ('cpu' or 'cuda'). */
  backend?: string;
  /** The products' input precision there ('fp32', 'bf16' or 'fp16'). */
  precision?: string;
  precisionNote?: string;
  /** How the products ran (the CPU kernels' instruction set and bf16 path, or 'cuda'). */
  kernels?: string;
  /** Parameter counts of the built models, known once the job has started. */
  params?: { pixelfly: number; dense?: number };
  /** What trains the model (the PyTorch runner's 'PyTorch …, Python …') and what the model eats, once built. */
  runtime?: string;
  inputs?: ModelInputs;
  stepsPerEpoch?: number;
  lastCheckpointStep?: number;
  /** Peak memory the admission estimated for the job, and the job process's measured peak. */
  estimatedMemoryBytes?: number;
  peakMemoryBytes?: number;
  error?: string;
  /** Failed for memory: the batch the same model fits with (JobInfo.fits). */
  fits?: { batchSize: number };
  /** Why the run ended or stopped when it did not complete (failed, cancelled, interrupted). */
  endReason?: string;
  summary?: RunSummary;
}

/** Checkpoints kept per run: the newest ones; older ones are deleted as new ones land. */
const KEEP_CHECKPOINTS = 2;

/** Bytes of a folder's files (one level: a checkpoint folder). */
function folderBytes(dir: string): number {
  try {
    return readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
  } catch {
    return 0;
  }
}

/** Makes a rename (or a file's creation) in `dir` durable. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Overwrites a file in place (its existing blocks), then cuts it to length and syncs it. */
function writeInPlace(file: string, text: string): void {
  const fd = openSync(file, 'r+');
  try {
    const data = Buffer.from(text, 'utf8');
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at, at);
    ftruncateSync(fd, data.length);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Free bytes for an unprivileged writer on the file system holding `path`. */
export function freeBytes(path: string): number | undefined {
  try {
    const s = statfsSync(path);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

export class RunDir {
  constructor(readonly dir: string) {}

  get metricsFile(): string {
    return join(this.dir, 'metrics.jsonl');
  }
  get reportFile(): string {
    return join(this.dir, 'report.html');
  }
  private get checkpointsDir(): string {
    return join(this.dir, 'checkpoints');
  }

  /**
   * Creates the folder with its first files. Everything is serialised before the folder exists, and
   * a failure (a full disk) removes what was made: a refused job leaves no empty folder behind.
   */
  static create(runsRoot: string, record: RunRecord, state: RunState): RunDir {
    const run = new RunDir(join(runsRoot, record.jobId));
    const files: Array<[string, string]> = [
      ['job.json', JSON.stringify(record, null, 2) + '\n'],
      record.request.model ? ['model.json', JSON.stringify(record.request.model, null, 2) + '\n'] : ['spec.json', JSON.stringify(record.request.spec, null, 2) + '\n'],
      ['plan.json', JSON.stringify(record.request.plan, null, 2) + '\n'],
    ];
    try {
      mkdirSync(run.dir, { recursive: true });
      for (const [name, text] of files) writeFileAtomic(join(run.dir, name), text);
      run.writeState(state);
    } catch (err) {
      rmSync(run.dir, { recursive: true, force: true });
      const code = errnoCode(err);
      if (code) throw new JobIoError(code, `${describeIoError(code, `creating the run folder ${run.dir}`)}`);
      throw err;
    }
    return run;
  }

  /** Deletes the folder (a job refused while it was being created). */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** job.json, an engine run's spec parsed (a record whose spec core no longer accepts is unreadable: it says why). */
  readRecord(): RunRecord {
    const record = JSON.parse(readFileSync(join(this.dir, 'job.json'), 'utf8')) as RunRecord;
    const spec = record.request?.spec;
    return spec === undefined ? record : { ...record, request: { ...record.request, spec: parseModelSpec(spec) } };
  }

  /** The saved state; throws when state.json is missing or damaged (see rebuildState). */
  readState(): RunState {
    const state = JSON.parse(readFileSync(join(this.dir, 'state.json'), 'utf8')) as RunState;
    if (typeof state !== 'object' || state === null || typeof state.state !== 'string' || typeof state.step !== 'number') {
      throw new Error('state.json does not hold a run state');
    }
    return state;
  }

  /**
   * A state rebuilt from what else the folder holds: the event log (the last status, the steps,
   * the completion and its summary) and the checkpoints. A run that had not ended is interrupted.
   */
  rebuildState(events: Iterable<JobEvent>): RunState {
    const state: RunState = { state: 'interrupted', step: 0, totalSteps: 0 };
    for (const e of events) {
      if (e.type === 'step') state.step = Math.max(state.step, e.step);
      else if (e.type === 'progress') state.totalSteps = e.totalSteps;
      else if (e.type === 'completed') {
        state.state = e.state;
        state.summary = e.summary;
        state.endedAt = new Date(e.t).toISOString();
      } else if (e.type === 'status' && e.state === 'running') state.startedAt ??= new Date(e.t).toISOString();
      else if (e.type === 'error' && e.fatal) state.error = e.message;
    }
    const checkpoint = this.checkpoints()[0];
    if (checkpoint) state.lastCheckpointStep = checkpoint.step;
    return state;
  }

  writeState(state: RunState): void {
    const file = join(this.dir, 'state.json');
    const text = JSON.stringify(state, null, 2) + '\n';
    try {
      writeFileAtomic(file, text);
    } catch (err) {
      // A full disk has no room for the temporary copy; the file's own blocks may still hold the
      // new state. Not atomic, but a state.json torn by a crash is rebuilt from the run folder.
      if (errnoCode(err) !== 'ENOSPC' || !existsSync(file)) throw err;
      writeInPlace(file, text);
    }
  }

  writeSummary(summary: RunSummary): void {
    writeFileAtomic(join(this.dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  }

  /**
   * Saves a checkpoint: `write` fills a temporary folder (each file synced), which is then renamed
   * to step-<N> and the rename synced, so a crash mid-save leaves the previous checkpoint as the
   * newest complete one. A failed write removes the temporary folder and says how much that freed.
   */
  async saveCheckpoint(step: number, write: (dir: string) => Promise<void>): Promise<void> {
    const tmp = join(this.checkpointsDir, `.tmp-step-${step}`);
    try {
      mkdirSync(this.checkpointsDir, { recursive: true });
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      await write(tmp);
      const final = join(this.checkpointsDir, `step-${step}`);
      rmSync(final, { recursive: true, force: true });
      renameSync(tmp, final);
      syncDir(this.checkpointsDir);
    } catch (err) {
      const freed = folderBytes(tmp);
      try {
        rmSync(tmp, { recursive: true, force: true });
      } catch {
        // The folder it was in is gone or not a folder any more: nothing to remove, and the error
        // the job ends with is the write's, below.
      }
      const code = err instanceof JobIoError ? err.code : errnoCode(err);
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new JobIoError(
          code,
          `${describeIoError(code, `writing the checkpoint at step ${step}`)} (${this.checkpointsDir}): ` +
            `removed the partial checkpoint, freeing ${formatBytes(freed)}; the checkpoints and metrics already written are kept`,
        );
      }
      // Whichever write failed (the folder, or a model's file in the job process), the job's error
      // names the checkpoint's step and then the write.
      if (code) throw new JobIoError(code, `${describeIoError(code, `writing the checkpoint at step ${step}`)}: ${(err as Error).message}`);
      throw err;
    }
    for (const old of this.checkpoints().slice(KEEP_CHECKPOINTS)) {
      rmSync(join(this.checkpointsDir, `step-${old.step}`), { recursive: true, force: true });
    }
  }

  /** Complete checkpoints, newest first. */
  checkpoints(): Array<{ step: number; dir: string }> {
    if (!existsSync(this.checkpointsDir)) return [];
    return readdirSync(this.checkpointsDir)
      .map((n) => /^step-(\d+)$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => b - a)
      .map((step) => ({ step, dir: join(this.checkpointsDir, `step-${step}`) }));
  }

  /** Sets a checkpoint that failed to load aside (corrupt-step-<N>), so it is never chosen or kept over a good one. */
  quarantineCheckpoint(step: number): void {
    try {
      renameSync(join(this.checkpointsDir, `step-${step}`), join(this.checkpointsDir, `corrupt-step-${step}`));
    } catch {
      rmSync(join(this.checkpointsDir, `step-${step}`), { recursive: true, force: true });
    }
  }
}

/** Every run folder under the runs root that has a job.json, oldest first. */
export function listRunDirs(runsRoot: string): RunDir[] {
  if (!existsSync(runsRoot)) return [];
  return readdirSync(runsRoot)
    .sort()
    .map((n) => new RunDir(join(runsRoot, n)))
    .filter((r) => existsSync(join(r.dir, 'job.json')));
}
