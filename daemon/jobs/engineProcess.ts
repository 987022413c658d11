// The product TrainingBackend for engine jobs: each job in its own process (engineChild.ts, forked
// from the daemon's worker script), driven over IPC by jobProcess.ts.
import { fork } from 'node:child_process';
import { ENGINE_JOB_ROLE, type EvalReply, type PreparedJob, type StepReply, type Variant } from '../../protocol/engineJob';
import { workerScript } from '../workers';
import { JobProcess, type JobProcessOptions } from './jobProcess';
import type { ModelTrainer, PrepareOptions, TrainingBackend, TrainingRequest, TrainingSetup } from './trainer';

export type EngineProcessOptions = JobProcessOptions;

/** Stops `proc` when `signal` aborts (a cancelled job, the daemon stopping). */
export function stopOnAbort(proc: JobProcess, signal: AbortSignal | undefined): void {
  const abort = () => proc.stop(String(signal?.reason ?? 'stopped'));
  if (signal?.aborted) abort();
  signal?.addEventListener('abort', abort, { once: true });
  void proc.exited.then(() => signal?.removeEventListener('abort', abort));
}

/** The dense or Pixelfly model of a job process, as the runner trains it. */
export function processTrainer(proc: JobProcess, variant: Variant, params: number, stepTimeoutMs?: number): ModelTrainer {
  return {
    params,
    step: () => proc.call({ op: 'step', variant }, `training the ${variant} model`, stepTimeoutMs) as Promise<StepReply>,
    evaluate: () => proc.call({ op: 'evaluate', variant }, `evaluating the ${variant} model`, stepTimeoutMs) as Promise<EvalReply>,
    save: async (file) => void (await proc.call({ op: 'save', variant, file }, `writing the ${variant} model's checkpoint ${file}`, stepTimeoutMs)),
    load: async (file) => void (await proc.call({ op: 'load', variant, file }, `loading the ${variant} model's checkpoint ${file}`, stepTimeoutMs)),
  };
}

export class EngineProcessBackend implements TrainingBackend {
  constructor(private readonly opts: EngineProcessOptions) {}

  async prepare(request: TrainingRequest, options: PrepareOptions): Promise<TrainingSetup> {
    const proc = new JobProcess(this.opts, () =>
      fork(workerScript(), [ENGINE_JOB_ROLE], {
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        // The job process's OpenMP workers wait passively: spinning ones steal the daemon's and the editor's cores.
        env: { ...process.env, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' },
        execArgv: [],
      }),
    );
    // The engine's estimate is close (test/daemon/memory.test.ts): only a limit the job asked for stops it early.
    if (request.hyper.memoryLimitBytes > 0) proc.limit = { bytes: request.hyper.memoryLimitBytes, why: "the job's memory limit" };
    stopOnAbort(proc, options.signal);
    try {
      const prepared = (await proc.call({ op: 'prepare', request, maxDataBytes: options.maxDataBytes }, 'loading the data and building the models')) as PreparedJob;
      return {
        dataset: prepared.dataset,
        stepsPerEpoch: prepared.stepsPerEpoch,
        tokensPerStep: prepared.tokensPerStep,
        backend: prepared.backend,
        precision: prepared.precision,
        kernels: prepared.kernels,
        pixelfly: processTrainer(proc, 'pixelfly', prepared.params.pixelfly),
        dense: prepared.params.dense !== undefined ? processTrainer(proc, 'dense', prepared.params.dense) : undefined,
        close: () => proc.close(),
        peakMemoryBytes: () => proc.peakBytes,
      };
    } catch (err) {
      await proc.close();
      throw err;
    }
  }
}
