// Trains one job: the Pixelfly model and, for a compare job, the dense model in ALTERNATING
// steps (the order flips every step), so both see the same machine conditions — a compile or a
// browser tab in the background slows both, and the running speedup stays honest.
import { join } from 'node:path';
import type { JobEvent, JobEventBody, RunSummary } from '../../protocol/daemon';
import type { EvalResult, ModelTrainer, TrainingSetup } from './trainer';
import { median, medianOfEach } from '../../core/stats';

/** Steps over which the running speedup (ratio of median step times) and the ETA are taken. */
const WINDOW = 50;
/** A progress event at most this often (and at the end). */
const PROGRESS_MS = 500;

export interface RunContext {
  setup: TrainingSetup;
  totalSteps: number;
  /** Steps already done (resumed from a checkpoint at this step). */
  startStep: number;
  evalEvery: number;
  checkpointEvery: number;
  emit(event: JobEventBody): void;
  /** Called after every step; the runner stops (cleanly, between steps) once it returns a reason. */
  stopReason(): 'cancel' | 'shutdown' | undefined;
  saveCheckpoint(step: number, write: (dir: string) => Promise<void>): Promise<void>;
  onStep(step: number): void;
}

export type RunOutcome = { kind: 'completed'; step: number } | { kind: 'stopped'; reason: 'cancel' | 'shutdown'; step: number };

export class DivergedError extends Error {}

async function timedStep(model: ModelTrainer, tokensPerStep: number, variant: string, step: number) {
  const r = await model.step();
  if (!Number.isFinite(r.loss)) throw new DivergedError(`the ${variant} model's loss is ${r.loss} at step ${step}: training diverged (try a lower lr)`);
  const result = { loss: r.loss, stepMs: r.ms, tokensPerSec: r.ms > 0 ? (tokensPerStep * 1000) / r.ms : 0 };
  return { result: r.partsMs ? { ...result, partsMs: r.partsMs } : result, lr: r.lr };
}

/** Steps a run trains: `epochs` worth, capped by maxSteps when set. */
export function plannedSteps(hyper: { epochs: number; maxSteps: number }, stepsPerEpoch: number): number {
  const byEpochs = Math.max(1, Math.ceil(hyper.epochs * stepsPerEpoch));
  return hyper.maxSteps > 0 ? Math.min(hyper.maxSteps, byEpochs) : byEpochs;
}

export async function checkpointBoth(setup: TrainingSetup, dir: string): Promise<void> {
  await setup.pixelfly.save(join(dir, 'pixelfly.ckpt'));
  if (setup.dense) await setup.dense.save(join(dir, 'dense.ckpt'));
}

export async function restoreBoth(setup: TrainingSetup, dir: string): Promise<void> {
  await setup.pixelfly.load(join(dir, 'pixelfly.ckpt'));
  if (setup.dense) await setup.dense.load(join(dir, 'dense.ckpt'));
}

export async function runSteps(ctx: RunContext): Promise<RunOutcome> {
  const { setup, totalSteps } = ctx;
  const denseMs: number[] = [];
  const pixelflyMs: number[] = [];
  const wallMs: number[] = [];
  const started = Date.now();
  let lastProgress = 0;
  let step = ctx.startStep;
  const epochOf = (s: number) => s / setup.stepsPerEpoch;

  const progress = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastProgress < PROGRESS_MS) return;
    lastProgress = now;
    const perStep = wallMs.length > 0 ? median(wallMs) : undefined;
    ctx.emit({
      type: 'progress',
      step,
      totalSteps,
      epoch: epochOf(step),
      epochs: epochOf(totalSteps),
      elapsedMs: now - started,
      etaMs: perStep === undefined ? undefined : perStep * (totalSteps - step),
    });
  };

  const evaluate = async () => {
    const pixelfly: EvalResult = await setup.pixelfly.evaluate();
    const dense = setup.dense ? await setup.dense.evaluate() : undefined;
    ctx.emit({ type: 'eval', step, epoch: epochOf(step), pixelfly, dense });
  };

  const checkpoint = async () => {
    await ctx.saveCheckpoint(step, (dir) => checkpointBoth(setup, dir));
    ctx.emit({ type: 'checkpoint', step });
  };

  progress(true);
  while (step < totalSteps) {
    const stop = ctx.stopReason();
    if (stop) return { kind: 'stopped', reason: stop, step };
    const t0 = Date.now();
    step += 1;
    const denseFirst = step % 2 === 0;
    let denseStep;
    if (setup.dense && denseFirst) denseStep = await timedStep(setup.dense, setup.tokensPerStep, 'dense', step);
    const pixelflyStep = await timedStep(setup.pixelfly, setup.tokensPerStep, 'Pixelfly', step);
    if (setup.dense && !denseFirst) denseStep = await timedStep(setup.dense, setup.tokensPerStep, 'dense', step);
    const pixelfly = pixelflyStep.result;
    const dense = denseStep?.result;
    pushWindow(pixelflyMs, pixelfly.stepMs);
    if (dense) pushWindow(denseMs, dense.stepMs);
    pushWindow(wallMs, Date.now() - t0);
    ctx.emit({
      type: 'step',
      step,
      epoch: epochOf(step),
      lr: pixelflyStep.lr,
      pixelfly,
      dense,
      speedup: dense ? median(denseMs) / median(pixelflyMs) : undefined,
      peakMemoryBytes: setup.peakMemoryBytes?.() || undefined,
    });
    ctx.onStep(step);
    const epochEnd = step % setup.stepsPerEpoch === 0 || step === totalSteps;
    if ((ctx.evalEvery > 0 && step % ctx.evalEvery === 0) || epochEnd) await evaluate();
    if ((ctx.checkpointEvery > 0 && step % ctx.checkpointEvery === 0) || epochEnd) await checkpoint();
    progress(step === totalSteps);
  }
  return { kind: 'completed', step };
}

