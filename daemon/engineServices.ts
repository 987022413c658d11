// The daemon's training side: checks a submitted spec with the core, resolves its plan, admits
// the job against the machine (memory and disk), and trains through the native engine in a job
// process (jobs/engineProcess.ts).
import { statSync } from 'node:fs';
import { defaultThreads } from './systemInfo';
import { parseModelSpec, specInventory, ModelSpecError, type ModelSpec } from '../core/modelSpec';
import { DEFAULT_TARGET } from '../core/planner';
import type { InventoryLayer } from '../core/inventory';
import { checkBuildable } from '../core/layout';
import { PixelflyConfigError } from '../core/errors';
import { formatBytes, notAFile } from '../io/userFile';
import type { EngineServices } from './main';
import { engineSpec, RejectedError, type TrainingRequest } from './jobs/trainer';
import type { JobAdmission } from './jobs/jobManager';
import { freeBytes, type RunDir } from './jobs/runStore';
import { EngineProcessBackend } from './jobs/engineProcess';
import { engineBackend } from '../native/engine';
import { kernelInfo } from '../native/kernels';
import { cudaInfo } from '../native/cuda';
import { admit, memoryInput } from './memory';
import { runTask } from './workers';
import { withTorchRunner } from './torchServices';

/** Room kept beyond a run's checkpoints: metrics, report, state. */
const RUN_FILES_BYTES = 16 * 1024 ** 2;

function parseSpec(value: unknown): ModelSpec {
  try {
    return parseModelSpec(value);
  } catch (err) {
    if (err instanceof ModelSpecError) throw new RejectedError(err.message);
    throw err;
  }
}

export const trainingRequest: EngineServices['trainingRequest'] = async (params, plan): Promise<TrainingRequest> => {
  const spec = parseSpec(params.spec);
  // A job carries the plan its client showed (the editor's, `pixelfly analyze`'s): trained as it is.
  // Only a job without one (a spec file from the CLI) is planned here, with this machine's profile.
  // Built once: a spec with Pixelfly attention lays out its score blocks to cost its cores.
  const specInv = specInventory(spec);
  const resolved = params.plan ?? (await plan(specInv, params.target ?? DEFAULT_TARGET));
  const inventory = new Map(specInv.layers.map((l) => [l.name, l]));
  const unknown = resolved.layers.filter((l) => !inventory.has(l.name)).map((l) => l.name);
  if (unknown.length > 0) {
    const shown = unknown.slice(0, 5).join(', ') + (unknown.length > 5 ? ` and ${unknown.length - 5} more` : '');
    throw new RejectedError(`plan: layer${unknown.length > 1 ? 's' : ''} ${shown} not in the ${spec.kind} spec (it has ${[...inventory.keys()].join(', ')})`);
  }
  // A client's Pixelfly configs, before anything (admission's estimate included) computes with them;
  // the planner's own are valid by construction, and what does not fit is admission's to say.
  for (const l of params.plan?.layers ?? []) {
    if (!l.sparsify) continue;
    const layer = inventory.get(l.name) as InventoryLayer;
    const where = `plan layer '${l.name}' (${layer.out}×${layer.in})`;
    if (layer.role === 'embedding') throw new RejectedError(`${where}: an embedding is a lookup and cannot be Pixelfly`);
    if (layer.role === 'attn_core') throw new RejectedError(`${where}: an attention core has no weights; its score layout is the spec's "attention" field`);
    if (!l.config) throw new RejectedError(`${where}: sparsify is true but config is missing`);
    if (l.config.rank > Math.min(layer.in, layer.out)) throw new RejectedError(`${where}: rank must be in 0..${Math.min(layer.in, layer.out)}, got ${l.config.rank}`);
    try {
      checkBuildable(layer.out, layer.in, l.config);
    } catch (err) {
      if (err instanceof PixelflyConfigError) throw new RejectedError(`${where}: ${err.message}`);
      throw err;
    }
  }
  return { spec, plan: resolved, dataset: params.dataset, hyper: params.hyper, compare: params.compare, ...(params.source ? { source: params.source } : {}) };
};

/**
 * A dataset path that can never be data (a device, a FIFO, a socket, a file where a folder is
 * expected or the reverse) is refused at once; one that does not exist yet is the job's problem
 * when it starts (it may appear while the job is queued), and the loaders check everything again.
 */
