// Past runs' measured speedups, found by the spec and plan they trained (what the lens shows beside its estimate).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunResults, runKey } from '../../io/runResults';

const spec = { kind: 'mlp', name: 'Net', inputFeatures: 64, hidden: [256], classes: 10 };
const config = { block: 32, butterflySize: 4, nFactors: 2, rank: 8 };
const plan = { layers: [{ name: 'fc1', sparsify: true, config }, { name: 'head', sparsify: false }] };

function writeRun(runs: string, id: string, files: Record<string, unknown>): void {
  mkdirSync(join(runs, id), { recursive: true });
  for (const [name, v] of Object.entries(files)) writeFileSync(join(runs, id, name), typeof v === 'string' ? v : JSON.stringify(v));
}

test('the latest finished run of the same spec and plan, whatever the names and key order', () => {
  const runs = mkdtempSync(join(tmpdir(), 'pixelfly-runs-'));
  try {
    const results = new RunResults(() => runs);
    const key = runKey({ classes: 10, hidden: [256], inputFeatures: 64, kind: 'mlp', name: 'Other name' }, { layers: [{ name: 'head', sparsify: false }, { name: 'fc1', sparsify: true, config }] });
    assert.equal(key, runKey(spec, plan));
    assert.equal(results.latest(key), undefined);
    writeRun(runs, 'a', { 'spec.json': spec, 'plan.json': plan });
    assert.equal(results.latest(key), undefined, 'not finished: no summary yet');
    writeRun(runs, 'a', { 'summary.json': { speedup: 1.4, estimatedSpeedup: 1.3 } });
    assert.deepEqual({ ...results.latest(key), endedAt: 0 }, { jobId: 'a', measuredSpeedup: 1.4, estimatedSpeedup: 1.3, endedAt: 0, key });
    // Another plan of the same spec, a run without a comparison, and a damaged folder are not it.
    writeRun(runs, 'b', { 'spec.json': spec, 'plan.json': { layers: [{ name: 'fc1', sparsify: true, config: { ...config, rank: 0 } }] }, 'summary.json': { speedup: 2 } });
    writeRun(runs, 'c', { 'spec.json': spec, 'plan.json': plan, 'summary.json': { steps: 3 } });
    writeRun(runs, 'd', { 'spec.json': '{', 'plan.json': plan, 'summary.json': { speedup: 9 } });
    assert.equal(results.latest(key)?.jobId, 'a');
  } finally {
    rmSync(runs, { recursive: true, force: true });
  }
});
