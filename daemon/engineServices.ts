// The daemon's training side: checks a submitted spec with the core, resolves its plan, and
// trains through the native engine (engineTrainer.ts).
import { parseModelSpec, specInventory, ModelSpecError } from '../core/modelSpec';
import type { EngineServices } from './main';
import { RejectedError, type TrainingRequest } from './jobs/trainer';
import { availableParallelism } from 'node:os';
import { engineBackend } from '../native/engine';
import { kernelInfo } from '../native/kernels';
import { cudaInfo } from '../native/cuda';
import { EngineBackend } from './jobs/engineTrainer';
import { benchLayers } from './bench';

/** Default planner target when a job comes without a plan or a target: a quarter of the dense FLOPs. */
export const DEFAULT_TARGET = { budget: 0.25 } as const;

export const trainingRequest: EngineServices['trainingRequest'] = (params, plan): TrainingRequest => {
  let spec;
  try {
    spec = parseModelSpec(params.spec);
  } catch (err) {
    if (err instanceof ModelSpecError) throw new RejectedError(err.message);
    throw err;
  }
  const resolved = params.plan ?? plan(specInventory(spec), params.target ?? DEFAULT_TARGET);
  const known = new Set(specInventory(spec).layers.map((l) => l.name));
  const unknown = resolved.layers.filter((l) => !known.has(l.name)).map((l) => l.name);
  if (unknown.length > 0) {
    throw new RejectedError(`plan: layer${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} not in the ${spec.kind} spec (it has ${[...known].join(', ')})`);
  }
  return { spec: params.spec, plan: resolved, dataset: params.dataset, hyper: params.hyper, compare: params.compare };
};

/** The engine when the native addon loads; otherwise a daemon that still plans and serves past runs, and says why it cannot train. */
export function loadEngineServices(): EngineServices {
  const threads = availableParallelism();
  const base = { trainingRequest, threads };
  try {
    const backend = engineBackend();
    const k = kernelInfo();
    return {
      ...base,
      available: true,
      // The CPU kernels' instruction set and how they compute bf16 products (amx, avx512bf16, or the fp32 fallback).
      backends: [backend === 'cuda' ? `cuda (${cudaInfo()?.devices[0]?.name ?? 'GPU'})` : `${backend} (${k.isa} kernels, bf16 on ${k.bf16})`],
      backend: new EngineBackend(),
      benchLayers: (params, profilesDir) => benchLayers(params, profilesDir, threads),
    };
  } catch (err) {
    const error = `${(err as Error).message}`;
    const refuse = async (): Promise<never> => {
      throw new RejectedError(`the native engine is not available: ${error}`);
    };
    return { ...base, available: false, error, backends: [], backend: { prepare: refuse }, benchLayers: refuse };
  }
}
