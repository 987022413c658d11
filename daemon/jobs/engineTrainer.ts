// Training on the native engine (native/engine.ts) with the engine's datasets (native/datasets.ts):
// a Pixelfly model built from the plan and, for a compare job, the same spec built dense from the
// same seed, each with its own optimizer and pass over the data. It runs inside a job process
// (engineChild.ts), which the daemon drives through engineProcess.ts.
import { defaultThreads } from '../systemInfo';
import { createModel, EngineConfigError, EngineDataset, stepPartsMs, type EngineModel } from '../../native/engine';
import { DataFileError, DEBIAN_FASHION_MNIST, loadFashionMnist, loadNpyFolder, loadTextCorpus, syntheticClassification, syntheticTokens, type DataLimits, type LoadedData } from '../../native/datasets';
import { classifierFeatures, specInventory, type ModelSpec } from '../../core/modelSpec';
import { plannedSteps } from './runner';
import { CheckpointError, engineSpec, RejectedError, type DatasetInfo, type DatasetRequest, type EvalResult, type ModelTrainer, type PrepareOptions, type TrainingBackend, type TrainingRequest, type TrainingSetup } from './trainer';

/** Tokens per sample (what tokens/s counts): the rows of the model's token-wise matmuls, as the core's inventory lists them. */
function tokensPerSample(spec: ModelSpec): number {
  // Token-mixing layers multiply along tokens (their rows are channels), so they do not count.
  return Math.max(...specInventory(spec).layers.filter((l) => l.role !== 'token_mix').map((l) => l.rowsPerSample));
}

function synthetic(spec: ModelSpec, seed: number): LoadedData {
  if (spec.kind === 'gpt') return syntheticTokens({ seed, vocab: spec.vocab });
  return syntheticClassification({ seed, features: classifierFeatures(spec), classes: spec.classes });
}

/** Where Fashion-MNIST is looked for when a job names no path: $PIXELFLY_FASHION_MNIST, else Debian's package. */
function defaultFashionMnist(): string {
  return process.env.PIXELFLY_FASHION_MNIST || DEBIAN_FASHION_MNIST;
}

async function loadData(spec: ModelSpec, req: DatasetRequest, seed: number, limits: DataLimits): Promise<{ data: LoadedData; note?: string }> {
  try {
    switch (req.kind) {
      case 'synthetic':
        return { data: synthetic(spec, seed) };
      case 'fashion-mnist':
        try {
          return { data: await loadFashionMnist(req.path ?? defaultFashionMnist(), limits) };
        } catch (err) {
          if (!(err instanceof DataFileError) || req.path !== undefined) throw err;
          // Only the default location may be missing: an explicit path that fails is the user's error.
          return {
            data: synthetic(spec, seed),
            note: `Fashion-MNIST is not installed (${err.message}; Debian package dataset-fashion-mnist): training on the synthetic task instead`,
          };
        }
      case 'text':
        return { data: await loadTextCorpus(req.path as string, 0.1, limits) };
      case 'npy':
        return { data: await loadNpyFolder(req.path as string, limits) };
    }
  } catch (err) {
    if (err instanceof DataFileError) throw new RejectedError(`dataset: ${err.message}`);
    throw err;
  }
}

/** The spec and the data must agree on shapes; say how when they do not. */
function checkFits(spec: ModelSpec, data: LoadedData): void {
  if (spec.kind === 'gpt') {
    if (data.kind !== 'tokens') throw new RejectedError(`dataset ${data.name} is a classification set; a gpt spec needs a token corpus (text:FILE or synthetic)`);
    if (data.classes > spec.vocab) throw new RejectedError(`dataset ${data.name} has ${data.classes} distinct tokens but the spec's vocab is ${spec.vocab}`);
    return;
  }
  if (data.kind !== 'classification') throw new RejectedError(`dataset ${data.name} is a token corpus; a ${spec.kind} spec needs a classification set`);
  const features = classifierFeatures(spec);
  if (features !== data.features) throw new RejectedError(`dataset ${data.name} has ${data.features} features per sample but the ${spec.kind} spec takes ${features}`);
  if (data.classes > spec.classes) throw new RejectedError(`dataset ${data.name} has ${data.classes} classes but the spec's head has ${spec.classes}`);
}

