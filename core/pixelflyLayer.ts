/**
 * Cost accounting of the Pixelfly layer — the authors' `SparseLRLinear`:
 *
 *   out = lerp(sparse(x), lowrank(x), g) + bias,  g = sigmoid(gate(x)) ∈ (0,1) per token,
 *   sparse(x)  = x·Wᵀ with W block-sparse (flat block butterfly layout, padded to whole blocks),
 *   lowrank(x) = (x·V)·Uᵀ with V: in×rank, U: out×rank,
 *   gate(x)    = x·w_g + b_g (one scalar per token).
 *
 * FLOPs count multiply-adds as 2. "rows" is the number of tokens the layer sees per step
 * (batch × tokens per sample). Activation memory is what the backward pass keeps, in bytes.
 */
import { layoutSummary, type ButterflyParams, type LayoutSummary } from './layout';

export interface PixelflyConfig extends ButterflyParams {
  /** Rank of the low-rank term; 0 disables it (and the gate): a purely block-sparse layer. */
  rank: number;
}

export interface ProductFlops {
  forward: number;
  /** dX and dW (and db), together. */
  backward: number;
}

export interface LayerCost {
  params: number;
  flops: ProductFlops;
  /** Bytes kept for backward at the given rows, fp32. */
  activationBytes: number;
}

export interface PixelflyCost extends LayerCost {
  /** Where the FLOPs go: the block-sparse product, the two low-rank products, the gate, the lerp. */
  parts: { sparse: ProductFlops; lowRank: ProductFlops; gate: ProductFlops; mix: ProductFlops };
  /**
   * Bytes the gate and the lerp stream beyond the products, forward + backward: their FLOPs are
   * few per byte, so memory traffic is their cost (core/costModel.ts `pixelflySeconds`).
   */
  elementwiseBytes: number;
  /** The rows (tokens) these costs are for. */
  rows: number;
  layout: LayoutSummary;
}

const FP32 = 4;

/** A product Y = X·Wᵀ with X: rows×k, W: n×k: forward 2·rows·k·n; backward dX and dW, each the same. */
function gemmFlops(rows: number, k: number, n: number): ProductFlops {
  const f = 2 * rows * k * n;
  return { forward: f, backward: 2 * f };
}

function sum(...parts: ProductFlops[]): ProductFlops {
  return {
    forward: parts.reduce((a, p) => a + p.forward, 0),
    backward: parts.reduce((a, p) => a + p.backward, 0),
  };
}

export function totalFlops(f: ProductFlops): number {
  return f.forward + f.backward;
}

export function denseLinearCost(inFeatures: number, outFeatures: number, rows: number, bias = true): LayerCost {
  const biasFlops: ProductFlops = bias ? { forward: rows * outFeatures, backward: rows * outFeatures } : { forward: 0, backward: 0 };
  return {
    params: inFeatures * outFeatures + (bias ? outFeatures : 0),
    flops: sum(gemmFlops(rows, inFeatures, outFeatures), biasFlops),
    activationBytes: rows * inFeatures * FP32,
  };
}

/**
 * fp32 values per row the gate and the lerp read and write outside the products, as the engine
 * and pixelfly_torch run the layer (native/src/engine/pixelfly_linear.cc): with in ≤ out the lerp
 * rides the products' epilogues and only the x-wide passes remain (the gate reads x and writes
 * (1 − g)∘x; the mix backward reads x and dx and writes dx); with in > out the forward finishes
 * the lerp in one pass over y, and the backward scales dy into a copy and sums it for the bias.
 */
function elementwiseValuesPerRow(inFeatures: number, outFeatures: number): number {
  const gate = inFeatures <= outFeatures ? 2 * inFeatures : inFeatures;
  const mixBackward = 3 * inFeatures;
  const outPasses = inFeatures <= outFeatures ? 0 : 5 * outFeatures; // y read and written, dy read twice, (1 − g)∘dy written
  return gate + mixBackward + outPasses;
}

export function pixelflyLinearCost(
  inFeatures: number,
  outFeatures: number,
  rows: number,
  config: PixelflyConfig,
  layout: LayoutSummary = layoutSummary(outFeatures, inFeatures, config),
  bias = true,
): PixelflyCost {
  const { rank } = config;
  const b = layout.block;
  const sparseWeights = layout.nnzBlocks * b * b;
  // Kernels run on padded activations; the padding's work is real work, so it is counted.
  const sparse: ProductFlops = { forward: 2 * rows * sparseWeights, backward: 4 * rows * sparseWeights };
  const lowRank = rank > 0 ? sum(gemmFlops(rows, inFeatures, rank), gemmFlops(rows, rank, outFeatures)) : { forward: 0, backward: 0 };
  const gate = rank > 0 ? gemmFlops(rows, inFeatures, 1) : { forward: 0, backward: 0 };
  // lerp s + g·(l − s) and bias: 3 (+1) per output forward; backward ds, dl, dg and the gate's
  // reduction: about 5 (+1) per output.
  const perOut = rank > 0 ? { forward: 3, backward: 5 } : { forward: 0, backward: 0 };
  const biasOps = bias ? 1 : 0;
  const mix: ProductFlops = {
    forward: rows * outFeatures * (perOut.forward + biasOps),
    backward: rows * outFeatures * (perOut.backward + biasOps),
  };
  const params =
    sparseWeights + (rank > 0 ? rank * (inFeatures + outFeatures) + inFeatures + 1 : 0) + (bias ? outFeatures : 0);
  // Kept for backward: padded x, and with the low-rank term x·V, both branch outputs and the gate.
  const activations = rows * layout.inPadded + (rank > 0 ? rows * (rank + 2 * outFeatures + 1) : 0);
  return {
    params,
    flops: sum(sparse, lowRank, gate, mix),
    elementwiseBytes: rank > 0 ? rows * elementwiseValuesPerRow(inFeatures, outFeatures) * FP32 : 0,
    rows,
    activationBytes: activations * FP32,
    parts: { sparse, lowRank, gate, mix },
    layout,
  };
}