function pushWindow(window: number[], value: number): void {
  window.push(value);
  if (window.length > WINDOW) window.shift();
}

/**
 * The run's summary, from its whole event log (so a resumed run counts the steps of every
 * session). A step trained twice (after a resume) counts once: its latest record wins. Wall time
 * is the sum of the sessions' spans (from each `running` status to the session's last event), so
 * time the daemon was down does not count.
 */
export function summarize(events: Iterable<JobEvent>, params: { pixelfly: number; dense?: number }, stepsPerEpoch: number): RunSummary {
  const steps = new Map<number, Extract<JobEventBody, { type: 'step' }>>();
  let lastEval: Extract<JobEventBody, { type: 'eval' }> | undefined;
  let wallMs = 0;
  let session: { start: number; last: number } | undefined;
  for (const e of events) {
    if (e.type === 'status' && e.state === 'running') {
      if (session) wallMs += session.last - session.start;
      session = { start: e.t, last: e.t };
    } else if (session) {
      session.last = e.t;
    }
    if (e.type === 'step') steps.set(e.step, e);
    else if (e.type === 'eval') lastEval = e;
  }
  if (session) wallMs += session.last - session.start;
  const ordered = [...steps.values()].sort((a, b) => a.step - b.step);
  const last = ordered.slice(-Math.min(WINDOW, ordered.length));
  const meanLoss = (xs: number[]) => (xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);
  type VariantStep = NonNullable<Extract<JobEventBody, { type: 'step' }>['dense']>;
  const variant = (pick: (e: Extract<JobEventBody, { type: 'step' }>) => VariantStep | undefined, n: number, ev?: EvalResult) => {
    const all = ordered.map(pick).filter((v) => v !== undefined);
    const tail = last.map(pick).filter((v) => v !== undefined);
    return {
      params: n,
      finalLoss: meanLoss(tail.map((v) => v.loss)),
      medianStepMs: all.length > 0 ? median(all.map((v) => v.stepMs)) : undefined,
      tokensPerSec: all.length > 0 ? median(all.map((v) => v.tokensPerSec)) : undefined,
      partsMs: medianOfEach(all.map((v) => v.partsMs)),
      eval: ev,
    };
  };
  const pixelfly = variant((e) => e.pixelfly, params.pixelfly, lastEval?.pixelfly);
  const dense = params.dense !== undefined ? variant((e) => e.dense, params.dense, lastEval?.dense) : undefined;
  const maxStep = ordered.length > 0 ? ordered[ordered.length - 1].step : 0;
  return {
    steps: maxStep,
    epochsDone: maxStep / stepsPerEpoch,
    wallMs,
    pixelfly,
    dense,
    speedup:
      dense?.medianStepMs !== undefined && pixelfly.medianStepMs !== undefined && pixelfly.medianStepMs > 0
        ? dense.medianStepMs / pixelfly.medianStepMs
        : undefined,
  };
}
