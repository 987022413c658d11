// pixelfly_torch under Debian's python3-torch: the Python test modules (test/torch/test_*.py, each
// Python test a subtest here), the package's masks against the core's (and the authors' reference
// layouts), and its PixelflyLinear against the native engine from the engine's own weight export.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { flatBlockButterflyLayout, layoutRows, type ButterflyParams } from '../../core/layout';
import { PixelflyConfigError } from '../../core/errors';
import { runPython, torchMissing } from '../support/torch';

const repoRoot = resolve(__dirname, '..', '..', '..');
const HERE = join(repoRoot, 'test', 'torch');
const noTorch = torchMissing();

function check(args: string[]): void {
  const r = runPython([join(HERE, 'checks.py'), ...args], { timeout: 120_000 });
  assert.equal(r.status, 0, `checks.py ${args[0]} failed: ${r.stderr}`);
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'pixelfly-torch-'));
}

interface PyResult {
  name: string;
  status: 'pass' | 'fail' | 'skip';
  message: string;
  ms: number;
}

test('pixelfly_torch Python tests (test/torch/test_*.py)', { skip: noTorch, timeout: 600_000 }, async (t) => {
  // Idle OpenMP workers sleep, as in training (two test processes must not spin on two cores).
  const r = runPython([join(HERE, 'run.py')], { env: { OMP_WAIT_POLICY: 'PASSIVE' }, timeout: 600_000 });
  const results: PyResult[] = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as PyResult);
  assert.ok(results.length >= 20, `the runner reported ${results.length} tests (exit ${r.status}): ${r.stderr.slice(-3000)}`);
  for (const res of results) {
    await t.test(`${res.name} (${Math.round(res.ms)} ms)`, (st) => {
      if (res.status === 'skip') return st.skip(res.message);
      assert.equal(res.status, 'pass', res.message);
    });
  }
  assert.equal(r.status, 0, `run.py exited ${r.status}: ${r.stderr.slice(-3000)}`);
});

test('the package\'s masks equal the core\'s: reference layouts and a sweep with padding, globals, shuffle and errors', { skip: noTorch }, () => {
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
    check(['layouts', join(dir, 'cases.json'), join(dir, 'out.json')]);
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

test('PixelflyAttention cores come back from the engine\'s weight export: each layout, and the low-rank projection the engine trained with', { skip: noTorch }, async (t) => {
  const engine = await engineOrSkip();
  if (typeof engine === 'string') return t.skip(engine);
  const { performerProjection, attentionLayout } = await import('../../core/attention');
  const attention = { kind: 'pixelfly' as const, block: 16, butterflySize: 4, nFactors: 2, features: 8 };
  const spec = { kind: 'gpt' as const, vocab: 32, context: 64, dim: 32, depth: 2, heads: 2, mlpHidden: 64, attention };
  const seed = 5;
  const model = await engine.createModel({ spec, seed, threads: 1, train: { batch: 2, lr: 1e-3, totalSteps: 1 } });
  const dir = tmp();
  try {
    await model.exportWeights(join(dir, 'weights.safetensors'));
    check(['attention', join(dir, 'weights.safetensors'), join(dir, 'cores.json')]);
    const cores = JSON.parse(readFileSync(join(dir, 'cores.json'), 'utf8')) as Record<string, { projection: number[]; density: number; causal: boolean; finite: boolean }>;
    assert.deepEqual(Object.keys(cores), ['blocks.0.attn.core', 'blocks.1.attn.core']);
    // Each core's own projection (the model draws one per block from its seed), bit for bit.
    const all = performerProjection(2, 8, 16, seed);
    const density = attentionLayout(64, attention, true).density;
    for (const [i, c] of Object.values(cores).entries()) {
      assert.deepEqual(Float32Array.from(c.projection), all.subarray(i * 64, (i + 1) * 64), `block ${i}: the projection`);
      assert.ok(c.causal && Math.abs(c.density - density) < 1e-12 && c.finite, JSON.stringify({ ...c, projection: undefined }));
    }
    assert.notDeepEqual(cores['blocks.0.attn.core'].projection, cores['blocks.1.attn.core'].projection, 'each block has its own');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

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
      check(['engine', join(dir, 'weights.safetensors'), join(dir, 'x.json'), join(dir, 'y.json')]);
      const out = JSON.parse(readFileSync(join(dir, 'y.json'), 'utf8')) as Record<string, number[] | boolean>;
      assert.equal(out['layer:load_engine_weights_equal'], true, 'load_engine_weights gives the same layer');
      for (const key of ['layer', 'layer:float32']) {
        const torchY = out[key] as number[];
        assert.equal(torchY.length, y.length);
        let worst = 0;
        let scale = 1e-6;
        for (let i = 0; i < y.length; i++) {
          worst = Math.max(worst, Math.abs(y[i] - torchY[i]));
          scale = Math.max(scale, Math.abs(torchY[i]));
        }
        assert.ok(worst / scale < 1e-5, `${key} ${c.in}→${c.out} ${JSON.stringify(c.cfg)}: max |engine − torch| = ${worst.toExponential(2)} (scale ${scale.toFixed(3)})`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
