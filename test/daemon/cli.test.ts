// `pixelfly train` and `pixelfly daemon` as users run them: real processes, a temporary home.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, removeHome, tempHome } from './harness';

function engineMissing(): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('../../native/engine').engineBackend();
    return undefined;
  } catch (err) {
    return `SKIPPED: the native engine is not built (${(err as Error).message}); run \`npm run build\``;
  }
}

function pixelfly(home: string, args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 60_000 });
}

test('pixelfly train starts the daemon, trains dense vs Pixelfly, and ends with a summary and an HTML report', { skip: engineMissing(), timeout: 90_000 }, () => {
  const home = tempHome();
  try {
    const spec = join(home, 'mlp.json');
    writeFileSync(spec, JSON.stringify({ kind: 'mlp', name: 'cli-mlp', inputFeatures: 784, hidden: [512, 512], classes: 10 }));
    const r = pixelfly(home, ['train', spec, '--dataset', 'synthetic', '--max-steps', '40', '--batch-size', '32', '--threads', '1']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /started the daemon on 127\.0\.0\.1:\d+/);
    assert.match(r.stderr, /\[#{20}\] 100% \| step 40\/40 \| loss pixelfly [\d.]+ dense [\d.]+ \| speedup [\d.]+x/);
    assert.match(r.stdout, /completed after 40 steps/);
    assert.match(r.stdout, /speedup \(median dense step \/ median Pixelfly step, alternating steps\): [\d.]+x/);
    const report = /report: (\S+)/.exec(r.stdout)?.[1];
    assert.ok(report && existsSync(report), `report at ${report}`);
    const html = readFileSync(report, 'utf8');
    assert.match(html, /aria-label="Training loss"/);
    assert.match(html, /aria-label="Running speedup/);
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained: no scripts, no network');
    const status = pixelfly(home, ['daemon', 'status']);
    assert.equal(status.status, 0);
    assert.match(status.stdout, /jobs: 1 \(0 queued or running\)/);
  } finally {
    pixelfly(home, ['daemon', 'stop']);
    removeHome(home);
  }
});

test('pixelfly train refuses bad input with messages naming it', { timeout: 30_000 }, () => {
  const home = tempHome();
  try {
    const missing = pixelfly(home, ['train', join(home, 'nope.json')]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot read model spec '.*nope\.json': ENOENT/);
    const py = pixelfly(home, ['train', join(home, 'model.py')]);
    assert.equal(py.status, 2);
    assert.match(py.stderr, /model\.py: Python model definitions are analysed by the language server/);
    const badData = pixelfly(home, ['train', '--dataset', 'imagenet']);
    assert.equal(badData.status, 2);
    assert.match(badData.stderr, /--dataset: unknown kind 'imagenet'/);
    const bad = join(home, 'bad.json');
    writeFileSync(bad, '{"kind": "mlp", "inputFeatures": 10, "hidden": [], "classes": 1}');
    const rejected = pixelfly(home, ['train', bad]);
    assert.equal(rejected.status, 1);
    assert.match(rejected.stderr, /classes: must be between 2/);
  } finally {
    pixelfly(home, ['daemon', 'stop']);
    removeHome(home);
  }
});
