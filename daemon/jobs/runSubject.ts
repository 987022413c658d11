// What a run trains, in words (protocol/daemon.ts RunSubject): the model and its file, the runner,
// the dataset asked for, both variants' parameter counts once built, the batch and the context.
// Computed from the run's request, so every run folder (old ones included) can say it.
import { parseModelSpec, patchTokens, specTokens, type ModelSpec } from '../../core/modelSpec';
import type { RunSubject } from '../../protocol/daemon';
import type { DatasetRequest, TrainingRequest } from './trainer';

/**
 * Fields the PyTorch runner's request carries beside an engine request's: `runner: 'torch'` and the
 * user's model (`model: {file, name, …}`); read here so the run's record names them whichever runner ran it.
 */
interface RunnerFields {
  runner?: unknown;
  model?: { file?: unknown; name?: unknown };
}

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

export function runSubject(request: TrainingRequest, params?: { pixelfly: number; dense?: number }): RunSubject {
  const extra = request as TrainingRequest & RunnerFields;
  const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const common = {
    dataset: describeDatasetRequest(request.dataset),
    batchSize: request.hyper.batchSize,
    ...(params ? { params: { pixelfly: params.pixelfly, ...(params.dense !== undefined ? { dense: params.dense } : {}) } } : {}),
  };
  if (extra.runner === 'torch') {
    const file = text(extra.model?.file);
    return { runner: 'torch', model: text(extra.model?.name) ?? 'model', ...(file ? { file } : {}), ...common };
  }
  let spec: ModelSpec | undefined;
  try {
    spec = parseModelSpec(request.spec);
  } catch {
    // A run folder from an older engine whose spec no longer validates: named without family and context.
  }
  const context = spec ? specContext(spec) : undefined;
  return {
    runner: 'engine',
    model: request.source?.model ?? text(request.spec?.name) ?? spec?.kind ?? 'model',
    ...(request.source ? { file: request.source.file } : {}),
    ...(spec ? { family: spec.kind } : {}),
    ...common,
    ...(context !== undefined ? { context } : {}),
  };
}
