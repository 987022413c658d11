/**
 * LSP features computed from one analysis of one document: diagnostics, inlay hints, hovers,
 * CodeLens and code actions (with the PyTorch export's edits). Pure functions of the analysis,
 * the document and the parsed tree, so they are tested without a client.
 */
import { basename } from 'node:path';
import {
  CodeActionKind,
  DiagnosticSeverity,
  InlayHintKind,
  MarkupKind,
  type CodeAction,
  type CodeLens,
  type Diagnostic,
  type Hover,
  type InlayHint,
  type Position,
  type Range,
  type TextEdit,
  type WorkspaceEdit,
} from 'vscode-languageserver';
import { attentionLayout } from '../../core/attention';
import { flatBlockButterflyLayout } from '../../core/layout';
import type { PixelflyConfig } from '../../core/pixelflyLayer';
import type { PyNode } from '../analysis/ast';
import { analysisPlan, analysisSettings, pinnableNames, type Analysis, type LayerRow } from '../analysis/analyze';
import { explainEstimate, type StepEstimate } from '../../core/stepCost';
import type { PlanDevice } from '../../core/planner';
import { configArguments, importLine, importText, importedClasses, pixelflyAttentionCall, pixelflyCall, type PixelflyClass } from './rewrite';
import { maskPicture, pictureScale } from './maskText';
import { CHOOSE_MODEL, ENSURE_TORCH_PACKAGE, PREVIEW_MASKS, TRAIN, type ChooseModelArgs, type LensLayer, type PreviewMasksArgs, type TrainLensArgs } from '../../protocol/lsp';

export const SOURCE = 'pixelfly';
export const CODE_SPARSIFY = 'pixelfly.sparsify';
export const CODE_UNRESOLVED = 'pixelfly.unresolved';
export const CODE_KEPT_DENSE = 'pixelfly.keptDense';
export const CODE_ATTENTION = 'pixelfly.attention';

const pct = (x: number): string => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;

function countText(l: LayerRow): string {
  return l.count === 1 ? '' : ` ×${l.count}`;
}

function saving(l: LayerRow): number {
  const d = l.decision;
  return d && d.denseParams > 0 ? 1 - d.planParams / d.denseParams : 0;
}

function configText(c: Required<PixelflyConfig>): string {
  return `block ${c.block}, butterfly ${c.butterflySize}, ${c.nFactors} factor${c.nFactors > 1 ? 's' : ''}, rank ${c.rank}${c.globalSize ? `, global ${c.globalSize}` : ''}${c.shuffle ? ', shuffled' : ''}`;
}

/** Rows of this document that the chosen model builds. */
export function documentRows(a: Analysis, file: string): LayerRow[] {
  return a.layers.filter((l) => l.file === file);
}

/** The text after a layer's name: its sizes, or what an attention core computes. */
function sizeText(l: LayerRow): string {
  if (l.kind === 'attn_core') return `QKᵀ·V, d ${l.in} × ${l.out} keys${l.causal ? ' (causal)' : ''}${countText(l)}`;
  return `${l.in}→${l.out}${countText(l)}`;
}

