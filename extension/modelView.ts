/**
 * Turns what the language server says about a model (CodeLens arguments, or its `pixelfly/analysis`
 * answer) into the mask page's ModelView. Their layer lists carry the planner's decision; a layer
 * the planner keeps dense has no config, so the preview starts it from the user's default block
 * size and the smallest valid butterfly — core decides validity, nothing is re-derived here.
 */
import { validateParams } from '../core/layout';
import { BENCH_MAX_ELEMENTS, type LayerDecision } from '../core/planner';
import type { MethodParamsIn } from '../protocol/daemon';
import { ModelViewSchema, type LayerConfig, type ModelView } from '../protocol/webview';

/** A layer as the analyser reports it (extra fields are ignored); sizes it could not resolve are text. */
export interface AnalyzedLayer {
  name: string;
  role: string;
  in: number | string;
  out: number | string;
  count: number | string;
  rowsPerSample?: number | null;
  bias?: boolean;
  causal?: boolean;
  line?: number;
  decision?: Partial<LayerDecision> | null;
}

export interface AnalyzedModel {
  name?: string;
  /** The `pixelfly/analysis` answer names the model here. */
  model?: string | { name?: string } | null;
  uri?: string;
  /** Tokens per sample the analysis assumed (for layers that do not say). */
  tokensPerSample?: number;
  layers: AnalyzedLayer[];
  /** From the language server's analysis: the planner's target, its plan (the layers' decisions are on the layers), and what Train trains. */
  target?: unknown;
  plan?: Record<string, unknown> | null;
  engine?: unknown;
}

export function defaultConfig(out: number, inF: number, block: number): LayerConfig {
  for (const butterflySize of [4, 8, 2, 16, 32, 64]) {
    try {
      validateParams(out, inF, { block, butterflySize, nFactors: 2 });
      return { block, butterflySize, nFactors: 2, rank: 0, globalSize: 0, shuffle: false };
    } catch {
      // try the next size; the page shows core's error if none fits
    }
  }
  return { block, butterflySize: 4, nFactors: 2, rank: 0, globalSize: 0, shuffle: false };
}

/** Validates the result (the input came from another process); throws naming the bad field. */
export function toModelView(m: AnalyzedModel, fallbackName: string, defaultBlock: number, tokensPerSample: number | null): ModelView {
  const view = {
    name: m.name ?? (typeof m.model === 'string' ? m.model : m.model?.name) ?? fallbackName,
    uri: m.uri,
    // The analysis also lists layers written but not built, and unresolved ones: no mask to preview.
    layers: m.layers.filter((l): l is AnalyzedLayer & { in: number; out: number; count: number } => l.count !== 0 && [l.in, l.out, l.count].every((x) => typeof x === 'number')).map((l) => {
      const d = l.decision ?? undefined;
      const cfg = d?.config;
      return {
        name: l.name,
        role: l.role,
        in: l.in,
        out: l.out,
        count: l.count,
        // A pooled classifier head sees one row per sample; every other layer sees every token.
        rowsPerSample: l.rowsPerSample ?? (l.role === 'head' ? 1 : (m.tokensPerSample ?? tokensPerSample ?? undefined)),
        ...(l.bias === false ? { bias: false } : {}),
        ...(l.causal ? { causal: true } : {}),
        sparsify: d?.sparsify ?? false,
        config: cfg
          ? { block: cfg.block, butterflySize: cfg.butterflySize, nFactors: cfg.nFactors, rank: cfg.rank, globalSize: cfg.globalSize ?? 0, shuffle: cfg.shuffle ?? false }
          : defaultConfig(l.out, l.in, defaultBlock),
        estimatedSpeedup: typeof d?.estSpeedup === 'number' ? d.estSpeedup : null,
        reason: d?.reason ?? 'no plan for this layer yet',
        line: l.line,
      };
    }),
  };
  const r = ModelViewSchema.safeParse(view);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`model '${view.name}' cannot be previewed: ${i?.path.join('.')}: ${i?.message}`);
  }
  return r.data;
}

/**
 * "Apply to code"'s report from the language server's answer: how many layers were written, and
 * for the others the server's reason (built in library code, a call shared with other layers, …).
 * Nothing written is an error, so the preview shows it as one.
 */
export function appliedMessage(r: { applied: string[]; skipped: string[] }, asked: number, file: string): string {
  const msg = `Applied ${r.applied.length} of ${asked} layer(s) to ${file}${r.skipped.length ? `; not applied: ${r.skipped.join('; ')}` : ''}.`;
  if (r.applied.length === 0) throw new Error(msg);
  return msg;
}

/** Most shapes one bench.layers call takes (protocol/daemon.ts). */
const MAX_BENCH_SHAPES = 64;

/**
 * The one bench.layers request for a model's Pixelfly layers: each layer with its own config and a
 * batch of 16 samples (capped at 16k rows to bound the daemon's memory).
 */
export function benchParams(model: ModelView): MethodParamsIn<'bench.layers'> {
  const sparse = model.layers.filter((l) => l.sparsify);
  if (sparse.length === 0) throw new Error('no layer of this model is planned for Pixelfly: nothing to measure');
  if (sparse.length > MAX_BENCH_SHAPES) throw new Error(`${sparse.length} Pixelfly layers: at most ${MAX_BENCH_SHAPES} can be measured at once`);
  // The dense layers' GEMM rates too (measured dense only), as many as fit: estimates cost each product at its own shape's rate.
  const dense = model.layers.filter((l) => !l.sparsify && l.role !== 'attn_core' && l.role !== 'embedding').slice(0, MAX_BENCH_SHAPES - sparse.length);
  const rows = (l: ModelView['layers'][number]) => Math.max(1, Math.min(1 << 14, l.rowsPerSample * 16, Math.floor(BENCH_MAX_ELEMENTS / Math.max(l.in, l.out))));
  return {
    shapes: [
      ...sparse.map((l) => ({ name: l.name, in: l.in, out: l.out, rows: rows(l), config: l.config })),
      ...dense.map((l) => ({ name: l.name, in: l.in, out: l.out, rows: rows(l) })),
    ],
    repeats: 5,
  };
}
