/**
 * The JSON model spec: what the native engine builds, what the language server produces from a
 * PyTorch model, and what the planner plans (through `specInventory`), so that
 * spec → planModel(specInventory(spec)) → plan → engine is one path.
 *
 * Four families (the paper's three plus the simplest):
 *   {"kind": "mlp",   "inputFeatures": 784, "hidden": [512, 512], "classes": 10}
 *   {"kind": "mixer", "image": {"channels": 1, "height": 28, "width": 28}, "patch": 4,
 *                     "dim": 256, "depth": 4, "tokenHidden": 128, "channelHidden": 1024, "classes": 10}
 *   {"kind": "vit",   "image": {...}, "patch": 4, "dim": 192, "depth": 6, "heads": 3,
 *                     "mlpHidden": 768, "classes": 10, "pool": "cls" | "mean"}
 *   {"kind": "gpt",   "vocab": 96, "context": 128, "dim": 256, "depth": 4, "heads": 4, "mlpHidden": 1024}
 * Optional everywhere: "version": 1, "name": "...". Optional on vit and gpt: "attention", the score
 * layout of every attention core (core/attention.ts): {"kind": "dense"} (the default) or
 * {"kind": "pixelfly", "block": 64, "butterflySize": 32, "nFactors": 5, "globalSize": 0, "features": 0}
 * ("features": Performer features of the low-rank term for the dropped score blocks; 0: none).
 *
 * Matmul layers are named as the plan refers to them; per-block layers are one inventory entry
 * with `count = depth` (the engine names instance i's parameters `blocks.i.…`):
 *   mlp:   fc1 … fcN, head
 *   mixer: patch_embed, blocks.token_mix.fc1/fc2 (along tokens), blocks.channel_mix.fc1/fc2, head
 *   vit:   patch_embed, blocks.attn.qkv, blocks.attn.(core), blocks.attn.proj, blocks.mlp.fc1/fc2, head
 *   gpt:   embedding, blocks.attn.qkv, blocks.attn.(core), blocks.attn.proj, blocks.mlp.fc1/fc2, head
 * (`blocks.attn.(core)` is the attention core: it counts in FLOPs and time and is never sparsified.)
 * Pure TypeScript (no Node imports), like the rest of core/.
 */
import type { Inventory, InventoryLayer } from './inventory';
import { ATTENTION_KINDS, attentionLayout, lowRankFeatures, MAX_ATTENTION_FEATURES, type AttentionSpec } from './attention';
import { PixelflyConfigError } from './errors';

export const MODEL_SPEC_VERSION = 1;

export interface ImageShape {
  channels: number;
  height: number;
  width: number;
}

interface SpecBase {
  version?: number;
  name?: string;
}

export interface MlpSpec extends SpecBase {
  kind: 'mlp';
  inputFeatures: number;
  hidden: number[];
  classes: number;
}

export interface MixerSpec extends SpecBase {
  kind: 'mixer';
  image: ImageShape;
  patch: number;
  dim: number;
  depth: number;
  tokenHidden: number;
  channelHidden: number;
  classes: number;
}

export interface VitSpec extends SpecBase {
  kind: 'vit';
  image: ImageShape;
  patch: number;
  dim: number;
  depth: number;
  heads: number;
  mlpHidden: number;
  classes: number;
  pool?: 'cls' | 'mean';
  attention?: AttentionSpec;
}

export interface GptSpec extends SpecBase {
  kind: 'gpt';
  vocab: number;
  context: number;
  dim: number;
  depth: number;
  heads: number;
  mlpHidden: number;
  attention?: AttentionSpec;
}

export type ModelSpec = MlpSpec | MixerSpec | VitSpec | GptSpec;
export type ModelKind = ModelSpec['kind'];
export const MODEL_KINDS: readonly ModelKind[] = ['mlp', 'mixer', 'vit', 'gpt'];

export interface SpecIssue {
  /** JSON path of the offending field, e.g. `image.height` or `hidden[2]`. */
  path: string;
  message: string;
}

export type SpecValidation = { ok: true; spec: ModelSpec } | { ok: false; issues: SpecIssue[] };

export class ModelSpecError extends Error {
  readonly issues: SpecIssue[];
  constructor(issues: SpecIssue[]) {
    super(`invalid model spec: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`);
    this.name = 'ModelSpecError';
    this.issues = issues;
  }
}

