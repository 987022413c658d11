// The language server as a client sees it: a real process over stdio, a copy of the nanoGPT
// fixture opened, then diagnostics, inlay hints, hover, CodeLens, code actions, an edit that
// pins a layer dense (and the re-analysis that honours it), and the analysis request.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TextDocument } from 'vscode-languageserver-textdocument';
import type { CodeAction, CodeLens, Diagnostic, Hover, InlayHint, TextDocumentEdit } from 'vscode-languageserver';
import { ANALYSIS_REQUEST, type AnalysisJson, type AnalysisParams } from '../../protocol/lsp';
import { fixture } from './helpers';
import { startServer } from './lspClient';

const dir = mkdtempSync(join(tmpdir(), 'pixelfly-lsp-'));
cpSync(fixture('nanogpt'), dir, { recursive: true });
cpSync(fixture('timm'), join(dir, 'timm'), { recursive: true });
const file = join(dir, 'model.py');
const uri = pathToFileURL(file).toString();
const client = startServer();
const { conn, applied } = client;

after(() => {
  client.stop();
  rmSync(dir, { recursive: true, force: true });
});

function diagnosticsFor(version: number): Promise<Diagnostic[]> {
  return client.waitFor(`diagnostics for version ${version}`, () => client.published.find((p) => p.uri === uri && p.version === version)?.diagnostics);
}

let doc = TextDocument.create(uri, 'python', 1, readFileSync(file, 'utf8'));

test('initialize: the capabilities the extension relies on', async () => {
  const init = (await conn.sendRequest('initialize', {
    processId: process.pid,
    rootUri: pathToFileURL(dir).toString(),
    workspaceFolders: [{ uri: pathToFileURL(dir).toString(), name: 'ws' }],
    capabilities: {
      workspace: { workspaceEdit: { documentChanges: true, resourceOperations: ['create'] } },
      textDocument: { codeAction: { disabledSupport: true } },
    },
    initializationOptions: { settings: { analysis: { tokensPerSample: 256 }, plan: { budget: 0.5 } } },
  })) as { capabilities: Record<string, unknown> };
  await conn.sendNotification('initialized', {});
  const c = init.capabilities;
  assert.equal(c.hoverProvider, true);
  assert.equal(c.inlayHintProvider, true);
  assert.deepEqual((c.executeCommandProvider as { commands: string[] }).commands, ['pixelfly.applyLayerConfig']);
});

test('diagnostics: information on the layers worth sparsifying, with speedup and parameter saving', async () => {
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'python', version: 1, text: doc.getText() } });
  const diags = await diagnosticsFor(1);
  assert.ok(diags.length >= 1, 'at least one layer is worth sparsifying at a 50% budget');
  for (const d of diags) {
    assert.equal(d.severity, 3, 'information level');
    assert.match(d.message, /^Pixelfly: sparsify transformer\.h\.\*\.(attn|mlp)\.\w+ \(\d+→\d+ ×12, [\d.]+% of matmul FLOPs\): est\. [\d.]+× faster, [\d.]+% fewer parameters/);
  }
  assert.ok(!diags.some((d) => /lm_head|wte|wpe/.test(d.message)), 'head and embeddings stay dense');
});

test('inlay hints: one per layer line, with sizes, FLOP share and decision', async () => {
  const hints = (await conn.sendRequest('textDocument/inlayHint', { textDocument: { uri }, range: { start: { line: 0, character: 0 }, end: { line: 200, character: 0 } } })) as InlayHint[];
  assert.equal(hints.length, 7);
  const fc = hints.find((h) => h.position.line === 73)!;
  assert.match(String(fc.label), /768→3072 ×12 · [\d.]+% FLOPs · (Pixelfly [\d.]+×|dense)/);
  const head = hints.find((h) => h.position.line === 127)!;
  assert.match(String(head.label), /768→50304 · [\d.]+% FLOPs · dense/);
});

