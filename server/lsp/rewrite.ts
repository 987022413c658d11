/**
 * The quick fixes' rewriting: `nn.Linear(...)` (or Hugging Face `Conv1D(nf, nx)`) becomes
 * `PixelflyLinear(in, out, ..., block=…, butterfly_size=…, …)`, imported from the `pixelfly_torch`
 * package (pytorch/; `pixelfly torch install` puts it into the user's interpreter).
 */
import type { PixelflyConfig } from '../../core/pixelflyLayer';
import type { PyNode } from '../analysis/ast';

/** The import the rewritten file needs. */
export const PIXELFLY_IMPORT = 'from pixelfly_torch import PixelflyLinear';

interface CallArgs {
  positional: string[];
  keyword: Map<string, string>;
}

function callArgs(call: PyNode): CallArgs {
  const positional: string[] = [];
  const keyword = new Map<string, string>();
  for (const a of call.field('arguments')?.children ?? []) {
    if (a.type === 'keyword_argument') keyword.set(a.field('name')!.text, a.field('value')!.text);
    else if (a.type !== 'comment') positional.push(a.text);
  }
  return { positional, keyword };
}

/** Keyword arguments of the PixelflyLinear call for a planned config (defaults left out). */
export function configArguments(c: Required<PixelflyConfig>): string {
  const parts = [`block=${c.block}`, `butterfly_size=${c.butterflySize}`, `n_factors=${c.nFactors}`, `rank=${c.rank}`];
  if (c.globalSize) parts.push(`global_size=${c.globalSize}`);
  if (c.shuffle) parts.push('shuffle=True');
  return parts.join(', ');
}

/**
 * The replacement for a layer constructor call, or an error message when the call cannot be
 * rewritten faithfully (e.g. `*args` whose sizes are not visible).
 */
export function pixelflyCall(call: PyNode, config: Required<PixelflyConfig>): string | { error: string } {
  const fn = call.field('function')?.text ?? '';
  const { positional, keyword } = callArgs(call);
  if (positional.some((p) => p.startsWith('*')) || [...keyword.keys()].length !== (call.field('arguments')?.children.filter((a) => a.type === 'keyword_argument').length ?? 0)) {
    return { error: `cannot rewrite ${fn}(…): its arguments are unpacked` };
  }
  let inText: string | undefined;
  let outText: string | undefined;
  let biasText: string | undefined;
  const keep: string[] = [];
  if (/(^|\.)Conv1D$/.test(fn)) {
    // Hugging Face Conv1D(nf, nx): output size first.
    outText = positional[0] ?? keyword.get('nf');
    inText = positional[1] ?? keyword.get('nx');
  } else if (/(^|\.)(Linear|PixelflyLinear)$/.test(fn)) {
    inText = positional[0] ?? keyword.get('in_features');
    outText = positional[1] ?? keyword.get('out_features');
    biasText = positional[2] ?? keyword.get('bias');
    for (const k of ['device', 'dtype']) if (keyword.has(k)) keep.push(`${k}=${keyword.get(k)}`);
  } else {
    return { error: `${fn}(…) is not a layer constructor the export can rewrite` };
  }
  if (!inText || !outText) return { error: `cannot find the in/out sizes of ${fn}(…)` };
  const args = [inText, outText, ...(biasText ? [`bias=${biasText}`] : []), ...keep, configArguments(config)];
  return `PixelflyLinear(${args.join(', ')})`;
}

/** The file already imports PixelflyLinear from the package (or from a module copy an older version wrote beside it). */
export function hasPixelflyImport(root: PyNode): boolean {
  return root.children.some((s) => s.type === 'import_from_statement' && /pixelfly_torch/.test(s.field('module_name')?.text ?? '') && /\bPixelflyLinear\b/.test(s.text));
}

/** 0-based line where the import goes: after the last top-level import (or the docstring / __future__ lines). */
export function importLine(root: PyNode): number {
  let line = 0;
  for (const s of root.children) {
    if (s.type === 'import_statement' || s.type === 'import_from_statement' || s.type === 'future_import_statement') line = s.endRow + 1;
    else if (line === 0 && s.type === 'expression_statement' && s.children[0]?.type === 'string') line = s.endRow + 1;
  }
  return line;
}
