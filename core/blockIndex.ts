/**
 * Block indexes of a layout, built once and shared by every consumer.
 *
 * THE BLOCK ORDER — used by the native engine's packed weights, checkpoints and the PyTorch export:
 * row-major block-sparse rows (BSR). Block k (0 ≤ k < nnz) lies in block-row r where
 * rowPtr[r] ≤ k < rowPtr[r+1], at block-column colIdx[k]; columns ascend within a row.
 * Packed weights are [nnz][block][block]; element (i, j) of block k is
 * W[r·block + i][colIdx[k]·block + j] of the outPadded×inPadded weight (rows = output features).
 *
 * The transposed view (what dX = dY·W walks): for block-column c, entries t with
 * colPtr[c] ≤ t < colPtr[c+1] have block-row rowIdx[t] (ascending) and tBlock[t] = the
 * row-major index k of that block, so no weights are ever copied into a second order.
 */
import type { BlockLayout } from './layout';

export interface BlockIndex {
  readonly block: number;
  readonly blockRows: number;
  readonly blockCols: number;
  readonly nnz: number;
  readonly rowPtr: Int32Array;
  readonly colIdx: Int32Array;
  readonly colPtr: Int32Array;
  readonly rowIdx: Int32Array;
  readonly tBlock: Int32Array;
}

export function buildBlockIndex(layout: BlockLayout): BlockIndex {
  return blockIndexFromMask(layout.mask, layout.blockRows, layout.blockCols, layout.block);
}

/** Same as buildBlockIndex, for any block mask (tests, user-supplied layouts). */
export function blockIndexFromMask(mask: Uint8Array, blockRows: number, blockCols: number, block: number): BlockIndex {
  if (mask.length !== blockRows * blockCols) {
    throw new RangeError(`mask has ${mask.length} entries, expected ${blockRows}×${blockCols}`);
  }
  const rowPtr = new Int32Array(blockRows + 1);
  const colCounts = new Int32Array(blockCols);
  for (let r = 0; r < blockRows; r++) {
    let n = 0;
    for (let c = 0; c < blockCols; c++) {
      if (mask[r * blockCols + c]) {
        n++;
        colCounts[c]++;
      }
    }
    rowPtr[r + 1] = rowPtr[r] + n;
  }
  const nnz = rowPtr[blockRows];
  const colIdx = new Int32Array(nnz);
  const colPtr = new Int32Array(blockCols + 1);
  for (let c = 0; c < blockCols; c++) colPtr[c + 1] = colPtr[c] + colCounts[c];
  const rowIdx = new Int32Array(nnz);
  const tBlock = new Int32Array(nnz);
  const fill = colPtr.slice(0, blockCols);
  let k = 0;
  for (let r = 0; r < blockRows; r++) {
    for (let c = 0; c < blockCols; c++) {
      if (!mask[r * blockCols + c]) continue;
      colIdx[k] = c;
      const t = fill[c]++;
      rowIdx[t] = r;
      tBlock[t] = k;
      k++;
    }
  }
  return { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock };
}

/** Kept blocks in each block-row. */
export function rowCounts(index: BlockIndex): Int32Array {
  const counts = new Int32Array(index.blockRows);
  for (let r = 0; r < index.blockRows; r++) counts[r] = index.rowPtr[r + 1] - index.rowPtr[r];
  return counts;
}

/** Kept blocks in each block-column. */
export function colCounts(index: BlockIndex): Int32Array {
  const counts = new Int32Array(index.blockCols);
  for (let c = 0; c < index.blockCols; c++) counts[c] = index.colPtr[c + 1] - index.colPtr[c];
  return counts;
}

export interface Density {
  /** Kept blocks / blocks of the padded grid. */
  block: number;
  /** Kept weights that fall inside the unpadded out×in matrix / (out·in): what training really uses. */
  element: number;
}

export function density(layout: BlockLayout): Density {
  const { block, blockRows, blockCols, mask, outFeatures, inFeatures } = layout;
  let kept = 0;
  for (let r = 0; r < blockRows; r++) {
    const rows = Math.min(block, outFeatures - r * block);
    for (let c = 0; c < blockCols; c++) {
      if (mask[r * blockCols + c]) kept += rows * Math.min(block, inFeatures - c * block);
    }
  }
  return { block: layout.nnzBlocks / (blockRows * blockCols), element: kept / (outFeatures * inFeatures) };
}