/**
 * Upper bound on any width, depth or count: a spec is user input, and these bounds keep every
 * computation over it (inventories, plans, memory estimates) small. Whether a spec within them
 * fits the machine is the memory estimate's question (core/memoryEstimate.ts).
 */
export const MAX_SIZE = 1 << 20;
/** Most layers an MLP spec may list (a plan lists at most this many layers too). */
export const MAX_LAYERS = 4096;

const FIELDS: Record<ModelKind, readonly string[]> = {
  mlp: ['inputFeatures', 'hidden', 'classes'],
  mixer: ['image', 'patch', 'dim', 'depth', 'tokenHidden', 'channelHidden', 'classes'],
  vit: ['image', 'patch', 'dim', 'depth', 'heads', 'mlpHidden', 'classes', 'pool', 'attention'],
  gpt: ['vocab', 'context', 'dim', 'depth', 'heads', 'mlpHidden', 'attention'],
};

/** Checks untrusted JSON; reports every problem with its path, never throws. */
export function validateModelSpec(value: unknown): SpecValidation {
  const issues: SpecIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, issues: [{ path: '', message: 'must be a JSON object' }] };
  }
  const o = value as Record<string, unknown>;
  const posInt = (path: string, v: unknown, min = 1): boolean => {
    if (v === undefined) return add(path, 'is required'), false;
    if (typeof v !== 'number' || !Number.isInteger(v)) return add(path, `must be an integer, got ${JSON.stringify(v)}`), false;
    if (v < min || v > MAX_SIZE) return add(path, `must be between ${min} and ${MAX_SIZE}, got ${v}`), false;
    return true;
  };
  if (!MODEL_KINDS.includes(o.kind as ModelKind)) {
    add('kind', `must be one of ${MODEL_KINDS.join(', ')}, got ${JSON.stringify(o.kind)}`);
    return { ok: false, issues };
  }
  const kind = o.kind as ModelKind;
  if (o.version !== undefined && o.version !== MODEL_SPEC_VERSION) add('version', `must be ${MODEL_SPEC_VERSION}, got ${JSON.stringify(o.version)}`);
  if (o.name !== undefined && typeof o.name !== 'string') add('name', 'must be a string');
  const known = new Set(['kind', 'version', 'name', ...FIELDS[kind]]);
  for (const k of Object.keys(o)) if (!known.has(k)) add(k, `is not a field of a ${kind} spec (expected ${FIELDS[kind].join(', ')})`);

  const image = (): ImageShape | undefined => {
    const im = o.image as Record<string, unknown> | undefined;
    if (typeof im !== 'object' || im === null) return add('image', 'must be an object {channels, height, width}'), undefined;
    const ok = ['channels', 'height', 'width'].map((f) => posInt(`image.${f}`, im[f])).every(Boolean);
    return ok ? (im as unknown as ImageShape) : undefined;
  };
  const patchFits = (im: ImageShape | undefined) => {
    if (!im || !posInt('patch', o.patch)) return;
    const p = o.patch as number;
    if (im.height % p !== 0 || im.width % p !== 0) add('patch', `${p} must divide the image size ${im.height}×${im.width}`);
  };
  const headsFit = () => {
    if (posInt('dim', o.dim) && posInt('heads', o.heads) && (o.dim as number) % (o.heads as number) !== 0) {
      add('heads', `${o.heads} must divide dim ${o.dim}`);
    }
  };

  switch (kind) {
    case 'mlp':
      posInt('inputFeatures', o.inputFeatures);
      if (!Array.isArray(o.hidden)) add('hidden', 'must be an array of layer widths (may be empty)');
      else if (o.hidden.length > MAX_LAYERS) add('hidden', `at most ${MAX_LAYERS} layers, got ${o.hidden.length}`);
      else o.hidden.forEach((h, i) => posInt(`hidden[${i}]`, h));
      posInt('classes', o.classes, 2);
      break;
    case 'mixer':
      patchFits(image());
      for (const f of ['dim', 'depth', 'tokenHidden', 'channelHidden'] as const) posInt(f, o[f]);
      posInt('classes', o.classes, 2);
      break;
    case 'vit':
      patchFits(image());
      for (const f of ['depth', 'mlpHidden'] as const) posInt(f, o[f]);
      headsFit();
      posInt('classes', o.classes, 2);
      if (o.pool !== undefined && o.pool !== 'cls' && o.pool !== 'mean') add('pool', `must be "cls" or "mean", got ${JSON.stringify(o.pool)}`);
      break;
    case 'gpt':
      posInt('vocab', o.vocab, 2);
      for (const f of ['context', 'depth', 'mlpHidden'] as const) posInt(f, o[f]);
      headsFit();
      break;
  }
  if ((kind === 'vit' || kind === 'gpt') && o.attention !== undefined && issues.length === 0) {
    checkAttention(o.attention, value as VitSpec | GptSpec, add);
  }
  return issues.length ? { ok: false, issues } : { ok: true, spec: value as ModelSpec };
}

