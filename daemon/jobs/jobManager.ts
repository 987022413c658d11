// The job queue: jobs run one at a time (the engine already uses every core it is given, and two
// runs side by side would spoil each other's timings). Every job lives in its own run folder, so
// a restarted daemon finds all past runs; any that were queued or running when the previous
// daemon died are marked interrupted and can be resumed from their last checkpoint.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { TERMINAL_STATES, type JobEvent, type JobEventBody, type JobInfo, type JobState } from '../../protocol/daemon';
import { EventLog } from './eventLog';
import { listRunDirs, RunDir, type RunRecord, type RunState } from './runStore';
import { checkpointBoth, DivergedError, plannedSteps, restoreBoth, runSteps, summarize } from './runner';
import { RejectedError, type TrainingBackend, type TrainingRequest, type TrainingSetup } from './trainer';
import { renderReport } from '../report';

export class JobError extends Error {
  constructor(
    readonly kind: 'not_found' | 'invalid_state',
    message: string,
  ) {
    super(message);
  }
}

export interface JobManagerOptions {
  runsRoot: string;
  backend: TrainingBackend;
  /** How long events may wait in memory before being appended to metrics.jsonl. */
  flushMs?: number;
  log?: (line: string) => void;
}

export class Job {
  stopRequest: 'cancel' | 'shutdown' | undefined;

  constructor(
    readonly record: RunRecord,
    readonly run: RunDir,
    public state: RunState,
    readonly log: EventLog,
  ) {}

  get id(): string {
    return this.record.jobId;
  }

  update(patch: Partial<RunState>): void {
    this.state = { ...this.state, ...patch };
    this.run.writeState(this.state);
  }

  emit(body: JobEventBody): JobEvent {
    return this.log.append(body);
  }

  info(): JobInfo {
    const s = this.state;
    const r = this.record;
    return {
      jobId: r.jobId,
      name: r.name,
      state: s.state,
      createdAt: r.createdAt,
      startedAt: s.startedAt,
      endedAt: s.endedAt,
      compare: r.request.compare,
      step: s.step,
      totalSteps: s.totalSteps,
      epochs: r.request.hyper.epochs,
      dataset: s.dataset,
      backend: s.backend,
      precision: s.precision,
      kernels: s.kernels,
      lastSeq: this.log.lastSeq,
      runDir: this.run.dir,
      lastCheckpointStep: s.lastCheckpointStep,
      error: s.error,
      summary: s.summary,
    };
  }
}

function newJobId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

export class JobManager {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: Job[] = [];
  private running: Job | undefined;
  private runningDone: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly say: (line: string) => void;

  constructor(private readonly opts: JobManagerOptions) {
    this.say = opts.log ?? (() => undefined);
  }

  /** Loads every run folder; runs that were active when the previous daemon died become interrupted. */
  loadExisting(): void {
    for (const run of listRunDirs(this.opts.runsRoot)) {
      try {
        const record = run.readRecord();
        const state = run.readState();
        const job = new Job(record, run, state, new EventLog(run.metricsFile, record.jobId, this.opts.flushMs));
        if (state.state === 'running' || state.state === 'queued') {
          job.update({ state: 'interrupted', endedAt: new Date().toISOString() });
          job.emit({
            type: 'status',
            state: 'interrupted',
            message: `the daemon stopped while this run was ${state.state} (killed or crashed); every flushed metric is kept` +
              (state.lastCheckpointStep !== undefined ? `; resume continues from the checkpoint at step ${state.lastCheckpointStep}` : '; resume starts it over'),
          });
        }
        job.log.release();
        this.jobs.set(record.jobId, job);
      } catch (err) {
        this.say(`skipping unreadable run folder ${run.dir}: ${(err as Error).message}`);
      }
    }
  }

  get(jobId: string): Job {
    const job = this.jobs.get(jobId);
    if (!job) throw new JobError('not_found', `no job with id '${jobId}'`);
    return job;
  }

  list(): Job[] {
    return [...this.jobs.values()];
  }

  submit(name: string, request: TrainingRequest): Job {
    if (this.closed) throw new JobError('invalid_state', 'the daemon is shutting down');
    const jobId = newJobId();
    const record: RunRecord = { jobId, name, createdAt: new Date().toISOString(), request };
    const run = RunDir.create(this.opts.runsRoot, record, { state: 'queued', step: 0, totalSteps: 0 });
    const job = new Job(record, run, run.readState(), new EventLog(run.metricsFile, jobId, this.opts.flushMs));
    this.jobs.set(jobId, job);
    job.emit({ type: 'status', state: 'queued' });
    this.enqueue(job);
    return job;
  }

  cancel(jobId: string): Job {
    const job = this.get(jobId);
    if (TERMINAL_STATES.includes(job.state.state)) {
      throw new JobError('invalid_state', `job '${jobId}' is already ${job.state.state}`);
    }
    if (job === this.running) {
      job.stopRequest = 'cancel';
    } else {
      // Queued or interrupted: nothing is running, so it ends here.
      const i = this.queue.indexOf(job);
      if (i >= 0) this.queue.splice(i, 1);
      this.finish(job, 'cancelled', undefined);
    }
    return job;
  }

  resume(jobId: string): Job {
    const job = this.get(jobId);
    if (job.state.state !== 'interrupted' && job.state.state !== 'failed') {
      throw new JobError('invalid_state', `only interrupted or failed jobs can be resumed; '${jobId}' is ${job.state.state}`);
    }
    job.update({ state: 'queued', error: undefined, endedAt: undefined });
    job.emit({ type: 'status', state: 'queued', message: 'resume requested' });
    this.enqueue(job);
    return job;
  }

