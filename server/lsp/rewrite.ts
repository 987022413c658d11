/**
 * The quick fixes' rewriting: `nn.Linear(...)` (or Hugging Face `Conv1D(nf, nx)`, or a name that
 * stands for nn.Linear here) becomes `PixelflyLinear(in, out, ..., block=…, butterfly_size=…, …)`,
 * and a pointwise `nn.Conv2d(in, out, kernel_size=1)` becomes `PixelflyPointwiseConv(in, out, …)`,
 * both imported from the `pixelfly_torch` package (pytorch/; `pixelfly torch install` puts it into
 * the user's interpreter).
 */
import type { PixelflyConfig } from '../../core/pixelflyLayer';
import type { PyNode } from '../analysis/ast';

export const PIXELFLY_PACKAGE = 'pixelfly_torch';
export type PixelflyClass = 'PixelflyLinear' | 'PixelflyPointwiseConv' | 'PixelflyMultiheadAttention';

/** The import line for `names` from the package. */
export function importText(names: PixelflyClass[]): string {
  return `from ${PIXELFLY_PACKAGE} import ${names.join(', ')}`;
}

interface CallArgs {
  positional: string[];
  keyword: Map<string, string>;
  /** `*args` / `**kwargs` as written. */
  splats: string[];
}

function callArgs(call: PyNode): CallArgs {
  const positional: string[] = [];
  const keyword = new Map<string, string>();
  const splats: string[] = [];
  for (const a of call.field('arguments')?.children ?? []) {
    if (a.type === 'keyword_argument') keyword.set(a.field('name')!.text, a.field('value')!.text);
    else if (a.type === 'list_splat' || a.type === 'dictionary_splat') splats.push(a.text);
    else if (a.type !== 'comment') positional.push(a.text);
  }
  return { positional, keyword, splats };
}

/** PixelflyLinear's config keywords (the rewrite writes them anew). */
const CONFIG_KEYWORDS = new Set(['block', 'butterfly_size', 'n_factors', 'rank', 'global_size', 'shuffle']);

/** Keyword arguments of the PixelflyLinear call for a planned config (defaults left out). */
export function configArguments(c: Required<PixelflyConfig>): string {
  const parts = [`block=${c.block}`, `butterfly_size=${c.butterflySize}`, `n_factors=${c.nFactors}`, `rank=${c.rank}`];
  if (c.globalSize) parts.push(`global_size=${c.globalSize}`);
  if (c.shuffle) parts.push('shuffle=True');
  return parts.join(', ');
}

export interface RewriteOptions {
  /** The layer's bias as the analysis resolved it: written out when the call does not say (a partial(nn.Linear, bias=False)). */
  bias?: boolean;
}

/**
 * The replacement for a layer constructor call, or a plain sentence saying why the call cannot be
 * rewritten faithfully. `nn.Linear`'s own keywords (in_features, out_features, bias, device,
 * dtype) are PixelflyLinear's too, so unpacked `*args` / `**kwargs` are kept as written.
 */
