// Shared cases of the CUDA tests: block-sparse products (layout, shapes, data) covering every block
// size, padded out/in, odd M, empty block-rows/columns, and the core's flat block butterfly layouts.
import { flatBlockButterflyLayout } from '../../core/layout';
import { buildBlockIndex, blockIndexFromMask, type BlockIndex } from '../../core/blockIndex';
import { mulberry32 } from '../../core/random';

export interface ProductCase {
  name: string;
  index: BlockIndex;
  out: number;
  in: number;
  m: number;
  weights: Float32Array;
  x: Float32Array;
  dy: Float32Array;
  bias: Float32Array;
}

function randomArray(n: number, rand: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rand() * 2 - 1;
  return a;
}

function withData(name: string, index: BlockIndex, out: number, inF: number, m: number, seed: number): ProductCase {
  const rand = mulberry32(seed);
  return {
    name,
    index,
    out,
    in: inF,
    m,
    weights: randomArray(index.nnz * index.block * index.block, rand),
    x: randomArray(m * inF, rand),
    dy: randomArray(m * out, rand),
    bias: randomArray(out, rand),
  };
}

/** Random masks (with some empty rows and columns) on padded shapes, and core layouts. */
export function productCases(): ProductCase[] {
  const cases: ProductCase[] = [];
  let seed = 1;
  for (const block of [16, 32, 64]) {
    for (const [out, inF, m] of [
      [3 * block - 5, 2 * block + 7, 1],
      [4 * block, 5 * block - 1, 65],
      [2 * block + 1, 3 * block, 130],
    ]) {
      const rand = mulberry32(seed * 7919);
      const rows = Math.ceil(out / block), cols = Math.ceil(inF / block);
      const mask = new Uint8Array(rows * cols);
      for (let i = 0; i < mask.length; i++) mask[i] = rand() < 0.5 ? 1 : 0;
      mask.fill(0, 0, cols);  // an empty block-row: its outputs are bias only
      for (let r = 0; r < rows; r++) mask[r * cols + cols - 1] = 0;  // an empty block-column: dX zero there
      mask[cols + 0] = 1;  // and at least one kept block
      const index = blockIndexFromMask(mask, rows, cols, block);
      cases.push(withData(`random mask b${block} ${out}x${inF} m=${m}`, index, out, inF, m, seed++));
    }
    const bl = flatBlockButterflyLayout(4 * block, 8 * block, { block, butterflySize: 4, nFactors: 2 });
    cases.push(withData(`butterfly b${block} ${bl.outFeatures}x${bl.inFeatures} m=200`, buildBlockIndex(bl), bl.outFeatures, bl.inFeatures, 200, seed++));
  }
  const big = flatBlockButterflyLayout(512, 256, { block: 32, butterflySize: 8, nFactors: 2 });
  cases.push(withData('butterfly b32 512x256 m=1000', buildBlockIndex(big), 512, 256, 1000, seed++));
  return cases;
}

/** Largest |a-b| relative to the largest |b| (at least 1). */
export function relError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let err = 0, scale = 1;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}
