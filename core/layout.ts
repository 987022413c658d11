/**
 * Flat block butterfly block layouts, identical to the authors'
 * `FlatBlockButterflySparsityConfig(butterfly_size, n_factors, block, global_size, shuffle)
 *   .make_layout(out_features_extended, in_features_extended)` (HazyResearch/fly), where the
 * "extended" sizes are out/in padded up to multiples of `block` as `BlockSparseLinear` does.
 *
 * The butterfly_size×butterfly_size flat butterfly support is stretched to the padded layer shape
 * (each support cell covers (outPadded/S)×(inPadded/S) weights), the first `global_size` rows and
 * columns are set, and each block×block tile is kept if any weight in it is set.
 */
import { PixelflyConfigError, requireInt } from './errors';
import { flatButterflySupport, validateButterfly } from './butterfly';

export interface ButterflyParams {
  block: number;
  butterflySize: number;
  nFactors: number;
  /** Rows and columns (in weights, not blocks) that are kept dense, like attention's global tokens. */
  globalSize?: number;
  /** Apply the ShuffleNet-style channel shuffle to the support's columns. */
  shuffle?: boolean;
}

export interface BlockLayout {
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** out/in padded up to multiples of `block`: the weight the kernels see is outPadded×inPadded. */
  readonly outPadded: number;
  readonly inPadded: number;
  readonly block: number;
  readonly blockRows: number;
  readonly blockCols: number;
  /** blockRows×blockCols, row-major, 1 = block kept. */
  readonly mask: Uint8Array;
  readonly nnzBlocks: number;
  /** Kept blocks / all blocks of the padded grid (what the authors report). */
  readonly density: number;
  readonly params: Required<ButterflyParams>;
}

