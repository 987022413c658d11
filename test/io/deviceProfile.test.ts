// Which profile file a plan at a given precision is costed with, and the watcher the language
// server asks on every analysis: re-read when either file it depends on changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PROFILE, DEVICE_PROFILE_FORMAT, type DeviceProfile } from '../../core/costModel';
import { loadProfile, profileFile, ProfileWatcher } from '../../io/deviceProfile';

const measured = (precision: 'fp32' | 'bf16', denseGflops: number): DeviceProfile => ({ ...DEFAULT_PROFILE, source: 'measured', device: `cpu ${precision}`, precision, denseGflops, measuredAt: '2026-12-04T00:00:00Z' });

test('a precision is costed with the default file when it was measured at it, else with its own file, else the prior', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pf-profiles-'));
  try {
    assert.equal(profileFile(dir, 'default'), join(dir, 'device.json'));
    assert.equal(profileFile(dir, 'fp32'), join(dir, 'device-fp32.json'));
    assert.equal(loadProfile(dir, DEVICE_PROFILE_FORMAT, undefined, 'fp32').source, 'default', 'nothing measured: the prior');
    writeFileSync(profileFile(dir, 'default'), JSON.stringify(measured('bf16', 400)));
    assert.equal(loadProfile(dir, DEVICE_PROFILE_FORMAT).denseGflops, 400);
    assert.equal(loadProfile(dir, DEVICE_PROFILE_FORMAT, undefined, 'bf16').denseGflops, 400);
    assert.equal(loadProfile(dir, DEVICE_PROFILE_FORMAT, undefined, 'fp32').source, 'default', 'not the bf16 rates');
    writeFileSync(profileFile(dir, 'fp32'), JSON.stringify(measured('fp32', 200)));
    assert.equal(loadProfile(dir, DEVICE_PROFILE_FORMAT, undefined, 'fp32').denseGflops, 200);
    assert.equal(loadProfile(dir, DEVICE_PROFILE_FORMAT, undefined, 'auto').denseGflops, 400);
    const lines: string[] = [];
    writeFileSync(profileFile(dir, 'fp32'), '{ not json');
    assert.equal(loadProfile(dir, DEVICE_PROFILE_FORMAT, (l) => lines.push(l), 'fp32').source, 'default');
    assert.match(lines.join('\n'), /ignoring .*device-fp32\.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the watcher follows the precision asked for and re-reads the file that changed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pf-profiles-'));
  try {
    const w = new ProfileWatcher(() => dir, DEVICE_PROFILE_FORMAT);
    writeFileSync(profileFile(dir, 'default'), JSON.stringify(measured('bf16', 400)));
    assert.equal(w.current().denseGflops, 400);
    assert.equal(w.current('fp32').source, 'default');
    writeFileSync(profileFile(dir, 'fp32'), JSON.stringify(measured('fp32', 200)));
    assert.equal(w.current('fp32').denseGflops, 200, 'the fp32 file, once written');
    assert.equal(w.current('bf16').denseGflops, 400);
    writeFileSync(profileFile(dir, 'fp32'), JSON.stringify(measured('fp32', 210.5)));
    assert.equal(w.current('fp32').denseGflops, 210.5, 're-read when it changes');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
