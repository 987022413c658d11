// `npm run bench:hostile -- [--out FILE]`: the daemon against hostile input, as the Target measures
// it. Runs the test files that attack a real daemon process (test/daemon: hostile, durability and
// protocol's fuzz), each of which checks every case (a clear error, the daemon alive, its RSS
// back within 10% of idle, `hello` quick throughout) and records its figures; then prints them as
// one table with the machine's load, and writes them as JSON (default bench-results/hostile.json).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { FIGURES_DIR, formatCaseTable, RSS_SETTLE_MS, type CaseFigures } from '../test/daemon/harness';

const FILES = ['hostile', 'durability', 'protocol'];
const root = join(__dirname, '..', '..');
const outIndex = process.argv.indexOf('--out');
const outFile = outIndex > 0 ? process.argv[outIndex + 1] : join(root, 'bench-results', 'hostile.json');

rmSync(FIGURES_DIR, { recursive: true, force: true });
const loadBefore = loadavg();
const t0 = Date.now();
const tests = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...FILES.map((f) => join(root, 'out', 'test', 'daemon', `${f}.test.js`))], { cwd: root, stdio: 'inherit' });
const loadAfter = loadavg();
const rows: Array<CaseFigures & { file: string }> = [];
for (const file of FILES) {
  const path = join(FIGURES_DIR, `${file}.json`);
  if (!existsSync(path)) {
    process.stderr.write(`no figures from ${file}.test (skipped or failed before its first case)\n`);
    continue;
  }
  rows.push(...(JSON.parse(readFileSync(path, 'utf8')) as { rows: CaseFigures[] }).rows.map((r) => ({ ...r, file })));
}
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
console.log(`\nThe Target, case by case (${rows.length} cases, ${((Date.now() - t0) / 1000).toFixed(0)} s; load average ${load(loadBefore)} before, ${load(loadAfter)} after)`);
console.log(`RSS: the daemon's VmRSS at idle and after the case, once back within 10% of idle (V8 frees a burst's garbage seconds later; at most ${RSS_SETTLE_MS / 1000} s is waited); hello: round trips sampled every 20 ms on a second connection during the case;`);
console.log('loop busy: CPU of the daemon\'s event-loop thread during one hello (10 ms ticks); loop delay: how late its 10 ms timer ran (wall-clock).\n');
console.log(formatCaseTable(rows));
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify({ load: { before: loadBefore, after: loadAfter }, testsPassed: tests.status === 0, rows }, null, 2) + '\n');
console.log(`\nwrote ${outFile}${tests.status === 0 ? '' : '; SOME TESTS FAILED (see above): their cases are missing or failed their check'}`);
process.exit(tests.status ?? 1);