export function padTo(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/** Largest power of two ≤ limit that divides n (≥ 1). */
function largestPow2Divisor(n: number, limit: number): number {
  let p = 1;
  while (p * 2 <= limit && n % (p * 2) === 0) p *= 2;
  return p;
}

function checkStretch(side: 'out_features' | 'in_features', size: number, padded: number, block: number, s: number): void {
  if (padded % s === 0) return;
  const fits = largestPow2Divisor(padded, s);
  const padNote = padded === size ? '' : ` (${size} padded to a multiple of block ${block})`;
  const stretched = Math.floor(padded / s) * s;
  const consequence =
    stretched === 0
      ? `the butterfly grid cannot be stretched over it`
      : stretched % block !== 0
        ? `the stretched grid would be ${stretched} wide, which block ${block} does not divide (the authors' code fails)`
        : `the authors' code would silently build a layout for ${stretched} instead of ${padded}`;
  const padAll = `pad ${side} to a multiple of ${lcm(s, block)}`;
  const suggestion = fits >= 2 ? `use butterfly_size ${fits} (the largest power of two ≤ ${s} dividing ${padded}), or ${padAll}` : padAll;
  throw new PixelflyConfigError(
    'butterfly_size',
    `${s} does not divide ${side} ${padded}${padNote}: ${consequence}; ${suggestion}`,
  );
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

export function validateParams(outFeatures: number, inFeatures: number, p: ButterflyParams): Required<ButterflyParams> {
  requireInt('out_features', outFeatures, 1);
  requireInt('in_features', inFeatures, 1);
  requireInt('block', p.block, 1);
  validateButterfly(p.butterflySize, p.nFactors);
  const globalSize = p.globalSize ?? 0;
  requireInt('global_size', globalSize, 0);
  const outPadded = padTo(outFeatures, p.block);
  const inPadded = padTo(inFeatures, p.block);
  checkStretch('out_features', outFeatures, outPadded, p.block, p.butterflySize);
  checkStretch('in_features', inFeatures, inPadded, p.block, p.butterflySize);
  return { block: p.block, butterflySize: p.butterflySize, nFactors: p.nFactors, globalSize, shuffle: p.shuffle ?? false };
}

/** The padded grid, its blocks, and how many weights each support cell covers along each side. */
interface Geometry {
  params: Required<ButterflyParams>;
  outPadded: number;
  inPadded: number;
  blockRows: number;
  blockCols: number;
  cellRows: number;
  cellCols: number;
}

function geometry(outFeatures: number, inFeatures: number, p: ButterflyParams): Geometry {
  const params = validateParams(outFeatures, inFeatures, p);
  const outPadded = padTo(outFeatures, params.block);
  const inPadded = padTo(inFeatures, params.block);
  return {
    params,
    outPadded,
    inPadded,
    blockRows: outPadded / params.block,
    blockCols: inPadded / params.block,
    cellRows: outPadded / params.butterflySize,
    cellCols: inPadded / params.butterflySize,
  };
}

/** Largest mask (blocks) or butterfly support (cells) a layout is built for: 256 MB each, far beyond any trainable layer. */
export const MAX_MASK_CELLS = 2 ** 28;

/** Checks the parameters (as validateParams) and that the layout's mask and support can be built (at most MAX_MASK_CELLS each). */
export function checkBuildable(outFeatures: number, inFeatures: number, p: ButterflyParams): void {
  const { params, blockRows, blockCols } = geometry(outFeatures, inFeatures, p);
  const s = params.butterflySize;
  if (blockRows * blockCols > MAX_MASK_CELLS || s * s > MAX_MASK_CELLS) {
    throw new PixelflyConfigError(
      'out_features',
      `${outFeatures}×${inFeatures} with block ${params.block} and butterfly_size ${s} is a ${blockRows}×${blockCols} block mask, too large to build (at most ${MAX_MASK_CELLS} blocks)`,
    );
  }
}

export function flatBlockButterflyLayout(outFeatures: number, inFeatures: number, p: ButterflyParams): BlockLayout {
  checkBuildable(outFeatures, inFeatures, p);
  const { params, outPadded, inPadded, blockRows, blockCols, cellRows, cellCols } = geometry(outFeatures, inFeatures, p);
  const { block, butterflySize: s, globalSize } = params;
  const support = flatButterflySupport(s, params.nFactors, params.shuffle);

  const mask = new Uint8Array(blockRows * blockCols);
  let nnz = 0;
  for (let br = 0; br < blockRows; br++) {
    const r0 = br * block;
    const r1 = r0 + block - 1;
    const sr0 = Math.floor(r0 / cellRows);
    const sr1 = Math.floor(r1 / cellRows);
    for (let bc = 0; bc < blockCols; bc++) {
      const c0 = bc * block;
      let kept = r0 < globalSize || c0 < globalSize;
      if (!kept) {
        const sc0 = Math.floor(c0 / cellCols);
        const sc1 = Math.floor((c0 + block - 1) / cellCols);
        for (let i = sr0; i <= sr1 && !kept; i++) {
          for (let j = sc0; j <= sc1; j++) {
            if (support[i * s + j]) {
              kept = true;
              break;
            }
          }
        }
      }
      if (kept) {
        mask[br * blockCols + bc] = 1;
        nnz++;
      }
    }
  }
  return {
    outFeatures,
    inFeatures,
    outPadded,
    inPadded,
    block,
    blockRows,
    blockCols,
    mask,
    nnzBlocks: nnz,
    density: nnz / (blockRows * blockCols),
    params,
  };
}

/** One string per block-row, '1' = kept: the authors' test-vector format and the CLI's JSON. */
export function layoutRows(layout: BlockLayout): string[] {
  const rows: string[] = [];
  for (let r = 0; r < layout.blockRows; r++) {
    let s = '';
    for (let c = 0; c < layout.blockCols; c++) s += layout.mask[r * layout.blockCols + c] ? '1' : '0';
    rows.push(s);
  }
  return rows;
}

/**
 * nnzBlocks of flatBlockButterflyLayout(out, in, p) without building the mask: the planner
 * scores dozens of layouts per layer. Support row r of the flat butterfly is nonzero exactly at
 * columns r and r XOR 2^i (i < nFactors), moved by the shuffle; so a block-row's kept block-columns
 * are a union of a few intervals, one per support column it touches — O(nFactors) per block-row.
 */
export function layoutNnz(outFeatures: number, inFeatures: number, p: ButterflyParams): number {
  const { params, blockRows, blockCols, cellRows, cellCols } = geometry(outFeatures, inFeatures, p);
  const { block, butterflySize: s, nFactors, globalSize, shuffle } = params;
  const groups = 2 ** (Math.round(Math.log2(s)) - nFactors);
  const perGroup = s / groups;
  // Inverse of the shuffle: unshuffled column u = k·perGroup + c lands at c·groups + k.
  const place = (u: number) => (shuffle ? (u % perGroup) * groups + Math.floor(u / perGroup) : u);
  const globalCols = Math.min(blockCols, Math.ceil(globalSize / block));
  // Cells made of whole blocks and nothing global: every support entry (s·(nFactors+1) of them,
  // the shuffle only moves them) keeps exactly its cell's blocks. O(1), whatever the layer's size.
  if (globalSize === 0 && cellRows % block === 0 && cellCols % block === 0) {
    return s * (nFactors + 1) * (cellRows / block) * (cellCols / block);
  }
  let nnz = 0;
  const columns: number[] = [];
  // Block-rows spanning the same support rows keep the same columns: each run of them is counted
  // once (at most 2·s runs), not row by row.
  for (let br = 0; br < blockRows; br++) {
    const r0 = br * block;
    if (r0 < globalSize) {
      nnz += blockCols;
      continue;
    }
    const sr0 = Math.floor(r0 / cellRows);
    const sr1 = Math.floor((r0 + block - 1) / cellRows);
    const runEnd = Math.min(
      blockRows - 1,
      Math.ceil(((sr0 + 1) * cellRows) / block) - 1,
      Math.ceil(((sr1 + 1) * cellRows - block + 1) / block) - 1,
    );
    columns.length = 0;
    for (let r = sr0; r <= sr1; r++) {
      columns.push(place(r));
      for (let i = 0; i < nFactors; i++) columns.push(place(r ^ (1 << i)));
    }
    columns.sort((a, b) => a - b);
    // Merge the block-column intervals covered by each support column, beyond the global ones.
    let kept = globalCols;
    let end = globalCols - 1;
    for (const j of columns) {
      const lo = Math.max(Math.floor((j * cellCols) / block), end + 1);
      const hi = Math.floor(((j + 1) * cellCols - 1) / block);
      if (hi >= lo) {
        kept += hi - lo + 1;
        end = hi;
      }
    }
    nnz += kept * (runEnd - br + 1);
    br = runEnd;
  }
  return nnz;
}

/** What cost accounting needs of a layout, computable without the mask. */
export type LayoutSummary = Pick<BlockLayout, 'block' | 'outPadded' | 'inPadded' | 'nnzBlocks' | 'density'>;

/**
 * Summaries already counted, by shape and parameters (oldest dropped first): a model repeats its
 * layer shapes, and the planner and the memory estimate (called again for each batch size it tries)
 * ask for the same ones many times, while one count of a very wide layer whose cells are not whole
 * blocks walks every block-row (tens of milliseconds at 2^20).
 */
const summaries = new Map<string, LayoutSummary>();
const SUMMARIES_KEPT = 4096;

export function layoutSummary(outFeatures: number, inFeatures: number, p: ButterflyParams): LayoutSummary {
  const key = `${outFeatures}x${inFeatures}:${p.block},${p.butterflySize},${p.nFactors},${p.globalSize ?? 0},${p.shuffle ?? false}`;
  const known = summaries.get(key);
  if (known) return known;
  const nnzBlocks = layoutNnz(outFeatures, inFeatures, p);
  const outPadded = padTo(outFeatures, p.block);
  const inPadded = padTo(inFeatures, p.block);
  const summary = Object.freeze({ block: p.block, outPadded, inPadded, nnzBlocks, density: (nnzBlocks * p.block * p.block) / (outPadded * inPadded) });
  if (summaries.size >= SUMMARIES_KEPT) summaries.delete(summaries.keys().next().value as string);
  summaries.set(key, summary);
  return summary;
}
