// The PyTorch export under Debian's python3-torch: pixelfly_torch.py's masks equal the core's
// (and the authors' reference layouts), its PixelflyLinear reproduces the native engine's outputs
// from the engine's own weight export, and a model rewritten by the quick fixes builds and trains.
// Each test skips loudly when PyTorch (or, for the engine check, the native addon) is missing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TextDocument } from 'vscode-languageserver-textdocument';
import type { TextDocumentEdit } from 'vscode-languageserver';
import { flatBlockButterflyLayout, layoutRows, type ButterflyParams } from '../../core/layout';
import { PixelflyConfigError } from '../../core/errors';
import { codeActions } from '../../server/lsp/features';
import { fixture, repoRoot, run } from './helpers';
import { PYTHON, torchMissing } from '../support/torch';

const SCRIPT = join(repoRoot, 'test', 'server', 'torch_export_check.py');
const EXPORT_DIR = join(repoRoot, 'export');

const noTorch = torchMissing();

function python(args: string[], env: Record<string, string> = {}): void {
  const r = spawnSync(PYTHON, [SCRIPT, ...args], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: EXPORT_DIR, ...env }, timeout: 120000 });
  assert.equal(r.status, 0, `torch_export_check.py ${args[0]} failed: ${r.stderr}`);
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'pixelfly-export-'));
}

