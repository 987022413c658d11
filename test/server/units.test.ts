// Smaller pieces of the analysis: incremental re-parsing gives the same tree as a fresh parse,
// pins parse as Python literals with clear errors, site-packages discovery, the mask picture,
// the runaway-code guard, and the quick fix's call rewriting (Conv1D's swapped arguments).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ParseCache, sitePackages, textEdit } from '../../server/analysis/modules';
import { pythonParser } from '../../server/analysis/parser';
import { parsePin, readPragmas } from '../../server/analysis/pragmas';
import { maskPicture } from '../../server/lsp/maskText';
import { importLine, importText, importedClasses, pixelflyCall } from '../../server/lsp/rewrite';
import { classifyRole } from '../../server/analysis/roles';
import { flatBlockButterflyLayout } from '../../core/layout';
import type { PyNode } from '../../server/analysis/ast';
import { fixture, run } from './helpers';

function shape(n: PyNode): string {
  return `(${n.type}@${n.startRow}:${n.startCol}-${n.endRow}:${n.endCol}${n.children.map(shape).join('')})`;
}

test('incremental re-parse after edits equals a fresh parse (insertions, deletions, non-ASCII text)', async () => {
  const parser = await pythonParser();
  const base = readFileSync(fixture('nanogpt', 'model.py'), 'utf8');
  const edits = [
    (s: string) => s.replace('n_embd: int = 768', 'n_embd: int = 1024'),
    (s: string) => s.replace('class MLP(nn.Module):', '# é€ comment\nclass MLP(nn.Module):'),
    (s: string) => s.replace(/\n\nclass Block[\s\S]*?(?=\n@dataclass)/, '\n'),
    (s: string) => `${s}\nx = nn.Linear(3, 4)\n`,
  ];
  const cache = new ParseCache(parser);
  cache.get('/m.py', base);
  let text = base;
  for (const edit of edits) {
    const next = edit(text);
    assert.notEqual(next, text);
    const incremental = cache.get('/m.py', next).root;
    const fresh = new ParseCache(parser).get('/m.py', next).root;
    assert.equal(shape(incremental), shape(fresh));
    text = next;
  }
});

test('textEdit finds the changed span', () => {
  const e = textEdit('abc\ndef\nghi', 'abc\ndXYf\nghi');
  assert.deepEqual([e.startIndex, e.oldEndIndex, e.newEndIndex], [5, 6, 7]);
  assert.deepEqual(e.startPosition, { row: 1, column: 1 });
  assert.deepEqual(e.newEndPosition, { row: 1, column: 3 });
});

test('pins: Python literals, and errors that say what is wrong', () => {
  assert.deepEqual(parsePin('n_embd=768'), ['n_embd', { k: 'num', v: 768 }]);
  assert.deepEqual(parsePin(' mlp_ratio = 2.5 '), ['mlp_ratio', { k: 'num', v: 2.5 }]);
  assert.deepEqual(parsePin('model_type=gpt2'), ['model_type', { k: 'str', v: 'gpt2' }]);
  assert.deepEqual(parsePin('bias=False'), ['bias', { k: 'bool', v: false }]);
  assert.throws(() => parsePin('n_embd'), /expected NAME=VALUE/);
  assert.throws(() => parsePin('n-embd=3'), /'n-embd' is not a Python name/);
  assert.throws(() => parsePin('n_embd='), /no value given for 'n_embd'/);
  assert.throws(() => parsePin('dim=?'), /fill in the value of 'dim' the model is built with/);
  const p = readPragmas('x = 1  # pixelfly: dense\n# pixelfly: dense\n\ny = 2\nz = 3  # note  # pixelfly: depth=6, tokens=77\n');
  assert.deepEqual([...p.denseLines].sort(), [0, 3]);
  assert.deepEqual(p.pins.get('depth'), { k: 'num', v: 6 });
  assert.deepEqual(p.pinLines.get('tokens'), 4);
});

