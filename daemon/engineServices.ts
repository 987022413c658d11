// The daemon's training side: checks a submitted spec with the core, resolves its plan, and
// trains through the native engine (engineTrainer.ts).
import { parseModelSpec, specInventory, ModelSpecError } from '../core/modelSpec';
import type { EngineServices } from './main';
import { RejectedError, type TrainingRequest } from './jobs/trainer';

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

export function loadEngineServices(): EngineServices {
  return {
    available: false,
    error: 'native/engine.ts has not landed yet',
    backends: [],
    threads: 1,
    backend: {
      prepare: async () => {
        throw new RejectedError('the native engine is not available');
      },
    },
    trainingRequest,
    benchLayers: async () => {
      throw new RejectedError('the native engine is not available');
    },
  };
}