export function checkDatasetPath(req: TrainingRequest['dataset']): void {
  if (req.path === undefined) return;
  let st;
  try {
    st = statSync(req.path);
  } catch {
    return;
  }
  if (req.kind === 'text') {
    const bad = notAFile(st);
    if (bad) throw new RejectedError(`dataset: ${req.path} ${bad}`);
  } else if (!st.isDirectory()) {
    throw new RejectedError(`dataset: ${req.path} ${st.isFile() ? 'is a file' : (notAFile(st) ?? 'is not a folder').replace(/, not a file.*$/, '')}; a ${req.kind} dataset is a folder`);
  }
}

/**
 * Admission of an engine job: its estimated peak memory against what the machine has free, and
 * its checkpoints against the free space where the runs are. Throws REJECTED with the numbers.
 */
export function admitEngineJob(request: TrainingRequest, runsRoot: string, run?: RunDir): JobAdmission {
  const spec = engineSpec(request);
  checkDatasetPath(request.dataset);
  const threads = request.hyper.threads > 0 ? request.hyper.threads : defaultThreads();
  const input = memoryInput(spec, request, threads, (run?.checkpoints().length ?? 0) > 0);
  const granted = admit(input, request.dataset.kind, request.hyper.memoryLimitBytes);
  // A checkpoint holds parameters and both AdamW moments of each model, and the batch order.
  const { estimate } = granted;
  const perCheckpoint = 12 * (estimate.pixelfly.params + (estimate.dense?.params ?? 0)) + 16 * input.dataset.trainSamples + 64 * 1024;
  // Two are kept and a third is written before the oldest goes; a resumed run already has some.
  const existing = Math.min(2, run?.checkpoints().length ?? 0);
  const needed = (3 - existing) * perCheckpoint + RUN_FILES_BYTES;
  const free = freeBytes(runsRoot);
  if (free !== undefined && free < needed) {
    throw new RejectedError(
      `not enough disk space for this run: ${runsRoot} has ${formatBytes(free)} free, the run needs about ${formatBytes(needed)} ` +
        `(checkpoints of ${formatBytes(perCheckpoint)}, two kept and one being written, plus its metrics); free some space (finished runs are folders in ${runsRoot})`,
      { reason: 'disk', neededBytes: needed, freeBytes: free },
    );
  }
  return { estimatedBytes: estimate.totalBytes, maxDataBytes: granted.maxDataBytes };
}

/**
 * Admission in a helper process: the estimate of a spec of thousands of wide layers, and the search
 * for a size that fits, is up to seconds of arithmetic, which must not hold the daemon's event loop.
 */
const admitInHelper: EngineServices['admit'] = (request, runsRoot, run) => runTask('admit', { request, runsRoot, runDir: run?.dir }, 'checking the job against the machine');

/** A measurement of many large shapes takes minutes; one that takes longer is stopped. */
const BENCH_TIMEOUT_MS = 30 * 60_000;

/** The engine when the native addon loads; otherwise a daemon that still plans and serves past runs, and says why it cannot train. */
export function loadEngineServices(log: (line: string) => void): EngineServices {
  const threads = defaultThreads();
  const base = { trainingRequest, threads, admit: admitInHelper };
  try {
    const backend = engineBackend();
    const k = kernelInfo();
    return withTorchRunner({
      ...base,
      available: true,
      // The CPU kernels' instruction set and how they compute bf16 products (amx, avx512bf16, or the fp32 fallback).
      backends: [backend === 'cuda' ? `cuda (${cudaInfo()?.devices[0]?.name ?? 'GPU'})` : `${backend} (${k.isa} kernels, bf16 on ${k.bf16})`],
      backend: new EngineProcessBackend({ log }),
      // In a helper process, like a job: its operands (up to hundreds of MB) and its masks are
      // built and freed there, and its memory goes back to the system when it exits.
      benchLayers: (params, profilesDir) => runTask('benchLayers', { params, profilesDir, threads }, 'measuring the layers', BENCH_TIMEOUT_MS),
    }, log);
  } catch (err) {
    const error = `${(err as Error).message}`;
    const refuse = async (): Promise<never> => {
      throw new RejectedError(`the native engine is not available: ${error}`);
    };
    return withTorchRunner({ ...base, available: false, error, backends: [], backend: { prepare: refuse }, benchLayers: refuse }, log);
  }
}
