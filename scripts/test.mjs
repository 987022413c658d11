#!/usr/bin/env node
// `npm test`: set everything up, then run every compiled test file under out/test, each in its own
// `node --test` process, on a schedule that fits a small machine (CI has 2 cores): `--jobs` + 1
// files at a time (default: the number of cores), of which at most `--jobs` heavy ones (they
// compile native code, train models or run PyTorch), longest first. Every process gets one OpenMP
// thread (the addon's kernels and PyTorch honour OMP_NUM_THREADS), and idle OpenMP threads sleep
// instead of spinning, so files running side by side do not fight over the cores. A test that needs
// more threads asks for them itself.
// Each file's report is printed whole when it ends, then a table of the files by time; the times
// are kept in test-artifacts/test-times.json, and the next run starts the longest files first.
//
// node scripts/test.mjs [--no-setup] [--jobs N] [WORD...]   (WORDs: run only files whose path contains one)
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);

if (!argv.includes('--no-setup')) {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'setup.mjs')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const cores = availableParallelism();
const jobsAt = argv.indexOf('--jobs');
const jobs = jobsAt >= 0 ? Number(argv[jobsAt + 1]) : cores;
if (!(Number.isInteger(jobs) && jobs >= 1)) {
  process.stderr.write(`--jobs: expected a whole number ≥ 1, got ${argv[jobsAt + 1]}\n`);
  process.exit(2);
}

// Heavy files, by path under out/test (compiled names): builds of native code (a second addon
// against the CUDA emulation, the GPU check program, host programs of the CUDA kernels, the AMX
// emulation), training (the engine, the daemon's jobs), PyTorch, the kernels at many shapes.
const HEAVY = ['cuda/emulatedAddon.test.js', 'cuda/gpuCheck.test.js', 'cuda/attentionHost.test.js', 'cuda/layerKernelsHost.test.js',
  'cuda/daemon.test.js', 'native/', 'engine/', 'daemon/', 'cli/trainDaemon.test.js', 'torch/', 'server/torchExport.test.js',
  'server/corpusRuntime.test.js'];
const kindOf = (rel) => (HEAVY.some((h) => (h.endsWith('/') ? rel.startsWith(h) : rel === h)) ? 'heavy' : 'light');

function findTests(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) found.push(...findTests(p));
    else if (name.endsWith('.test.js')) found.push(p);
  }
  return found;
}

const testRoot = join(root, 'out', 'test');
const filters = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--jobs');
const files = findTests(testRoot)
  .map((f) => relative(testRoot, f))
  .filter((f) => filters.length === 0 || filters.some((w) => join('out', 'test', f).includes(w)))
  .sort();
if (files.length === 0) {
  process.stderr.write('no test files found under out/test\n');
  process.exit(1);
}

const timesFile = join(root, 'test-artifacts', 'test-times.json');
let lastTimes = {};
try {
  lastTimes = JSON.parse(readFileSync(timesFile, 'utf8'));
} catch {
  // First run: files start in path order within their kind.
}
// Longest first by the last run's times; without them, heavy files first (they are the long ones).
const expected = (f) => lastTimes[f] ?? (kindOf(f) === 'heavy' ? 60 : 5);
const queue = [...files].sort((a, b) => expected(b) - expected(a));

const results = [];
const color = process.stdout.isTTY ? { FORCE_COLOR: '1' } : {};

/** Runs one file; resolves when it has ended and its report is printed. */
function runFile(rel, kind) {
  const env = { ...process.env, ...color, OMP_NUM_THREADS: '1', OMP_WAIT_POLICY: 'PASSIVE' };
  const t0 = performance.now();
  // Reports print whole at the end of each file: say what is running meanwhile.
  process.stdout.write(`▶ ${join('out', 'test', rel)} (${kind})\n`);
  const child = spawn(process.execPath, ['--test', '--test-reporter=spec', join(testRoot, rel)], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks = [];
  child.stdout.on('data', (d) => chunks.push(d));
  child.stderr.on('data', (d) => chunks.push(d));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      const seconds = (performance.now() - t0) / 1000;
      const text = Buffer.concat(chunks).toString('utf8');
      const count = (what) => Number(new RegExp(`^ℹ ${what} (\\d+)$`, 'm').exec(text.replace(/\x1b\[[0-9;]*m/g, ''))?.[1] ?? 0);
      const r = { file: rel, kind, seconds, status: code ?? signal, pass: count('pass'), fail: count('fail'), skipped: count('skipped'), cancelled: count('cancelled') };
      results.push(r);
      const ok = code === 0;
      process.stdout.write(`\n── ${ok ? 'ok' : 'FAILED'} ${join('out', 'test', rel)} (${kind}, ${seconds.toFixed(1)} s)\n${text}`);
      resolve(r);
    });
  });
}

/** Runs the queue `jobs` + 1 at a time, at most `jobs` heavy files at once; resolves when all have ended. */
async function runAll() {
  let heavyRunning = 0;
  const next = () => {
    const i = queue.findIndex((f) => kindOf(f) === 'light' || heavyRunning < jobs);
    return i < 0 ? undefined : queue.splice(i, 1)[0];
  };
  const running = new Set();
  await new Promise((done) => {
    const fill = () => {
      while (running.size < jobs + 1) {
        const f = next();
        if (f === undefined) break;
        const kind = kindOf(f);
        if (kind === 'heavy') heavyRunning++;
        const p = runFile(f, kind).then(() => {
          if (kind === 'heavy') heavyRunning--;
          running.delete(p);
          fill();
        });
        running.add(p);
      }
      if (running.size === 0 && queue.length === 0) done();
    };
    fill();
  });
}

const t0 = performance.now();
await runAll();
const wall = (performance.now() - t0) / 1000;

const sum = (k) => results.reduce((s, r) => s + r[k], 0);
process.stdout.write(`\n── test files by time (${cores} cores; ${jobs + 1} files at a time, at most ${jobs} heavy)\n`);
for (const r of [...results].sort((a, b) => b.seconds - a.seconds)) {
  process.stdout.write(`${r.seconds.toFixed(1).padStart(7)} s  ${r.kind.padEnd(5)}  ${r.status === 0 ? '  ' : '✖ '}${join('out', 'test', r.file)}\n`);
}
const failed = results.filter((r) => r.status !== 0);
process.stdout.write(
  `\n${results.length} files in ${wall.toFixed(1)} s wall (${sum('seconds').toFixed(1)} s of file time): ` +
    `${sum('pass')} passed, ${sum('fail')} failed, ${sum('cancelled')} cancelled, ${sum('skipped')} skipped\n`,
);
if (failed.length > 0) process.stdout.write(`failed: ${failed.map((r) => join('out', 'test', r.file)).join(', ')}\n`);

if (filters.length === 0) {
  mkdirSync(dirname(timesFile), { recursive: true });
  writeFileSync(timesFile, JSON.stringify(Object.fromEntries(results.map((r) => [r.file, Math.round(r.seconds * 10) / 10])), null, 2) + '\n');
}
process.exit(failed.length > 0 ? 1 : 0);