export function diagnostics(a: Analysis, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  // Suggestions a shared call cannot take (a helper building many layers): one diagnostic per call.
  const shared = new Map<string, { rows: LayerRow[]; why: string }>();
  for (const l of documentRows(a, file)) {
    if (l.count === 0) continue;
    const d = l.decision;
    const why = d?.sparsify && d.config && l.kind !== 'pixelfly' ? whyNoRewrite(a, l, d.config) : undefined;
    if (why && /^the call at line/.test(why)) {
      const key = `${l.range.start.line}:${l.range.start.character}`;
      shared.set(key, { rows: [...(shared.get(key)?.rows ?? []), l], why });
      continue;
    }
    if (d?.sparsify && d.config && l.kind !== 'pixelfly') {
      out.push({
        range: l.range,
        severity: DiagnosticSeverity.Information,
        source: SOURCE,
        code: CODE_SPARSIFY,
        message:
          `Pixelfly: sparsify ${l.name} (${l.in}→${l.out}${countText(l)}, ${pct(l.flops_share ?? 0)} of matmul FLOPs): ` +
          `est. ${d.estSpeedup.toFixed(2)}× faster, ${pct(saving(l))} fewer parameters (${configText(d.config)}).` +
          (why ? ` No quick fix here: ${why}.` : ''),
        data: { name: l.name },
      });
    } else if (!d && l.note && /unresolved/.test(l.note)) {
      // Information, not Hint: unresolved sizes belong in the Problems panel, with the pins' quick fix.
      out.push({
        range: l.range,
        severity: DiagnosticSeverity.Information,
        source: SOURCE,
        code: CODE_UNRESOLVED,
        message: `Pixelfly: ${l.name}: ${l.note}`,
        data: { name: l.name, pins: rowPins(l) },
      });
    } else if (!d && l.note) {
      // A PixelflyLinear whose config is not a valid layout.
      out.push({ range: l.range, severity: DiagnosticSeverity.Warning, source: SOURCE, message: `Pixelfly: ${l.name}: ${l.note}`, data: { name: l.name } });
    } else if (d && !d.sparsify && l.keptDense) {
      // Why a layer that looks like the others is not suggested (nn.MultiheadAttention's projections).
      out.push({ range: l.range, severity: DiagnosticSeverity.Hint, source: SOURCE, code: CODE_KEPT_DENSE, message: `Pixelfly: ${l.name}: ${d.reason}`, data: { name: l.name } });    } else if (d?.attention && l.kind === 'attn_core') {
      // Advice without a quick fix: the score layout changes what the model's attention computes, and
      // the code around an attention core varies too much to rewrite it safely.
      out.push({ range: l.range, severity: DiagnosticSeverity.Information, source: SOURCE, code: CODE_ATTENTION, message: `Pixelfly: ${l.name}: ${d.reason}`, data: { name: l.name } });
    }
  }
  for (const { rows, why } of shared.values()) {
    const speedups = rows.map((l) => l.decision!.estSpeedup);
    const names = rows.slice(0, 3).map((l) => l.name).join(', ') + (rows.length > 3 ? `, and ${rows.length - 3} more` : '');
    const share = rows.reduce((s, l) => s + (l.flops_share ?? 0), 0);
    out.push({
      range: rows[0].range,
      severity: DiagnosticSeverity.Information,
      source: SOURCE,
      code: CODE_SPARSIFY,
      message:
        `Pixelfly: ${rows.length} layer${rows.length > 1 ? 's' : ''} built here ${rows.length > 1 ? 'are' : 'is'} worth sparsifying (${names}; ${pct(share)} of matmul FLOPs, ` +
        `est. ${Math.min(...speedups).toFixed(2)}–${Math.max(...speedups).toFixed(2)}× faster each). No quick fix here: ${why}.`,
      data: { name: rows[0].name, names: rows.map((l) => l.name) },
    });
  }
  for (const e of a.pragmaErrors) {
    if (e.file !== file) continue;
    out.push({ range: { start: { line: e.line, character: 0 }, end: { line: e.line, character: 1000 } }, severity: DiagnosticSeverity.Warning, source: SOURCE, message: e.message });
  }
  return out;
}

export function inlayHints(a: Analysis, file: string, range?: Range): InlayHint[] {
  const byLine = new Map<number, LayerRow[]>();
  for (const l of documentRows(a, file)) {
    if (range && (l.range.end.line < range.start.line || l.range.end.line > range.end.line)) continue;
    const key = l.range.end.line;
    byLine.set(key, [...(byLine.get(key) ?? []), l]);
  }
  const hints: InlayHint[] = [];
  for (const rows of byLine.values()) {
    const parts = rows.map((l) => {
      const size = sizeText(l);
      const tail = l.count === 0 ? 'not built' : l.decision?.sparsify ? `Pixelfly ${l.decision.estSpeedup.toFixed(2)}×` : l.decision ? `dense` : 'unresolved';
      const share = l.flops_share !== null && l.count !== 0 ? ` · ${pct(l.flops_share)} FLOPs` : '';
      const label = l.kind === 'attn_core' ? 'attention' : l.name.split('.').pop();
      return `${rows.length > 1 ? `${label} ` : ''}${size}${share} · ${tail}`;
    });
    const last = rows.reduce((a, b) => (b.range.end.character > a.range.end.character ? b : a));
    hints.push({ position: last.range.end, label: `  ${parts.join(' | ')}`, kind: InlayHintKind.Type, paddingLeft: true });
  }
  return hints;
}