const ATTENTION_FIELDS: Record<AttentionSpec['kind'], readonly string[]> = {
  dense: [],
  pixelfly: ['block', 'butterflySize', 'nFactors', 'globalSize', 'features'],
};

/** The `attention` field: its shape, then whether its layout can be built over the spec's tokens. */
function checkAttention(a: unknown, spec: VitSpec | GptSpec, add: (path: string, message: string) => void): void {
  if (typeof a !== 'object' || a === null || Array.isArray(a)) return add('attention', 'must be an object {"kind": "dense" | "pixelfly", ...}');
  const o = a as Record<string, unknown>;
  if (!ATTENTION_KINDS.includes(o.kind as AttentionSpec['kind'])) {
    return add('attention.kind', `must be one of ${ATTENTION_KINDS.join(', ')}, got ${JSON.stringify(o.kind)}`);
  }
  const kind = o.kind as AttentionSpec['kind'];
  let ok = true;
  for (const k of Object.keys(o)) {
    if (k !== 'kind' && !ATTENTION_FIELDS[kind].includes(k)) {
      add(`attention.${k}`, `is not a field of ${kind} attention (expected ${['kind', ...ATTENTION_FIELDS[kind]].join(', ')})`);
      ok = false;
    }
  }
  for (const f of ['block', 'butterflySize', 'nFactors'] as const) {
    if (kind === 'pixelfly' && !Number.isInteger(o[f])) {
      add(`attention.${f}`, o[f] === undefined ? 'is required' : `must be an integer, got ${JSON.stringify(o[f])}`);
      ok = false;
    }
  }
  if (o.globalSize !== undefined && (!Number.isInteger(o.globalSize) || (o.globalSize as number) < 0)) {
    add('attention.globalSize', `must be an integer ≥ 0, got ${JSON.stringify(o.globalSize)}`);
    ok = false;
  }
  const m = o.features as number;
  if (o.features !== undefined && (!Number.isInteger(m) || m < 0 || m % 2 !== 0 || m > MAX_ATTENTION_FEATURES)) {
    add('attention.features', `must be an even integer in [0, ${MAX_ATTENTION_FEATURES}] (Performer features, used in ± pairs), got ${JSON.stringify(o.features)}`);
    ok = false;
  }
  if (!ok) return;
  try {
    attentionLayout(specTokens(spec), a as AttentionSpec, spec.kind === 'gpt');
  } catch (e) {
    if (!(e instanceof PixelflyConfigError)) throw e;
    add(e.param.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), e.message.slice(e.param.length + 2));
  }
}

/** validateModelSpec, throwing a ModelSpecError that lists every issue. */
export function parseModelSpec(value: unknown): ModelSpec {
  const r = validateModelSpec(value);
  if (!r.ok) throw new ModelSpecError(r.issues);
  return r.spec;
}

/** Inputs per sample of a classifier (the flattened image for Mixer and ViT); undefined for a language model. */
export function classifierFeatures(spec: ModelSpec): number | undefined {
  switch (spec.kind) {
    case 'mlp':
      return spec.inputFeatures;
    case 'mixer':
    case 'vit':
      return spec.image.channels * spec.image.height * spec.image.width;
    case 'gpt':
      return undefined;
  }
}

/** Tokens per sample after the patch stem (ViT adds its class token). */
export function patchTokens(spec: MixerSpec | VitSpec): number {
  return (spec.image.height / spec.patch) * (spec.image.width / spec.patch);
}

