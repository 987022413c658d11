// The hints keep their word, on the corpus' files: every "sparsify" suggestion comes with a fix that
// does it, or a fix that says plainly why not (and "keep dense" is never first); after the fixes
// the lens credits the layers they made sparse; the mask preview's FLOP totals are the lens's; and
// unresolved sizes are problems with a fix that inserts the pins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { DiagnosticSeverity, type CodeAction, type TextDocumentEdit } from 'vscode-languageserver';
import { ParseCache } from '../../server/analysis/modules';
import { pythonParser } from '../../server/analysis/parser';
import type { Analysis, AnalyzeOptions } from '../../server/analysis/analyze';
import { CODE_ATTENTION, CODE_SPARSIFY, CODE_UNRESOLVED, codeActions, codeLenses, diagnostics, hover, inlayHints, previewArgs, type EditContext } from '../../server/lsp/features';
import { analysisJson } from '../../server/analysis/analysisJson';
import { toModelView, type AnalyzedModel } from '../../extension/modelView';
import { modelTotals } from '../../webview/mask/layerStats';
import { parsePinValue } from '../../server/analysis/pragmas';
import { fixture, row, run } from './helpers';

const parserReady = pythonParser();

interface Doc {
  file: string;
  text: string;
  analysis: Analysis;
  ctx: EditContext;
}

async function open(file: string, text = readFileSync(file, 'utf8'), options: Partial<AnalyzeOptions> = {}): Promise<Doc> {
  const analysis = await run({ file, source: text, ...options });
  const root = new ParseCache(await parserReady).get(file, text).root;
  return { file, text, analysis, ctx: { uri: `file://${file}`, file, version: 1, root, disabledSupport: true } };
}

function actionsAt(doc: Doc, line: number): CodeAction[] {
  const diags = diagnostics(doc.analysis, doc.file).filter((d) => d.range.start.line === line);
  const range = { start: { line, character: 0 }, end: { line, character: 1000 } };
  return codeActions(doc.analysis, doc.ctx, range, doc.text.split('\n'), diags, previewArgs(doc.analysis, doc.ctx.uri));
}

function applied(doc: Doc, action: CodeAction): string {
  const edits = (action.edit!.documentChanges![0] as TextDocumentEdit).edits;
  return TextDocument.applyEdits(TextDocument.create(doc.ctx.uri, 'python', 1, doc.text), edits);
}

const pins = (o: Record<string, string>) => new Map(Object.entries(o).map(([k, v]) => [k, parsePinValue(v)]));

test('every sparsify suggestion has a fix that does it or says why not, and "keep dense" is never the first choice', async () => {
  const cases: Array<[string, Partial<AnalyzeOptions>]> = [
    [fixture('nanogpt', 'model.py'), {}],
    [fixture('timm', 'vision_transformer.py'), {}],
    [fixture('torchvision', 'resnet.py'), { model: 'resnet50' }],
    [fixture('custom', 'model.py'), { extraPaths: [fixture('site')] }],
    [fixture('hf_gpt2', 'modeling_gpt2.py'), {}],
  ];
  for (const [file, options] of cases) {
    const doc = await open(file, undefined, options);
    const diags = diagnostics(doc.analysis, file).filter((d) => d.code === CODE_SPARSIFY);
    assert.ok(diags.length > 0, `${file}: suggestions`);
    for (const d of diags) {
      const actions = actionsAt(doc, d.range.start.line);
      const first = actions[0];
      assert.ok(first && /^Pixelfly: sparsify/.test(first.title), `${file}:${d.range.start.line + 1}: first action ${first?.title}`);
      const names = (d.data as { names?: string[]; name: string }).names ?? [(d.data as { name: string }).name];
      for (const name of names) {
        const fix = actions.find((x) => x.title.startsWith(`Pixelfly: sparsify ${name} `) || (x.disabled && x.title.startsWith('Pixelfly: sparsify the ')));
        assert.ok(fix, `${file}: a fix for ${name}: ${actions.map((x) => x.title).join(' | ')}`);
        if (fix.disabled) {
          // The reason is a sentence a user can act on, and the diagnostic says it too.
          assert.match(fix.disabled.reason, /sparsify the built model instead, with pixelfly_torch\.sparsify\(model, plan\)/);
          assert.ok(d.message.includes(`No quick fix here: ${fix.disabled.reason}.`), d.message);
        } else {
          assert.equal(fix.isPreferred, true);
          assert.match(applied(doc, fix), /^from pixelfly_torch import Pixelfly(Linear|PointwiseConv|Linear, PixelflyMultiheadAttention)$/m);
        }
      }
    }
  }
});