function contains(r: Range, p: Position): boolean {
  const after = p.line > r.start.line || (p.line === r.start.line && p.character >= r.start.character);
  const before = p.line < r.end.line || (p.line === r.end.line && p.character <= r.end.character);
  return after && before;
}

/** What a past run of this model's plan measured (io/runResults.ts), shown beside the estimate. */
export interface Measured {
  jobId: string;
  measuredSpeedup: number;
  estimatedSpeedup?: number;
}

/** Which device profile the estimates come from, in words. */
export function profileText(d: PlanDevice): string {
  return d.source === 'measured'
    ? `the profile measured on this machine (${d.name}${d.measuredAt ? `, ${d.measuredAt.slice(0, 10)}` : ''})`
    : `the default profile (${d.name}; "Measure speedups" in the mask preview measures this machine)`;
}

function estimateTable(e: StepEstimate): string[] {
  const names: Record<string, string> = { products: 'products (planned layers)', attention: 'attention cores', pointwise: 'pointwise and norm layers', optimizer: 'optimizer (AdamW)', data: 'data' };
  return [
    '| part of a step | dense ms | Pixelfly ms |',
    '| --- | ---: | ---: |',
    ...Object.entries(e.parts).map(([k, p]) => `| ${names[k] ?? k} | ${p.denseMs.toFixed(1)} | ${p.planMs.toFixed(1)} |`),
    `| **step** | **${e.denseMs.toFixed(1)}** | **${e.planMs.toFixed(1)}** |`,
  ];
}

/** The model's hover: the whole-step estimate, where the step goes (Amdahl), the profile, and what a run measured. */
function modelHover(a: Analysis, measured: Measured | undefined): string {
  const p = a.plan!;
  const lines = [
    `**Pixelfly** · \`${a.model!.name}\` — est. **${p.estSpeedup.toFixed(2)}×** faster per training step (batch ${p.estimate.batchSize})${measured ? `, measured **${measured.measuredSpeedup.toFixed(2)}×** (run ${measured.jobId})` : ''}`,
    '',
    ...estimateTable(p.estimate),
    '',
    explainEstimate(p.estimate),
    '',
    `Costed with ${profileText(p.device)}.`,
  ];
  if ('plan' in a.engine) {
    const e = a.engine.plan.estimate;
    lines.push('', `"Train dense vs Pixelfly" trains the engine's ${a.engine.spec.kind} with this plan: est. ${e.speedup.toFixed(2)}× per step there.`);
  }
  return lines.join('\n');
}

export function hover(a: Analysis, file: string, position: Position, measured?: Measured): Hover | null {
  const rows = documentRows(a, file).filter((l) => contains(l.range, position));
  if (rows.length === 0 && a.model && a.plan && a.model.file === file && contains(a.model.range, position)) {
    return { contents: { kind: MarkupKind.Markdown, value: modelHover(a, measured) }, range: a.model.range };
  }
  if (rows.length === 0) return null;
  const sections = rows.map((l) => {
    const lines = [`**Pixelfly** · \`${l.name}\` — ${l.class} ${sizeText(l)} · ${l.role}`];
    if (l.count === 0) lines.push('', 'Not built by the chosen model configuration.');
    else if (l.flops_share !== null) lines.push('', `${pct(l.flops_share)} of the model's matmul FLOPs, ${rowsText(a, l)}.`);
    const d = l.decision;
    if (d?.sparsify && d.config) {
      lines.push(
        '',
        `**Plan:** ${configText(d.config)} — ${pct(d.density ?? 0)} of blocks kept, this layer's products est. **${d.estSpeedup.toFixed(2)}×** faster, parameters ${fmt(d.denseParams)} → ${fmt(d.planParams)}.`,
      );
      try {
        const layout = flatBlockButterflyLayout(l.out as number, l.in as number, d.config);
        lines.push('', `Mask (${layout.blockRows}×${layout.blockCols} blocks of ${layout.block}×${layout.block}, ${pictureScale(layout)}; █ kept, · dropped):`, '```text', maskPicture(layout), '```');
      } catch (e) {
        lines.push('', `(no mask: ${(e as Error).message})`);
      }
    }
    if (d?.attention && l.kind === 'attn_core') {
      const { layout } = attentionLayout(l.rowsPerSample ?? a.tokensPerSample, d.attention.spec, l.causal ?? false);
      lines.push(
        '',
        `**Pixelfly attention:** ${pct(d.attention.density)} of the score blocks, est. **${d.attention.coreSpeedup.toFixed(1)}×** on this core, ≈${d.attention.stepSpeedup.toFixed(2)}× on the step.`,
        '',
        `Score layout (${layout.blockRows}×${layout.blockCols} blocks of ${layout.block}×${layout.block}, ${pictureScale(layout)}; █ computed, · dropped):`,
        '```text',
        maskPicture(layout),
        '```',
      );
    }
    lines.push('', `> ${d?.reason ?? l.note ?? ''}`);
    return lines.join('\n');
  });
  return { contents: { kind: MarkupKind.Markdown, value: sections.join('\n\n---\n\n') }, range: rows[0].range };
}

