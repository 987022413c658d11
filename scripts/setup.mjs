#!/usr/bin/env node
// One-step set-up used by `npm test`, `npm run demo` and `npm run build`:
// Debian packages (when root), npm dependencies, the native addon, TypeScript and bundles.
// Each step is cheap when already done, so every entry point can call this unconditionally.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));

// Debian packages the tests and benchmarks use, with what each is for.
const DEBIAN_PACKAGES = {
  'build-essential': 'compiles the native engine',
  'python3': 'node-gyp',
  'libopenblas-dev': 'dense baseline in the kernel benchmark',
  'python3-torch': 'the pixelfly_torch package and its tests, cross-checks of the engine against PyTorch',
  'libtorch-dev': "PyTorch's C++ headers, to build pixelfly_torch's extension",
  'python3-dev': "Python's headers (torch's C++ headers include them)",
  'libtcmalloc-minimal4': 'the allocator bench:torch gives every PyTorch variant (glibc faults large tensors in afresh each step)',
  'dataset-fashion-mnist': 'real training data',
  'chromium': 'headless browser for the webview page tests and the VS Code e2e (driven by playwright-core)',
};

function step(title, fn) {
  const t0 = Date.now();
  process.stdout.write(`[setup] ${title} ...\n`);
  fn();
  process.stdout.write(`[setup] ${title}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${argv.join(' ')} failed with exit status ${r.status ?? r.signal}`);
  }
}

function missingDebianPackages() {
  return Object.keys(DEBIAN_PACKAGES).filter((p) => {
    const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' });
    return r.status !== 0 || !r.stdout.includes('install ok installed');
  });
}

function debian() {
  const missing = missingDebianPackages();
  if (missing.length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    const why = missing.map((p) => `  ${p}: ${DEBIAN_PACKAGES[p]}`).join('\n');
    process.stdout.write(
      `[setup] WARNING: these Debian packages are missing and we are not root, so they are not installed:\n${why}\n` +
        `[setup] Install them with: sudo apt-get install -y ${missing.join(' ')}\n` +
        `[setup] Tests that need them report themselves as skipped, with this reason.\n`,
    );
    return;
  }
  step(`apt-get install ${missing.join(' ')}`, () => {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update', '-qq'], { env });
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env });
  });
}

function npmInstall() {
  // `npm ci` would wipe node_modules every time; install is a no-op when up to date.
  const stamp = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8').length > 0 && existsSync(lock)) {
    const want = JSON.parse(readFileSync(lock, 'utf8')).packages ?? {};
    const have = JSON.parse(readFileSync(stamp, 'utf8')).packages ?? {};
    // Optional packages for other platforms (esbuild's binaries) are in the lock but never installed.
    const same = Object.keys(want).every((k) => k === '' || have[k]?.version === want[k].version || (want[k].optional && !have[k]));
    if (same) return;
  }
  step('npm install', () => run('npm', ['install', '--no-audit', '--no-fund']));
}

function nativeAddon() {
  if (!existsSync(join(root, 'native', 'binding.gyp'))) return;
  step('native addon (node-gyp)', () => {
    const gyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    const env = { ...process.env, npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr' };
    if (!existsSync(join(root, 'native', 'build', 'Makefile'))) {
      run(process.execPath, [gyp, 'configure', '--directory', 'native'], { env });
    }
    run(process.execPath, [gyp, 'build', '--directory', 'native', `--jobs=${availableParallelism()}`], { env });
  });
}

// The interpreter the PyTorch package is built for and tested with: Debian's, where python3-torch installs.
const PYTHON = process.env.PIXELFLY_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

function torchPackage() {
  step(`pixelfly_torch (PyTorch extension for ${PYTHON})`, () => {
    const probe = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
    const args = ['pytorch/build.py', '--out', 'dist/python', '--jobs', String(availableParallelism()), '--allow-python-only'];
    if (probe.status !== 0) {
      process.stdout.write(`[setup] WARNING: ${PYTHON} cannot import torch, so pixelfly_torch is installed without its extension ` +
        `(masked-dense, no speedup); its tests report themselves as skipped. Install python3-torch and libtorch-dev.\n`);
      args.push('--python-only', '--reason', `${PYTHON} cannot import torch`);
    }
    run(PYTHON, args);
  });
}

function typescript() {
  step('TypeScript (tsc, strict)', () => run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.']));
}

function bundles() {
  step('bundles (esbuild)', () => run(process.execPath, ['esbuild.config.mjs']));
}

try {
  if (!args.has('--no-apt')) debian();
  npmInstall();
  nativeAddon();
  torchPackage();
  typescript();
  bundles();
} catch (err) {
  process.stderr.write(`[setup] FAILED: ${err.message}\n`);
  process.exit(1);
}
