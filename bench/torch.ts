// `npm run bench:torch -- [--threads 2] [--reps 10] [--m 4096] [--steps 200] [--timing-steps 20] [--budget 0.25]
//                         [--only layers|steps] [--models gpt,mixer] [--text FILE] [--allocator tcmalloc|glibc] [--out FILE]`
// pixelfly_torch in real PyTorch (Debian's torch 1.13, /usr/bin/python3), in one run:
//  - per layer, forward + backward at (768→3072), (1024→4096), (3072→768), M rows, densities ≈ 1/8 and
//    1/4 (flat block butterfly, block 32, layouts from core as bench:kernels picks them): pixelfly
//    (the extension), masked_dense (the fallback), torch_linear (nn.Linear), project_dense (our dense
//    GEMM through the extension, so a better GEMM is never counted as a sparse gain), and where the CPU
//    has bf16, torch_bf16 (nn.Linear in bfloat16) and pixelfly_bf16 (the Pixelfly layer in bfloat16);
//  - a whole training step (forward, backward, AdamW) of two test-corpus models made sparse with
//    pixelfly_torch.sparsify from their own analysis plan (the language server's analysis at --budget):
//    a nanoGPT-style GPT at GPT-2-small width (n_embd 768, 4 layers, context 256; bytes of a text, vocab
//    256) and timm's MLP-Mixer on Fashion-MNIST (dim 512, 4 blocks, patch 4), dense vs Pixelfly on the
//    same batches in alternating steps for --steps, with the held-out loss after them; project_dense,
//    torch_bf16 and pixelfly_bf16 (models in bfloat16), torch_autocast and pixelfly_autocast (fp32 models
//    under torch.autocast(bfloat16)) timed for --timing-steps.
// Prints tables and writes JSON rows {kind: "layer"|"step", model, in, out, density, variant, threads,
// fwd_bwd_ms | step_ms, loss, ...} (default bench-results/torch.json). Medians of repeats; ratios are
// against baselines measured in the same run.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { layoutNear } from './kernels';
import { analyze } from '../server/analysis/analyze';
import { pythonParser } from '../server/analysis/parser';
import { analysisJson } from '../server/analysis/analysisJson';
import { parsePin } from '../server/analysis/pragmas';
import { DEBIAN_FASHION_MNIST } from '../native/datasets';
import { TCMALLOC } from '../daemon/jobs/torchProcess';

const repoRoot = resolve(__dirname, '..', '..');
const PYTHON = '/usr/bin/python3';

