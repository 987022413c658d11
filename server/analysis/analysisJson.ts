// The analysis in the form it leaves the analyser: the language server's `pixelfly/analysis`
// answer and `pixelfly analyze --json` (protocol/lsp.ts types it).
import type { AnalysisJson } from '../../protocol/lsp';
import type { Analysis } from './analyze';

/** The analysis as the LSP request and `pixelfly analyze --json` give it: the layers and plan, plus what a reader needs (tokens assumed, unresolved names). */
export function analysisJson(a: Analysis): AnalysisJson {
  return {
    file: a.file,
    model: a.model && { name: a.model.name, kind: a.model.kind, line: a.model.line },
    candidates: a.candidates,
    models: a.models,
    defaultModel: a.defaultModel,
    tokensPerSample: a.tokensPerSample,
    tokensSource: a.tokensSource,
    target: a.target,
    layers: a.layers.map((l) => ({
      file: l.file,
      line: l.line,
      name: l.name,
      class: l.class,
      in: l.in,
      out: l.out,
      count: l.count,
      role: l.role,
      flops_share: l.flops_share,
      decision: l.decision && {
        sparsify: l.decision.sparsify,
        config: l.decision.config,
        density: l.decision.density,
        estSpeedup: l.decision.estSpeedup,
        denseParams: l.decision.denseParams,
        planParams: l.decision.planParams,
        reason: l.decision.reason,
      },
      ...(l.pinnedDense ? { pinnedDense: true } : {}),
      ...(l.note ? { note: l.note } : {}),
      // What the FLOPs are counted with (core's layerDenseCost): the preview's totals match the plan's.
      rowsPerSample: l.rowsPerSample,
      ...(l.bias ? {} : { bias: false }),
      ...(l.causal ? { causal: true } : {}),
    })),
    plan: a.plan,
    estimate: a.plan?.estimate ?? null,
    engine: a.engine,
    unresolved: a.unresolved,
    pins: a.pins,
    notes: a.notes,
    pragmaErrors: a.pragmaErrors,
  };
}