/** Tokens each attention layer sees per sample (ViT with a class token has one more than patches). */
export function specTokens(spec: VitSpec | GptSpec): number {
  return spec.kind === 'gpt' ? spec.context : patchTokens(spec) + (spec.pool === 'mean' ? 0 : 1);
}

/** The attention cores of a transformer spec (one per block), or undefined for mlp and mixer. */
export function specAttention(spec: ModelSpec): { T: number; dim: number; heads: number; causal: boolean; count: number; attention: AttentionSpec } | undefined {
  if (spec.kind !== 'vit' && spec.kind !== 'gpt') return undefined;
  return {
    T: specTokens(spec), dim: spec.dim, heads: spec.heads, causal: spec.kind === 'gpt', count: spec.depth,
    attention: spec.attention ?? { kind: 'dense' },
  };
}

/** The spec's matmul layers, as the planner's inventory (names as the engine's plan keys). */
export function specInventory(spec: ModelSpec): Inventory {
  const layers: InventoryLayer[] = [];
  const causal = spec.kind === 'gpt';
  const att = specAttention(spec);
  const scoreDensity = att?.attention.kind === 'pixelfly' ? attentionLayout(att.T, att.attention, att.causal).density : undefined;
  const features = lowRankFeatures(att?.attention);
  const core = { ...(causal ? { causal } : {}), ...(scoreDensity !== undefined ? { scoreDensity } : {}), ...(features > 0 ? { lowRankFeatures: features } : {}) };
  const add = (name: string, role: InventoryLayer['role'], inF: number, outF: number, count: number, rowsPerSample: number) =>
    layers.push({ name, role, in: inF, out: outF, count, rowsPerSample, ...(role === 'attn_core' ? core : {}) });
  switch (spec.kind) {
    case 'mlp': {
      let width = spec.inputFeatures;
      spec.hidden.forEach((h, i) => {
        add(`fc${i + 1}`, h >= width ? 'mlp_fc1' : 'mlp_fc2', width, h, 1, 1);
        width = h;
      });
      add('head', 'head', width, spec.classes, 1, 1);
      break;
    }
    case 'mixer': {
      const T = patchTokens(spec);
      const pd = spec.image.channels * spec.patch * spec.patch;
      add('patch_embed', 'patch_embed', pd, spec.dim, 1, T);
      // Token mixing multiplies along the token axis: one row per channel.
      add('blocks.token_mix.fc1', 'token_mix', T, spec.tokenHidden, spec.depth, spec.dim);
      add('blocks.token_mix.fc2', 'token_mix', spec.tokenHidden, T, spec.depth, spec.dim);
      add('blocks.channel_mix.fc1', 'mlp_fc1', spec.dim, spec.channelHidden, spec.depth, T);
      add('blocks.channel_mix.fc2', 'mlp_fc2', spec.channelHidden, spec.dim, spec.depth, T);
      add('head', 'head', spec.dim, spec.classes, 1, 1);
      break;
    }
    case 'vit': {
      const patches = patchTokens(spec);
      const T = specTokens(spec);
      add('patch_embed', 'patch_embed', spec.image.channels * spec.patch * spec.patch, spec.dim, 1, patches);
      transformerLayers(add, spec.dim, spec.mlpHidden, spec.depth, T);
      add('head', 'head', spec.dim, spec.classes, 1, 1);
      break;
    }
    case 'gpt':
      add('embedding', 'embedding', spec.vocab, spec.dim, 1, spec.context);
      transformerLayers(add, spec.dim, spec.mlpHidden, spec.depth, spec.context);
      add('head', 'head', spec.dim, spec.vocab, 1, spec.context);
      break;
  }
  return { layers };
}

function transformerLayers(
  add: (name: string, role: InventoryLayer['role'], inF: number, outF: number, count: number, rows: number) => void,
  dim: number,
  hidden: number,
  depth: number,
  T: number,
): void {
  add('blocks.attn.qkv', 'attn_qkv', dim, 3 * dim, depth, T);
  // The attention core (QKᵀ, softmax, scores·V): no weights, but part of the model's FLOPs and step.
  add('blocks.attn.(core)', 'attn_core', dim, T, depth, T);
  add('blocks.attn.proj', 'attn_out', dim, dim, depth, T);
  add('blocks.mlp.fc1', 'mlp_fc1', dim, hidden, depth, T);
  add('blocks.mlp.fc2', 'mlp_fc2', hidden, dim, depth, T);
}
