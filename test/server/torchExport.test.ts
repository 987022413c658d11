// A model the "sparsify all" quick fix rewrote imports PixelflyLinear from the installed pixelfly_torch
// package (dist/python) and still builds, trains and uses every parameter (DDP-safe). Skips loudly
// when PyTorch or the built package is missing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TextDocument } from 'vscode-languageserver-textdocument';
import type { TextDocumentEdit } from 'vscode-languageserver';
import { codeActions } from '../../server/lsp/features';
import { fixture, repoRoot, run } from './helpers';
import { runPython, torchMissing } from '../support/torch';

const noTorch = torchMissing();

test('the "sparsify all" quick fix rewrites a model that still builds, trains and uses every parameter (DDP-safe)', { skip: noTorch }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-fix-'));
  try {
    const file = join(dir, 'model.py');
    copyFileSync(fixture('tiny', 'model.py'), file);
    const a = await run({ file });
    const suggested = a.layers.filter((l) => l.decision?.sparsify);
    assert.ok(suggested.length >= 2, `the plan sparsifies layers of the tiny model: ${a.layers.map((l) => `${l.name}:${l.decision?.sparsify}`).join(', ')}`);
    const text = readFileSync(file, 'utf8');
    const uri = pathToFileURL(file).toString();
    const { ParseCache } = await import('../../server/analysis/modules');
    const { pythonParser } = await import('../../server/analysis/parser');
    const root = new ParseCache(await pythonParser()).get(file, text).root;
    const ctx = { uri, file, version: 1, root };
    const first = suggested[0];
    const actions = codeActions(a, ctx, first.range, text.split('\n'), []);
    const all = actions.find((x) => /sparsify all/.test(x.title))!;
    assert.ok(all, actions.map((x) => x.title).join(' | '));
    // After the edit the client checks that the file's interpreter has the package.
    assert.equal(all.command?.command, 'pixelfly.ensureTorchPackage');
    const edits = (all.edit!.documentChanges![0] as TextDocumentEdit).edits;
    writeFileSync(file, TextDocument.applyEdits(TextDocument.create(uri, 'python', 1, text), edits));
    assert.match(readFileSync(file, 'utf8'), /^from pixelfly_torch import PixelflyLinear$/m);
    const out = join(dir, 'out.json');
    const py = runPython([join(repoRoot, 'test', 'torch', 'checks.py'), 'model', dir, out]);
    assert.equal(py.status, 0, py.stderr);
    const r = JSON.parse(readFileSync(out, 'utf8')) as { output: number[]; pixelfly: string[]; params: number; unused: string[]; finite: boolean; backend: string };
    assert.match(r.backend, /^native \(/, 'the rewritten model runs on the extension');
    assert.deepEqual(r.output, [2, 10]);
    assert.equal(r.finite, true);
    assert.deepEqual(r.unused, [], 'every parameter gets a gradient (DistributedDataParallel needs no find_unused_parameters)');
    // Each rewritten call site builds one PixelflyLinear per block.
    const sites = new Set(suggested.map((l) => l.line));
    assert.equal(r.pixelfly.length, sites.size * 2);
    // The PyTorch model holds exactly the planned parameters of its matmul layers, plus the position
    // table and the LayerNorms (the embedding row is left out: it is a lookup table, not a Linear).
    const matmul = a.layers.filter((l) => l.role !== 'embedding');
    const dense = matmul.reduce((s, l) => s + (l.decision?.denseParams ?? 0), 0);
    const planned = matmul.reduce((s, l) => s + (l.decision?.planParams ?? 0), 0);
    assert.ok(planned < dense);
    const positionsAndNorms = 64 * 512 + 2 * 2 * 2 * 512;
    assert.equal(r.params, planned + positionsAndNorms);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});


test('the quick fix for an nn.MultiheadAttention writes a PixelflyMultiheadAttention that builds and trains', { skip: noTorch }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-mha-'));
  try {
    const file = join(dir, 'mha_model.py');
    const text = [
      'import torch.nn as nn',
      '',
      '',
      'class Encoder(nn.Module):',
      '    def __init__(self, dim=512, heads=8, depth=2, classes=10):',
      '        super().__init__()',
      '        self.attn = nn.ModuleList([nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True) for _ in range(depth)])',
      '        self.head = nn.Linear(dim, classes)',
      '',
      '    def forward(self, x):',
      '        for a in self.attn:',
      '            x = x + a(x, x, x, need_weights=False)[0]',
      '        return self.head(x.mean(1))',
      '',
    ].join('\n');
    writeFileSync(file, text);
    const a = await run({ file, tokens: 16 });
    const inProj = a.layers.find((l) => l.name === 'attn.*.in_proj')!;
    assert.equal(inProj.decision?.sparsify, true, a.layers.map((l) => `${l.name}:${l.decision?.reason}`).join('\n'));
    const uri = pathToFileURL(file).toString();
    const { ParseCache } = await import('../../server/analysis/modules');
    const { pythonParser } = await import('../../server/analysis/parser');
    const root = new ParseCache(await pythonParser()).get(file, text).root;
    const fix = codeActions(a, { uri, file, version: 1, root }, inProj.range, text.split('\n'), [])[0];
    assert.match(fix.title, /^Pixelfly: sparsify attn\.\*\.in_proj /);
    writeFileSync(file, TextDocument.applyEdits(TextDocument.create(uri, 'python', 1, text), (fix.edit!.documentChanges![0] as TextDocumentEdit).edits));
    const check = [
      'import sys, torch',
      `sys.path.insert(0, ${JSON.stringify(dir)})`,
      'from mha_model import Encoder',
      'from pixelfly_torch import PixelflyLinear, PixelflyMultiheadAttention',
      'm = Encoder()',
      'assert all(isinstance(a, PixelflyMultiheadAttention) and isinstance(a.in_proj, PixelflyLinear) for a in m.attn), m',
      'x = torch.randn(2, 16, 512)',
      'm(x).sum().backward()',
      'assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())',
      'print("ok", type(m.attn[0].out_proj).__name__)',
    ].join('\n');
    const py = runPython(['-c', check]);
    assert.equal(py.status, 0, `${readFileSync(file, 'utf8')}\n${py.stderr}`);
    assert.match(py.stdout, /^ok (PixelflyLinear|Linear)$/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
