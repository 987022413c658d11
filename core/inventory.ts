/**
 * A model's matmul-bearing layers, as the language server (from Python source) or a model spec
 * lists them: what the planner plans.
 */
/** The roles a layer can play; the one list (protocol schemas validate with it). */
export const LAYER_ROLES = ['attn_qkv', 'attn_out', 'mlp_fc1', 'mlp_fc2', 'token_mix', 'patch_embed', 'head', 'embedding', 'other'] as const;

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
    if (l.pinnedDense !== undefined && typeof l.pinnedDense !== 'boolean') fail(where, 'pinnedDense must be a boolean');
    return l as unknown as InventoryLayer;
  });
  return { layers };
}
