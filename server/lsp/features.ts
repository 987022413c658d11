/**
 * LSP features computed from one analysis of one document: diagnostics, inlay hints, hovers,
 * CodeLens and code actions (with the PyTorch export's edits). Pure functions of the analysis,
 * the document and the parsed tree, so they are tested without a client.
 */
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
import { flatBlockButterflyLayout } from '../../core/layout';
import type { PixelflyConfig } from '../../core/pixelflyLayer';
import type { PyNode } from '../analysis/ast';
import type { Analysis, LayerRow } from '../analysis/analyze';
import { modelSpecFor } from '../analysis/spec';
import { PIXELFLY_IMPORT, hasPixelflyImport, importLine, pixelflyCall } from './rewrite';
import { maskPicture, pictureScale } from './maskText';
import { ENSURE_TORCH_PACKAGE, PREVIEW_MASKS, TRAIN, type LensLayer, type PreviewMasksArgs, type TrainLensArgs } from './protocol';

export const SOURCE = 'pixelfly';
export const CODE_SPARSIFY = 'pixelfly.sparsify';
export const CODE_UNRESOLVED = 'pixelfly.unresolved';

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

export function diagnostics(a: Analysis, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const l of documentRows(a, file)) {
    if (l.count === 0) continue;
    const d = l.decision;
    if (d?.sparsify && d.config) {
      out.push({
        range: l.range,
        severity: DiagnosticSeverity.Information,
        source: SOURCE,
        code: CODE_SPARSIFY,
        message:
          `Pixelfly: sparsify ${l.name} (${l.in}→${l.out}${countText(l)}, ${pct(l.flops_share ?? 0)} of matmul FLOPs): ` +
          `est. ${d.estSpeedup.toFixed(2)}× faster, ${pct(saving(l))} fewer parameters (${configText(d.config)}).`,
        data: { name: l.name },
      });
    } else if (!d && l.note && /unresolved/.test(l.note)) {
      out.push({ range: l.range, severity: DiagnosticSeverity.Hint, source: SOURCE, code: CODE_UNRESOLVED, message: `Pixelfly: ${l.name}: ${l.note}`, data: { name: l.name } });
    }
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
      const size = `${l.in}→${l.out}${countText(l)}`;
      const tail = l.count === 0 ? 'not built' : l.decision?.sparsify ? `Pixelfly ${l.decision.estSpeedup.toFixed(2)}×` : l.decision ? `dense` : 'unresolved';
      const share = l.flops_share !== null && l.count !== 0 ? ` · ${pct(l.flops_share)} FLOPs` : '';
      return `${rows.length > 1 ? `${l.name.split('.').pop()} ` : ''}${size}${share} · ${tail}`;
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

export function hover(a: Analysis, file: string, position: Position): Hover | null {
  const rows = documentRows(a, file).filter((l) => contains(l.range, position));
  if (rows.length === 0) return null;
  const sections = rows.map((l) => {
    const lines = [`**Pixelfly** · \`${l.name}\` — ${l.class} ${l.in}→${l.out}${countText(l)} · ${l.role}`];
    if (l.count === 0) lines.push('', 'Not built by the chosen model configuration.');
    else if (l.flops_share !== null) lines.push('', `${pct(l.flops_share)} of the model's matmul FLOPs at ${a.tokensPerSample} tokens/sample (${a.tokensSource}).`);
    const d = l.decision;
    if (d?.sparsify && d.config) {
      lines.push(
        '',
        `**Plan:** ${configText(d.config)} — ${pct(d.density ?? 0)} of blocks kept, est. **${d.estSpeedup.toFixed(2)}×**, parameters ${fmt(d.denseParams)} → ${fmt(d.planParams)}.`,
      );
      try {
        const layout = flatBlockButterflyLayout(l.out as number, l.in as number, d.config);
        lines.push('', `Mask (${layout.blockRows}×${layout.blockCols} blocks of ${layout.block}×${layout.block}, ${pictureScale(layout)}; █ kept, · dropped):`, '```text', maskPicture(layout), '```');
      } catch (e) {
        lines.push('', `(no mask: ${(e as Error).message})`);
      }
    }
    lines.push('', `> ${d?.reason ?? l.note ?? ''}`);
    return lines.join('\n');
  });
  return { contents: { kind: MarkupKind.Markdown, value: sections.join('\n\n---\n\n') }, range: rows[0].range };
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
      line: l.range.start.line,
      file: l.file,
      decision: l.decision,
    }));
}

/** The preview command's argument for this analysis (null without a model). */
export function previewArgs(a: Analysis, uri: string): PreviewMasksArgs | undefined {
  return a.model ? { uri, name: a.model.name, kind: a.model.kind, tokensPerSample: a.tokensPerSample, layers: lensLayers(a) } : undefined;
}