test('layers built inside library code, through a subclass or at a shared helper call: the reason, not a raw error', async () => {
  const vit = await open(fixture('timm', 'vision_transformer.py'));
  const fc1 = row(vit.analysis, 'blocks.*.mlp.fc1');
  const [mlp] = actionsAt(vit, fc1.range.start.line);
  assert.equal(mlp.disabled?.reason, "blocks.*.mlp.fc1 is built inside `mlp_layer(…)` (library code: timm.layers, line 24), not by a layer call here; sparsify the built model instead, with pixelfly_torch.sparsify(model, plan) and the plan from `pixelfly analyze --json`");
  // Without the client's disabledSupport there is no action to grey out: the diagnostic carries the reason.
  const bare = codeActions(vit.analysis, { ...vit.ctx, disabledSupport: false }, fc1.range, vit.text.split('\n'), []);
  assert.ok(!bare.some((x) => x.disabled));
  assert.ok(!/^Pixelfly: keep/.test(bare[0].title), bare[0].title);

  const resnet = await open(fixture('torchvision', 'resnet.py'), undefined, { model: 'resnet50' });
  const conv1x1 = row(resnet.analysis, 'layer3.*.conv3');
  const shared = diagnostics(resnet.analysis, resnet.file).filter((d) => d.range.start.line === conv1x1.range.start.line);
  assert.equal(shared.length, 1, 'one diagnostic for the helper call, not one per layer it builds');
  assert.match(shared[0].message, /^Pixelfly: \d+ layers built here are worth sparsifying \(.*\)\. No quick fix here: the call at line 32 builds 24 layers \(layer1\.0\.conv1 64→64, .*\) and the plan does not give them one config/);
  const helperActions = actionsAt(resnet, conv1x1.range.start.line);
  const helper = helperActions[0];
  assert.match(helper.title, /^Pixelfly: sparsify the \d+ layers built here$/);
  assert.ok(helper.disabled);
  assert.equal(helperActions[helperActions.length - 1].title, 'Pixelfly: keep the 24 layers built on line 32 dense');

  const custom = await open(fixture('custom', 'model.py'), undefined, { extraPaths: [fixture('site')] });
  const proj = row(custom.analysis, 'proj');
  assert.match(actionsAt(custom, proj.range.start.line)[0].disabled?.reason ?? '', /^proj is a CastedLinear, a subclass of nn\.Linear whose forward PixelflyLinear would not keep/);
  // A partial(nn.Linear, bias=False) is rewritten with the bias it gives.
  const qkv = actionsAt(custom, row(custom.analysis, 'layers.*.attn.qkv').range.start.line)[0];
  assert.match(applied(custom, qkv), /self\.qkv = PixelflyLinear\(dim, 3 \* dim, bias=False, block=\d+/);
});

test('nn.Linear(**kwargs) is rewritten keeping the unpacking; a 1x1 convolution becomes PixelflyPointwiseConv', async () => {
  const text = [
    'import torch.nn as nn',
    'class Net(nn.Module):',
    '    def __init__(self, dim=1024, depth=4):',
    '        super().__init__()',
    '        fc = dict(in_features=dim, out_features=4 * dim)',
    '        self.fcs = nn.ModuleList([nn.Linear(**fc) for _ in range(depth)])',
    '        self.mix = nn.ModuleList([nn.Conv2d(dim, dim, kernel_size=1) for _ in range(depth)])',
    '',
  ].join('\n');
  const doc = await open(fixture('nanogpt', 'model.py'), text, { model: 'Net', pins: pins({ img_size: '32' }) });
  const fcs = actionsAt(doc, 5)[0];
  assert.match(fcs.title, /^Pixelfly: sparsify fcs\.\* /);
  assert.match(applied(doc, fcs), /nn\.ModuleList\(\[PixelflyLinear\(\*\*fc, block=\d+, butterfly_size=\d+, n_factors=\d+, rank=\d+\) for _/);
  const mix = actionsAt(doc, 6)[0];
  assert.match(mix.title, /^Pixelfly: sparsify mix\.\* /);
  const after = applied(doc, mix);
  assert.match(after, /\[PixelflyPointwiseConv\(dim, dim, block=\d+, butterfly_size=\d+, n_factors=\d+, rank=\d+\) for _/);
  assert.match(after, /^from pixelfly_torch import PixelflyPointwiseConv$/m);
  const all = actionsAt(doc, 5).find((x) => /sparsify all/.test(x.title))!;
  assert.match(applied(doc, all), /^from pixelfly_torch import PixelflyLinear, PixelflyPointwiseConv$/m);
  // The rewritten file counts both as sparse.
  const again = await open(doc.file, applied(doc, all), { model: 'Net', pins: pins({ img_size: '32' }) });
  assert.deepEqual(again.analysis.layers.map((l) => [l.name, l.class, l.decision?.sparsify]), [
    ['fcs.*', 'PixelflyLinear', true],
    ['mix.*', 'PixelflyPointwiseConv', true],
  ]);
});

test('after "sparsify all" the lens credits the layers the fix made sparse, and no suggestion is left', async () => {
  const before = await open(fixture('nanogpt', 'model.py'));
  const lens = (d: Doc) => codeLenses(d.analysis, d.file, d.ctx.uri)[0].command!.title;
  assert.match(lens(before), /^Pixelfly: 4 of 7 layers sparse → 43% of matmul FLOPs/);
  const all = actionsAt(before, row(before.analysis, 'transformer.h.*.mlp.c_fc').range.start.line).find((x) => /sparsify all/.test(x.title))!;
  const after = await open(before.file, applied(before, all));
  assert.match(lens(after), /^Pixelfly: 4 of 7 layers sparse → 43% of matmul FLOPs/);
  assert.equal(after.analysis.plan?.flopFraction.toFixed(6), before.analysis.plan?.flopFraction.toFixed(6), 'the written configs are the planned ones');
  assert.deepEqual(diagnostics(after.analysis, after.file).filter((d) => d.code === CODE_SPARSIFY), []);
  // The preview credits them too: the same four layers, sparse, with the configs written in the file.
  const preview = previewArgs(after.analysis, after.ctx.uri)!;
  const sparse = preview.layers.filter((l) => l.decision?.sparsify);
  assert.deepEqual(sparse.map((l) => l.name), ['transformer.h.*.attn.c_attn', 'transformer.h.*.attn.c_proj', 'transformer.h.*.mlp.c_fc', 'transformer.h.*.mlp.c_proj']);
  for (const l of sparse) assert.deepEqual(l.decision!.config, row(before.analysis, l.name).decision!.config, l.name);
});

test("the preview's FLOP totals are the lens's, from the language server and from `pixelfly analyze --json`", async () => {
  const cases: Array<[string, Partial<AnalyzeOptions>]> = [
    [fixture('nanogpt', 'model.py'), {}],
    [fixture('timm', 'deit.py'), { model: 'deit_base_distilled_patch16_224' }],
    [fixture('torchvision', 'resnet.py'), { model: 'resnet50' }],
    [fixture('hf_llama', 'modeling_llama.py'), { model: 'LlamaForCausalLM' }],
    [fixture('pixelfly', 'model.py'), { pins: pins({ dim: '256' }) }],
  ];
  for (const [file, options] of cases) {
    const a = await run({ file, ...options });
    const plan = a.plan!;
    const fromLens = toModelView(previewArgs(a, `file://${file}`)! as unknown as AnalyzedModel, 'm', 32, null);
    const fromCli = toModelView(JSON.parse(JSON.stringify(analysisJson(a))) as AnalyzedModel, 'm', 32, null);
    for (const [how, view] of [['lens', fromLens], ['analyze --json', fromCli]] as const) {
      const t = modelTotals(view.layers, (r) => r.config, (r) => r.sparsify);
      const close = (x: number, y: number) => Math.abs(x / y - 1) < 1e-9;
      assert.ok(close(t.denseFlops, plan.denseFlops), `${file} (${how}): dense FLOPs ${t.denseFlops} vs the plan's ${plan.denseFlops}`);
      assert.ok(close(t.planFlops, plan.planFlops), `${file} (${how}): planned FLOPs ${t.planFlops} vs the plan's ${plan.planFlops}`);
      assert.ok(close(t.planParams, plan.planParams), `${file} (${how}): planned parameters ${t.planParams} vs the plan's ${plan.planParams}`);
    }
  }
});

test('unresolved sizes are in the Problems panel, with a fix that inserts the pins (values from a call of the model when the file has one)', async () => {
  const file = fixture('lucidrains', 'vit.py');
  const doc = await open(file);
  const problems = diagnostics(doc.analysis, file).filter((d) => d.code === CODE_UNRESOLVED);
  assert.ok(problems.length >= 4);
  for (const p of problems) assert.equal(p.severity, DiagnosticSeverity.Information, 'Information shows in the Problems panel (Hint does not)');
  const qkv = row(doc.analysis, 'transformer.layers.*.0.to_qkv');
  const actions = actionsAt(doc, qkv.range.start.line);
  const insert = actions.find((x) => /^Pixelfly: insert pins for /.test(x.title))!;
  assert.equal(insert.title, 'Pixelfly: insert pins for dim, heads, depth (# pixelfly: NAME=VALUE, values to fill in)');
  const withPins = applied(doc, insert);
  assert.match(withPins, /\n# pixelfly: dim=\?, heads=\?, depth=\?\nclass ViT\(nn\.Module\):/);
  // Until the values are filled in, the pragma says what is missing.
  const pending = await open(file, withPins);
  assert.deepEqual(pending.analysis.pragmaErrors.map((e) => e.message), [
    "pixelfly pragma: fill in the value of 'dim' the model is built with (write '# pixelfly: dense' or '# pixelfly: NAME=VALUE, …')",
    "pixelfly pragma: fill in the value of 'heads' the model is built with (write '# pixelfly: dense' or '# pixelfly: NAME=VALUE, …')",
    "pixelfly pragma: fill in the value of 'depth' the model is built with (write '# pixelfly: dense' or '# pixelfly: NAME=VALUE, …')",
  ]);
  // A file that builds the model says the values: the fix pins them, and the layers resolve.
  const built = `${doc.text}\nmodel = ViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=16, mlp_dim=2048)\n`;
  const example = await open(file, built);
  const [first] = actionsAt(example, qkv.range.start.line);
  assert.equal(first.title, 'Pixelfly: pin dim=1024, heads=16, depth=6 (the values ViT(…) gets at line 132)');
  assert.equal(first.isPreferred, true);
  const resolved = await open(file, applied(example, first));
  const r = row(resolved.analysis, 'transformer.layers.*.0.to_qkv');
  assert.deepEqual([r.in, r.out, r.count], [1024, 3072, 6]);
});

test('hovers and inlay hints say what a row counts: the attention core, a convolution\'s positions, a pooled head, a kept-dense MultiheadAttention', async () => {
  const resnet = await run({ file: fixture('torchvision', 'resnet.py'), model: 'resnet50' });
  const conv = row(resnet, 'layer2.*.conv2');
  const text = (a: Analysis, l: { range: { start: { line: number; character: number } } }): string =>
    (hover(a, a.file, { line: l.range.start.line, character: l.range.start.character + 1 })!.contents as { value: string }).value;
  assert.match(text(resnet, conv), /of the model's matmul FLOPs, at 784 positions per sample \(its output feature map for a 224×224 input, assumed; set it with '# pixelfly: img_size=N'\)\./);
  assert.match(text(resnet, row(resnet, 'fc')), /once per sample \(after pooling\)/);
  const gpt = await run({ file: fixture('nanogpt', 'model.py') });
  const core = row(gpt, 'transformer.h.*.attn.(core)');
  assert.match(text(gpt, core), /`transformer\.h\.\*\.attn\.\(core\)` — attention QKᵀ·V, d 768 × 1024 keys \(causal\) ×12 · attn_core/);
  assert.match(text(gpt, core), /1024 queries × 1024 keys × d 768 per sample, causal \(half the scores\)/);
  const hint = inlayHints(gpt, gpt.file).find((h) => h.position.line === core.range.end.line)!;
  assert.match(String(hint.label), /c_attn 768→2304 ×12 · [\d.]+% FLOPs · Pixelfly [\d.]+× \| attention QKᵀ·V, d 768 × 1024 keys \(causal\) ×12 · [\d.]+% FLOPs · dense/);
  const source = readFileSync(fixture('custom', 'model.py'), 'utf8').replace('batch_first=True)', 'batch_first=True, add_zero_attn=True)');
  const custom = await run({ file: fixture('custom', 'model.py'), source, extraPaths: [fixture('site')] });
  const mha = row(custom, 'layers.*.attn.mha.in_proj');
  assert.match(text(custom, mha), /> Kept dense: this nn\.MultiheadAttention has add_zero_attn=True, which pixelfly_torch's PixelflyMultiheadAttention does not support/);
  const hints = diagnostics(custom, custom.file).filter((d) => d.range.start.line === mha.range.start.line);
  assert.deepEqual(hints.map((d) => [d.severity, d.code]), [[DiagnosticSeverity.Hint, 'pixelfly.keptDense'], [DiagnosticSeverity.Hint, 'pixelfly.keptDense']]);
});

test('nn.MultiheadAttention becomes a PixelflyMultiheadAttention whose projections have their planned configs', async () => {
  const doc = await open(fixture('custom', 'model.py'), undefined, { extraPaths: [fixture('site')] });
  const inProj = row(doc.analysis, 'layers.*.attn.mha.in_proj');
  assert.equal(inProj.decision?.sparsify, true);
  const fix = actionsAt(doc, inProj.range.start.line)[0];
  assert.match(fix.title, /^Pixelfly: sparsify layers\.\*\.attn\.mha\.in_proj /);
  const cfg = (name: string) => {
    const d = row(doc.analysis, name).decision!;
    return d.sparsify ? `PixelflyLinear(dim, ${name.endsWith('in_proj') ? '3 * dim' : 'dim'}, block=${d.config!.block}, butterfly_size=${d.config!.butterflySize}, n_factors=${d.config!.nFactors}, rank=${d.config!.rank})` : 'nn.Linear(dim, dim)';
  };
  const after = applied(doc, fix);
  assert.ok(
    after.includes(`self.mha = PixelflyMultiheadAttention(dim, heads, ${cfg('layers.*.attn.mha.in_proj')}, ${cfg('layers.*.attn.mha.out_proj')}, batch_first=True)`),
    after.split('\n').find((l) => /self\.mha = /.test(l)),
  );
  assert.match(after, /^from pixelfly_torch import PixelflyLinear, PixelflyMultiheadAttention$/m);
});

test("the model's hover explains the whole-step estimate and its profile; the Train lens carries the plan; a run's measurement shows beside the estimate", async () => {
  const doc = await open(fixture('nanogpt', 'model.py'));
  const a = doc.analysis;
  assert.ok(a.model && a.plan && 'plan' in a.engine, a.notes.join('; '));
  const at = a.model.range.start;
  const text = (h: ReturnType<typeof hover>) => (h!.contents as { value: string }).value;
  const plain = text(hover(a, doc.file, at));
  assert.match(plain, new RegExp(`est\\. \\*\\*${a.plan.estSpeedup.toFixed(2)}×\\*\\* faster per training step \\(batch 64\\)`));
  assert.match(plain, /\| attention cores \| [\d.]+ \| [\d.]+ \|/);
  assert.match(plain, /\| optimizer \(AdamW\) \| [\d.]+ \| [\d.]+ \|/);
  assert.match(plain, /of the planned step stays dense, so the step is [\d.]+× faster \(at most [\d.]+×/);
  assert.match(plain, /Costed with the default profile/);
  const measured = { jobId: 'run-1', measuredSpeedup: 1.23 };
  assert.match(text(hover(a, doc.file, at, measured)), /measured \*\*1\.23×\*\* \(run run-1\)/);
  const lenses = codeLenses(a, doc.file, doc.ctx.uri, measured);
  assert.match(lenses[0].command!.title, /est\. [\d.]+× per step \(default profile\) · measured 1\.23×/);
  const train = lenses[2].command!.arguments![0] as { uri: string; name: string; spec: unknown; plan: unknown };
  assert.deepEqual([train.uri, train.name, train.spec, train.plan], [doc.ctx.uri, 'GPT', a.engine.spec, a.engine.plan]);
  // The engine's layers take the decisions of the layers they stand for.
  const engine = a.engine.plan.layers;
  for (const [src, dst] of [['transformer.h.*.attn.c_attn', 'blocks.attn.qkv'], ['transformer.h.*.mlp.c_fc', 'blocks.mlp.fc1'], ['lm_head', 'head']]) {
    const d = row(a, src).decision!;
    const e = engine.find((l) => l.name === dst)!;
    assert.equal(e.sparsify, d.sparsify, dst);
    assert.deepEqual(e.config, d.config, dst);
  }
});

test('an attention core gets Pixelfly attention where it pays (a long context) and stays dense, saying why, where it does not', async () => {
  const file = fixture('nanogpt', 'model.py');
  const text = (a: Analysis, l: { range: { start: { line: number; character: number } } }): string =>
    (hover(a, a.file, { line: l.range.start.line, character: l.range.start.character + 1 })!.contents as { value: string }).value;
  // GPT-2 small at 1024 tokens: the core is a small share of the step.
  const short = await run({ file });
  const core = row(short, 'transformer.h.*.attn.(core)');
  assert.equal(core.decision?.attention, undefined);
  assert.match(core.decision!.reason, /^Kept dense: Pixelfly attention \(.*\) would run this core an est\. [\d.]+× faster, but the core is only [\d.]+% of the step/);
  assert.equal(diagnostics(short, file).filter((d) => d.code === CODE_ATTENTION).length, 0);
  // The same model at 8192 tokens: the attention core dominates, Pixelfly attention is suggested.
  const source = readFileSync(file, 'utf8').replace('block_size: int = 1024', 'block_size: int = 8192');
  const long = await run({ file, source });
  const longCore = row(long, 'transformer.h.*.attn.(core)');
  const advice = longCore.decision?.attention;
  assert.ok(advice, longCore.decision?.reason);
  assert.deepEqual(advice.spec, { kind: 'pixelfly', block: 64, butterflySize: 128, nFactors: 7 });
  assert.equal(longCore.decision!.sparsify, false, 'advice, not a sparsified layer');
  const diags = diagnostics(long, file).filter((d) => d.code === CODE_ATTENTION);
  assert.equal(diags.length, 1);
  assert.equal(diags[0].severity, DiagnosticSeverity.Information);
  assert.match(diags[0].message, /^Pixelfly: transformer\.h\.\*\.attn\.\(core\): Pixelfly attention pays here: at 8192 tokens .* pixelfly_torch\.PixelflyAttention\(head_dim, 8192, causal=True\)/);
  const h = text(long, longCore);
  assert.match(h, /\*\*Pixelfly attention:\*\* [\d.]+% of the score blocks, est\. \*\*[\d.]+×\*\* on this core/);
  assert.match(h, /Score layout \(128×128 blocks of 64×64, one character per 6×3 blocks; █ computed, · dropped\)/);
});
