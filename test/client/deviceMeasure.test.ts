/**
 * The one-time device measurement `pixelfly train` and the editor's Train make before planning on a
 * device with no measured profile: which products it times, when a home counts as measured, and
 * which jobs it is for (the CPU's kernels are what bench.layers times).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceMeasurement, hasMeasuredProfile, trainsOnCpu } from '../../client/deviceMeasure';
import { DEFAULT_PROFILE } from '../../core/costModel';
import { methods } from '../../protocol/daemon';

describe('deviceMeasurement', () => {
  it("times the model's product shapes at one step's rows, with the planner's configs, as a valid bench.layers request", () => {
    const spec = { kind: 'mlp', name: 'm', inputFeatures: 784, hidden: [1024, 1024], classes: 10 };
    const m = deviceMeasurement(spec, 64, 2);
    assert.ok(m);
    assert.deepEqual(m.params.shapes.map((s) => [s.in, s.out, s.rows]), [[784, 1024, 64], [1024, 1024, 64], [1024, 10, 64]]);
    assert.ok((m.params.shapes[1].configs?.length ?? 0) > 0, 'a layer the planner may sparsify gets configs');
    assert.equal(m.params.threads, 2);
    assert.equal(m.params.step, true, 'the step rates too: estimates are whole-step ones');
    assert.match(m.what, /^the model's 3 product shapes dense and with \d+ Pixelfly configs$/);
    methods['bench.layers'].params.parse(m.params);
  });

  it('measures nothing for a spec that does not parse (the daemon rejects the job with its own message)', () => {
    assert.equal(deviceMeasurement({ kind: 'nonsense' }, 64, 0), undefined);
    assert.equal(deviceMeasurement(null, 64, 0), undefined);
  });

  it("times the products at the job's precision; fp16 (CUDA's) is not measured on the CPU", () => {
    const spec = { kind: 'mlp', name: 'm', inputFeatures: 784, hidden: [1024], classes: 10 };
    assert.equal(deviceMeasurement(spec, 64, 0)?.params.precision, 'auto');
    const fp32 = deviceMeasurement(spec, 64, 0, 'fp32');
    assert.equal(fp32?.params.precision, 'fp32');
    assert.match(fp32?.what ?? '', / in fp32$/);
    assert.equal(deviceMeasurement(spec, 64, 0, 'fp16'), undefined);
  });
});

describe('hasMeasuredProfile', () => {
  it('only a measured profile in the home counts: none, the default prior or an unreadable file do not', () => {
    const home = mkdtempSync(join(tmpdir(), 'pf-measure-'));
    assert.equal(hasMeasuredProfile(home), false);
    mkdirSync(join(home, 'profiles'));
    const file = join(home, 'profiles', 'device.json');
    writeFileSync(file, JSON.stringify(DEFAULT_PROFILE));
    assert.equal(hasMeasuredProfile(home), false);
    writeFileSync(file, '{ not json');
    assert.equal(hasMeasuredProfile(home), false);
    writeFileSync(file, JSON.stringify({ ...DEFAULT_PROFILE, source: 'measured', measuredAt: new Date().toISOString() }));
    assert.equal(hasMeasuredProfile(home), true);
  });

  it('per precision: the default profile counts for its own precision, another precision needs its own file', () => {
    const home = mkdtempSync(join(tmpdir(), 'pf-measure-'));
    mkdirSync(join(home, 'profiles'));
    const measured = (precision: string) => JSON.stringify({ ...DEFAULT_PROFILE, source: 'measured', precision, measuredAt: new Date().toISOString() });
    writeFileSync(join(home, 'profiles', 'device.json'), measured('bf16'));
    assert.equal(hasMeasuredProfile(home, 'auto'), true);
    assert.equal(hasMeasuredProfile(home, 'bf16'), true);
    assert.equal(hasMeasuredProfile(home, 'fp32'), false, 'an fp32 job on this bf16 CPU is not costed with bf16 rates');
    writeFileSync(join(home, 'profiles', 'device-fp32.json'), measured('fp32'));
    assert.equal(hasMeasuredProfile(home, 'fp32'), true);
  });
});

describe('trainsOnCpu', () => {
  it("follows the job's backend choice, and for 'auto' the daemon's backends", () => {
    // hello's backends as daemon/engineServices.ts words them.
    const cpu = 'cpu (avx512 kernels, bf16 on avx512bf16)';
    const cuda = 'cuda (NVIDIA H200)';
    assert.equal(trainsOnCpu([cuda], 'cpu'), true);
    assert.equal(trainsOnCpu([cpu], 'cuda'), false);
    assert.equal(trainsOnCpu([cpu], 'auto'), true);
    assert.equal(trainsOnCpu([cuda], 'auto'), false);
    assert.equal(trainsOnCpu([], 'auto'), false, 'a daemon with no engine backend measures nothing');
  });
});
