/**
 * A layer's numbers for the preview, all from core: the block layout, dense vs Pixelfly params and
 * FLOPs (per sample, times the layer's count), the low-rank term's share and the estimated speedup.
 */
import { estimateSpeedup, type DeviceProfile, DEFAULT_PROFILE } from '../../core/costModel';
import { flatBlockButterflyLayout, type BlockLayout } from '../../core/layout';
import { density } from '../../core/blockIndex';
import { denseLinearCost, pixelflyLinearCost, totalFlops } from '../../core/pixelflyLayer';
import type { LayerConfig, LayerRow } from '../../protocol/webview';

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
  const dense = denseLinearCost(row.in, row.out, rows);
  const pix = pixelflyLinearCost(row.in, row.out, rows, config, layout);
  const lowRankParams = config.rank * (row.in + row.out);
  return {
    layout,
    density: density(layout).element,
    denseParams: dense.params * row.count,
    pixelflyParams: pix.params * row.count,
    denseFlops: totalFlops(dense.flops) * row.count,
    pixelflyFlops: totalFlops(pix.flops) * row.count,
    lowRankFlopShare: totalFlops(pix.parts.lowRank) / totalFlops(pix.flops),
    lowRankParamShare: lowRankParams / pix.params,
    estimatedSpeedup: estimateSpeedup(dense, pix, config.rank, profile),
  };
}