test('site-packages of an interpreter; none for one that does not exist', async () => {
  const dirs = await sitePackages('/usr/bin/python3');
  assert.ok(dirs.some((d) => /(site|dist)-packages/.test(d)), `found ${dirs.join(', ')}`);
  assert.deepEqual(await sitePackages('/nonexistent/python'), []);
});

test('mask picture: one character per block when small, tiles when large', () => {
  const small = flatBlockButterflyLayout(128, 128, { block: 32, butterflySize: 4, nFactors: 1 });
  assert.equal(maskPicture(small), '██··\n██··\n··██\n··██');
  const big = flatBlockButterflyLayout(3072, 768, { block: 32, butterflySize: 16, nFactors: 2 });
  const lines = maskPicture(big).split('\n');
  assert.equal(lines.length, 24);
  assert.ok(lines.every((l) => l.length === 24));
});

test('runaway model code stops at the step limit with a note, not a hang', async () => {
  const source = 'import torch.nn as nn\ndef f(n):\n    return f(n + 1)\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(8, 8)\n        x = [i * j for i in range(200) for j in range(200) for k in range(200)]\n';
  const a = await run({ file: fixture('nanogpt', 'model.py'), source, maxSteps: 50000 });
  assert.ok(a.notes.some((n) => /analysis stopped after 50000 steps/.test(n)), a.notes.join('; '));
  const recursive = await run({ file: fixture('nanogpt', 'model.py'), source: source.replace('        x = [i * j for i in range(200) for j in range(200) for k in range(200)]\n', '        f(0)\n') });
  assert.ok(recursive.notes.some((n) => /call depth limit/.test(n)), recursive.notes.join('; '));
  assert.deepEqual(recursive.layers.map((l) => [l.name, l.in, l.out]), [['fc', 8, 8]]);
  // A huge loop is not iterated: it runs once, weighted by its length.
  const huge = await run({ file: fixture('nanogpt', 'model.py'), source: 'import torch.nn as nn\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fcs = nn.ModuleList([nn.Linear(8, 8) for _ in range(10**9)])\n' });
  assert.deepEqual(huge.layers.map((l) => [l.name, l.count]), [['fcs.*', 10 ** 9]]);
});

