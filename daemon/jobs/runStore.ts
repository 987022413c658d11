// One folder per run under <home>/runs/<jobId>/:
//   job.json      what was asked (name, creation time, the full request) — written once
//   spec.json     the model spec, plan.json the plan actually trained (copies, for people and tools)
//   state.json    current state, step, checkpoint — rewritten atomically on every change
//   metrics.jsonl the event log (eventLog.ts)
//   summary.json  written at the end; report.html the self-contained report
//   checkpoints/step-<N>/  pixelfly.ckpt [dense.ckpt]; a checkpoint exists once its folder is renamed into place
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DatasetInfo, TrainingRequest } from './trainer';
import type { JobState, RunSummary } from '../../protocol/daemon';
import { writeFileAtomic } from '../home';

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
  /** How the products ran (the CPU kernels' instruction set and bf16 path, or 'cuda'). */
  kernels?: string;
  /** Parameter counts of the built models, known once the job has started. */
  params?: { pixelfly: number; dense?: number };
  stepsPerEpoch?: number;
  lastCheckpointStep?: number;
  error?: string;
  summary?: RunSummary;
}

/** Checkpoints kept per run: the newest ones; older ones are deleted as new ones land. */
const KEEP_CHECKPOINTS = 2;

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

  static create(runsRoot: string, record: RunRecord, state: RunState): RunDir {
    const run = new RunDir(join(runsRoot, record.jobId));
    mkdirSync(run.dir, { recursive: true });
    writeFileAtomic(join(run.dir, 'job.json'), JSON.stringify(record, null, 2) + '\n');
    writeFileAtomic(join(run.dir, 'spec.json'), JSON.stringify(record.request.spec, null, 2) + '\n');
    writeFileAtomic(join(run.dir, 'plan.json'), JSON.stringify(record.request.plan, null, 2) + '\n');
    run.writeState(state);
    return run;
  }

  readRecord(): RunRecord {
    return JSON.parse(readFileSync(join(this.dir, 'job.json'), 'utf8')) as RunRecord;
  }

  readState(): RunState {
    return JSON.parse(readFileSync(join(this.dir, 'state.json'), 'utf8')) as RunState;
  }

  writeState(state: RunState): void {
    writeFileAtomic(join(this.dir, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  }

  writeSummary(summary: RunSummary): void {
    writeFileAtomic(join(this.dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  }

  /**
   * Saves a checkpoint: `write` fills a temporary folder, which is then renamed to step-<N>, so a
   * crash mid-save leaves the previous checkpoint as the latest complete one.
   */
  async saveCheckpoint(step: number, write: (dir: string) => Promise<void>): Promise<void> {
    mkdirSync(this.checkpointsDir, { recursive: true });
    const tmp = join(this.checkpointsDir, `.tmp-step-${step}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    await write(tmp);
    const final = join(this.checkpointsDir, `step-${step}`);
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    for (const old of this.checkpointSteps().slice(0, -KEEP_CHECKPOINTS)) {
      rmSync(join(this.checkpointsDir, `step-${old}`), { recursive: true, force: true });
    }
  }

  /** The newest complete checkpoint, if any. */
  latestCheckpoint(): { step: number; dir: string } | undefined {
    const steps = this.checkpointSteps();
    const step = steps[steps.length - 1];
    return step === undefined ? undefined : { step, dir: join(this.checkpointsDir, `step-${step}`) };
  }

  private checkpointSteps(): number[] {
    if (!existsSync(this.checkpointsDir)) return [];
    return readdirSync(this.checkpointsDir)
      .map((n) => /^step-(\d+)$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }
}

/** Every run folder under the runs root that has a readable job.json and state.json, oldest first. */
export function listRunDirs(runsRoot: string): RunDir[] {
  if (!existsSync(runsRoot)) return [];
  return readdirSync(runsRoot)
    .sort()
    .map((n) => new RunDir(join(runsRoot, n)))
    .filter((r) => existsSync(join(r.dir, 'job.json')) && existsSync(join(r.dir, 'state.json')));
}
