/**
 * A small text picture of a block mask for hovers: each character covers a tile of blocks and
 * shows whether all (█), some (▪) or none (·) of them are kept, at most maxCols × maxRows.
 */
import type { BlockLayout } from '../../core/layout';

export function maskPicture(layout: BlockLayout, maxCols = 48, maxRows = 24): string {
  const { blockRows, blockCols, mask } = layout;
  const stepC = Math.max(1, Math.ceil(blockCols / maxCols));
  const stepR = Math.max(1, Math.ceil(blockRows / maxRows));
  const lines: string[] = [];
  for (let r0 = 0; r0 < blockRows; r0 += stepR) {
    let line = '';
    for (let c0 = 0; c0 < blockCols; c0 += stepC) {
      let kept = 0;
      let total = 0;
      for (let r = r0; r < Math.min(blockRows, r0 + stepR); r++) {
        for (let c = c0; c < Math.min(blockCols, c0 + stepC); c++) {
          kept += mask[r * blockCols + c];
          total++;
        }
      }
      line += kept === 0 ? '·' : kept === total ? '█' : '▪';
    }
    lines.push(line);
  }
  return lines.join('\n');
}

/** What one character of the picture stands for, for the caption. */
export function pictureScale(layout: BlockLayout, maxCols = 48, maxRows = 24): string {
  const stepC = Math.max(1, Math.ceil(layout.blockCols / maxCols));
  const stepR = Math.max(1, Math.ceil(layout.blockRows / maxRows));
  return stepC === 1 && stepR === 1 ? 'one character per block' : `one character per ${stepR}×${stepC} blocks`;
}
