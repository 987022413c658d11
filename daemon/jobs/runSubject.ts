// What a run trains, in words (protocol/daemon.ts RunSubject): the model and its file, the runner,
// the dataset asked for, both variants' parameter counts once built, the batch and the context.
// Computed from the run's request and what its latest session learnt (the built models' parameter
// counts; for the PyTorch runner, what the model eats and the runtime, from its inspect step), so
// every run folder can say it.
import { patchTokens, specTokens, type ModelSpec } from '../../core/modelSpec';
import type { RunSubject } from '../../protocol/daemon';
import type { RunState } from './runStore';
import type { DatasetRequest, TrainingRequest } from './trainer';

export function describeDatasetRequest(d: DatasetRequest): string {
  switch (d.kind) {
    case 'synthetic':
      return 'synthetic (seeded) data';
    case 'fashion-mnist':
      return d.path ? `Fashion-MNIST (${d.path})` : 'Fashion-MNIST';
    case 'text':
      return `text corpus ${d.path ?? ''}`.trim();
    case 'npy':
      return `.npy arrays in ${d.path ?? ''}`.trim();
  }
}

/** Tokens per sample of an engine spec: a GPT's context, a ViT's tokens, a Mixer's patches; none for an MLP. */
function specContext(spec: ModelSpec): number | undefined {
  if (spec.kind === 'gpt' || spec.kind === 'vit') return specTokens(spec);
  return spec.kind === 'mixer' ? patchTokens(spec) : undefined;
}

/** What the run's sessions learnt once the models were built (RunState's fields). */
export type BuiltFacts = Pick<RunState, 'params' | 'inputs' | 'runtime'>;

export function runSubject(request: TrainingRequest, built: BuiltFacts = {}): RunSubject {
  const { params, inputs, runtime } = built;
  const common = {
    dataset: describeDatasetRequest(request.dataset),
    batchSize: request.hyper.batchSize,
    ...(params ? { params: { pixelfly: params.pixelfly, ...(params.dense !== undefined ? { dense: params.dense } : {}) } } : {}),
  };
  if (request.runner === 'torch' && request.model) {
    // What the model eats: the request's (from the analysis) until the runner has read it off the built model.
    const eats = inputs ?? request.model.inputs;
    return {
      runner: 'torch',
      model: request.model.name,
      file: request.model.file,
      ...common,
      ...(eats?.kind === 'tokens' ? { context: eats.context } : {}),
      ...(eats?.kind === 'images' ? { image: { channels: eats.channels, height: eats.height, width: eats.width } } : {}),
      ...(runtime ? { runtime } : {}),
    };
  }
  // Parsed where the request entered (job.submit, the run folder's job.json); an engine request always has one.
  const spec = request.spec;
  const context = spec ? specContext(spec) : undefined;
  return {
    runner: 'engine',
    model: request.source?.model ?? (spec?.name || undefined) ?? spec?.kind ?? 'model',
    ...(request.source ? { file: request.source.file } : {}),
    ...(spec ? { family: spec.kind } : {}),
    ...common,
    ...(context !== undefined ? { context } : {}),
  };
}
