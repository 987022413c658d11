// The job queue: jobs run one at a time (the engine already uses every core it is given, and two
// runs side by side would spoil each other's timings). Every job lives in its own run folder, so
// a restarted daemon finds all past runs; any that were queued or running when the previous
// daemon died are marked interrupted and can be resumed from their newest intact checkpoint.
//
// Nothing a job meets takes the daemon down: a job is admitted against the machine before anything
// is allocated (and again when it starts), a failed write (a full disk, no file descriptor left)
// ends that job with the reason and keeps what was already durable, and a checkpoint is recorded
// only once the metrics before it are on disk.
import { randomBytes } from 'node:crypto';
import { refusalBatch, TERMINAL_STATES, type JobEvent, type JobEventBody, type JobInfo, type JobState, type RunSummary } from '../../protocol/daemon';
import { EventLog } from './eventLog';
import { listRunDirs, RunDir, type RunRecord, type RunState } from './runStore';
import { checkpointBoth, DivergedError, plannedSteps, restoreBoth, runSteps, summarize } from './runner';
import { finishRun, memoryFigures, type FinishRunInput } from './finishRun';
import { runSubject } from './runSubject';
import {
  CheckpointError,
  describeIoError,
  errnoCode,
  JobIoError,
  ModelError,
  RejectedError,
  RunnerStoppedError,
  type TrainingBackend,
  type TrainingRequest,
  type TrainingSetup,
} from './trainer';

export class JobError extends Error {
  constructor(
    readonly kind: 'not_found' | 'invalid_state',
    message: string,
  ) {
    super(message);
  }
}

/** What admission grants a job (daemon/memory.ts for the engine). */
export interface JobAdmission {
  /** The job's estimated peak memory, in bytes. */
  estimatedBytes?: number;
  /** What a dataset file may decompress or grow to. */
  maxDataBytes: number;
}

export interface JobManagerOptions {
  runsRoot: string;
  backend: TrainingBackend;
  /** How long events may wait in memory before being appended to metrics.jsonl. */
  flushMs?: number;
  log?: (line: string) => void;
  /** Checks a job against the machine (memory, disk) before anything is allocated; throws RejectedError. */
  admit?: (request: TrainingRequest, run?: RunDir) => JobAdmission | Promise<JobAdmission>;
  /** Summarises an ending run and writes its report (the daemon: in a helper process); default: here. */
  finishRun?: (input: FinishRunInput) => Promise<ReturnType<typeof finishRun>>;
}

export class Job {
  stopRequest: 'cancel' | 'shutdown' | undefined;
  /** Stops the running job's work at once (its process); set while it runs. */
  abort: AbortController | undefined;
  /** Why the job must end as failed, when something outside its steps decided it (a failed metrics write). */
  failure: string | undefined;

  constructor(
    readonly record: RunRecord,
    readonly run: RunDir,
    public state: RunState,
    readonly log: EventLog,
  ) {}

  get id(): string {
    return this.record.jobId;
  }

  /** Changes the state in memory, then on disk; a failed write throws (a JobIoError) with the new state kept in memory. */
  update(patch: Partial<RunState>): void {
    this.state = { ...this.state, ...patch };
    try {
      this.run.writeState(this.state);
    } catch (err) {
      const code = errnoCode(err);
      if (code) throw new JobIoError(code, describeIoError(code, `writing ${this.run.dir}/state.json`));
      throw err;
    }
  }