test('hover: the plan and a picture of the mask', async () => {
  const diags = await diagnosticsFor(1);
  const line = diags[0].range.start.line;
  const h = (await conn.sendRequest('textDocument/hover', { textDocument: { uri }, position: { line, character: diags[0].range.start.character + 3 } })) as Hover;
  const text = (h.contents as { value: string }).value;
  assert.match(text, /\*\*Plan:\*\* block \d+, butterfly \d+/);
  assert.match(text, /Mask \(\d+×\d+ blocks of \d+×\d+/);
  assert.match(text, /```text\n[█▪·\n]+```/);
  assert.match(text, /at 1024 tokens\/sample \(the positional embedding/);
});

test('CodeLens on the model class: summary, Preview masks, Train dense vs Pixelfly with an engine spec', async () => {
  const lenses = (await conn.sendRequest('textDocument/codeLens', { textDocument: { uri } })) as CodeLens[];
  assert.equal(lenses.length, 3);
  assert.ok(lenses.every((l) => l.range.start.line === 112));
  // 7 layers (the attention core counts in the FLOPs, not in the layers).
  assert.match(lenses[0].command!.title, /^Pixelfly: \d+ of 7 layers sparse → [\d.]+% of matmul FLOPs, est\. [\d.]+× per step \((measured|default) profile\)/);
  assert.deepEqual(lenses.map((l) => l.command!.command), ['pixelfly.previewMasks', 'pixelfly.previewMasks', 'pixelfly.train']);
  const preview = lenses[1].command!.arguments![0] as { name: string; layers: Array<{ name: string; in: number; out: number; line: number }> };
  assert.equal(preview.name, 'GPT');
  assert.deepEqual(preview.layers.map((l) => l.name), [
    'transformer.h.*.attn.c_attn', 'transformer.h.*.attn.(core)', 'transformer.h.*.attn.c_proj', 'transformer.h.*.mlp.c_fc', 'transformer.h.*.mlp.c_proj',
    'transformer.wte', 'transformer.wpe', 'lm_head',
  ]);
  const train = lenses[2].command!.arguments![0] as { spec: Record<string, unknown>; plan: { layers: Array<{ name: string; sparsify: boolean; config?: unknown }>; estimate: { speedup: number } }; torchPlan: { layers: Array<{ name: string; in: number; out: number; sparsify: boolean }> }; settings: Record<string, unknown> };
  assert.deepEqual(train.spec, { kind: 'gpt', name: 'GPT', vocab: 50304, context: 1024, dim: 768, depth: 12, heads: 12, mlpHidden: 3072 });
  // The plan the lens shows travels with it, on the engine's layers: the same configs as the source's layers.
  assert.deepEqual(train.plan.layers.map((l) => l.name), ['embedding', 'blocks.attn.qkv', 'blocks.attn.(core)', 'blocks.attn.proj', 'blocks.mlp.fc1', 'blocks.mlp.fc2', 'head']);
  const decisions = new Map(preview.layers.map((l) => [l.name, (l as unknown as { decision: { sparsify: boolean; config?: unknown } }).decision]));
  assert.deepEqual(train.plan.layers.find((l) => l.name === 'blocks.mlp.fc1')!.config, decisions.get('transformer.h.*.mlp.c_fc')!.config);
  assert.deepEqual(train.plan.layers.find((l) => l.name === 'blocks.attn.qkv')!.config, decisions.get('transformer.h.*.attn.c_attn')!.config);
  assert.ok(train.plan.estimate.speedup > 1);
  // For the PyTorch runner: the plan pixelfly_torch.sparsify reads (module paths and sizes) and the settings the model was built with.
  const fc = train.torchPlan.layers.find((l) => l.name === 'transformer.h.*.mlp.c_fc');
  assert.deepEqual(fc && { in: fc.in, out: fc.out }, { in: 768, out: 3072 });
  assert.ok(train.torchPlan.layers.some((l) => l.sparsify));
  assert.equal(typeof train.settings, 'object');
});

test('code actions: sparsify (PixelflyLinear + the package import, then the package check), keep dense; the pragma is honoured after the edit', async () => {
  const diags = await diagnosticsFor(1);
  const target = diags[0];
  const actions = (await conn.sendRequest('textDocument/codeAction', { textDocument: { uri }, range: target.range, context: { diagnostics: [target] } })) as CodeAction[];
  const sparsify = actions.find((a) => /^Pixelfly: sparsify transformer/.test(a.title))!;
  assert.ok(sparsify, actions.map((a) => a.title).join(' | '));
  const changes = sparsify.edit!.documentChanges!;
  assert.equal(changes.length, 1, 'one edit of the model file: no module copy is written beside it');
  const docEdit = changes[0] as TextDocumentEdit;
  assert.match(docEdit.edits[0].newText, /^PixelflyLinear\(config\.n_embd, [^,]+, bias=config\.bias, block=\d+, butterfly_size=\d+, n_factors=\d+, rank=\d+\)$/);
  assert.equal(docEdit.edits[1].newText, 'from pixelfly_torch import PixelflyLinear\n');
  assert.deepEqual(sparsify.command, { title: 'Check pixelfly_torch', command: 'pixelfly.ensureTorchPackage', arguments: [{ uri }] });
  assert.ok(actions.some((a) => /^Pixelfly: sparsify all \d+ suggested layers in this file$/.test(a.title)));
  const preview = actions.find((a) => /^Pixelfly: preview the mask of /.test(a.title))!;
  assert.equal(preview.command!.command, 'pixelfly.previewMasks');
  assert.match((preview.command!.arguments![0] as { focus: string }).focus, /^transformer\.h\.\*\./);
  const dense = actions.find((a) => /^Pixelfly: keep .* dense$/.test(a.title))!;
  const edits = (dense.edit!.documentChanges![0] as TextDocumentEdit).edits;
  doc = TextDocument.create(uri, 'python', 2, TextDocument.applyEdits(doc, edits));
  assert.match(doc.getText().split('\n')[target.range.start.line], /  # pixelfly: dense$/);
  await conn.sendNotification('textDocument/didChange', {
    textDocument: { uri, version: 2 },
    contentChanges: edits.map((e) => ({ range: e.range, text: e.newText })),
  });
  const after = await diagnosticsFor(2);
  assert.equal(after.length, diags.length - 1, 'the pinned layer is no longer suggested');
  assert.ok(!after.some((d) => d.range.start.line === target.range.start.line));
});

test('pixelfly/analysis request: the CLI JSON for the open buffer', async () => {
  const params: AnalysisParams = { uri };
  const a = (await conn.sendRequest(ANALYSIS_REQUEST, params)) as AnalysisJson;
  assert.equal(a.layers.length, 8, '7 layers and the attention core');
  // The pin the edit above wrote is only in the open buffer, not on disk: the buffer was analysed.
  assert.equal(a.layers.filter((l) => l.pinnedDense).length, 1);
  assert.equal(a.tokensPerSample, 1024);
});

test('pixelfly/analysis request: a file the client has not opened is read from disk; a missing one is an error', async () => {
  const closed = join(dir, 'closed_model.py');
  cpSync(file, closed);
  const a = (await conn.sendRequest(ANALYSIS_REQUEST, { uri: pathToFileURL(closed).toString() })) as AnalysisJson;
  assert.equal(a.layers.length, 8);
  assert.equal(a.layers.filter((l) => l.pinnedDense).length, 0, 'the file on disk has no pin');
  await assert.rejects(conn.sendRequest(ANALYSIS_REQUEST, { uri: pathToFileURL(join(dir, 'missing.py')).toString() }), /missing\.py/);
  await assert.rejects(conn.sendRequest(ANALYSIS_REQUEST, {}), /expected \{uri\}/);
});

test('pixelfly.applyLayerConfig: the mask preview\'s configs written into the source through workspace/applyEdit', async () => {
  const config = { block: 16, butterflySize: 8, nFactors: 3, rank: 24, globalSize: 0, shuffle: true };
  const r = (await conn.sendRequest('workspace/executeCommand', {
    command: 'pixelfly.applyLayerConfig',
    arguments: [{ uri, layers: [{ name: 'transformer.h.*.attn.c_attn', config }, { name: 'lm_head', config }, { name: 'nope', config }] }],
  })) as { applied: string[]; skipped: string[] };
  assert.deepEqual(r.applied, ['transformer.h.*.attn.c_attn', 'lm_head']);
  assert.deepEqual(r.skipped, ['nope: not a layer of this file']);
  assert.equal(applied.length, 1);
  const changes = applied[0].edit.documentChanges as Array<{ textDocument?: { uri: string }; edits?: Array<{ newText: string }> }>;
  const texts = changes.find((c) => c.textDocument?.uri === uri)!.edits!.map((e) => e.newText);
  assert.ok(texts.includes('PixelflyLinear(config.n_embd, 3 * config.n_embd, bias=config.bias, block=16, butterfly_size=8, n_factors=3, rank=24, shuffle=True)'), texts.join(' | '));
  assert.ok(texts.includes('PixelflyLinear(config.n_embd, config.vocab_size, bias=False, block=16, butterfly_size=8, n_factors=3, rank=24, shuffle=True)'), texts.join(' | '));
  await assert.rejects(conn.sendRequest('workspace/executeCommand', { command: 'pixelfly.applyLayerConfig', arguments: [{ uri }] }), /expected 'layers'/);
});

test('a settings change re-analyses the open document at its unchanged version', async () => {
  const seen = client.published.filter((p) => p.uri === uri).length;
  await conn.sendNotification('workspace/didChangeConfiguration', { settings: { pixelfly: { analysis: { pins: { n_layer: 6 } }, plan: { budget: 0.5 } } } });
  const diags = await client.waitFor('diagnostics with the pinned depth', () =>
    client.published.filter((p) => p.uri === uri).slice(seen).find((p) => p.diagnostics.some((d) => / ×6, /.test(d.message))),
  );
  assert.equal(diags.version, 2);
  assert.ok(!diags.diagnostics.some((d) => / ×12, /.test(d.message)), diags.diagnostics.map((d) => d.message).join('\n'));
});

test('a layer built inside library code: the sparsify fix is there, disabled with the reason (the client supports it)', async () => {
  const vitFile = join(dir, 'timm', 'vision_transformer.py');
  const vitUri = pathToFileURL(vitFile).toString();
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri: vitUri, languageId: 'python', version: 1, text: readFileSync(vitFile, 'utf8') } });
  const diags = await client.waitFor('diagnostics of the ViT', () => client.published.find((p) => p.uri === vitUri)?.diagnostics);
  const fc1 = diags.find((d) => /sparsify blocks\.\*\.mlp\.fc1 /.test(d.message))!;
  assert.match(fc1.message, /No quick fix here: blocks\.\*\.mlp\.fc1 is built inside `mlp_layer\(…\)` \(library code: timm\.layers, line 24\)/);
  const actions = (await conn.sendRequest('textDocument/codeAction', { textDocument: { uri: vitUri }, range: fc1.range, context: { diagnostics: [fc1] } })) as CodeAction[];
  assert.match(actions[0].title, /^Pixelfly: sparsify blocks\.\*\.mlp\.fc1 /);
  assert.match(actions[0].disabled?.reason ?? '', /sparsify the built model instead, with pixelfly_torch\.sparsify\(model, plan\)/);
  assert.match(actions[actions.length - 1].title, /^Pixelfly: keep .* dense$/);
});