class EngineTrainer implements ModelTrainer {
  constructor(
    private readonly model: EngineModel,
    private readonly dataset: EngineDataset,
    private readonly evalSamples: number,
  ) {}

  get params(): number {
    return this.model.paramCount;
  }

  async step() {
    const r = await this.model.trainStep(this.dataset);
    return { loss: r.loss, ms: r.ms.total, lr: r.lr, partsMs: stepPartsMs(r) };
  }

  async evaluate(): Promise<EvalResult> {
    const r = await this.model.evaluate(this.dataset, { maxSamples: this.evalSamples });
    return { loss: r.loss, accuracy: r.accuracy, perplexity: r.perplexity };
  }

  save(file: string): Promise<void> {
    return this.model.saveCheckpoint(file);
  }

  async load(file: string): Promise<void> {
    try {
      await this.model.loadCheckpoint(file);
    } catch (err) {
      if (err instanceof EngineConfigError) throw new CheckpointError(err.message);
      throw err;
    }
  }
}

export class EngineBackend implements TrainingBackend {
  async prepare(req: TrainingRequest, options: PrepareOptions): Promise<TrainingSetup> {
    const spec = engineSpec(req);
    const { hyper } = req;
    const { data, note } = await loadData(spec, req.dataset, hyper.seed, { maxBytes: options.maxDataBytes });
    checkFits(spec, data);
    const samples = data.kind === 'tokens' ? Math.floor(data.trainTokens.length / (spec.kind === 'gpt' ? spec.context : 1)) : data.trainY.length;
    const stepsPerEpoch = Math.max(1, Math.floor(samples / hyper.batchSize));
    const totalSteps = plannedSteps(hyper, stepsPerEpoch);
    const threads = hyper.threads > 0 ? hyper.threads : defaultThreads();
    const train = {
      batch: hyper.batchSize,
      lr: hyper.lr,
      totalSteps,
      warmupSteps: hyper.warmupSteps,
      weightDecay: hyper.weightDecay,
      clipNorm: hyper.gradClip,
    };
    const build = async (plan: TrainingRequest['plan'] | undefined) => {
      try {
        return await createModel({ spec, plan: plan as Parameters<typeof createModel>[0]['plan'], train, seed: hyper.seed, threads, backend: hyper.backend, precision: hyper.precision });
      } catch (err) {
        if (err instanceof EngineConfigError) throw new RejectedError(err.message);
        throw err;
      }
    };
    let dataset: EngineDataset;
    try {
      dataset = new EngineDataset(data);
    } catch (err) {
      throw new RejectedError(`dataset ${data.name}: ${(err as Error).message}`);
    }
    const pixelflyModel = await build(req.plan);
    const pixelfly = new EngineTrainer(pixelflyModel, dataset, hyper.evalSamples);
    const dense = req.compare ? new EngineTrainer(await build(undefined), dataset, hyper.evalSamples) : undefined;
    const info: DatasetInfo = {
      kind: req.dataset.kind,
      name: data.name,
      synthetic: data.name.startsWith('synthetic'),
      note,
      trainSize: data.kind === 'tokens' ? data.trainTokens.length : data.trainY.length,
      testSize: data.kind === 'tokens' ? data.testTokens.length : data.testY.length,
    };
    return {
      dataset: info,
      stepsPerEpoch,
      tokensPerStep: hyper.batchSize * tokensPerSample(spec),
      pixelfly,
      dense,
      backend: pixelflyModel.backend,
      precision: pixelflyModel.precision,
      kernels: pixelflyModel.kernels,
      // The native models and data are freed with their JS wrappers (the job process exits).
      close: async () => undefined,
    };
  }
}