test('quick-fix call rewriting: nn.Linear keeps its arguments (unpacked ones too), HF Conv1D(nf, nx) becomes PixelflyLinear(nx, nf), a 1x1 Conv2d PixelflyPointwiseConv', async () => {
  const parser = await pythonParser();
  const src = [
    '"""doc"""',
    'from __future__ import annotations',
    'import torch.nn as nn',
    'a = nn.Linear(d, 4 * d, bias=False, dtype=t)',
    'b = Conv1D(3 * e, e)',
    'c = nn.Linear(in_features=x, out_features=y)',
    'd = nn.Linear(*sizes)',
    'e = nn.Linear(**cfg, bias=False)',
    'f = Conv1D(**kw)',
    'g = nn.Conv2d(c, 4 * c, kernel_size=1, bias=False)',
    'h = nn.Conv2d(c, o, 1, 1, 0, 1, 1, False)',
    'i = linear(d, d)',
    'j = PixelflyLinear(d, d, bias=False, block=16, rank=4)',
    'k = nn.Linear(d, d, True, "cpu")',
    '',
  ].join('\n');
  const root = new ParseCache(parser).get('/x.py', src).root;
  const calls: PyNode[] = [];
  const visit = (n: PyNode): void => {
    if (n.type === 'call' && /Linear|Conv1D|Conv2d|linear/.test(n.field('function')!.text)) calls.push(n);
    n.children.forEach(visit);
  };
  visit(root);
  const cfg = { block: 32, butterflySize: 16, nFactors: 2, rank: 8, globalSize: 0, shuffle: false };
  const text = (i: number, o = {}) => {
    const r = pixelflyCall(calls[i], cfg, o);
    return 'text' in r ? `${r.class}: ${r.text}` : r;
  };
  const tail = 'block=32, butterfly_size=16, n_factors=2, rank=8';
  assert.equal(text(0), `PixelflyLinear: PixelflyLinear(d, 4 * d, bias=False, dtype=t, ${tail})`);
  const r1 = pixelflyCall(calls[1], { ...cfg, shuffle: true, globalSize: 64 });
  assert.deepEqual(r1, { text: `PixelflyLinear(e, 3 * e, ${tail}, global_size=64, shuffle=True)`, class: 'PixelflyLinear' });
  // nn.Linear's keywords are PixelflyLinear's: in_features/out_features and unpacked arguments are kept as written.
  assert.equal(text(2), `PixelflyLinear: PixelflyLinear(in_features=x, out_features=y, ${tail})`);
  assert.equal(text(3), `PixelflyLinear: PixelflyLinear(*sizes, ${tail})`);
  assert.equal(text(4), `PixelflyLinear: PixelflyLinear(bias=False, **cfg, ${tail})`);
  // Conv1D's sizes are out-first: unpacked, they cannot be swapped; the reason is said plainly.
  assert.deepEqual(text(5), { error: 'Conv1D(…) passes its sizes unpacked (**kw), and Conv1D takes them out-first (nf, nx): write PixelflyLinear(nx, nf, …) by hand' });
  assert.equal(text(6), `PixelflyPointwiseConv: PixelflyPointwiseConv(c, 4 * c, bias=False, ${tail})`);
  assert.equal(text(7), `PixelflyPointwiseConv: PixelflyPointwiseConv(c, o, bias=False, ${tail})`);
  // A name standing for partial(nn.Linear, bias=False): the bias the analysis resolved is written out.
  assert.equal(text(8, { bias: false }), `PixelflyLinear: PixelflyLinear(d, d, bias=False, ${tail})`);
  assert.equal(text(8, { bias: true }), `PixelflyLinear: PixelflyLinear(d, d, ${tail})`);
  // An existing PixelflyLinear gets the new config in place of its old one.
  assert.equal(text(9), `PixelflyLinear: PixelflyLinear(d, d, bias=False, ${tail})`);
  assert.deepEqual(text(10), { error: 'nn.Linear(…) passes device or dtype positionally, which PixelflyLinear takes as keywords only' });
  assert.equal(importLine(root), 3, 'after the docstring, __future__ and the imports');
  assert.equal(importText(['PixelflyLinear', 'PixelflyPointwiseConv']), 'from pixelfly_torch import PixelflyLinear, PixelflyPointwiseConv');
  const imported = new ParseCache(parser).get('/y.py', 'from pixelfly_torch import PixelflyLinear as PL, sparsify\nimport torch\n').root;
  assert.deepEqual([...importedClasses(imported)], ['PL', 'sparsify']);
});

test('heads under other names, and what is not a head', () => {
  const role = (keys: Array<string | [string, string]>, inF = 768, outF = 1000): string =>
    classifyRole('linear', keys.map((k) => (typeof k === 'string' ? { key: k } : { key: k[0], className: k[1] })), inF, outF, new Set());
  for (const name of ['head', 'head_dist', 'lm_head', 'score', 'classifier', 'mlp_head', 'qa_outputs', 'heads', 'cls_head', 'last_linear']) {
    assert.equal(role([name]), 'head', name);
  }
  assert.equal(role(['fc']), 'head', "torchvision's top-level fc");
  assert.equal(role(['head', 'fc']), 'head', "timm's ClassifierHead (head.fc)");
  assert.equal(role([['head', 'NormMlpClassifierHead'], 'pre_logits', 'fc'], 768, 768), 'head', 'every layer of a head module');
  assert.equal(role(['classifier', '6'], 4096, 1000), 'head', "VGG's classifier.6");
  assert.equal(role(['heads', 'head']), 'head', "torchvision ViT's heads.head");
  // Not heads: an MLP's fc inside a block, attention in a module whose class name has 'Head' in it.
  assert.equal(role(['blocks', '0', 'mlp', 'fc1'], 768, 3072), 'mlp_fc1');
  assert.equal(role(['layers', '0', ['attn', 'MultiHeadAttention'], 'q_proj'], 768, 768), 'attn_qkv');
  assert.equal(role(['layer4', '0', 'fc'], 512, 512), 'other');
});