interface Options {
  threads: number;
  reps: number;
  m: number;
  steps: number;
  timingSteps: number;
  budget: number;
  only: '' | 'layers' | 'steps';
  models: string[];
  text: string;
  allocator: 'tcmalloc' | 'glibc';
  out: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    threads: 2, reps: 10, m: 4096, steps: 200, timingSteps: 20, budget: 0.25, only: '', models: ['gpt', 'mixer'],
    text: '', allocator: existsSync(TCMALLOC) ? 'tcmalloc' : 'glibc', out: 'bench-results/torch.json',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    const num = (): number => {
      const v = Number(value);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag}: expected a positive number, got ${value}`);
      return v;
    };
    if (flag === '--threads') o.threads = num();
    else if (flag === '--reps') o.reps = num();
    else if (flag === '--m') o.m = num();
    else if (flag === '--steps') o.steps = num();
    else if (flag === '--timing-steps') o.timingSteps = num();
    else if (flag === '--budget') o.budget = num();
    else if (flag === '--only' && (value === 'layers' || value === 'steps')) o.only = value;
    else if (flag === '--models') o.models = value.split(',');
    else if (flag === '--text') o.text = value;
    else if (flag === '--allocator' && (value === 'tcmalloc' || value === 'glibc')) {
      if (value === 'tcmalloc' && !existsSync(TCMALLOC)) throw new Error(`--allocator tcmalloc: ${TCMALLOC} is missing (apt install libtcmalloc-minimal4)`);
      o.allocator = value;
    }
    else if (flag === '--out') o.out = value;
    else throw new Error(`unknown option ${flag} ${value}`);
  }
  return o;
}

/** The text the GPT learns: Python's standard library sources (on every Debian machine), or --text. */
function defaultText(): string {
  const out = join(repoRoot, 'bench-results', 'stdlib-text.txt');
  if (existsSync(out)) return out;
  const dir = '/usr/lib/python3.11';
  const files = readdirSync(dir).filter((f) => f.endsWith('.py')).sort();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, files.map((f) => readFileSync(join(dir, f), 'utf8')).join('\n'));
  return out;
}

/** The analysis of a model file with its settings pinned (as `pixelfly analyze FILE --model M --set k=v --budget B --json`). */
async function plan(file: string, model: string, settings: Record<string, number>, budget: number): Promise<object> {
  const pins = new Map(Object.entries(settings).map(([k, v]) => parsePin(`${k}=${v}`)));
  const a = analyze(await pythonParser(), { file, model, pins, target: { budget }, extraPaths: [join(repoRoot, 'test', 'fixtures', 'python-site')] });
  if (!a.plan || !a.layers.some((l) => l.decision?.sparsify)) throw new Error(`${file}: the analysis plans no Pixelfly layer (${a.plan?.summary ?? a.unresolved.join(', ')})`);
  console.log(`  ${model} (${file.replace(repoRoot + '/', '')}): ${a.plan.summary}`);
  return analysisJson(a);
}

interface Row {
  kind: 'layer' | 'step';
  model: string;
  variant: string;
  density?: number;
  in?: number;
  out?: number;
  fwd_bwd_ms?: number;
  step_ms?: number;
  loss?: number | null;
  steps?: number;
  [k: string]: unknown;
}

// PyTorch 1.13 allocates tensors with posix_memalign; under glibc a freed large tensor is not reused
// for the next one of the same size (the aligned request is a little larger), so the heap grows and
// every step faults its large tensors in afresh: measured here, a 51 MB tensor's allocation and fill
// take 450-500 ms under glibc (whatever MALLOC_MMAP_THRESHOLD_ says: glibc rejects values above
// 32 MB) and 1.5-6 ms under tcmalloc after the first. That cost is the same for every variant and
// would only compress the ratios, so every variant runs on tcmalloc where it is installed
// (`--allocator glibc` measures the other case).

// Debian's torch does its fp32 GEMMs on OpenBLAS, whose idle workers spin (sched_yield) for 2^28
// cycles, about 0.1 s, after every call. On 2 cores that spinning worker takes a core from the
// OpenMP threads that run whatever comes next (our kernels, torch's GELU and norms): measured on the
// Mixer step, a sixth of all CPU time went to it, and Pixelfly's step was 6-20% slower while
// dense's was no faster. 2^4 cycles (the least OpenBLAS allows) puts them to sleep at once, as
// bench:kernels does; every variant runs with it, and the rows say so.
const openblasThreadTimeout = (): string => process.env.OPENBLAS_THREAD_TIMEOUT ?? '4';

function runPython(cfg: object, allocator: Options['allocator']): Promise<Row[]> {
  const env = {
    ...process.env,
    PYTHONPATH: join(repoRoot, 'dist', 'python'),
    OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE',
    OPENBLAS_THREAD_TIMEOUT: openblasThreadTimeout(),
    ...(allocator === 'tcmalloc' ? { LD_PRELOAD: [TCMALLOC, process.env.LD_PRELOAD].filter(Boolean).join(':') } : {}),
  };
  return new Promise((resolvePy, reject) => {
    const child = spawn(PYTHON, [join(repoRoot, 'bench', 'torch_bench.py'), JSON.stringify(cfg)], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    const rows: Row[] = [];
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line.startsWith('{')) rows.push(JSON.parse(line) as Row);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePy(rows) : reject(new Error(`torch_bench.py exited ${code}`))));
  });
}

const fmt = (x: number | undefined, d = 1): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));

function layerTable(rows: Row[]): void {
  console.log('\n| layer | density | pixelfly ms | project_dense ms | torch_linear ms | masked_dense ms | pixelfly_bf16 ms | torch_bf16 ms | vs project_dense (target ≥ 0.8/density) | vs torch_linear | pixelfly_bf16 vs torch_bf16 |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  const keys = [...new Set(rows.map((r) => `${r.model}|${r.density}`))];
  for (const key of keys) {
    const group = rows.filter((r) => `${r.model}|${r.density}` === key);
    const ms = (v: string): number | undefined => group.find((r) => r.variant === v)?.fwd_bwd_ms;
    const pf = ms('pixelfly')!;
    const d = group[0].density!;
    const target = 0.8 / d;
    const vsOurs = (ms('project_dense') ?? NaN) / pf;
    console.log(`| ${group[0].model} | ${fmt(d, 3)} | ${fmt(pf)} | ${fmt(ms('project_dense'))} | ${fmt(ms('torch_linear'))} | ${fmt(ms('masked_dense'))} | ${fmt(ms('pixelfly_bf16'))} | ${fmt(ms('torch_bf16'))} | ${fmt(vsOurs, 2)}× (${fmt(target, 2)}×: ${vsOurs >= target ? 'met' : 'MISSED'}) | ${fmt((ms('torch_linear') ?? NaN) / pf, 2)}× | ${fmt((ms('torch_bf16') ?? NaN) / (ms('pixelfly_bf16') ?? NaN), 2)}× |`);
  }
}

function stepTable(rows: Row[]): void {
  console.log('\n| model | variant | precision | step ms (median) | steps | held-out loss | Pixelfly speedup vs this |');
  console.log('|---|---|---|---|---|---|---|');
  for (const model of [...new Set(rows.map((r) => r.model))]) {
    const group = rows.filter((r) => r.model === model);
    const pf = group.find((r) => r.variant === 'pixelfly')!;
    for (const r of group) {
      console.log(`| ${model} | ${r.variant} | ${r.precision} | ${fmt(r.step_ms)} | ${r.steps} | ${r.loss === null || r.loss === undefined ? '- (timing only)' : fmt(r.loss, 4)} | ${r === pf ? '' : `${fmt(r.step_ms! / pf.step_ms!, 2)}×`} |`);
    }
    const dense = group.find((r) => r.variant === 'torch_linear')!;
    const target = model.startsWith('gpt') ? 1.8 : 2;
    const gap = (100 * (pf.loss! - dense.loss!)) / dense.loss!;
    const pfBf16 = group.find((r) => r.variant === 'pixelfly_bf16');
    const torchBf16 = group.find((r) => r.variant === 'torch_bf16');
    if (pfBf16 && torchBf16) console.log(`${model}: in bf16, Pixelfly ${fmt(torchBf16.step_ms! / pfBf16.step_ms!, 2)}× faster than PyTorch bf16 (torch_bf16)`);
    const pfAutocast = group.find((r) => r.variant === 'pixelfly_autocast');
    const torchAutocast = group.find((r) => r.variant === 'torch_autocast');
    if (pfAutocast && torchAutocast) console.log(`${model}: under torch.autocast(bfloat16), Pixelfly ${fmt(torchAutocast.step_ms! / pfAutocast.step_ms!, 2)}× faster than dense (torch_autocast)`);
    console.log(`${model}: Pixelfly ${fmt(dense.step_ms! / pf.step_ms!, 2)}× faster than dense torch_linear (target ≥ ${target}×: ${dense.step_ms! / pf.step_ms! >= target ? 'met' : 'MISSED'}); held-out loss after ${pf.steps} steps ${gap >= 0 ? '+' : ''}${fmt(gap, 2)}% vs dense (target within 2%: ${Math.abs(gap) <= 2 ? 'met' : gap < 0 ? 'outside, on the better side: Pixelfly\'s loss is lower' : 'MISSED'})`);
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  console.log(`bench:torch — ${o.threads} threads, CPU ${cpus()[0]?.model ?? '?'}, load average ${loadavg()[0].toFixed(2)}, OPENBLAS_THREAD_TIMEOUT=${openblasThreadTimeout()}, allocator ${o.allocator}${o.allocator === 'glibc' && !existsSync(TCMALLOC) ? ' (install libtcmalloc-minimal4 for steadier figures)' : ''}`);
  // Each part runs in a fresh interpreter, as a user's training script would. In one process the
  // Mixer stepped after the layer shapes and the GPT, on a heap they had grown and churned, and every
  // variant paid for it unevenly: median ms dense 2965, Pixelfly 1675, our dense 2263, torch bf16 1670
  // there; 2613, 1238, 1478, 967 in a fresh interpreter (same code, batches and steps).
  const parts: object[] = [];
  if (o.only !== 'steps') {
    const layers = [];
    for (const [inF, out] of [[768, 3072], [1024, 4096], [3072, 768]]) {
      for (const target of [1 / 8, 1 / 4]) {
        const l = layoutNear(out, inF, 32, target);
        layers.push({ name: `${inF}→${out}`, in: inF, out, m: o.m, config: { block: 32, butterflySize: l.params.butterflySize, nFactors: l.params.nFactors, rank: 0 } });
      }
    }
    parts.push({ threads: o.threads, reps: o.reps, layers });
  }
  if (o.only !== 'layers') {
    const models = [];
    console.log(`plans (the analysis of each model file, budget ${o.budget}):`);
    if (o.models.includes('gpt')) {
      const file = join(repoRoot, 'test', 'fixtures', 'models', 'nanogpt', 'model.py');
      const build = { n_layer: 4, n_head: 12, n_embd: 768, block_size: 256, vocab_size: 256, dropout: 0.0, bias: true };
      models.push({ name: 'gpt-768x4-ctx256', kind: 'gpt', file, build, batch: 8, lr: 6e-4, steps: o.steps, timing_steps: o.timingSteps,
        held_out_batches: 8, text: o.text || defaultText(), plan: await plan(file, 'GPT', { n_layer: 4, n_head: 12, n_embd: 768, block_size: 256, vocab_size: 256 }, o.budget) });
    }
    if (o.models.includes('mixer')) {
      const file = join(repoRoot, 'test', 'fixtures', 'models', 'timm', 'mlp_mixer.py');
      const build = { img_size: 28, in_chans: 1, patch_size: 4, num_classes: 10, embed_dim: 512, num_blocks: 4 };
      models.push({ name: 'mixer-512x4', kind: 'mixer', file, class: 'MlpMixer', build, batch: 128, lr: 2e-3, steps: o.steps, timing_steps: o.timingSteps,
        held_out_batches: 10, fashion_mnist: DEBIAN_FASHION_MNIST, plan: await plan(file, 'MlpMixer', build, o.budget) });
    }
    for (const model of models) parts.push({ threads: o.threads, models: [model] });
  }
  const rows: Row[] = [];
  for (const part of parts) rows.push(...(await runPython(part, o.allocator)));
  const layerRows = rows.filter((r) => r.kind === 'layer');
  const stepRows = rows.filter((r) => r.kind === 'step');
  if (layerRows.length) layerTable(layerRows);
  if (stepRows.length) stepTable(stepRows);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(rows.map((r) => ({ ...r, allocator: o.allocator, openblas_thread_timeout: openblasThreadTimeout(), load_avg: loadavg()[0] })), null, 2));
  console.log(`\nwrote ${o.out}`);
}

main().catch((e) => {
  console.error(`bench:torch failed: ${(e as Error).message}`);
  process.exit(1);
});