test('exported masks equal the core\'s: reference layouts and a sweep with padding, globals, shuffle and errors', { skip: noTorch }, () => {
  type Case = ButterflyParams & { out: number; in: number; globalSize: number; shuffle: boolean };
  const cases: Case[] = [];
  const ref = JSON.parse(readFileSync(join(repoRoot, '..', 'shared', 'reference', 'flat-block-butterfly-layouts.json'), 'utf8')) as {
    cases: Array<{ out_features: number; in_features: number; block: number; butterfly_size: number; n_factors: number; global_size: number; shuffle: boolean; layout: string[] }>;
  };
  for (const c of ref.cases) {
    cases.push({ out: c.out_features, in: c.in_features, block: c.block, butterflySize: c.butterfly_size, nFactors: c.n_factors, globalSize: c.global_size, shuffle: c.shuffle });
  }
  for (const [out, inF] of [[768, 3072], [96, 64], [36, 40], [200, 100], [1000, 768], [50, 50]]) {
    for (const block of [8, 16, 32]) {
      for (const butterflySize of [2, 4, 8, 16, 48]) {
        for (const nFactors of [1, 2, 3]) {
          for (const [globalSize, shuffle] of [[0, false], [16, false], [0, true]] as const) cases.push({ out, in: inF, block, butterflySize, nFactors, globalSize, shuffle });
        }
      }
    }
  }
  const dir = tmp();
  try {
    writeFileSync(join(dir, 'cases.json'), JSON.stringify(cases));
    python(['layouts', join(dir, 'cases.json'), join(dir, 'out.json')]);
    const got = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as Array<{ rows?: string[]; error?: string }>;
    let compared = 0;
    let rejected = 0;
    cases.forEach((c, i) => {
      let want: { rows?: string[]; error?: string };
      try {
        want = { rows: layoutRows(flatBlockButterflyLayout(c.out, c.in, c)) };
      } catch (e) {
        if (!(e instanceof PixelflyConfigError)) throw e;
        want = { error: e.param };
      }
      assert.deepEqual(got[i], want, `case ${JSON.stringify(c)}`);
      if (want.rows) compared++;
      else rejected++;
    });
    ref.cases.forEach((c, i) => assert.deepEqual(got[i].rows, c.layout, `reference case ${i}`));
    assert.ok(compared > 300 && rejected > 50, `compared ${compared} layouts and ${rejected} rejections`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function engineOrSkip(): Promise<typeof import('../../native/engine') | string> {
  try {
    const engine = await import('../../native/engine');
    engine.engineBackend();
    return engine;
  } catch (e) {
    return `SKIPPED LOUDLY: the native engine is not built (${(e as Error).message}); run npm run build`;
  }
}

test('PixelflyLinear reproduces the engine from the engine\'s weight export (with padding, low rank and gate)', { skip: noTorch }, async (t) => {
  const engine = await engineOrSkip();
  if (typeof engine === 'string') return t.skip(engine);
  const cases = [
    { in: 64, out: 96, cfg: { block: 16, butterflySize: 4, nFactors: 2, rank: 8 } },
    { in: 40, out: 36, cfg: { block: 16, butterflySize: 4, nFactors: 2, rank: 4 } },
    { in: 128, out: 64, cfg: { block: 16, butterflySize: 8, nFactors: 3, rank: 0 } },
  ];
  for (const c of cases) {
    const probe = await engine.createProbe({ probeLayer: 'pixelfly', features: c.in, classes: c.out, probeT: 3, pixelfly: { layer: engine.pixelflyLayerConfig(c.in, c.out, c.cfg) } }, 7);
    const layout = flatBlockButterflyLayout(c.out, c.in, c.cfg);
    // The engine's own exporter, on the probe model: the same file a trained model's export is.
    const model = new engine.EngineModel(probe as never, { kind: 'mlp', inputFeatures: c.in, hidden: [], classes: c.out } as never, undefined, [{ name: 'layer', config: c.cfg, layout }] as never, 7, 1);
    const dims = probe.dims();
    const batch = 2;
    const x = Float32Array.from({ length: batch * dims.inT * dims.inD }, (_, i) => Math.sin(i * 0.37) * 0.8);
    const { y } = probe.probe(x, batch);
    const dir = tmp();
    try {
      await model.exportWeights(join(dir, 'weights.safetensors'));
      writeFileSync(join(dir, 'x.json'), JSON.stringify({ x: Array.from(x), shape: [batch, dims.inT, dims.inD] }));
      python(['engine', join(dir, 'weights.safetensors'), join(dir, 'x.json'), join(dir, 'y.json')]);
      const out = JSON.parse(readFileSync(join(dir, 'y.json'), 'utf8')) as Record<string, number[] | boolean>;
      assert.equal(out['layer:load_engine_weights_equal'], true, 'load_engine_weights gives the same layer');
      const torchY = out.layer as number[];
      assert.equal(torchY.length, y.length);
      let worst = 0;
      let scale = 1e-6;
      for (let i = 0; i < y.length; i++) {
        worst = Math.max(worst, Math.abs(y[i] - torchY[i]));
        scale = Math.max(scale, Math.abs(torchY[i]));
      }
      assert.ok(worst / scale < 1e-5, `${c.in}→${c.out} ${JSON.stringify(c.cfg)}: max |engine − torch| = ${worst.toExponential(2)} (scale ${scale.toFixed(3)})`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('the "sparsify all" quick fix rewrites a model that still builds, trains and uses every parameter (DDP-safe)', { skip: noTorch }, async () => {
  const dir = tmp();
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
    const ctx = { uri, file, version: 1, root, canCreateFiles: false };
    const first = suggested[0];
    const actions = codeActions(a, ctx, first.range, text.split('\n'), []);
    const all = actions.find((x) => /sparsify all/.test(x.title))!;
    assert.ok(all, actions.map((x) => x.title).join(' | '));
    // Without file-creation support the action carries a command that writes pixelfly_torch.py.
    assert.equal(all.command?.command, 'pixelfly.writeTorchModule');
    const edits = (all.edit!.documentChanges![0] as TextDocumentEdit).edits;
    writeFileSync(file, TextDocument.applyEdits(TextDocument.create(uri, 'python', 1, text), edits));
    copyFileSync(join(EXPORT_DIR, 'pixelfly_torch.py'), join(dir, 'pixelfly_torch.py'));
    const out = join(dir, 'out.json');
    python(['model', dir, out], { PYTHONPATH: '' });
    const r = JSON.parse(readFileSync(out, 'utf8')) as { output: number[]; pixelfly: string[]; params: number; unused: string[]; finite: boolean };
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

test('PixelflyLinear under DistributedDataParallel (2 CPU processes, gloo): gradients all-reduced, no unused parameters', { skip: noTorch }, () => {
  const dir = tmp();
  try {
    python(['ddp', join(dir, 'store'), join(dir, 'out.json')]);
    const r = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { same_grad: boolean; nonzero: boolean };
    assert.deepEqual(r, { same_grad: true, nonzero: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