/** What the layer's FLOPs are counted over, and where that number comes from. */
function rowsText(a: Analysis, l: LayerRow): string {
  const rows = l.rowsPerSample ?? a.tokensPerSample;
  if (l.kind === 'conv' || l.kind === 'conv1x1') {
    return a.imageSize ? `at ${rows} positions per sample (its output feature map for a ${a.imageSize.source})` : `at ${rows} positions per sample`;
  }
  if (l.role === 'head' && rows === 1) return 'once per sample (after pooling)';
  if (l.role === 'token_mix') return `over ${rows} channels per sample (it mixes tokens)`;
  if (l.kind === 'attn_core') return `${rows} queries × ${l.out} keys × d ${l.in} per sample${l.causal ? ', causal (half the scores)' : ''} (${a.tokensSource})`;
  return `at ${rows} tokens/sample (${a.tokensSource})`;
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

export function lensLayers(a: Analysis): LensLayer[] {
  return a.layers
    .filter((l) => typeof l.in === 'number' && typeof l.out === 'number' && typeof l.count === 'number' && l.count > 0)
    .map((l) => ({
      name: l.name,
      role: l.role,
      in: l.in as number,
      out: l.out as number,
      count: l.count as number,
      rowsPerSample: l.rowsPerSample ?? a.tokensPerSample,
      // What the FLOPs are counted with (core's layerDenseCost), so the preview's totals are the lens's.
      ...(l.bias ? {} : { bias: false }),
      ...(l.causal ? { causal: true } : {}),
      line: l.range.start.line,
      file: l.file,
      decision: l.decision,
    }));
}

/** The preview command's argument for this analysis (null without a model). */
export function previewArgs(a: Analysis, uri: string): PreviewMasksArgs | undefined {
  return a.model ? { uri, name: a.model.name, kind: a.model.kind, tokensPerSample: a.tokensPerSample, layers: lensLayers(a) } : undefined;
}

/**
 * Where the file defines several models (classes no other model uses, registry functions), or the
 * user chose one that is not the default: a lens naming the model in use that opens the choice.
 */
export function chooseModelLens(a: Analysis, uri: string): CodeLens[] {
  if (!a.model) return [];
  const top = a.models.filter((m) => m.top);
  if (top.length < 2 && a.model.name === a.defaultModel) return [];
  const args: ChooseModelArgs = { uri, current: a.model.name, defaultModel: a.defaultModel, models: a.models };
  const others = top.filter((m) => m.name !== a.model!.name).length;
  const title = `Pixelfly model: ${a.model.name}${a.model.name === a.defaultModel ? ' (default)' : ''}${others > 0 ? ` · ${others} other${others > 1 ? 's' : ''} in this file` : ''} · choose…`;
  return [{ range: a.model.range, command: { title, command: CHOOSE_MODEL, arguments: [args] } }];
}

export function codeLenses(a: Analysis, file: string, uri: string, measured?: Measured): CodeLens[] {
  const preview = previewArgs(a, uri);
  if (!a.model || !preview || a.model.file !== file) return [];
  const range = a.model.range;
  // The engine's spec and the plan the lens shows, carried as they are to job.submit; for the
  // PyTorch runner, the same decisions under the source's layer names and the pins it built with.
  const train: TrainLensArgs = {
    uri,
    name: a.model.name,
    ...('spec' in a.engine ? { spec: a.engine.spec as unknown as Record<string, unknown>, plan: a.engine.plan } : { specError: a.engine.error }),
    torchPlan: analysisPlan(a),
    settings: analysisSettings(a),
  };
  let summary: string;
  if (a.plan) {
    // Layers are modules: an attention core counts in the FLOPs, not in the layers. A layer that is
    // already a PixelflyLinear counts as sparse.
    const layers = a.layers.filter((l) => l.decision && l.role !== 'attn_core');
    const sparse = layers.filter((l) => l.decision!.sparsify).length;
    const params = a.plan.denseParams > 0 ? 1 - a.plan.planParams / a.plan.denseParams : 0;
    const profile = a.plan.device.source === 'measured' ? 'measured profile' : 'default profile';
    const run = measured ? ` · measured ${measured.measuredSpeedup.toFixed(2)}×` : '';
    summary = `Pixelfly: ${sparse} of ${layers.length} layers sparse → ${pct(a.plan.flopFraction)} of matmul FLOPs, est. ${a.plan.estSpeedup.toFixed(2)}× per step (${profile})${run}, ${pct(params)} fewer parameters`;
  } else {
    summary = a.unresolved.length ? `Pixelfly: sizes unresolved — pin ${a.unresolved.slice(0, 3).join(', ')} (# pixelfly: NAME=VALUE)` : 'Pixelfly: no matmul layers found';
  }
  return [
    ...chooseModelLens(a, uri),
    { range, command: { title: summary, command: PREVIEW_MASKS, arguments: [preview] } },
    { range, command: { title: 'Preview masks', command: PREVIEW_MASKS, arguments: [preview] } },
    { range, command: { title: 'Train dense vs Pixelfly', command: TRAIN, arguments: [train] } },
  ];
}

// ------------------------------------------------------------------ edits

/** The call node a row's range covers. */
export function callAt(root: PyNode, range: Range): PyNode | undefined {
  let found: PyNode | undefined;
  const visit = (n: PyNode): void => {
    if (found) return;
    if (n.startRow > range.start.line || n.endRow < range.start.line) return;
    if (n.type === 'call' && n.startRow === range.start.line && n.startCol === range.start.character && n.endRow === range.end.line && n.endCol === range.end.character) {
      found = n;
      return;
    }
    for (const c of n.children) visit(c);
  };
  visit(root);
  return found;
}

export interface EditContext {
  uri: string;
  file: string;
  version: number;
  root: PyNode;
  /** The client shows code actions that are disabled with a reason (LSP `codeAction.disabledSupport`). */
  disabledSupport?: boolean;
}

const sameRange = (a: Range, b: Range): boolean =>
  a.start.line === b.start.line && a.start.character === b.start.character && a.end.line === b.end.line && a.end.character === b.end.character;

function configKey(c: Required<PixelflyConfig> | null | undefined): string {
  return c ? configArguments(c) : 'dense';
}

/**
 * Why the call that builds `row` cannot be rewritten to give it `config` (undefined when it can):
 * the layer is built inside library code, through a subclass or a name that stands for another
 * class, or at a call that builds other layers the edit would change too. `configOf` says what
 * the edit gives each other layer (default: the plan's decision). Plain sentences, for the
 * diagnostic, the disabled quick fix and "Apply to code".
 */
export function whyNoRewrite(a: Analysis, row: LayerRow, config: Required<PixelflyConfig>, configOf?: (other: LayerRow) => Required<PixelflyConfig> | null): string | undefined {
  const instead = 'sparsify the built model instead, with pixelfly_torch.sparsify(model, plan) and the plan from `pixelfly analyze --json`';
  const b = row.built;
  if (b && 'inside' in b) {
    const where = `${b.library && b.module ? b.module : basename(b.file)}, line ${b.line}`;
    return `${row.name} is built inside \`${b.inside}(…)\` (${b.library ? 'library code' : 'a helper'}: ${where}), not by a layer call here; ${instead}`;
  }
  if (b && b.subclass) return `${row.name} is a ${b.subclass}, a subclass of nn.${row.class} whose forward PixelflyLinear would not keep; ${instead}`;
  if (b && row.class !== 'Linear') return `\`${b.via}(…)\` builds a ${row.class} here, which only a direct call can be rewritten from; ${instead}`;
  if (!row.direct && !b) return `no call that builds ${row.name} was found in this file; ${instead}`;
  if (!['linear', 'hf_conv1d', 'pixelfly', 'conv1x1', 'conv1d', 'mha_in', 'mha_out'].includes(row.kind)) return `a ${row.class} is not a linear layer Pixelfly replaces`;
  if (row.keptDense) return row.keptDense;
  const give = configOf ?? ((o: LayerRow) => (o.decision?.sparsify ? o.decision.config ?? null : null));
  // Other layers the same call builds (an attention core is placed at its projection's call, and
  // built by none; an nn.MultiheadAttention's two projections are rewritten together).
  const others = a.layers.filter((o) => o !== row && o.count !== 0 && o.kind !== 'attn_core' && !isProjection(o, row) && o.file === row.file && sameRange(o.range, row.range));
  const differ = others.filter((o) => configKey(give(o)) !== configKey(config));
  if (differ.length) {
    const all = [row, ...others].sort((x, y) => a.layers.indexOf(x) - a.layers.indexOf(y));
    const listed = all.slice(0, 3).map((o) => `${o.name} ${o.in}→${o.out}`).join(', ') + (all.length > 3 ? `, and ${all.length - 3} more` : '');
    return (
      `the call at line ${row.line} builds ${all.length} layers (${listed}) and the plan does not give them one config, ` +
      `so rewriting it would change them all; build those layers with calls of their own, or ${instead}`
    );
  }
  return undefined;
}

/** `o` and `row` are the two projections of one nn.MultiheadAttention call. */
function isProjection(o: LayerRow, row: LayerRow): boolean {
  return (row.kind === 'mha_in' || row.kind === 'mha_out') && (o.kind === 'mha_in' || o.kind === 'mha_out') && o.name.replace(/\.\w+$/, '') === row.name.replace(/\.\w+$/, '');
}

/**
 * Replace each row's constructor by its Pixelfly class and add the package's imports. An
 * nn.MultiheadAttention becomes a PixelflyMultiheadAttention whose projections have the configs
 * given here, or else their plan's (`a`: the analysis the rows come from).
 */
export function sparsifyEdit(ctx: EditContext, rows: Array<{ row: LayerRow; config: Required<PixelflyConfig> }>, a?: Analysis): { edit: WorkspaceEdit } | { error: string } {
  const edits: TextEdit[] = [];
  const seen = new Set<string>();
  const classes = new Set<PixelflyClass>();
  for (const { row, config } of rows) {
    const key = `${row.range.start.line}:${row.range.start.character}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const call = callAt(ctx.root, row.range);
    if (!call) return { error: `${row.name}: the layer's call is no longer at line ${row.line} (the file changed since it was analysed)` };
    if (row.kind === 'mha_in' || row.kind === 'mha_out') {
      const projection = (kind: string): Required<PixelflyConfig> | null => {
        const given = rows.find((x) => x.row.kind === kind && (x.row === row || isProjection(x.row, row)));
        if (given) return given.config;
        const sibling = a?.layers.find((o) => o.kind === kind && isProjection(o, row));
        return sibling?.decision?.sparsify ? sibling.decision.config ?? null : null;
      };
      const r = pixelflyAttentionCall(call, projection('mha_in'), projection('mha_out'));
      if ('error' in r) return { error: `${row.name}: ${r.error}` };
      r.classes.forEach((c) => classes.add(c));
      edits.push({ range: row.range, newText: r.text });
      continue;
    }
    const r = pixelflyCall(call, config, { bias: row.bias });
    if ('error' in r) return { error: `${row.name}: ${r.error}` };
    classes.add(r.class);
    edits.push({ range: row.range, newText: r.text });
  }
  const imported = importedClasses(ctx.root);
  const missing = [...classes].filter((c) => !imported.has(c)).sort();
  if (missing.length) {
    const line = importLine(ctx.root);
    edits.push({ range: { start: { line, character: 0 }, end: { line, character: 0 } }, newText: `${importText(missing)}\n` });
  }
  return { edit: { documentChanges: [{ textDocument: { uri: ctx.uri, version: ctx.version }, edits }] } };
}

export function keepDenseEdit(uri: string, version: number, lineText: string, line: number): WorkspaceEdit {
  const end = lineText.replace(/\s+$/, '').length;
  return { documentChanges: [{ textDocument: { uri, version }, edits: [{ range: { start: { line, character: end }, end: { line, character: lineText.length } }, newText: '  # pixelfly: dense' }] }] };
}

/** The names a row's unresolved sizes (or PixelflyLinear config) would need pinned. */
function rowPins(l: LayerRow): string[] {
  const texts = [l.in, l.out, l.count, ...(l.pixelflyUnresolved ?? [])].filter((v): v is string => typeof v === 'string');
  return [...new Set(texts.flatMap(pinnableNames))];
}

/** Literal keyword arguments a call of the model in this file gives `names` (`ViT(image_size=256, dim=1024, …)`). */
function valuesFromCalls(root: PyNode, model: string, names: string[]): { values: Map<string, string>; line: number } | undefined {
  let best: { values: Map<string, string>; line: number } | undefined;
  const literal = /^(-?\d[\d_]*(\.\d+)?|True|False|'[^']*'|"[^"]*")$/;
  const visit = (n: PyNode): void => {
    if (n.type === 'call' && (n.field('function')?.text ?? '').split('.').pop() === model) {
      const values = new Map<string, string>();
      for (const arg of n.field('arguments')?.children ?? []) {
        if (arg.type !== 'keyword_argument') continue;
        const name = arg.field('name')!.text;
        const value = arg.field('value')!.text;
        if (names.includes(name) && literal.test(value)) values.set(name, value);
      }
      if (values.size && (!best || values.size > best.values.size)) best = { values, line: n.startRow + 1 };
    }
    n.children.forEach(visit);
  };
  visit(root);
  return best;
}

/** 0-based line above the model's definition (and its decorators), where pins read naturally. */
function pinLine(a: Analysis, root: PyNode): number {
  for (const s of root.children) {
    const def = s.type === 'decorated_definition' ? s.field('definition') : s;
    if ((def?.type === 'class_definition' || def?.type === 'function_definition') && def.field('name')?.text === a.model?.name) return s.startRow;
  }
  return importLine(root);
}

/**
 * The quick fix for unresolved sizes: a `# pixelfly: NAME=VALUE` line. With values from a call of
 * the model in this file when there is one; otherwise the names with `?` to fill in (the pragma
 * says what is missing until they are).
 */
function pinActions(a: Analysis, ctx: EditContext, names: string[], related: Diagnostic[]): CodeAction[] {
  if (names.length === 0) return [];
  const line = pinLine(a, ctx.root);
  const insert = (text: string): WorkspaceEdit => ({
    documentChanges: [{ textDocument: { uri: ctx.uri, version: ctx.version }, edits: [{ range: { start: { line, character: 0 }, end: { line, character: 0 } }, newText: `${text}\n` }] }],
  });
  const actions: CodeAction[] = [];
  const found = a.model ? valuesFromCalls(ctx.root, a.model.name, names) : undefined;
  if (found) {
    const pins = names.filter((n) => found.values.has(n)).map((n) => `${n}=${found.values.get(n)!.replace(/^['"]|['"]$/g, '')}`).join(', ');
    actions.push({
      title: `Pixelfly: pin ${pins} (the values ${a.model!.name}(…) gets at line ${found.line})`,
      kind: CodeActionKind.QuickFix,
      diagnostics: related,
      isPreferred: true,
      edit: insert(`# pixelfly: ${pins}`),
    });
  }
  actions.push({
    title: `Pixelfly: insert pins for ${names.join(', ')} (# pixelfly: NAME=VALUE, values to fill in)`,
    kind: CodeActionKind.QuickFix,
    diagnostics: related,
    edit: insert(`# pixelfly: ${names.map((n) => `${n}=?`).join(', ')}`),
  });
  return actions;
}

export function codeActions(a: Analysis, ctx: EditContext, range: Range, lines: string[], diags: Diagnostic[], preview?: PreviewMasksArgs): CodeAction[] {
  const rows = documentRows(a, ctx.file);
  const here = rows.filter((l) => l.count !== 0 && l.range.start.line <= range.end.line && l.range.end.line >= range.start.line);
  // First what the diagnostics promise (sparsify, or why not; pins), then previews, and "keep dense" last.
  const fixes: CodeAction[] = [];
  const previews: CodeAction[] = [];
  const dense: CodeAction[] = [];
  // After the edit the client checks that the file's interpreter can import pixelfly_torch (and offers to install it).
  const ensurePackage = { title: 'Check pixelfly_torch', command: ENSURE_TORCH_PACKAGE, arguments: [{ uri: ctx.uri }] };
  const unresolved = new Set<string>();
  const denseLines = new Set<number>();
  for (const l of here) {
    const d = l.decision;
    const related = diags.filter((x) => {
      const data = x.data as { name?: string; names?: string[] } | undefined;
      return data?.name === l.name || !!data?.names?.includes(l.name);
    });
    if (d?.sparsify && d.config && l.kind !== 'pixelfly') {
      let title = `Pixelfly: sparsify ${l.name} (est. ${d.estSpeedup.toFixed(2)}×, ${pct(saving(l))} fewer parameters)`;
      const why = whyNoRewrite(a, l, d.config);
      const r = why ? { error: why } : sparsifyEdit(ctx, [{ row: l, config: d.config }], a);
      if ('edit' in r) {
        fixes.push({ title, kind: CodeActionKind.QuickFix, diagnostics: related, isPreferred: true, edit: r.edit, command: ensurePackage });
      } else if (ctx.disabledSupport && !fixes.some((x) => x.disabled?.reason === r.error)) {
        // Layers a shared call builds have one reason: one action says it for all of them.
        const same = here.filter((o) => o.decision?.sparsify && o.decision.config && whyNoRewrite(a, o, o.decision.config) === r.error);
        if (same.length > 1) title = `Pixelfly: sparsify the ${same.length} layers built here`;
        fixes.push({ title, kind: CodeActionKind.QuickFix, diagnostics: related, disabled: { reason: r.error } });
      }
    }
    if (!d) for (const n of rowPins(l)) unresolved.add(n);
    if (preview && !['attn_core', 'conv', 'embedding'].includes(l.role) && preview.layers.some((x) => x.name === l.name)) {
      previews.push({ title: `Pixelfly: preview the mask of ${l.name}`, command: { title: 'Preview masks', command: PREVIEW_MASKS, arguments: [{ ...preview, focus: l.name }] } });
    }
    // `# pixelfly: dense` pins every layer its line builds: one action per line, naming them.
    if (!l.pinnedDense && l.kind !== 'attn_core' && !denseLines.has(l.range.start.line)) {
      denseLines.add(l.range.start.line);
      const names = here.filter((o) => o.range.start.line === l.range.start.line && o.kind !== 'attn_core').map((o) => o.name);
      dense.push({
        title: names.length > 3 ? `Pixelfly: keep the ${names.length} layers built on line ${l.line} dense` : `Pixelfly: keep ${names.join(', ')} dense`,
        kind: CodeActionKind.QuickFix,
        diagnostics: related,
        edit: keepDenseEdit(ctx.uri, ctx.version, lines[l.range.start.line] ?? '', l.range.start.line),
      });
    }
  }
  fixes.push(...pinActions(a, ctx, [...unresolved], diags.filter((x) => x.code === CODE_UNRESOLVED)));
  const suggested = rows.filter((l) => l.decision?.sparsify && l.decision.config && l.kind !== 'pixelfly' && l.count !== 0);
  const rewritable = suggested.filter((l) => !whyNoRewrite(a, l, l.decision!.config!));
  if (here.length > 0 && rewritable.length > 0) {
    const r = sparsifyEdit(ctx, rewritable.map((row) => ({ row, config: row.decision!.config! })), a);
    if ('edit' in r) {
      const title =
        rewritable.length === suggested.length
          ? `Pixelfly: sparsify all ${suggested.length} suggested layers in this file`
          : `Pixelfly: sparsify the ${rewritable.length} of ${suggested.length} suggested layers in this file whose calls can be rewritten`;
      fixes.push({ title, kind: CodeActionKind.QuickFix, edit: r.edit, command: ensurePackage });
    }
  }
  return [...fixes, ...previews, ...dense];
}
