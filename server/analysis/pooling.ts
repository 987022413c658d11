/**
 * Whether a classifier head runs once per sample (after pooling the tokens or the feature map) or
 * once per token, read from the forward code of the module that owns it: `self.head(x)` where
 * `x = x.mean(1)`, `x[:, 0]`, `self.avgpool(x)`, … is pooled; `self.lm_head(x)` on the hidden
 * states is not. A head called both ways (nanoGPT's inference shortcut `x[:, [-1], :]`) counts as
 * per token: the training path is the one that costs.
 */
import type { PyNode } from './ast';
import type { ClassInfo, Value } from './values';

/** Expressions that reduce the token (or spatial) axis to one row per sample. */
const POOLED = /\.(mean|sum|amax|max|logsumexp)\(|\[\s*:\s*,\s*-?\d+\s*[\],]|\[\s*:\s*,\s*\[\s*-?\d+\s*\]|pool|\bcls\b|cls_token|\[\s*torch\.arange\(/i;

function calls(node: PyNode, callee: string, out: PyNode[] = []): PyNode[] {
  if (node.type === 'call' && node.field('function')?.text === callee) out.push(node);
  for (const c of node.children) calls(c, callee, out);
  return out;
}

/** Assignments to `name` inside `fn` that come before `at`: the right-hand side's text for that name. */
function assignedBefore(fn: PyNode, name: string, at: PyNode): string[] {
  const out: string[] = [];
  const visit = (n: PyNode): void => {
    if (n.startIndex >= at.startIndex) return;
    if (n.type === 'assignment') {
      const left = n.field('left');
      const right = n.field('right');
      if (left && right) {
        const targets = left.type === 'identifier' ? [left] : left.children;
        const values = left.type === 'identifier' ? [right] : right.type === 'expression_list' || right.type === 'tuple' ? right.children : [];
        targets.forEach((t, i) => {
          if (t.type === 'identifier' && t.text === name) out.push((values[i] ?? right).text);
        });
      }
    }
    n.children.forEach(visit);
  };
  visit(fn);
  return out;
}

function methods(cls: ClassInfo): PyNode[] {
  const out: PyNode[] = [];
  for (let c: ClassInfo | undefined = cls; c; ) {
    for (const s of c.node.field('body')?.children ?? []) {
      const def = s.type === 'decorated_definition' ? s.field('definition') : s;
      if (def?.type === 'function_definition') out.push(def);
    }
    const base: Value | undefined = c.bases.find((b) => b.k === 'class');
    c = base?.k === 'class' ? base.cls : undefined;
  }
  return out;
}

/**
 * true when every call of one of `attrs` (tried in order, e.g. `heads` then `head`) in the owner's
 * methods gets a pooled input, false when one gets the tokens, undefined when no call is found.
 */
export function headIsPooled(owner: Value | undefined, attrs: string[]): boolean | undefined {
  if (owner?.k !== 'obj' || !owner.cls) return undefined;
  const fns = methods(owner.cls);
  for (const attr of attrs) {
    let verdict: boolean | undefined;
    for (const fn of fns) {
      for (const call of calls(fn, `self.${attr}`)) {
        const arg = call.field('arguments')?.children.find((a) => a.type !== 'comment' && a.type !== 'keyword_argument');
        if (!arg) continue;
        const pooled = POOLED.test(arg.text) || (arg.type === 'identifier' && assignedBefore(fn, arg.text, call).some((t) => POOLED.test(t)));
        verdict = verdict === undefined ? pooled : verdict && pooled;
      }
    }
    if (verdict !== undefined) return verdict;
  }
  return undefined;
}
