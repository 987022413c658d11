// The PyTorch runner's TrainingBackend: each job in its own Python process
// (pytorch/pixelfly_torch/runner.py, `python -m pixelfly_torch.runner` under the interpreter the
// job names), driven like an engine job over Node's IPC channel (jobProcess.ts), which a non-Node
// child reads and writes as line-delimited JSON. The worker imports the user's model file by its
// path, so nothing the daemon was sent is ever executed; what the file does runs in that process
// and ends only that job. The job is admitted against the machine's memory (or refused with the
// numbers) twice: first with the model sized on torch's meta device, before anything of it is
// allocated, then with the built model, before the optimizers, the data and any batch exist; from
// the first admission on, the worker's resident size is held to what it was given.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { TORCH_RUNNER_MODULE, type InspectReply, type ModelFacts, type PreparedJob, type SizeReply } from '../../protocol/engineJob';
import type { MemoryLimit } from '../memory';
import { JobProcess, type JobProcessOptions } from './jobProcess';
import { processTrainer, stopOnAbort } from './engineProcess';
import { RejectedError, type PrepareOptions, type TrainingBackend, type TrainingRequest, type TrainingSetup } from './trainer';

/**
 * tcmalloc, where installed (scripts/setup.mjs installs it): PyTorch 1.13 under glibc faults its
 * large tensors in afresh on every step (pytorch/README.md, Speed), which on the machines this
 * project runs on costs the Pixelfly layer a third of its time (2048→512 at 6272 rows: 60 vs 42 ms).
 * The runner's worker runs on it, both models alike, and the run's runtime says which allocator ran.
 */
export const TCMALLOC = '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4';

/** A step, an evaluation or a checkpoint that answers nothing for this long is hung. */
export const DEFAULT_STEP_TIMEOUT_S = 600;
/** Importing the file (PyTorch first), building the model and loading the data get at least this long. */
const MIN_SETUP_TIMEOUT_MS = 300_000;

export interface TorchGrant {
  estimatedBytes: number;
  /** Resident size the worker may not pass (the job is stopped, saying so), and what sets it. */
  limit: MemoryLimit;
  maxDataBytes: number;
}

export interface TorchProcessOptions extends JobProcessOptions {
  /** Admits the job with its model's facts, sized (`built` false) or built (daemon/memory.ts admitTorch); throws RejectedError with the numbers. */
  admit(facts: ModelFacts, request: TrainingRequest, resuming: boolean, built: boolean): TorchGrant;
  /** The folder pixelfly_torch is installed in (default: torchPackagePath()). */
  packagePath?: string;
}

/**
 * Where pixelfly_torch is built (`npm run build`: dist/python), beside the daemon's bundle or above
 * its compiled modules; $PIXELFLY_TORCH_PATH overrides.
 */
export function torchPackagePath(): string | undefined {
  const has = (dir: string) => existsSync(join(dir, 'pixelfly_torch', 'runner.py'));
  const env = process.env.PIXELFLY_TORCH_PATH;
  if (env) return has(env) ? env : undefined;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    for (const candidate of [join(dir, 'python'), join(dir, 'dist', 'python')]) if (has(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

export class TorchProcessBackend implements TrainingBackend {
  constructor(private readonly opts: TorchProcessOptions) {}

  async prepare(request: TrainingRequest, options: PrepareOptions): Promise<TrainingSetup> {
    const model = request.model;
    if (!model) throw new RejectedError('a torch job needs its model: {file, name, settings}');
    const pkg = this.opts.packagePath ?? torchPackagePath();
    if (!pkg) throw new RejectedError('the PyTorch runner is not built: pixelfly_torch/runner.py is not in dist/python (run npm run build)');
    const python = model.python ?? 'python3';
    const proc = new JobProcess(
      this.opts,
      () =>
        spawn(python, ['-m', TORCH_RUNNER_MODULE], {
          // `-m` puts the working folder first on sys.path: the package's folder, so nothing there shadows the user's imports.
          cwd: pkg,
          stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
          env: {
            ...process.env,
            PYTHONPATH: [pkg, process.env.PYTHONPATH].filter((p) => p).join(':'),
            PYTHONUNBUFFERED: '1',
            PYTHONDONTWRITEBYTECODE: '1',
            OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE',
            ...(existsSync(TCMALLOC) ? { LD_PRELOAD: [TCMALLOC, process.env.LD_PRELOAD].filter((p) => p).join(':') } : {}),
          },
        }),
      `the PyTorch runner (${python})`,
    );
    stopOnAbort(proc, options.signal);
    const timeoutMs = (model.stepTimeoutS ?? DEFAULT_STEP_TIMEOUT_S) * 1000;
    try {
      const setupMs = Math.max(timeoutMs, MIN_SETUP_TIMEOUT_MS);
      const resuming = options.resuming === true;
      const sized = (await proc.call({ op: 'size', request }, `importing ${model.file} and sizing ${model.name}`, setupMs)) as SizeReply;
      if (sized.sized) proc.limit = this.opts.admit(sized, request, resuming, false).limit;
      else this.opts.log(`torch job: ${model.name} is admitted once built: ${sized.reason}`);
      const facts = (await proc.call({ op: 'inspect', request }, `building ${model.name}`, setupMs)) as InspectReply;
      const grant = this.opts.admit(facts, request, resuming, true);
      proc.limit = grant.limit;
      const prepared = (await proc.call(
        { op: 'prepare', request, maxDataBytes: Math.min(options.maxDataBytes, grant.maxDataBytes) },
        'loading the data and making the optimizers',
        setupMs,
      )) as PreparedJob;
      return {
        dataset: prepared.dataset,
        stepsPerEpoch: prepared.stepsPerEpoch,
        tokensPerStep: prepared.tokensPerStep,
        backend: prepared.backend,
        precision: prepared.precision,
        precisionNote: prepared.precisionNote,
        kernels: prepared.kernels ?? facts.kernels,
        runtime: facts.runtime,
        inputs: facts.inputs,
        estimatedMemoryBytes: grant.estimatedBytes,
        pixelfly: processTrainer(proc, 'pixelfly', prepared.params.pixelfly, timeoutMs),
        dense: prepared.params.dense !== undefined ? processTrainer(proc, 'dense', prepared.params.dense, timeoutMs) : undefined,
        close: () => proc.close(),
        peakMemoryBytes: () => proc.peakBytes,
      };
    } catch (err) {
      await proc.close();
      throw err;
    }
  }
}
