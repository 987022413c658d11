// The dataset argument shared by `pixelfly train --dataset` and the extension's
// pixelfly.training.dataset setting. Its own module so the extension bundle does not pull in the
// CLI's train command (and through it the Python analysis).
import type { MethodParamsIn } from '../protocol/daemon';

export type DatasetParam = MethodParamsIn<'job.submit'>['dataset'];

/**
 * `synthetic | fashion-mnist[:DIR] | text:FILE | npy:DIR`; throws an Error naming `what` (the
 * option or setting the text came from) and the problem.
 */
export function parseDataset(raw: string, what = '--dataset'): DatasetParam {
  const i = raw.indexOf(':');
  const kind = i < 0 ? raw : raw.slice(0, i);
  const path = i < 0 ? undefined : raw.slice(i + 1);
  if (kind !== 'synthetic' && kind !== 'fashion-mnist' && kind !== 'text' && kind !== 'npy') {
    throw new Error(`${what}: unknown kind '${kind}': expected synthetic, fashion-mnist[:DIR], text:FILE or npy:DIR`);
  }
  if ((kind === 'text' || kind === 'npy') && !path) throw new Error(`${what}: ${kind} needs a path: ${kind}:PATH`);
  return path ? { kind, path } : { kind };
}