export function pixelflyCall(call: PyNode, config: Required<PixelflyConfig>, options: RewriteOptions = {}): { text: string; class: PixelflyClass } | { error: string } {
  const fn = call.field('function')?.text ?? '';
  const { positional, keyword, splats } = callArgs(call);
  const short = `${fn}(…)`;
  if (/(^|\.)Conv1D$/.test(fn)) {
    // Hugging Face Conv1D(nf, nx): output size first.
    if (splats.length) return { error: `${short} passes its sizes unpacked (${splats.join(', ')}), and Conv1D takes them out-first (nf, nx): write PixelflyLinear(nx, nf, …) by hand` };
    const outText = positional[0] ?? keyword.get('nf');
    const inText = positional[1] ?? keyword.get('nx');
    if (!inText || !outText) return { error: `cannot find the sizes (nf, nx) of ${short}` };
    return { text: `PixelflyLinear(${[inText, outText, configArguments(config)].join(', ')})`, class: 'PixelflyLinear' };
  }
  if (/(^|\.)(Conv[123]d|PixelflyPointwiseConv)$/.test(fn)) {
    if (splats.length) return { error: `${short} passes its arguments unpacked (${splats.join(', ')}): the rewrite cannot tell the kernel and stride from the sizes; write PixelflyPointwiseConv(in, out, …) by hand` };
    const pointwiseConv = /PixelflyPointwiseConv$/.test(fn);
    const inText = positional[0] ?? keyword.get(pointwiseConv ? 'in_features' : 'in_channels');
    const outText = positional[1] ?? keyword.get(pointwiseConv ? 'out_features' : 'out_channels');
    const biasText = pointwiseConv ? positional[2] ?? keyword.get('bias') : positional[7] ?? keyword.get('bias');
    if (!inText || !outText) return { error: `cannot find the channels of ${short}` };
    const keep = ['device', 'dtype'].filter((k) => keyword.has(k)).map((k) => `${k}=${keyword.get(k)}`);
    const args = [inText, outText, ...(biasText ? [`bias=${biasText}`] : []), ...keep, configArguments(config)];
    return { text: `PixelflyPointwiseConv(${args.join(', ')})`, class: 'PixelflyPointwiseConv' };
  }
  // nn.Linear, a PixelflyLinear being given another config, or a name standing for nn.Linear.
  if (positional.length > 3) return { error: `${short} passes device or dtype positionally, which PixelflyLinear takes as keywords only` };
  const inText = positional[0] ?? keyword.get('in_features');
  const outText = positional[1] ?? keyword.get('out_features');
  if (!splats.length && (!inText || !outText)) return { error: `cannot find the in/out sizes of ${short}` };
  const args = [
    ...positional,
    ...[...keyword].filter(([k]) => !CONFIG_KEYWORDS.has(k)).map(([k, v]) => `${k}=${v}`),
    ...splats,
  ];
  const biasWritten = positional.length >= 3 || keyword.has('bias') || splats.some((x) => x.startsWith('**'));
  if (options.bias === false && !biasWritten) args.push('bias=False');
  args.push(configArguments(config));
  return { text: `PixelflyLinear(${args.join(', ')})`, class: 'PixelflyLinear' };
}

function wrap(text: string): string {
  return /^[\w.]+$/.test(text) ? text : `(${text})`;
}

/**
 * `nn.MultiheadAttention(E, H, …)` as `PixelflyMultiheadAttention(E, H, in_proj, out_proj, …)`, each
 * projection a PixelflyLinear with its config, or the dense nn.Linear it was (null). The call's
 * dropout and batch_first are kept; its bias, device and dtype go to the projections.
 */
export function pixelflyAttentionCall(
  call: PyNode,
  inProj: Required<PixelflyConfig> | null,
  outProj: Required<PixelflyConfig> | null,
): { text: string; classes: PixelflyClass[] } | { error: string } {
  const fn = call.field('function')?.text ?? '';
  const { positional, keyword, splats } = callArgs(call);
  if (splats.length) return { error: `${fn}(…) passes its arguments unpacked (${splats.join(', ')}): write PixelflyMultiheadAttention(embed_dim, num_heads, in_proj, out_proj, …) by hand` };
  const at = (i: number, name: string): string | undefined => positional[i] ?? keyword.get(name);
  const e = at(0, 'embed_dim');
  const h = at(1, 'num_heads');
  if (!e || !h) return { error: `cannot find embed_dim and num_heads of ${fn}(…)` };
  const shared = [
    ...(at(3, 'bias') ? [`bias=${at(3, 'bias')}`] : []),
    ...['device', 'dtype'].filter((k) => keyword.has(k)).map((k) => `${k}=${keyword.get(k)}`),
  ];
  const linear = fn.replace(/MultiheadAttention$/, 'Linear');
  const proj = (inF: string, outF: string, c: Required<PixelflyConfig> | null): string =>
    c ? `PixelflyLinear(${[inF, outF, ...shared, configArguments(c)].join(', ')})` : `${linear}(${[inF, outF, ...shared].join(', ')})`;
  const rest = [...(at(2, 'dropout') ? [`dropout=${at(2, 'dropout')}`] : []), ...(at(8, 'batch_first') ? [`batch_first=${at(8, 'batch_first')}`] : [])];
  const args = [e, h, proj(e, `3 * ${wrap(e)}`, inProj), proj(e, e, outProj), ...rest];
  return { text: `PixelflyMultiheadAttention(${args.join(', ')})`, classes: ['PixelflyMultiheadAttention', ...(inProj || outProj ? (['PixelflyLinear'] as const) : [])] };
}

/** The package's classes `root` already imports (from the package, or a module copy an older version wrote beside it). */
export function importedClasses(root: PyNode): Set<string> {
  const out = new Set<string>();
  for (const s of root.children) {
    if (s.type !== 'import_from_statement' || !/pixelfly_torch/.test(s.field('module_name')?.text ?? '')) continue;
    for (const n of s.fieldAll('name')) out.add((n.type === 'aliased_import' ? n.field('alias') : n)?.text ?? '');
  }
  return out;
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
