// One plan from the analysis to the run folder: for the example Mixer and a GPT and a ViT from the
// test corpus (pinned small), `pixelfly train FILE` through a real daemon trains exactly the plan
// `pixelfly analyze FILE --json` printed (its `engine.plan`), costed with the device profile in the
// Pixelfly home, and its JSON summary puts the plan's estimate beside the measured speedup.
// At a precision other than the engine's default both cost the plan with that precision's profile.
// (Speed is not asserted: bench/estimates.ts compares estimate and measurement.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { DEFAULT_PROFILE } from '../../core/costModel';
import { CLI, engineMissing, removeHome, tempHome } from './harness';

const ROOT = join(__dirname, '..', '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'models');

function pixelfly(home: string, args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
}

const CASES = [
  { name: 'mixer', file: join(ROOT, 'test', 'e2e', 'workspace', 'mixer.py'), set: [] as string[], kind: 'mixer' },
  { name: 'gpt', file: join(FIXTURES, 'nanogpt', 'model.py'), set: ['n_layer=2', 'n_head=4', 'n_embd=256', 'block_size=64', 'vocab_size=128'], kind: 'gpt' },
  {
    name: 'vit',
    file: join(FIXTURES, 'timm', 'vision_transformer.py'),
    set: ['img_size=32', 'patch_size=4', 'in_chans=3', 'embed_dim=256', 'depth=2', 'num_heads=4', 'num_classes=10'],
    kind: 'vit',
  },
];

test('pixelfly train FILE trains the plan pixelfly analyze FILE printed, on the Mixer, a GPT and a ViT', { skip: engineMissing(), timeout: 600_000 }, () => {
  const home = tempHome();
  try {
    // A measured profile (as bench.layers saves it): both commands must plan with it, and say so.
    const profile = { ...DEFAULT_PROFILE, device: 'test device', source: 'measured', measuredAt: '2026-12-03T00:00:00Z', denseGflops: 200 };
    mkdirSync(join(home, 'profiles'), { recursive: true });
    writeFileSync(join(home, 'profiles', 'device.json'), JSON.stringify(profile));
    for (const c of CASES) {
      const set = c.set.flatMap((s) => ['--set', s]);
      const analyzed = pixelfly(home, ['analyze', c.file, '--json', '--batch-size', '8', ...set]);
      assert.equal(analyzed.status, 0, `${c.name}: ${analyzed.stderr}`);
      const a = JSON.parse(analyzed.stdout);
      assert.equal(a.engine.spec.kind, c.kind, `${c.name}: ${JSON.stringify(a.engine)}`);
      const plan = a.engine.plan;
      assert.ok(plan.layers.some((l: { sparsify: boolean }) => l.sparsify), `${c.name}: some layer is sparse`);
      assert.deepEqual(plan.device, { name: 'test device', source: 'measured', measuredAt: '2026-12-03T00:00:00Z' });
      assert.equal(a.estimate.speedup, a.plan.estSpeedup, 'the top-level estimate is the whole step');
      assert.equal(plan.estimate.batchSize, 8);
      // The engine's layers take the decisions of the source's layers they stand for.
      for (const l of a.layers.filter((r: { decision: { sparsify: boolean } | null }) => r.decision?.sparsify)) {
        assert.ok(plan.layers.some((p: { config?: unknown }) => isDeepStrictEqual(p.config, l.decision.config)), `${c.name}: ${l.name}'s config is in the engine plan`);
      }
      const trained = pixelfly(home, ['train', c.file, '--json', '--steps', '2', '--batch-size', '8', '--threads', '1', '--dataset', 'synthetic', ...set]);
      assert.equal(trained.status, 0, `${c.name}: ${trained.stderr}`);
      const t = JSON.parse(trained.stdout);
      assert.deepEqual(JSON.parse(readFileSync(join(t.runDir, 'plan.json'), 'utf8')), plan, `${c.name}: the run folder's plan is analyze's`);
      assert.deepEqual(t.plan, plan);
      assert.equal(t.estimatedSpeedup, plan.estimate.speedup);
      assert.equal(typeof t.measuredSpeedup, 'number');
      assert.equal(t.summary.estimatedSpeedup, plan.estimate.speedup);
    }
  } finally {
    pixelfly(home, ['daemon', 'stop']);
    removeHome(home);
  }
});

test('at a precision other than the default, analyze and train both cost the plan with that precision\'s profile, and train trains it', { skip: engineMissing(), timeout: 300_000 }, () => {
  const home = tempHome();
  try {
    const measured = (device: string, precision: string, denseGflops: number) => ({ ...DEFAULT_PROFILE, device, source: 'measured', precision, measuredAt: '2026-12-04T00:00:00Z', denseGflops });
    mkdirSync(join(home, 'profiles'), { recursive: true });
    writeFileSync(join(home, 'profiles', 'device.json'), JSON.stringify(measured('test device, bf16', 'bf16', 400)));
    writeFileSync(join(home, 'profiles', 'device-fp32.json'), JSON.stringify(measured('test device, fp32', 'fp32', 150)));
    const c = CASES[0];
    const analyzed = pixelfly(home, ['analyze', c.file, '--json', '--batch-size', '8', '--precision', 'fp32']);
    assert.equal(analyzed.status, 0, analyzed.stderr);
    const plan = JSON.parse(analyzed.stdout).engine.plan;
    assert.equal(plan.device.name, 'test device, fp32');
    const byDefault = JSON.parse(pixelfly(home, ['analyze', c.file, '--json', '--batch-size', '8']).stdout).engine.plan;
    assert.equal(byDefault.device.name, 'test device, bf16');
    assert.notEqual(byDefault.estimate.denseMs, plan.estimate.denseMs, 'the two precisions are costed at their own rates');
    const trained = pixelfly(home, ['train', c.file, '--json', '--steps', '2', '--batch-size', '8', '--threads', '1', '--dataset', 'synthetic', '--precision', 'fp32']);
    assert.equal(trained.status, 0, trained.stderr);
    const t = JSON.parse(trained.stdout);
    assert.equal(t.precision, 'fp32');
    assert.deepEqual(JSON.parse(readFileSync(join(t.runDir, 'plan.json'), 'utf8')), plan, "the run folder's plan is analyze's at fp32");
  } finally {
    pixelfly(home, ['daemon', 'stop']);
    removeHome(home);
  }
});
