// `pixelfly torch install --python PATH` into a fresh virtual environment: the package lands in the
// environment's site-packages with the extension built for its torch, and imports from anywhere;
// an interpreter without torch, or no interpreter at all, is a clear error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PYTHON, torchMissing } from '../support/torch';

const repoRoot = resolve(__dirname, '..', '..', '..');
const CLI = join(repoRoot, 'dist', 'pixelfly.js');
const noTorch = torchMissing();

function venv(dir: string, systemSite: boolean): string | undefined {
  const r = spawnSync(PYTHON, ['-m', 'venv', '--without-pip', ...(systemSite ? ['--system-site-packages'] : []), dir], { encoding: 'utf8' });
  return r.status === 0 ? join(dir, 'bin', 'python') : undefined;
}

function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, 'torch', ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 600_000 });
}

test('pixelfly torch install builds and installs pixelfly_torch into a virtual environment', { skip: noTorch, timeout: 600_000 }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-venv-'));
  try {
    const python = venv(join(dir, 'env'), true);
    if (!python) return t.skip(`SKIPPED LOUDLY: ${PYTHON} -m venv is unavailable here`);
    // The objects npm run build compiled for this torch are reused (same sources and flags): only the link runs.
    const cacheRoot = join(repoRoot, 'native', 'build', 'torch');
    const cached = existsSync(cacheRoot) ? readdirSync(cacheRoot).map((d) => join(cacheRoot, d)) : [];
    const env: Record<string, string> = { PIXELFLY_HOME: join(dir, 'home') };
    if (cached.length === 1) env.PIXELFLY_TORCH_BUILD_DIR = cached[0];
    const before = cli(['status', '--python', python, '--json'], env);
    assert.equal(before.status, 1, 'not installed yet');
    const r = cli(['install', '--python', python, '--json'], env);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { target: string; backend: string; installed: boolean };
    assert.ok(out.target.startsWith(join(dir, 'env')), `installed into the environment: ${out.target}`);
    assert.ok(existsSync(join(out.target, 'pixelfly_torch', '_C.so')));
    assert.match(out.backend, /^native \((amx|avx512bf16|avx512|avx2|portable), \d+ threads\)$/);
    const status = cli(['status', '--python', python], env);
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /: native \(/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pixelfly torch install refuses interpreters without torch, and missing interpreters, saying so', { skip: noTorch }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-venv-'));
  try {
    const python = venv(join(dir, 'bare'), false);
    if (!python) return t.skip(`SKIPPED LOUDLY: ${PYTHON} -m venv is unavailable here`);
    const noTorchEnv = cli(['install', '--python', python]);
    assert.equal(noTorchEnv.status, 1);
    assert.match(noTorchEnv.stderr, /has no torch: install PyTorch into it first/);
    const missing = cli(['install', '--python', join(dir, 'nope', 'python')]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot run .*nope\/python/);
    const usage = cli(['upgrade']);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /expected `pixelfly torch install` or `pixelfly torch status`/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
