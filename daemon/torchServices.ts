// The daemon's side of the PyTorch runner: checks a torch job where it enters (the client vouches
// for a trusted workspace; the model is a .py file named by an absolute path; the plan is given),
// admits it against the machine with what its worker reports of the model, and puts the torch backend
// beside the engine's, each job going to the runner it names.
import { statSync } from 'node:fs';
import { extname, isAbsolute } from 'node:path';
import type { ModelFacts } from '../protocol/engineJob';
import { notAFile } from '../io/userFile';
import type { EngineServices } from './main';
import { admitTorch, jobBudget, machineMemory, torchDatasetMemory, type MemoryLimit } from './memory';
import { RejectedError, type TrainingBackend, type TrainingRequest } from './jobs/trainer';
import { TorchProcessBackend, type TorchGrant } from './jobs/torchProcess';
import { checkDatasetPath } from './engineServices';

/** A torch job as it enters: refused (REJECTED) unless it can only run a trusted user's file, by path. */
export function torchTrainingRequest(params: Parameters<EngineServices['trainingRequest']>[0]): TrainingRequest {
  const model = params.model;
  if (!model) throw new RejectedError('a torch job needs its model: {file, name, settings}');
  if (!model.trusted) {
    throw new RejectedError(
      `the PyTorch runner imports and runs ${model.file}: it only does so for a file in a workspace the user trusts ` +
        '(the client sends model.trusted = true for a trusted workspace; the editor does only when VS Code trusts it)',
    );
  }
  const refuse = (why: string) => new RejectedError(`model.file ${model.file} ${why}`);
  if (!isAbsolute(model.file)) throw refuse('must be an absolute path');
  if (extname(model.file) !== '.py') throw refuse('is not a Python file (.py)');
  let st;
  try {
    st = statSync(model.file);
  } catch (err) {
    throw refuse(`cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const bad = notAFile(st);
  if (bad) throw refuse(bad);
  const relative = model.paths.find((p) => !isAbsolute(p));
  if (relative !== undefined) throw new RejectedError(`model.paths: '${relative}' must be an absolute path`);
  if (!params.plan) {
    throw new RejectedError(
      'a torch job needs its plan: the one `pixelfly analyze --json` writes for the file (its layers), or the editor\'s Export plan; the daemon does not analyse the file itself',
    );
  }
  // The worker trains on the CPU (pixelfly_torch's CPU kernels), in fp32 or bf16 under torch.autocast
  // ('auto': bf16 where the CPU has bf16 products and the model runs under autocast, pixelfly_torch/runner.py
  // resolve_precision); it does not pretend otherwise.
  if (params.hyper.backend === 'cuda') throw new RejectedError("the PyTorch runner trains on the CPU: backend 'cuda' is the engine's (use 'auto' or 'cpu')");
  if (params.hyper.precision === 'fp16') {
    throw new RejectedError("the PyTorch runner trains on the CPU, where fp16 products are not faster: precision 'fp16' is the engine's on CUDA (use 'auto', 'bf16' or 'fp32')");
  }
  checkDatasetPath(params.dataset);
  return { runner: 'torch', model, plan: params.plan, dataset: params.dataset, hyper: params.hyper, compare: params.compare };
}

/** Memory a job's worker may hold past its estimate before it is stopped: the estimate's error the tests allow, and some. */
const LIMIT_SLACK = 1.5;

/** Admission of a torch model, sized on the meta device or built: its estimate against the machine's free memory (daemon/memory.ts admitTorch). */
export function admitTorchModel(facts: ModelFacts, request: TrainingRequest, resuming: boolean, built: boolean): TorchGrant {
  const machine = machineMemory();
  const inputs = facts.inputs;
  const granted = admitTorch(
    {
      params: facts.params,
      activationBytesPerSample: facts.activationBytesPerSample,
      batch: request.hyper.batchSize,
      baseBytes: facts.baseBytes,
      dataset: torchDatasetMemory(inputs, request.dataset),
      compare: request.compare,
      resuming,
      context: inputs.kind === 'tokens' ? inputs.context : undefined,
    },
    request.dataset.kind,
    built,
    request.hyper.memoryLimitBytes,
    machine,
  );
  const estimatedBytes = granted.estimate.totalBytes;
  // A job far above its estimate is a runaway; none may pass what the machine can give or its own limit.
  const limits: MemoryLimit[] = [
    { bytes: Math.max(LIMIT_SLACK * estimatedBytes, estimatedBytes + 256 * 1024 ** 2), why: 'its estimate and some slack' },
    { bytes: jobBudget(machine).budgetBytes, why: 'what the machine can give it' },
    ...(request.hyper.memoryLimitBytes > 0 ? [{ bytes: request.hyper.memoryLimitBytes, why: "the job's memory limit" }] : []),
  ];
  const limit = limits.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  return { estimatedBytes, limit, maxDataBytes: granted.maxDataBytes };
}

/** The engine's services with the PyTorch runner beside them: each job goes to the runner it names. */
export function withTorchRunner(engine: Omit<EngineServices, 'torch'>, log: (line: string) => void): EngineServices {
  const torch = new TorchProcessBackend({ log, admit: admitTorchModel });
  const backend: TrainingBackend = {
    prepare: (request, options) => (request.runner === 'torch' ? torch.prepare(request, options) : engine.backend.prepare(request, options)),
  };
  return {
    ...engine,
    torch: true,
    backend,
    trainingRequest: async (params, plan) => (params.runner === 'torch' ? torchTrainingRequest(params) : engine.trainingRequest(params, plan)),
    // The torch runner's memory is admitted with what its worker reports of the model (admitTorchModel).
    admit: (request, runsRoot, run) => (request.runner === 'torch' ? { maxDataBytes: Infinity } : engine.admit(request, runsRoot, run)),
  };
}
