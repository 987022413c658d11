/**
 * Attention cores: the QKᵀ and scores·V products of every attention layer, which are no module's
 * weights but a large share of a transformer's FLOPs at long contexts. One row per attention
 * module (found through its query/key/value projections), with
 *   in  = d, the width of the heads together (the output projection's input, or a fused qkv's third),
 *   out = the keys each query attends (the tokens, or the window of windowed attention),
 *   rowsPerSample = the queries (tokens per sample),
 *   causal when the code masks future keys (a tril/triu mask, is_causal=True, …).
 * core/inventory.ts `layerDenseCost` turns that into FLOPs.
 */
import type { LayerRow } from './analyze';
import type { Value } from './values';

type Obj = Extract<Value, { k: 'obj' }>;

/** Code that builds or applies a causal mask. */
const CAUSAL = /\b(tril|triu)\s*\(|is_causal\s*=\s*True|\bcausal\s*=\s*True|causal_mask|_prepare_4d_causal|make_causal_mask/;
/** A query projection among separate q/k/v projections. */
const QUERY = /^(q|q_proj|wq|to_q|query|q_lin|q_attn)$/i;

/** The attention module's path: `transformer.h.*.attn.c_attn` → `transformer.h.*.attn`; an nn.MultiheadAttention's rows name it. */
function attentionPath(r: LayerRow): string {
  const name = r.kind === 'mha_in' || r.kind === 'mha_out' ? r.name.replace(/\.(in|out)_proj$/, '') : r.name;
  return r.kind === 'mha_in' || r.kind === 'mha_out' ? name : name.split('.').slice(0, -1).join('.');
}

function classText(owner: Obj | undefined): string {
  const texts: string[] = [];
  for (let c = owner?.cls; c; ) {
    texts.push(c.node.text);
    const base: Value | undefined = c.bases.find((b) => b.k === 'class');
    c = base?.k === 'class' ? base.cls : undefined;
  }
  return texts.join('\n');
}

function windowKeys(owner: Obj | undefined, tokens: number): number | undefined {
  const w = owner?.attrs.get('window_size');
  const n = w?.k === 'num' ? w.v : w?.k === 'list' && w.items.every((x) => x.k === 'num') ? w.items.reduce((a, x) => a * (x as { v: number }).v, 1) : undefined;
  return n !== undefined && Number.isInteger(n) && n >= 1 ? Math.min(n, tokens) : undefined;
}

/**
 * The attention-core rows of a model's layer rows. `ownerOf` gives the module object that holds a
 * row's layer (the attention module, or the nn.MultiheadAttention itself); `modelForward` is the
 * model's forward source (LLaMA builds its causal mask there).
 */
export function attentionCoreRows(rows: LayerRow[], ownerOf: (r: LayerRow) => Obj | undefined, tokens: number, modelForward: string): LayerRow[] {
  const groups = new Map<string, LayerRow[]>();
  for (const r of rows) {
    if (r.role !== 'attn_qkv' || typeof r.count !== 'number' || r.count === 0 || typeof r.in !== 'number' || typeof r.out !== 'number') continue;
    const path = attentionPath(r);
    groups.set(path, [...(groups.get(path) ?? []), r]);
  }
  const cores: LayerRow[] = [];
  for (const [path, qkv] of groups) {
    const first = qkv[0];
    const outs = rows.filter(
      (r) => r.role === 'attn_out' && typeof r.in === 'number' && r.count === first.count && (attentionPath(r) === path || r.name.startsWith(`${path}.`)),
    );
    const output = outs.sort((a, b) => a.name.length - b.name.length)[0];
    const query = qkv.find((r) => QUERY.test(r.name.split('.').pop() ?? ''));
    const fused = qkv.length === 1 && (first.out as number) % 3 === 0 ? (first.out as number) / 3 : undefined;
    const d = (output?.in as number | undefined) ?? (query?.out as number | undefined) ?? fused ?? (first.out as number);
    const owner = ownerOf(first);
    const causal = CAUSAL.test(classText(owner)) || CAUSAL.test(modelForward);
    const keys = windowKeys(owner, tokens) ?? tokens;
    cores.push({
      file: first.file,
      line: first.line,
      range: first.range,
      name: path ? `${path}.(core)` : '(core)',
      class: 'attention',
      kind: 'attn_core',
      in: d,
      out: keys,
      count: first.count,
      role: 'attn_core',
      rowsPerSample: tokens,
      flops: null,
      flops_share: null,
      bias: false,
      causal,
      pinnedDense: false,
      direct: false,
      decision: null,
    });
  }
  return cores;
}

