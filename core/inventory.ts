/**
 * A model's matmul-bearing layers, as the language server (from Python source) or a model spec
 * lists them: what the planner plans, and what a model's dense FLOPs are made of.
 */
import { denseLinearCost, type LayerCost, type PixelflyConfig } from './pixelflyLayer';
import { MAX_ATTENTION_FEATURES } from './attention';

/**
 * The roles a layer can play; the one list (protocol schemas validate with it). `conv` is a
 * convolution that is not a linear map over channels (a k×k kernel, a stride, groups), and
 * `attn_core` is an attention layer's QKᵀ and scores·V products: both count in the model's FLOPs,
 * neither has weights for the planner to sparsify (an attention core gets Pixelfly attention advice
 * instead: core/attention.ts `adviseAttention`).
 */
export const LAYER_ROLES = ['attn_qkv', 'attn_out', 'mlp_fc1', 'mlp_fc2', 'token_mix', 'patch_embed', 'head', 'embedding', 'conv', 'attn_core', 'other'] as const;

export type LayerRole = (typeof LAYER_ROLES)[number];

export interface InventoryLayer {
  /** Unique within the inventory, e.g. `blocks.*.mlp.fc1`. */
  name: string;
  role: LayerRole;
  /** As the matmul sees them: y = x·Wᵀ with W out×in. */
  in: number;
  out: number;
  /** Instances in the model (e.g. depth for a per-block layer). */
  count: number;
  /** Rows each instance multiplies per sample (tokens; 1 for a pooled classifier head). */
  rowsPerSample: number;
  /** The user pinned this layer dense (`# pixelfly: dense`). */
  pinnedDense?: boolean;
  /** The layer adds a bias (default true; FLOPs count the bias adds). */
  bias?: boolean;
  /** attn_core: queries attend only to earlier keys, so half the score products are done. */
  causal?: boolean;
  /**
   * attn_core with Pixelfly attention: the fraction of the (causal) score blocks its layout
   * computes (core/attention.ts). Its FLOPs stay the dense core's (shares compare like with like);
   * its time is that fraction, at the block-sparse kernels' efficiency (core/stepCost.ts).
   */
  scoreDensity?: number;
  /** attn_core with Pixelfly attention's low-rank term: its Performer features (core/attention.ts lowRankAttentionFlops). */
  lowRankFeatures?: number;
  /** Why the source keeps this layer dense whatever the target (e.g. no module to replace): one sentence. */
  keptDense?: string;
  /** The layer already is a Pixelfly layer with this config: it counts as sparse and is not re-planned. */
  pixelfly?: PixelflyConfig;
}

/** Largest width, token count or layer count an inventory may give (a 2^20-wide fp32 matrix is 4 TB). */
export const MAX_LAYER_SIZE = 1 << 20;

export interface Inventory {
  layers: InventoryLayer[];
}

/** Validates an inventory from untrusted JSON; errors name the layer and field. */
export function parseInventory(value: unknown): Inventory {
  const fail = (where: string, what: string): never => {
    throw new Error(`inventory: ${where} ${what}`);
  };
  const root = value as { layers?: unknown };
  if (typeof value !== 'object' || value === null || !Array.isArray(root.layers)) {
    fail('(root)', 'must be an object with a "layers" array');
  }
  const seen = new Set<string>();
  const layers = (root.layers as unknown[]).map((raw, i) => {
    const l = raw as Record<string, unknown>;
    const where = `layers[${i}]${typeof l?.name === 'string' ? ` (${l.name})` : ''}`;
    if (typeof raw !== 'object' || raw === null) fail(where, 'must be an object');
    if (typeof l.name !== 'string' || l.name === '') fail(where, 'name must be a non-empty string');
    if (seen.has(l.name as string)) fail(where, 'name is used twice');
    seen.add(l.name as string);
    if (!LAYER_ROLES.includes(l.role as LayerRole)) fail(where, `role must be one of ${LAYER_ROLES.join(', ')}, got ${JSON.stringify(l.role)}`);
    for (const f of ['in', 'out', 'rowsPerSample'] as const) {
      if (!Number.isInteger(l[f]) || (l[f] as number) < 1 || (l[f] as number) > MAX_LAYER_SIZE) {
        fail(where, `${f} must be a positive integer (at most ${MAX_LAYER_SIZE}), got ${JSON.stringify(l[f])}`);
      }
    }
    if (!Number.isInteger(l.count) || (l.count as number) < 0 || (l.count as number) > MAX_LAYER_SIZE) {
      fail(where, `count must be an integer ≥ 0 (at most ${MAX_LAYER_SIZE}), got ${JSON.stringify(l.count)}`);
    }
    for (const f of ['pinnedDense', 'bias', 'causal'] as const) {
      if (l[f] !== undefined && typeof l[f] !== 'boolean') fail(where, `${f} must be a boolean`);
    }
    if (l.keptDense !== undefined && (typeof l.keptDense !== 'string' || l.keptDense === '')) fail(where, 'keptDense must be a non-empty string');
    if (l.lowRankFeatures !== undefined && (!Number.isInteger(l.lowRankFeatures) || (l.lowRankFeatures as number) < 0 || (l.lowRankFeatures as number) > MAX_ATTENTION_FEATURES)) {
      fail(where, `lowRankFeatures must be an integer in [0, ${MAX_ATTENTION_FEATURES}]`);
    }
    if (l.pixelfly !== undefined) {
      const c = l.pixelfly as Record<string, unknown>;
      if (typeof c !== 'object' || c === null) fail(where, 'pixelfly must be a config object');
      for (const f of ['block', 'butterflySize', 'nFactors']) if (!Number.isInteger(c[f]) || (c[f] as number) < 1) fail(where, `pixelfly.${f} must be a positive integer`);
      if (!Number.isInteger(c.rank) || (c.rank as number) < 0) fail(where, 'pixelfly.rank must be an integer ≥ 0');
    }
    return l as unknown as InventoryLayer;
  });
  return { layers };
}

/**
 * A layer's dense training cost (forward + backward) over `rows` rows — tokens for most layers,
 * queries for an attention core, output positions for a convolution — counting what each role
 * really computes:
 * - a linear layer, pointwise or k×k convolution (in = channels·kernel/groups): one GEMM and its bias;
 * - an embedding: a table lookup, no matmul FLOPs;
 * - an attention core (in = d, the heads' total width; out = keys each query sees): QKᵀ and
 *   scores·V, 2·rows·keys·d multiply-adds each, forward 4·rows·keys·d FLOPs, halved when causal,
 *   backward twice the forward as for any product (core/attention.ts `attentionCoreFlops` when
 *   keys = rows). No parameters.
 * The one place these rules live: the planner, the language server's FLOP shares and the mask
 * preview's totals all count with it, so their numbers agree.
 */
export function layerDenseCost(layer: Pick<InventoryLayer, 'role' | 'in' | 'out' | 'bias' | 'causal'>, rows: number): LayerCost {
  if (layer.role === 'embedding') return { params: layer.in * layer.out, flops: { forward: 0, backward: 0 }, activationBytes: 0 };
  if (layer.role === 'attn_core') {
    const forward = 4 * rows * layer.out * layer.in * (layer.causal ? 0.5 : 1);
    return { params: 0, flops: { forward, backward: 2 * forward }, activationBytes: 0 };
  }
  return denseLinearCost(layer.in, layer.out, rows, layer.bias ?? true);
}