export function codeLenses(a: Analysis, file: string, uri: string): CodeLens[] {
  const preview = previewArgs(a, uri);
  if (!a.model || !preview || a.model.file !== file) return [];
  const range = a.model.range;
  const spec = modelSpecFor(a);
  const train: TrainLensArgs = { uri, name: a.model.name, ...('spec' in spec ? { spec: spec.spec as unknown as Record<string, unknown> } : { specError: spec.error }) };
  let summary: string;
  if (a.plan) {
    const sparse = a.layers.filter((l) => l.decision?.sparsify).length;
    const planned = a.layers.filter((l) => l.decision).length;
    const params = a.plan.denseParams > 0 ? 1 - a.plan.planParams / a.plan.denseParams : 0;
    summary = `Pixelfly: ${sparse} of ${planned} layers → ${pct(a.plan.flopFraction)} of matmul FLOPs, est. ${a.plan.estSpeedup.toFixed(2)}× faster, ${pct(params)} fewer parameters`;
  } else {
    summary = a.unresolved.length ? `Pixelfly: sizes unresolved — pin ${a.unresolved.slice(0, 3).join(', ')} (# pixelfly: NAME=VALUE)` : 'Pixelfly: no matmul layers found';
  }
  return [
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
}

/** Replace each row's constructor by PixelflyLinear(...) and add the package's import. */
export function sparsifyEdit(ctx: EditContext, rows: Array<{ row: LayerRow; config: Required<PixelflyConfig> }>): { edit: WorkspaceEdit } | { error: string } {
  const edits: TextEdit[] = [];
  const seen = new Set<string>();
  for (const { row, config } of rows) {
    const key = `${row.range.start.line}:${row.range.start.character}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const call = callAt(ctx.root, row.range);
    if (!call) return { error: `${row.name}: the layer's call is no longer at line ${row.line} (re-analyse)` };
    const text = pixelflyCall(call, config);
    if (typeof text !== 'string') return { error: `${row.name}: ${text.error}` };
    edits.push({ range: row.range, newText: text });
  }
  if (!hasPixelflyImport(ctx.root)) {
    const line = importLine(ctx.root);
    edits.push({ range: { start: { line, character: 0 }, end: { line, character: 0 } }, newText: `${PIXELFLY_IMPORT}\n` });
  }
  return { edit: { documentChanges: [{ textDocument: { uri: ctx.uri, version: ctx.version }, edits }] } };
}

export function keepDenseEdit(uri: string, version: number, lineText: string, line: number): WorkspaceEdit {
  const end = lineText.replace(/\s+$/, '').length;
  return { documentChanges: [{ textDocument: { uri, version }, edits: [{ range: { start: { line, character: end }, end: { line, character: lineText.length } }, newText: '  # pixelfly: dense' }] }] };
}

export function codeActions(a: Analysis, ctx: EditContext, range: Range, lines: string[], diags: Diagnostic[], preview?: PreviewMasksArgs): CodeAction[] {
  const rows = documentRows(a, ctx.file);
  const here = rows.filter((l) => l.count !== 0 && l.range.start.line <= range.end.line && l.range.end.line >= range.start.line);
  const actions: CodeAction[] = [];
  // After the edit the client checks that the file's interpreter can import pixelfly_torch (and offers to install it).
  const ensurePackage = { title: 'Check pixelfly_torch', command: ENSURE_TORCH_PACKAGE, arguments: [{ uri: ctx.uri }] };
  for (const l of here) {
    const d = l.decision;
    const related = diags.filter((x) => (x.data as { name?: string } | undefined)?.name === l.name);
    if (d?.sparsify && d.config && l.direct) {
      const r = sparsifyEdit(ctx, [{ row: l, config: d.config }]);
      if ('edit' in r) {
        actions.push({
          title: `Pixelfly: sparsify ${l.name} (est. ${d.estSpeedup.toFixed(2)}×, ${pct(saving(l))} fewer parameters)`,
          kind: CodeActionKind.QuickFix,
          diagnostics: related,
          isPreferred: true,
          edit: r.edit,
          command: ensurePackage,
        });
      }
    }
    if (preview && preview.layers.some((x) => x.name === l.name)) {
      actions.push({ title: `Pixelfly: preview the mask of ${l.name}`, command: { title: 'Preview masks', command: PREVIEW_MASKS, arguments: [{ ...preview, focus: l.name }] } });
    }
    if (!l.pinnedDense) {
      actions.push({ title: `Pixelfly: keep ${l.name} dense`, kind: CodeActionKind.QuickFix, diagnostics: related, edit: keepDenseEdit(ctx.uri, ctx.version, lines[l.range.start.line] ?? '', l.range.start.line) });
    }
  }
  const suggested = rows.filter((l) => l.decision?.sparsify && l.decision.config && l.direct && l.count !== 0);
  if (here.length > 0 && suggested.length > 0) {
    const r = sparsifyEdit(ctx, suggested.map((row) => ({ row, config: row.decision!.config! })));
    if ('edit' in r) {
      actions.push({ title: `Pixelfly: sparsify all ${suggested.length} suggested layers in this file`, kind: CodeActionKind.QuickFix, edit: r.edit, command: ensurePackage });
    }
  }
  return actions;
}
