/**
 * The engine's model spec (core/modelSpec.ts) for an analysed PyTorch model, so "Train dense vs
 * Pixelfly" can train the same architecture family at the same widths on the local engine.
 * Only the four engine families map; anything else says why it does not.
 */
import { specInventory, validateModelSpec, type ModelSpec } from '../../core/modelSpec';
import type { InventoryLayer } from '../../core/inventory';
import { checkBuildable } from '../../core/layout';
import { planModel, type Plan, type PlanOptions } from '../../core/planner';
import type { Analysis, LayerRow } from './analyze';

type Built = LayerRow & { in: number; out: number; count: number };

export function modelSpecFor(a: Analysis): { spec: ModelSpec } | { error: string } {
  const rows = a.layers.filter((l): l is Built => typeof l.in === 'number' && typeof l.out === 'number' && typeof l.count === 'number' && l.count > 0);
  const first = (role: string): Built | undefined => rows.find((l) => l.role === role);
  const qkv = first('attn_qkv');
  const fc1 = first('mlp_fc1');
  const head = first('head');
  const patch = rows.find((l) => l.role === 'patch_embed');
  const token = first('token_mix');
  const embedding = rows.find((l) => l.role === 'embedding' && !/pos|wpe|position/i.test(l.name));
  const name = a.model?.name ?? 'model';
  let spec: Record<string, unknown> | undefined;
  // The patch grid is square: tokens = side² (Mixer, mean-pooled ViT) or side² + 1 (ViT's class token).
  const grid = (): { image?: Record<string, number>; cls: boolean } => {
    if (!patch?.patch) return { cls: true };
    for (const cls of [true, false]) {
      const side = Math.round(Math.sqrt(a.tokensPerSample - (cls ? 1 : 0)));
      if (side * side === a.tokensPerSample - (cls ? 1 : 0)) {
        return { cls, image: { channels: patch.patch.channels, height: side * patch.patch.kernel, width: side * patch.patch.kernel } };
      }
    }
    return { cls: true };
  };
  if (embedding && qkv && fc1 && head) {
    spec = { kind: 'gpt', name, vocab: embedding.in, context: a.tokensPerSample, dim: qkv.in, depth: qkv.count, heads: a.heads ?? Math.max(1, Math.round(qkv.in / 64)), mlpHidden: fc1.out };
  } else if (patch && token && fc1 && head) {
    spec = { kind: 'mixer', name, image: grid().image, patch: patch.patch?.kernel, dim: patch.out, depth: fc1.count, tokenHidden: token.out, channelHidden: fc1.out, classes: head.out };
  } else if (patch && qkv && fc1 && head) {
    const g = grid();
    spec = { kind: 'vit', name, image: g.image, patch: patch.patch?.kernel, dim: qkv.in, depth: qkv.count, heads: a.heads ?? Math.max(1, Math.round(qkv.in / 64)), mlpHidden: fc1.out, classes: head.out, pool: g.cls ? 'cls' : 'mean' };
  } else if (!qkv && !patch && !token && head && rows.every((l) => l.kind === 'linear')) {
    const chain = rows.filter((l) => l !== head);
    spec = { kind: 'mlp', name, inputFeatures: chain[0]?.in ?? head.in, hidden: chain.map((l) => l.out), classes: head.out };
  }
  if (!spec) return { error: `${name} does not map onto an engine model family (mlp, mixer, vit, gpt): the engine trains those architectures only` };
  const r = validateModelSpec(spec);
  if (!r.ok) return { error: `${name} maps to a ${String(spec.kind)} spec the engine rejects: ${r.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}` };
  return { spec: r.spec };
}

/** What "Train dense vs Pixelfly" and `pixelfly train` train for an analysed model: its engine spec and the plan to train it with. */
export type EngineJob = { spec: ModelSpec; plan: Plan } | { error: string };

/**
 * The engine spec of the analysed model with the analysis's own plan carried onto it: each engine
 * layer takes the decision (config and reason) of the model's layer it stands for — same role,
 * same shape — so what the editor shows is what trains. The plan is then costed on the engine's
 * model (its whole-step estimate is what a run's measured speedup is compared with).
 */
export function engineJob(a: Analysis, options: PlanOptions = {}): EngineJob {
  const mapped = modelSpecFor(a);
  if ('error' in mapped) return mapped;
  const { spec } = mapped;
  const rows = a.layers.filter((l) => typeof l.count === 'number' && l.count > 0 && l.decision);
  const chosen = new Map<string, LayerRow | undefined>();
  const specLayers = specInventory(spec).layers;
  for (const l of specLayers) {
    const sameRole = rows.filter((r) => r.role === l.role);
    chosen.set(l.name, sameRole.find((r) => r.in === l.in && r.out === l.out) ?? sameRole[0]);
  }
  const layers: InventoryLayer[] = specLayers.map((l) => {
    const d = chosen.get(l.name)?.decision;
    if (!d) return l.role === 'attn_core' || l.role === 'embedding' ? l : { ...l, keptDense: 'no layer of the source model maps onto it' };
    if (!d.sparsify || !d.config) return l.role === 'attn_core' || l.role === 'embedding' ? l : { ...l, keptDense: d.reason.replace(/^Kept dense: /, '') };
    try {
      checkBuildable(l.out, l.in, d.config);
      return { ...l, pixelfly: d.config };
    } catch (e) {
      return { ...l, keptDense: `the source's config does not fit the engine's ${l.out}×${l.in} layer (${(e as Error).message})` };
    }
  });
  let plan: Plan;
  try {
    plan = planModel({ layers }, a.target, options);
  } catch (e) {
    return { error: `${spec.name ?? 'model'}: the plan cannot be costed on the engine's model: ${(e as Error).message}` };
  }
  // The reasons are the source's: they explain the choice made for the layer the user wrote.
  plan.layers = plan.layers.map((d) => {
    const source = chosen.get(d.name);
    return source?.decision ? { ...d, reason: `${source.decision.reason} (as ${source.name})` } : d;
  });
  return { spec, plan };
}