  /** Ends the running job as failed with `reason`, at once. */
  fail(reason: string): void {
    if (this.failure !== undefined || !this.abort) return;
    this.failure = reason;
    this.abort.abort(reason);
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
      subject: runSubject(r.request, s),
      endReason: s.endReason,
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
      precisionNote: s.precisionNote,
      kernels: s.kernels,
      lastSeq: this.log.lastSeq,
      runDir: this.run.dir,
      lastCheckpointStep: s.lastCheckpointStep,
      estimatedMemoryBytes: s.estimatedMemoryBytes,
      peakMemoryBytes: s.peakMemoryBytes,
      error: s.error,
      fits: s.fits,
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
  /** Reports of runs found interrupted at start, written in the background; whatever changes those runs waits for them. */
  private reports: Promise<void> = Promise.resolve();
  private readonly say: (line: string) => void;

  constructor(private readonly opts: JobManagerOptions) {
    this.say = opts.log ?? (() => undefined);
  }

  /**
   * Loads every run folder; runs that were active when the previous daemon died become
   * interrupted. A missing or damaged state.json is rebuilt from the rest of the folder.
   */
  loadExisting(): void {
    const interrupted: Job[] = [];
    for (const run of listRunDirs(this.opts.runsRoot)) {
      let record: RunRecord;
      let log: EventLog;
      try {
        record = run.readRecord();
        log = new EventLog(run.metricsFile, record.jobId, this.opts.flushMs);
      } catch (err) {
        this.say(`skipping unreadable run folder ${run.dir}: ${(err as Error).message}`);
        continue;
      }
      let state: RunState;
      let rebuilt = false;
      try {
        state = run.readState();
      } catch (err) {
        state = run.rebuildState(readAll(log));
        rebuilt = true;
        this.say(`run ${record.jobId}: state.json is missing or damaged (${(err as Error).message}): rebuilt from its metrics and checkpoints as ${state.state} at step ${state.step}`);
      }
      const job = new Job(record, run, state, log);
      this.jobs.set(record.jobId, job);
      try {
        if (state.state === 'running' || state.state === 'queued') {
          // A kill between a checkpoint's rename and its record in state.json leaves state.json a
          // checkpoint behind: the newest on disk is the one resume takes.
          const lastCheckpointStep = run.checkpoints()[0]?.step ?? state.lastCheckpointStep;
          const message =
            `the daemon stopped while this run was ${state.state} (killed or crashed); every flushed metric is kept` +
            (lastCheckpointStep !== undefined ? `; resume continues from the newest intact checkpoint (step ${lastCheckpointStep})` : '; resume starts it over');
          job.update({ state: 'interrupted', endedAt: new Date().toISOString(), endReason: message, lastCheckpointStep });
          job.emit({ type: 'status', state: 'interrupted', message });
          if (state.state === 'running') interrupted.push(job);
        } else if (rebuilt) {
          job.update({});
          if (state.state === 'interrupted') {
            job.emit({ type: 'status', state: 'interrupted', message: 'its state.json was damaged and has been rebuilt from the run folder; resume continues from the newest intact checkpoint' });
          }
        }
      } catch (err) {
        // A full disk: the run is listed with its state in memory, and saved when there is room.
        this.say(`run ${record.jobId}: ${(err as Error).message}`);
      }
      job.log.release();
    }
    // Their reports (which say why they stopped), after the listing: in the background, one at a time.
    this.reports = interrupted.reduce((done, job) => done.then(() => this.summariseInterrupted(job)), Promise.resolve());
  }

  get(jobId: string): Job {
    const job = this.jobs.get(jobId);
    if (!job) throw new JobError('not_found', `no job with id '${jobId}'`);
    return job;
  }

  list(): Job[] {
    return [...this.jobs.values()];
  }

  /** Admits the job against the machine (RejectedError when it cannot run here), then queues it. */
  async submit(name: string, request: TrainingRequest): Promise<Job> {
    if (this.closed) throw new JobError('invalid_state', 'the daemon is shutting down');
    const admission = await this.opts.admit?.(request);
    if (this.closed) throw new JobError('invalid_state', 'the daemon is shutting down');
    const jobId = newJobId();
    const record: RunRecord = { jobId, name, createdAt: new Date().toISOString(), request };
    const run = RunDir.create(this.opts.runsRoot, record, { state: 'queued', step: 0, totalSteps: 0, estimatedMemoryBytes: admission?.estimatedBytes });
    let log: EventLog;
    try {
      log = new EventLog(run.metricsFile, jobId, this.opts.flushMs);
    } catch (err) {
      run.remove();
      const code = errnoCode(err);
      throw code ? new JobIoError(code, describeIoError(code, `creating ${run.metricsFile}`)) : err;
    }
    const job = new Job(record, run, run.readState(), log);
    this.jobs.set(jobId, job);
    job.emit({ type: 'status', state: 'queued' });
    this.enqueue(job);
    return job;
  }

  /** Cancels a job: a running one is stopped at once (and ends shortly), a queued or interrupted one ends here. */
  async cancel(jobId: string): Promise<Job> {
    const job = this.get(jobId);
    if (TERMINAL_STATES.includes(job.state.state)) {
      throw new JobError('invalid_state', `job '${jobId}' is already ${job.state.state}`);
    }
    if (job === this.running) {
      // At once, even mid-step or while the data loads: the job's process is stopped.
      job.stopRequest = 'cancel';
      job.abort?.abort('cancelled');
    } else {
      // Queued or interrupted: nothing is running, so it ends here.
      const i = this.queue.indexOf(job);
      if (i >= 0) this.queue.splice(i, 1);
      await this.reports;
      await this.finish(job, 'cancelled', undefined);
    }
    return job;
  }

  resume(jobId: string): Job {
    const job = this.get(jobId);
    if (job.state.state !== 'interrupted' && job.state.state !== 'failed') {
      throw new JobError('invalid_state', `only interrupted or failed jobs can be resumed; '${jobId}' is ${job.state.state}`);
    }
    job.update({ state: 'queued', error: undefined, endReason: undefined, summary: undefined, endedAt: undefined });
    job.failure = undefined;
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
      const message = 'the daemon was stopped before this job started';
      this.quietly(job, () => job.update({ state: 'interrupted', endReason: message }));
      job.emit({ type: 'status', state: 'interrupted', message });
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
      if (!stopped) {
        running.abort?.abort('the daemon stopped');
        if (running.state.state === 'running' || running.state.state === 'queued') {
          const message = `the daemon was stopped mid-step (it did not finish within ${graceMs / 1000} s); resume continues from the last checkpoint`;
          this.quietly(running, () => running.update({ state: 'interrupted', endedAt: new Date().toISOString(), endReason: message }));
          running.emit({ type: 'status', state: 'interrupted', message });
        }
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
    this.runningDone = this.execute(next)
      .catch((err: Error) => this.say(`job ${next.id}: ${err.stack ?? err.message}`))
      .finally(() => {
        this.running = undefined;
        setImmediate(() => this.pump());
      });
  }

  /** Runs `write`, logging (not throwing) a failure: the daemon is stopping or the job is already ending. */
  private quietly(job: Job, write: () => void): void {
    try {
      write();
    } catch (err) {
      this.say(`job ${job.id}: ${(err as Error).message}`);
    }
  }

  /** Restores the newest intact checkpoint, setting aside (and naming) the ones that fail to load. */
  private async restore(job: Job, setup: TrainingSetup): Promise<{ startStep: number; skipped: string[]; dirty: boolean }> {
    const skipped: string[] = [];
    let dirty = false;
    for (const c of job.run.checkpoints()) {
      try {
        await restoreBoth(setup, c.dir);
        return { startStep: c.step, skipped, dirty: false };
      } catch (err) {
        if (!(err instanceof CheckpointError)) throw err;
        // The Pixelfly model may have loaded before the dense one failed: an older checkpoint overwrites it, a fresh start needs fresh models.
        dirty = true;
        skipped.push(`step ${c.step} (${err.message})`);
        this.say(`job ${job.id}: checkpoint at step ${c.step} cannot be used, set aside as corrupt-step-${c.step}: ${err.message}`);
        job.run.quarantineCheckpoint(c.step);
      }
    }
    return { startStep: 0, skipped, dirty };
  }

  private async execute(job: Job): Promise<void> {
    await this.reports;
    const { request } = job.record;
    let setup: TrainingSetup | undefined;
    const abort = new AbortController();
    job.abort = abort;
    job.stopRequest = undefined;
    job.failure = undefined;
    const unlisten = job.log.onWriteError((err) => {
      const code = errnoCode(err) ?? 'EIO';
      job.fail(`${describeIoError(code, `writing ${job.log.file}`)}; the metrics and checkpoints already written are kept`);
    });
    let ending: { state: Extract<JobState, 'completed' | 'failed' | 'cancelled'>; error?: string; fits?: JobInfo['fits'] } | 'interrupted';
    try {
      // Again now: the machine may have changed while the job was queued.
      const admission = await this.opts.admit?.(request, job.run);
      const resuming = job.run.checkpoints().length > 0;
      const prepare = () => this.opts.backend.prepare(request, { maxDataBytes: admission?.maxDataBytes ?? Infinity, signal: abort.signal, resuming });
      setup = await prepare();
      const { hyper } = request;
      const totalSteps = plannedSteps(hyper, setup.stepsPerEpoch);
      const restored = await this.restore(job, setup);
      if (restored.startStep === 0 && restored.dirty) {
        await setup.close();
        setup = await prepare();
      }
      const { startStep, skipped } = restored;
      job.update({
        state: 'running',
        startedAt: job.state.startedAt ?? new Date().toISOString(),
        endedAt: undefined,
        dataset: setup.dataset,
        backend: setup.backend,
        precision: setup.precision,
        precisionNote: setup.precisionNote,
        kernels: setup.kernels,
        params: { pixelfly: setup.pixelfly.params, dense: setup.dense?.params },
        stepsPerEpoch: setup.stepsPerEpoch,
        totalSteps,
        step: startStep,
        // The PyTorch runner estimates once its worker has built the model.
        estimatedMemoryBytes: setup.estimatedMemoryBytes ?? admission?.estimatedBytes,
        runtime: setup.runtime,
        inputs: setup.inputs,
        lastCheckpointStep: startStep > 0 ? startStep : undefined,
      });
      const resumeNote =
        skipped.length === 0
          ? undefined
          : startStep > 0
            ? `resumed from the checkpoint at step ${startStep}; skipped ${skipped.join('; ')}`
            : `no intact checkpoint (skipped ${skipped.join('; ')}): training starts over`;
      job.emit({
        type: 'status',
        state: 'running',
        message: [setup.dataset.note, resumeNote].filter((m) => m !== undefined).join('; ') || undefined,
        resumedFromStep: startStep > 0 ? startStep : undefined,
      });
      job.log.flush();
      const s = setup;
      const checkpoint = async (step: number) => {
        // Durable order: the metrics up to this step are on disk before the checkpoint exists.
        job.log.sync();
        await job.run.saveCheckpoint(step, (dir) => checkpointBoth(s, dir));
        job.update({ lastCheckpointStep: step, step });
      };
      const outcome = await runSteps({
        setup,
        totalSteps,
        startStep,
        evalEvery: hyper.evalEvery,
        checkpointEvery: hyper.checkpointEvery,
        emit: (e) => job.emit(e),
        stopReason: () => job.stopRequest,
        saveCheckpoint: (step) => checkpoint(step),
        onStep: (step) => {
          job.state.step = step;
          // job.get shows the measured peak while the job runs, not only once it has ended.
          const peak = s.peakMemoryBytes?.();
          if (peak) job.state.peakMemoryBytes = peak;
        },
      });
      job.state.step = outcome.step;
      if (outcome.kind === 'stopped' && outcome.reason === 'shutdown') {
        // Keep everything trained so far: a clean stop checkpoints where it is.
        if (outcome.step > (job.state.lastCheckpointStep ?? 0)) {
          await checkpoint(outcome.step);
          job.emit({ type: 'checkpoint', step: outcome.step });
        }
        ending = 'interrupted';
      } else {
        ending = { state: outcome.kind === 'completed' ? 'completed' : 'cancelled' };
      }
    } catch (err) {
      if (job.stopRequest === 'cancel') ending = { state: 'cancelled' };
      else if (job.stopRequest === 'shutdown' && err instanceof RunnerStoppedError) ending = 'interrupted';
      else {
        const message = job.failure ?? describeFailure(err);
        if (!(err instanceof RejectedError || err instanceof JobIoError || err instanceof ModelError)) this.say(`job ${job.id} failed: ${(err as Error)?.stack ?? message}`);
        else this.say(`job ${job.id} failed: ${message}`);
        job.emit({ type: 'error', message, fatal: true });
        const batch = err instanceof RejectedError ? refusalBatch(err.data) : undefined;
        ending = { state: 'failed', error: message, fits: batch !== undefined ? { batchSize: batch } : undefined };
      }
    } finally {
      unlisten();
      job.abort = undefined;
    }
    // The job's process exits here: its memory is back before the job is reported over.
    if (setup) {
      const s = setup;
      await s.close().catch((err: Error) => this.say(`job ${job.id}: closing its process: ${err.message}`));
      const peak = s.peakMemoryBytes?.();
      if (peak) job.state.peakMemoryBytes = peak;
    }
    if (ending === 'interrupted') {
      const message = 'the daemon was stopped; resume continues from the last checkpoint';
      this.quietly(job, () => job.update({ state: 'interrupted', endedAt: new Date().toISOString(), endReason: message }));
      job.emit({ type: 'status', state: 'interrupted', message });
      await this.summariseInterrupted(job, setup);
      return;
    }
    await this.finish(job, ending.state, ending.error, setup, ending.fits);
  }

  /**
   * The run's summary from its whole log, and its report (written by finishRun). `state` is how the
   * run stands now; the memory figures of its latest session go into the summary.
   */
  private async summarise(job: Job, state: JobState, error: string | undefined, setup?: TrainingSetup): Promise<RunSummary> {
    job.log.flush();
    // A job cancelled while interrupted has no models built now: what its last session recorded stands in.
    const params = setup ? { pixelfly: setup.pixelfly.params, dense: setup.dense?.params } : (job.state.params ?? { pixelfly: 0 });
    const stepsPerEpoch = setup?.stepsPerEpoch ?? job.state.stepsPerEpoch ?? 1;
    const input: FinishRunInput = { metricsFile: job.log.file, reportFile: job.run.reportFile, params, stepsPerEpoch, info: { ...job.info(), state, error } };
    let summary: RunSummary;
    try {
      const done = await (this.opts.finishRun ?? (async (i: FinishRunInput) => finishRun(i)))(input);
      if (done.reportError) this.say(`job ${job.id}: could not write the report: ${done.reportError}`);
      summary = done.summary;
    } catch (err) {
      // The log could not be read back (no file descriptor or process left): the job still ends, with what is known.
      this.say(`job ${job.id}: could not summarise its metrics: ${(err as Error).message}`);
      summary = { ...summarize([], params, stepsPerEpoch), ...memoryFigures(input.info), reportPath: job.run.reportFile };
    }
    // The plan's whole-step estimate beside what the run measured, for every view of the run.
    const estimated = job.record.request.plan.estimate?.speedup;
    return estimated !== undefined && summary.speedup !== undefined ? { ...summary, estimatedSpeedup: estimated } : summary;
  }

  /** An interrupted run keeps its summary so far and a report that says why it stopped; a resume replaces both. */
  private async summariseInterrupted(job: Job, setup?: TrainingSetup): Promise<void> {
    const summary = await this.summarise(job, 'interrupted', undefined, setup);
    // A resume may have started meanwhile (at daemon start): its summary is its own.
    if (job.state.state === 'interrupted') this.quietly(job, () => job.update({ summary }));
  }

  private async finish(
    job: Job,
    state: Extract<JobState, 'completed' | 'failed' | 'cancelled'>,
    error: string | undefined,
    setup?: TrainingSetup,
    fits?: JobInfo['fits'],
  ): Promise<void> {
    const endReason = state === 'failed' ? error : state === 'cancelled' ? 'cancelled on request (job.cancel)' : undefined;
    job.state.endReason = endReason;
    const summary = await this.summarise(job, state, error, setup);
    // Each write may meet a full disk: the job still ends, in memory and for its subscribers.
    this.quietly(job, () => job.update({ state, error, endReason, ...(fits ? { fits } : {}), summary, endedAt: new Date().toISOString() }));
    this.quietly(job, () => job.run.writeSummary(summary));
    job.emit({ type: 'status', state, message: error ?? (state === 'cancelled' ? endReason : undefined) });
    job.emit({ type: 'completed', state, summary });
    job.log.release();
  }
}

/** What a client is told when a job fails: the reason, or "internal error" for a bug. */
function describeFailure(err: unknown): string {
  if (err instanceof RejectedError || err instanceof DivergedError || err instanceof JobIoError || err instanceof RunnerStoppedError || err instanceof ModelError) return err.message;
  const code = errnoCode(err);
  if (code) return `${describeIoError(code, 'running the job')}: ${(err as Error).message}`;
  return `internal error: ${((err as Error)?.message ?? String(err)).split('\n')[0]}`;
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
