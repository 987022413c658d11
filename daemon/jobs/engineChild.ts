// The job process: answers the daemon's requests (protocol/engineJob.ts) with the native engine
// (engineTrainer.ts), one at a time, in order. It holds the job's data and models and nothing else;
// when the daemon lets go of it (disconnects), it exits and its memory goes back to the system.
import { ModelSpecError, parseModelSpec, type ModelSpec } from '../../core/modelSpec';
import type { JobFailure, JobOutcome, JobReply, JobRequest, PreparedJob, Variant } from '../../protocol/engineJob';
import { processMemory } from '../memory';
import { DivergedError } from './runner';
import { EngineBackend } from './engineTrainer';
import { CheckpointError, errnoCode, RejectedError, type ModelTrainer, type TrainingSetup } from './trainer';

function parseSpec(value: unknown): ModelSpec {
  try {
    return parseModelSpec(value);
  } catch (err) {
    if (err instanceof ModelSpecError) throw new RejectedError(err.message);
    throw err;
  }
}

function failure(err: unknown): JobFailure {
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof RejectedError) return { kind: 'rejected', message };
  if (err instanceof CheckpointError) return { kind: 'checkpoint', message };
  if (err instanceof DivergedError) return { kind: 'diverged', message };
  const code = errnoCode(err);
  if (code) return { kind: 'io', code, message };
  // The engine reports a diverged loss itself, from inside a step.
  if (/training diverged/.test(message)) return { kind: 'diverged', message };
  return { kind: 'internal', message: (err as Error)?.stack ?? message };
}

export function serveEngineJob(): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error('the engine job process must be started by the daemon (it talks over an IPC channel)');
  let setup: TrainingSetup | undefined;
  const model = (v: Variant): ModelTrainer => {
    const m = v === 'dense' ? setup?.dense : setup?.pixelfly;
    if (!m) throw new Error(`no ${v} model: prepare the job first${v === 'dense' ? ' (with compare)' : ''}`);
    return m;
  };
  const run = async (req: JobRequest): Promise<unknown> => {
    switch (req.op) {
      case 'prepare': {
        if (setup) throw new Error('this job process is already prepared');
        // The request enters this process here: its spec is parsed once, then passed on typed.
        const request = { ...req.request, spec: parseSpec(req.request.spec) };
        setup = await new EngineBackend().prepare(request, { maxDataBytes: req.maxDataBytes });
        const prepared: PreparedJob = {
          dataset: setup.dataset,
          stepsPerEpoch: setup.stepsPerEpoch,
          tokensPerStep: setup.tokensPerStep,
          params: { pixelfly: setup.pixelfly.params, dense: setup.dense?.params },
          backend: setup.backend,
          precision: setup.precision,
          kernels: setup.kernels,
        };
        return prepared;
      }
      case 'step':
        return model(req.variant).step();
      case 'evaluate':
        return model(req.variant).evaluate();
      case 'save':
        return model(req.variant).save(req.file);
      case 'load':
        return model(req.variant).load(req.file);
    }
  };
  let queue = Promise.resolve();
  process.on('message', (req: JobRequest) => {
    queue = queue.then(async () => {
      const base = { id: req.id };
      let reply: JobOutcome;
      try {
        reply = { ...base, ok: true, result: (await run(req)) ?? null };
      } catch (err) {
        reply = { ...base, ok: false, error: failure(err) };
      }
      const mem = processMemory() ?? { rssBytes: 0, peakRssBytes: 0 };
      const full: JobReply = { ...reply, ...mem };
      send(full);
    });
  });
  // The daemon let go (the job ended, or the daemon died): nothing is left to do.
  process.on('disconnect', () => process.exit(0));
}
