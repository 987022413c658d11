/**
 * The engine's model spec (core/modelSpec.ts) for an analysed PyTorch model, so "Train dense vs
 * Pixelfly" can train the same architecture family at the same widths on the local engine.
 * Only the four engine families map; anything else says why it does not.
 */
import { validateModelSpec, type ModelSpec } from '../../core/modelSpec';
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
