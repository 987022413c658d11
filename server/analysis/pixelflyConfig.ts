/**
 * The config of a layer that already is a Pixelfly layer, read from its constructor call's keyword
 * arguments (`PixelflyLinear(768, 3072, block=32, butterfly_size=16, n_factors=2, rank=48)`), with
 * pixelfly_torch's defaults for the ones not written, and checked against core's layout rules.
 */
import { layoutSummary } from '../../core/layout';
import type { PixelflyConfig } from '../../core/pixelflyLayer';
import { show, type Value } from './values';

/** PixelflyLinear's keyword defaults (pytorch/pixelfly_torch/linear.py). */
export const PIXELFLY_DEFAULTS: Required<PixelflyConfig> = { block: 32, butterflySize: 16, nFactors: 2, rank: 0, globalSize: 0, shuffle: false };

const KEYWORDS: Record<string, keyof PixelflyConfig> = {
  block: 'block',
  butterfly_size: 'butterflySize',
  n_factors: 'nFactors',
  rank: 'rank',
  global_size: 'globalSize',
  shuffle: 'shuffle',
};

export type PixelflyConfigRead = { config: Required<PixelflyConfig> } | { unresolved: string[] } | { error: string };

export function readPixelflyConfig(kwargs: Record<string, Value>, inF: number, outF: number): PixelflyConfigRead {
  const config: Required<PixelflyConfig> = { ...PIXELFLY_DEFAULTS };
  const unresolved: string[] = [];
  for (const [k, v] of Object.entries(kwargs)) {
    const field = KEYWORDS[k];
    if (!field) continue; // device, dtype, bias
    if (field === 'shuffle') {
      if (v.k === 'bool') config.shuffle = v.v;
      else unresolved.push(`${k}=${show(v)}`);
    } else if (v.k === 'num' && Number.isInteger(v.v)) config[field] = v.v;
    else unresolved.push(`${k}=${show(v)}`);
  }
  if (unresolved.length) return { unresolved };
  try {
    layoutSummary(outF, inF, config);
  } catch (e) {
    return { error: (e as Error).message };
  }
  return { config };
}
