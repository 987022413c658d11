// `npm run bench:estimates -- [--steps 20] [--models mixer,gpt,vit] [--precision auto|fp32|bf16] [--out bench-results/estimates.json]`
//
// Does a plan's whole-step estimate hold on this machine? For the example Mixer and a GPT and a
// ViT from the test corpus (widths pinned with --set so a step takes about a second here), as a
// user would: the daemon measures the device as `pixelfly train` does where it has no profile
// (cli/commands/measureDevice.ts: bench.layers at the model's shapes and the layouts the planner
// weighs, and the step rates), `pixelfly analyze FILE --json` prints the plan and its estimate, and
// `pixelfly train FILE --json` trains exactly that plan, dense and Pixelfly in alternating steps.
// Checks that the run folder's plan is the one analyze printed, and prints estimate vs measured
// (median dense step / median Pixelfly step) with the load average. `--precision` trains (and
// measures the device and costs the plan) at that precision instead of the engine's default. A temporary Pixelfly home
// unless $PIXELFLY_HOME is set.
import { spawnSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ModelSpec } from '../core/modelSpec';
import { measureDevice } from '../cli/commands/measureDevice';
import { connectDaemon, discover } from '../client/discovery';
import type { Plan } from '../protocol/plan';

const ROOT = join(__dirname, '..', '..');
const CLI = join(__dirname, '..', 'cli', 'main.js');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'models');

interface Case {
  name: string;
  file: string;
  set: string[];
  batch: number;
}

/** The three models of issue 15's target; the corpus's GPT and ViT pinned to sizes a 2-core CPU trains in seconds. */
export const CASES: Case[] = [
  { name: 'mixer', file: join(ROOT, 'test', 'e2e', 'workspace', 'mixer.py'), set: [], batch: 64 },
  {
    name: 'gpt',
    file: join(FIXTURES, 'nanogpt', 'model.py'),
    set: ['n_layer=4', 'n_head=8', 'n_embd=512', 'block_size=256', 'vocab_size=512', 'bias=True'],
    batch: 8,
  },
  {
    name: 'vit',
    file: join(FIXTURES, 'timm', 'vision_transformer.py'),
    set: ['img_size=32', 'patch_size=4', 'in_chans=3', 'embed_dim=384', 'depth=4', 'num_heads=6', 'num_classes=10'],
    batch: 32,
  },
];

function cli(home: string, args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`pixelfly ${args.join(' ')} failed (${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout;
}

type Precision = 'auto' | 'fp32' | 'bf16';

interface Analyzed {
  engine: { spec: ModelSpec; plan: Plan } | { error: string };
}

function analyzeCase(home: string, c: Case, precision: Precision): { spec: ModelSpec; plan: Plan } {
  const a = JSON.parse(cli(home, ['analyze', c.file, '--json', '--batch-size', String(c.batch), '--precision', precision, ...c.set.flatMap((s) => ['--set', s])])) as Analyzed;
  if ('error' in a.engine) throw new Error(`${c.name}: ${a.engine.error}`);
  return a.engine;
}

/** This device measured at the model's shapes, by the code `pixelfly train` measures a device with: the profile the next analysis uses. */
async function measureHome(home: string, spec: ModelSpec, batch: number, precision: Precision): Promise<void> {
  cli(home, ['daemon', 'start']);
  const found = discover(home);
  if (!found) throw new Error(`no daemon in ${home} after 'pixelfly daemon start'`);
  const client = await connectDaemon(found);
  try {
    await measureDevice(client, spec, batch, 0, precision);
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const steps = Number(opt('steps', '20'));
  const wanted = opt('models', 'mixer,gpt,vit').split(',');
  const out = opt('out', 'bench-results/estimates.json');
  const precision = opt('precision', 'auto') as Precision;
  if (!['auto', 'fp32', 'bf16'].includes(precision)) throw new Error(`--precision: expected auto, fp32 or bf16, got ${precision}`);
  const home = process.env.PIXELFLY_HOME || mkdtempSync(join(tmpdir(), 'pixelfly-estimates-'));
  const rows = [];
  try {
    for (const c of CASES.filter((x) => wanted.includes(x.name))) {
      // Measure the model's products, plan again with what was measured, then train what analyze printed.
      await measureHome(home, analyzeCase(home, c, precision).spec, c.batch, precision);
      const job = analyzeCase(home, c, precision);
      const load0 = loadavg()[0];
      const trained = JSON.parse(
        cli(home, ['train', c.file, '--json', '--steps', String(steps), '--batch-size', String(c.batch), '--dataset', 'synthetic', '--precision', precision, ...c.set.flatMap((s) => ['--set', s])]),
      ) as { runDir: string; precision?: string; estimatedSpeedup: number | null; measuredSpeedup: number | null; summary?: { pixelfly: { medianStepMs?: number }; dense?: { medianStepMs?: number } } };
      const runPlan = JSON.parse(readFileSync(join(trained.runDir, 'plan.json'), 'utf8')) as Plan;
      const samePlan = isDeepStrictEqual(runPlan, job.plan);
      const est = job.plan.estimate!;
      const measured = trained.measuredSpeedup ?? NaN;
      rows.push({
        model: c.name,
        spec: job.spec,
        batch: c.batch,
        steps,
        samePlan,
        precision: trained.precision,
        estimated: est.speedup,
        measured,
        errorPct: (100 * (est.speedup - measured)) / measured,
        estDenseMs: est.denseMs,
        estPlanMs: est.planMs,
        denseMs: trained.summary?.dense?.medianStepMs,
        pixelflyMs: trained.summary?.pixelfly.medianStepMs,
        load: [load0, loadavg()[0]],
        profile: job.plan.device,
      });
    }
  } finally {
    spawnSync(process.execPath, [CLI, 'daemon', 'stop'], { env: { ...process.env, PIXELFLY_HOME: home } });
  }
  const f = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));
  console.log(`precision ${precision} (trained: ${[...new Set(rows.map((r) => r.precision))].join(', ')})`);
  console.log('model  batch  plan=analyze  est dense/pf ms     measured dense/pf ms   est     measured  error   load');
  for (const r of rows) {
    console.log(
      `${r.model.padEnd(6)} ${String(r.batch).padStart(5)}  ${String(r.samePlan).padEnd(12)}  ${f(r.estDenseMs, 1).padStart(7)}/${f(r.estPlanMs, 1).padEnd(7)}  ` +
        `${f(r.denseMs, 1).padStart(9)}/${f(r.pixelflyMs, 1).padEnd(9)}  ${f(r.estimated)}×  ${f(r.measured)}×    ${f(r.errorPct, 0).padStart(4)}%  ${r.load.map((l) => l.toFixed(1)).join('→')}`,
    );
  }
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), rows }, null, 2) + '\n');
  console.log(`wrote ${out}`);
  if (rows.some((r) => !r.samePlan)) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
