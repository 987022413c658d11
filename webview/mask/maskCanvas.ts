/**
 * Draws a layer's block mask on a canvas (one square cell per block, block-row r at the top) and
 * maps pointer positions back to blocks. Pure geometry + a 2D context, so the headless-Chromium
 * test can check pixels against core's mask cell by cell.
 */
import type { BlockLayout } from '../../core/layout';

export const KEPT_RGB: readonly [number, number, number] = [0xe0, 0x6c, 0x1f];
export const EMPTY_RGB: readonly [number, number, number] = [0x2b, 0x2b, 0x2b];

/** Largest integer cell size (px per block) that fits `maxPx`, times the user's zoom, at least 1. */
export function cellSize(blockRows: number, blockCols: number, maxPx: number, zoom: number): number {
  const fit = Math.max(1, Math.floor(maxPx / Math.max(blockRows, blockCols)));
  return Math.max(1, Math.round(fit * zoom));
}

const rgb = (c: readonly number[]) => `rgb(${c[0]},${c[1]},${c[2]})`;

/**
 * Sizes the canvas to the grid and paints it. Runs of kept blocks in a row are filled as one rect
 * (a 128×128 grid is ~16k blocks; per-block fillRect would be the slowest part of a redraw).
 * Cells ≥ 4 px get a 1 px gap so individual blocks stay visible; the gap is in EMPTY colour.
 */
export function drawMask(canvas: HTMLCanvasElement, layout: BlockLayout, cell: number): void {
  const { blockRows, blockCols, mask } = layout;
  canvas.width = blockCols * cell;
  canvas.height = blockRows * cell;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('mask canvas: 2D context unavailable');
  ctx.fillStyle = rgb(EMPTY_RGB);
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = rgb(KEPT_RGB);
  const gap = cell >= 4 ? 1 : 0;
  for (let r = 0; r < blockRows; r++) {
    let c = 0;
    while (c < blockCols) {
      if (!mask[r * blockCols + c]) {
        c++;
        continue;
      }
      if (gap) {
        ctx.fillRect(c * cell, r * cell, cell - gap, cell - gap);
        c++;
        continue;
      }
      const start = c;
      while (c < blockCols && mask[r * blockCols + c]) c++;
      ctx.fillRect(start * cell, r * cell, (c - start) * cell, cell);
    }
  }
}

export interface BlockHit {
  row: number;
  col: number;
  kept: boolean;
}

/** The block under canvas pixel (x, y), or null outside the grid. */
export function blockAt(layout: BlockLayout, cell: number, x: number, y: number): BlockHit | null {
  const row = Math.floor(y / cell);
  const col = Math.floor(x / cell);
  if (row < 0 || col < 0 || row >= layout.blockRows || col >= layout.blockCols) return null;
  return { row, col, kept: layout.mask[row * layout.blockCols + col] === 1 };
}