  /**
   * Stops taking work; a running job stops between steps, checkpoints and becomes interrupted.
   * A step (or a model build) that outlasts `graceMs` is not waited for: the job is marked
   * interrupted as it stands (its last checkpoint is kept) and the caller may exit.
   */
  async shutdown(graceMs = 15_000): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) {
      job.update({ state: 'interrupted' });
      job.emit({ type: 'status', state: 'interrupted', message: 'the daemon was stopped before this job started' });
    }
    const running = this.running;
    if (running) {
      running.stopRequest = 'shutdown';
      let timer: NodeJS.Timeout | undefined;
      const stopped = await Promise.race([
        this.runningDone.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
      ]);
      clearTimeout(timer);
      if (!stopped && (running.state.state === 'running' || running.state.state === 'queued')) {
        running.update({ state: 'interrupted', endedAt: new Date().toISOString() });
        running.emit({ type: 'status', state: 'interrupted', message: `the daemon was stopped mid-step (it did not finish within ${graceMs / 1000} s); resume continues from the last checkpoint` });
      }
    }
    for (const job of this.jobs.values()) job.log.close();
  }

  private enqueue(job: Job): void {
    this.queue.push(job);
    this.pump();
  }

  private pump(): void {
    if (this.running || this.closed) return;
    const next = this.queue.shift();
    if (!next) return;
    this.running = next;
    this.runningDone = this.execute(next).finally(() => {
      this.running = undefined;
      setImmediate(() => this.pump());
    });
  }

  private async execute(job: Job): Promise<void> {
    const { request } = job.record;
    let setup: TrainingSetup | undefined;
    job.stopRequest = undefined;
    try {
      setup = await this.opts.backend.prepare(request);
      const { hyper } = request;
      const totalSteps = plannedSteps(hyper, setup.stepsPerEpoch);
      const checkpoint = job.run.latestCheckpoint();
      let startStep = 0;
      if (checkpoint) {
        await restoreBoth(setup, checkpoint.dir);
        startStep = checkpoint.step;
      }
      job.update({
        state: 'running',
        startedAt: job.state.startedAt ?? new Date().toISOString(),
        endedAt: undefined,
        dataset: setup.dataset,
        backend: setup.backend,
        precision: setup.precision,
        kernels: setup.kernels,
        params: { pixelfly: setup.pixelfly.params, dense: setup.dense?.params },
        stepsPerEpoch: setup.stepsPerEpoch,
        totalSteps,
        step: startStep,
      });
      job.emit({
        type: 'status',
        state: 'running',
        message: setup.dataset.note,
        resumedFromStep: checkpoint ? startStep : undefined,
      });
      job.log.flush();
      const outcome = await runSteps({
        setup,
        totalSteps,
        startStep,
        evalEvery: hyper.evalEvery,
        checkpointEvery: hyper.checkpointEvery,
        emit: (e) => job.emit(e),
        stopReason: () => job.stopRequest,
        saveCheckpoint: async (step, write) => {
          await job.run.saveCheckpoint(step, write);
          job.update({ lastCheckpointStep: step, step });
        },
        onStep: (step) => {
          job.state.step = step;
        },
      });
      job.state.step = outcome.step;
      if (outcome.kind === 'stopped' && outcome.reason === 'shutdown') {
        // Keep everything trained so far: a clean stop checkpoints where it is.
        if (outcome.step > (job.state.lastCheckpointStep ?? 0)) {
          const s = setup;
          await job.run.saveCheckpoint(outcome.step, (dir) => checkpointBoth(s, dir));
          job.update({ lastCheckpointStep: outcome.step });
          job.emit({ type: 'checkpoint', step: outcome.step });
        }
        job.update({ state: 'interrupted', endedAt: new Date().toISOString() });
        job.emit({ type: 'status', state: 'interrupted', message: 'the daemon was stopped; resume continues from the last checkpoint' });
        job.log.flush();
        return;
      }
      this.finish(job, outcome.kind === 'completed' ? 'completed' : 'cancelled', undefined, setup);
    } catch (err) {
      const message = err instanceof RejectedError || err instanceof DivergedError ? err.message : `internal error: ${(err as Error).message ?? String(err)}`;
      this.say(`job ${job.id} failed: ${(err as Error).stack ?? message}`);
      job.emit({ type: 'error', message, fatal: true });
      this.finish(job, 'failed', message, setup);
    } finally {
      setup?.pixelfly.dispose();
      setup?.dense?.dispose();
    }
  }

  private finish(job: Job, state: Extract<JobState, 'completed' | 'failed' | 'cancelled'>, error: string | undefined, setup?: TrainingSetup): void {
    job.log.flush();
    // A job cancelled while interrupted has no models built now: what its last session recorded stands in.
    const params = setup ? { pixelfly: setup.pixelfly.params, dense: setup.dense?.params } : (job.state.params ?? { pixelfly: 0 });
    const summary = summarize(readAll(job.log), params, setup?.stepsPerEpoch ?? job.state.stepsPerEpoch ?? 1);
    summary.reportPath = job.run.reportFile;
    job.update({ state, error, summary, endedAt: new Date().toISOString() });
    job.run.writeSummary(summary);
    job.emit({ type: 'status', state, message: error });
    job.emit({ type: 'completed', state, summary });
    job.log.flush();
    try {
      writeFileSync(job.run.reportFile, renderReport(job.info(), readAll(job.log)));
    } catch (err) {
      this.say(`job ${job.id}: could not write the report: ${(err as Error).message}`);
    }
    job.log.release();
  }
}

/** Every event of a job, read in bounded chunks from its log. */
export function* readAll(log: EventLog): Generator<JobEvent> {
  let seq = 0;
  for (;;) {
    const batch = log.read(seq, 4096);
    if (batch.length === 0) return;
    yield* batch;
    seq = batch[batch.length - 1].seq;
  }
}
