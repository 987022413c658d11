/**
 * A layer's numbers for the preview, all from core: the block layout, dense vs Pixelfly params and
 * FLOPs (per sample, times the layer's count), the low-rank term's share and the estimated speedup.
 * Dense FLOPs are counted as the planner and the language server count them (core's
 * layerDenseCost: a lookup has none, an attention core its QKᵀ and scores·V), so the preview's
 * totals are the CodeLens's.
 */
import { estimateSpeedup, type DeviceProfile, DEFAULT_PROFILE } from '../../core/costModel';
import { flatBlockButterflyLayout, type BlockLayout } from '../../core/layout';
import { density } from '../../core/blockIndex';
import { layerDenseCost, type LayerRole } from '../../core/inventory';
import { pixelflyLinearCost, totalFlops } from '../../core/pixelflyLayer';
import type { LayerConfig, LayerRow } from '../../protocol/webview';

/** Roles that are no linear layer Pixelfly replaces: their Pixelfly numbers are their dense ones. */
const NOT_REPLACEABLE: ReadonlySet<LayerRole> = new Set<LayerRole>(['embedding', 'attn_core', 'conv']);

export function replaceable(row: Pick<LayerRow, 'role'>): boolean {
  return !NOT_REPLACEABLE.has(row.role);
}

export interface LayerStats {
  layout: BlockLayout;
  /** Kept weights / all weights of the unpadded matrix. */
  density: number;
  denseParams: number;
  pixelflyParams: number;
  denseFlops: number;
  pixelflyFlops: number;
  /** Share of the Pixelfly layer's FLOPs spent in the low-rank products. */
  lowRankFlopShare: number;
  /** Share of the Pixelfly layer's parameters in U and V. */
  lowRankParamShare: number;
  estimatedSpeedup: number;
}

/** Throws core's PixelflyConfigError (with `.param`) for configs the layout cannot honour. */
export function layerStats(row: LayerRow, config: LayerConfig, profile: DeviceProfile = DEFAULT_PROFILE): LayerStats {
  const layout = flatBlockButterflyLayout(row.out, row.in, config);
  const rows = row.rowsPerSample;
  const dense = layerDenseCost(row, rows);
  const pix = pixelflyLinearCost(row.in, row.out, rows, config, layout, row.bias ?? true);
  const lowRankParams = config.rank * (row.in + row.out);
  const denseFlops = totalFlops(dense.flops) * row.count;
  const denseParams = layerDenseCost(row, 1).params * row.count;
  if (!replaceable(row)) {
    return { layout, density: 1, denseParams, pixelflyParams: denseParams, denseFlops, pixelflyFlops: denseFlops, lowRankFlopShare: 0, lowRankParamShare: 0, estimatedSpeedup: 1 };
  }
  return {
    layout,
    density: density(layout).element,
    denseParams,
    pixelflyParams: pix.params * row.count,
    denseFlops,
    pixelflyFlops: totalFlops(pix.flops) * row.count,
    lowRankFlopShare: totalFlops(pix.parts.lowRank) / totalFlops(pix.flops),
    lowRankParamShare: lowRankParams / pix.params,
    estimatedSpeedup: estimateSpeedup(dense, pix, config.rank, profile, row),
  };
}

export interface ModelTotals {
  denseParams: number;
  planParams: number;
  denseFlops: number;
  planFlops: number;
}

/**
 * The preview's totals: every layer dense, and as planned (`sparse(row)` with `config(row)`).
 * Rows whose config the layout cannot honour count dense (the table shows their error).
 */
export function modelTotals(layers: LayerRow[], config: (row: LayerRow) => LayerConfig, sparse: (row: LayerRow) => boolean): ModelTotals {
  const t: ModelTotals = { denseParams: 0, planParams: 0, denseFlops: 0, planFlops: 0 };
  for (const row of layers) {
    let s: LayerStats;
    try {
      s = layerStats(row, config(row));
    } catch {
      const dense = layerDenseCost(row, row.rowsPerSample);
      const flops = totalFlops(dense.flops) * row.count;
      const params = layerDenseCost(row, 1).params * row.count;
      t.denseFlops += flops;
      t.planFlops += flops;
      t.denseParams += params;
      t.planParams += params;
      continue;
    }
    const on = sparse(row) && replaceable(row);
    t.denseParams += s.denseParams;
    t.denseFlops += s.denseFlops;
    t.planParams += on ? s.pixelflyParams : s.denseParams;
    t.planFlops += on ? s.pixelflyFlops : s.denseFlops;
  }
  return t;
}
