// `npm run bench:attention -- [--threads 2] [--reps 5] [--seqs 1024,4096,8192] [--heads 12] [--head-dim 64]
//                             [--block 64] [--bidirectional] [--text FILE] [--steps 200] [--batch 4] [--lr 2e-3]
//                             [--gpt-attention BLOCK,BUTTERFLY,FACTORS,GLOBAL] [--features M] [--clock wall|cpu] [--skip-torch]
//                             [--skip-layer] [--skip-train] [--out FILE]`
// Pixelfly attention (the flat block butterfly on the score matrix, core/attention.ts) against dense
// attention, measured in the same run:
//  1. One attention core, forward + backward, at each T (12 heads of 64, batch 1, causal unless
//     --bidirectional): Pixelfly vs our dense attention (the same flash-style kernel over every
//     block) vs PyTorch's explicit softmax(q·kᵀ)·v in fp32 and bf16 (bench/attention_torch.py). The
//     Pixelfly layout at T: block 64, butterfly size T/64 (one block per support cell), every factor.
//     Medians of `reps` rounds, each round running every variant once. OpenBLAS sgemm's rate in the
//     same run is printed next to our dense attention's, as the measure of an honest dense baseline.
//  2. A character-level GPT trained on a text file at context 2048 (default: the licence texts every
//     Debian ships in /usr/share/common-licenses, concatenated in name order), dense vs Pixelfly
//     attention (default block 64, butterfly size 32, 5 factors, 64 global tokens; --gpt-attention),
//     the same seed, data order, dense MLPs and steps, the variants' steps taken in turns of 10; median
//     step time (first 3 steps excluded), the attention core's share of it, and the validation loss
//     after the same steps. --features M adds a third run: the same layout with its low-rank term of
//     M Performer features (ATTENTION.md (A4)).
// --clock cpu (with --threads 1) times the layer part by the process's CPU time, which stays meaningful
// when other work loads the machine (wall time then includes what the scheduler gave others).
// Prints tables and writes JSON rows (default bench-results/attention.json):
//   {seq, heads, head_dim, variant, density, fwd_bwd_ms, ...} and {kind: "train", variant, step_ms, val_loss, ...}.

// One libuv worker runs every native call, so one OpenMP pool serves all of them.
process.env.UV_THREADPOOL_SIZE = '1';
process.env.OMP_WAIT_POLICY ??= 'PASSIVE';

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { attentionCoreFlops, attentionLayout, type AttentionLayout, type AttentionSpec } from '../core/attention';
import { buildBlockIndex } from '../core/blockIndex';
import type { GptSpec } from '../core/modelSpec';
import { loadAddon } from '../native/addon';
import { attentionBackward, attentionForward, type AttentionProblem } from '../native/attention';
import { kernelInfo, setKernelThreads } from '../native/kernels';
import { createModel, EngineDataset, stepPartsMs } from '../native/engine';
import { loadTextCorpus } from '../native/datasets';
import { median, medianOfEach } from '../core/stats';
import { seededFloats } from '../daemon/measure';

interface Options {
  threads: number;
  reps: number;
  seqs: number[];
  heads: number;
  headDim: number;
  block: number;
  causal: boolean;
  text: string;
  steps: number;
  batch: number;
  context: number;
  lr: number;
  gptAttention: AttentionSpec;
  /** Performer features of a third run with the layout's low-rank term (0: none). */
  features: number;
  clock: 'wall' | 'cpu';
  skipTorch: boolean;
  skipLayer: boolean;
  skipTrain: boolean;
  out: string;
}

const LICENSES = '/usr/share/common-licenses';

function parseArgs(argv: string[]): Options {
  const o: Options = {
    threads: 2, reps: 5, seqs: [1024, 4096, 8192], heads: 12, headDim: 64, block: 64, causal: true, text: '',
    steps: 200, batch: 4, context: 2048, lr: 2e-3, clock: 'wall', skipTorch: false,
    gptAttention: { kind: 'pixelfly', block: 64, butterflySize: 32, nFactors: 5, globalSize: 64 }, features: 0, skipLayer: false, skipTrain: false, out: 'bench-results/attention.json',
  };
  const posInt = (flag: string, s: string | undefined) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer, got '${s}'`);
    return n;
  };
  const ints: Record<string, 'threads' | 'reps' | 'heads' | 'headDim' | 'block' | 'steps' | 'batch' | 'context'> = {
    '--threads': 'threads', '--reps': 'reps', '--heads': 'heads', '--head-dim': 'headDim', '--block': 'block',
    '--steps': 'steps', '--batch': 'batch', '--context': 'context',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--bidirectional') o.causal = false;
    else if (flag === '--skip-torch') o.skipTorch = true;
    else if (flag === '--skip-layer') o.skipLayer = true;
    else if (flag === '--skip-train') o.skipTrain = true;
    else if (flag === '--out' || flag === '--text') {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      if (flag === '--out') o.out = v;
      else o.text = v;
    } else if (flag === '--seqs') o.seqs = (argv[++i] ?? '').split(',').map((s) => posInt('--seqs', s));
    else if (flag === '--clock') {
      const c = argv[++i];
      if (c !== 'wall' && c !== 'cpu') throw new Error(`--clock: expected 'wall' or 'cpu', got '${c}'`);
      o.clock = c;
    } else if (flag === '--lr') {
      o.lr = Number(argv[++i]);
      if (!(o.lr > 0)) throw new Error(`--lr: expected a positive number, got '${argv[i]}'`);
    } else if (flag === '--features') {
      o.features = posInt('--features', argv[++i] ?? '');
      if (o.features % 2 !== 0) throw new Error(`--features: Performer features come in ± pairs, expected an even number, got ${o.features}`);
    } else if (flag === '--gpt-attention') {
      const v = (argv[++i] ?? '').split(',');
      if (v.length !== 4) throw new Error(`--gpt-attention: expected BLOCK,BUTTERFLY,FACTORS,GLOBAL, got '${v.join(',')}'`);
      const [block, butterflySize, nFactors] = v.slice(0, 3).map((x) => posInt('--gpt-attention', x));
      const globalSize = Number(v[3]);
      if (!Number.isInteger(globalSize) || globalSize < 0) throw new Error(`--gpt-attention: GLOBAL must be an integer >= 0, got '${v[3]}'`);
      o.gptAttention = { kind: 'pixelfly', block, butterflySize, nFactors, globalSize };
    } else if (ints[flag]) o[ints[flag]] = posInt(flag, argv[++i]);
    else {
      throw new Error(`unknown option '${flag}' (options: --threads --reps --seqs --heads --head-dim --block --bidirectional --text --steps --batch --lr --context --gpt-attention --features --clock --skip-torch --skip-layer --skip-train --out)`);
    }
  }
  if (o.clock === 'cpu' && o.threads !== 1) throw new Error('--clock cpu needs --threads 1');
  return o;
}

/** Milliseconds now on the chosen clock: wall time, or this process's CPU time (user + system). */
function clockMs(clock: Options['clock']): number {
  if (clock === 'wall') return performance.now();
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The Pixelfly score layout the layer benchmark uses at T: one block per butterfly cell, every factor. */
function pixelflyAt(T: number, block: number): AttentionSpec {
  const butterflySize = 2 ** Math.floor(Math.log2(Math.ceil(T / block)));
  return { kind: 'pixelfly', block, butterflySize, nFactors: Math.max(1, Math.log2(butterflySize)) };
}

function describe(spec: AttentionSpec): string {
  return spec.kind === 'dense' ? 'dense' : `block ${spec.block}, butterfly ${spec.butterflySize}, ${spec.nFactors} factors${spec.globalSize ? `, global ${spec.globalSize}` : ''}${spec.features ? `, ${spec.features} features` : ''}`;
}

const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

// ------------------------------------------------------------------------------ 1. one layer

interface LayerRow {
  seq: number;
  heads: number;
  head_dim: number;
  variant: 'pixelfly' | 'dense' | 'pytorch_fp32' | 'pytorch_bf16';
  causal: boolean;
  /** Score blocks computed / dense attention's (1 for the dense variants). */
  density: number;
  fwd_bwd_ms: number;
  /** Useful GFLOP/s: the attention core's FLOPs at this density (no recomputation counted) / time. */
  gflops: number;
  speedup_vs_dense?: number;
  /** speedup_vs_dense × density: the fraction of the ideal 1/density speedup reached (target ≥ 0.7). */
  efficiency_vs_dense?: number;
  layout?: string;
  threads: number;
  clock: Options['clock'];
  load_before: string;
  load_after: string;
  note?: string;
}

async function timeOurs(T: number, o: Options, layouts: Array<[LayerRow['variant'], AttentionLayout]>): Promise<Map<string, number>> {
  const n = T * o.heads * o.headDim;
  const q = seededFloats(n, T + 1);
  const k = seededFloats(n, T + 2);
  const v = seededFloats(n, T + 3);
  const dO = seededFloats(n, T + 4);
  const problems = layouts.map(([variant, l]): [string, AttentionProblem] => [
    variant,
    { index: buildBlockIndex(l.layout), batch: 1, heads: o.heads, T, headDim: o.headDim, causal: o.causal, threads: o.threads },
  ]);
  const runs = new Map<string, number[]>(problems.map(([name]) => [name, []]));
  // Outputs reused across calls, as a training loop does (fresh 10-50 MB arrays would add their
  // zeroing and page faults to every call).
  const out = { o: new Float32Array(n), lse: new Float32Array(o.heads * T) };
  const grads = { dq: new Float32Array(n), dk: new Float32Array(n), dv: new Float32Array(n) };
  for (let r = -1; r < o.reps; r++) {  // round -1 warms up
    for (const [name, p] of problems) {
      const t0 = clockMs(o.clock);
      const f = await attentionForward(p, { q, k, v }, out);
      await attentionBackward(p, { q, k, v, dO, o: f.o, lse: f.lse }, grads);
      if (r >= 0) runs.get(name)!.push(clockMs(o.clock) - t0);
    }
  }
  return new Map([...runs].map(([name, ms]) => [name, median(ms)]));
}

interface TorchResult {
  torch: string;
  threads: number;
  rows: Array<{ seq: number; dtype: string; fwd_bwd_ms?: number; head_groups?: number; error?: string }>;
}

function timeTorch(o: Options): TorchResult | string {
  // PyTorch takes seconds a repetition at long contexts (the T×T matrices go through memory several times): 3 repetitions.
  const cfg = {
    seqs: o.seqs, heads: o.heads, head_dim: o.headDim, causal: o.causal, threads: o.threads, reps: Math.min(3, o.reps),
    dtypes: ['float32', 'bfloat16'], clock: o.clock,
  };
  const r = spawnSync('/usr/bin/python3', [join(__dirname, '..', '..', 'bench', 'attention_torch.py'), JSON.stringify(cfg)], {
    encoding: 'utf8', maxBuffer: 1 << 24,
  });
  if (r.status !== 0) return (r.stderr || String(r.error)).trim().split('\n').slice(-3).join(' | ');
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as TorchResult;
}

/** OpenBLAS sgemm GFLOP/s on 2048³ in this run (the yardstick for our dense attention's rate), or undefined. */
async function openblasGflops(threads: number): Promise<number | undefined> {
  const ob = loadAddon().openblas;
  if (!ob.info().available) return undefined;
  ob.setThreads(threads);
  const n = 2048;
  const a = seededFloats(n * n, 1);
  const b = seededFloats(n * n, 2);
  const c = new Float32Array(n * n);
  const ms: number[] = [];
  for (let r = 0; r < 4; r++) {
    const t0 = performance.now();
    await ob.gemm({ m: n, n, k: n, a, b, c });
    if (r > 0) ms.push(performance.now() - t0);
  }
  return (2 * n ** 3) / (median(ms) * 1e6);
}

async function layerBench(o: Options): Promise<LayerRow[]> {
  const rows: LayerRow[] = [];
  const dim = o.heads * o.headDim;
  console.log(`\n1. One attention core, forward + backward: ${o.heads} heads of ${o.headDim}, batch 1, ${o.causal ? 'causal' : 'bidirectional'}, ${o.threads} threads, median of ${o.reps} (${o.clock} clock)`);
  for (const T of o.seqs) {
    const before = load();
    const spec = pixelflyAt(T, o.block);
    const pf = attentionLayout(T, spec, o.causal);
    const dense = attentionLayout(T, { kind: 'dense' }, o.causal);
    const ms = await timeOurs(T, o, [['dense', dense], ['pixelfly', pf]]);
    const after = load();
    for (const [variant, l] of [['dense', dense], ['pixelfly', pf]] as const) {
      const flops = attentionCoreFlops(T, dim, o.causal, l.density);
      const t = ms.get(variant)!;
      rows.push({
        seq: T, heads: o.heads, head_dim: o.headDim, variant, causal: o.causal, density: l.density, fwd_bwd_ms: t,
        gflops: (flops.forward + flops.backward) / (t * 1e6), layout: describe(variant === 'dense' ? { kind: 'dense' } : spec),
        threads: o.threads, clock: o.clock, load_before: before, load_after: after,
      });
    }
    console.log(`  T ${T}: dense ${ms.get('dense')!.toFixed(1)} ms, Pixelfly ${ms.get('pixelfly')!.toFixed(1)} ms (density ${pf.density.toFixed(3)}), load ${after}`);
  }
  if (!o.skipTorch) {
    console.log('  PyTorch (explicit softmax(q·kᵀ)·v; the T×T matrices materialised) ...');
    const before = load();
    const t = timeTorch(o);
    const after = load();
    if (typeof t === 'string') console.log(`  PyTorch baseline FAILED (is python3-torch installed?): ${t}`);
    else {
      for (const r of t.rows) {
        const variant = r.dtype === 'bfloat16' ? 'pytorch_bf16' : 'pytorch_fp32';
        if (r.error !== undefined || r.fwd_bwd_ms === undefined) {
          console.log(`  PyTorch ${r.dtype} at T ${r.seq}: not run (${r.error})`);
          continue;
        }
        const flops = attentionCoreFlops(r.seq, dim, o.causal);
        rows.push({
          seq: r.seq, heads: o.heads, head_dim: o.headDim, variant, causal: o.causal, density: 1, fwd_bwd_ms: r.fwd_bwd_ms,
          gflops: (flops.forward + flops.backward) / (r.fwd_bwd_ms * 1e6), threads: t.threads, clock: o.clock, load_before: before, load_after: after,
          note: `torch ${t.torch}${r.head_groups && r.head_groups > 1 ? `, heads in ${r.head_groups} groups (memory)` : ''}`,
        });
      }
    }
  }
  for (const r of rows) {
    const dense = rows.find((d) => d.seq === r.seq && d.variant === 'dense');
    if (!dense) continue;
    r.speedup_vs_dense = dense.fwd_bwd_ms / r.fwd_bwd_ms;
    if (r.variant === 'pixelfly') r.efficiency_vs_dense = r.speedup_vs_dense * r.density;
  }
  const blas = await openblasGflops(o.threads);
  console.log('\n| T | variant | density | fwd+bwd ms | GFLOP/s | vs our dense | × density (target ≥ 0.7) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of [...rows].sort((a, b) => a.seq - b.seq)) {
    console.log(
      `| ${r.seq} | ${r.variant} | ${r.density.toFixed(3)} | ${r.fwd_bwd_ms.toFixed(1)} | ${r.gflops.toFixed(0)} | ${r.speedup_vs_dense?.toFixed(2) ?? '-'}× | ${r.efficiency_vs_dense?.toFixed(2) ?? '-'} |`,
    );
  }
  console.log(blas ? `OpenBLAS sgemm 2048³ in this run: ${blas.toFixed(0)} GFLOP/s on ${o.threads} threads (our dense attention's rate above counts useful FLOPs only; its backward also recomputes the scores)` : 'OpenBLAS not found: no sgemm yardstick');
  return rows;
}

// ------------------------------------------------------------------------------ 2. char-level GPT

interface TrainRow {
  kind: 'train';
  variant: string;  // 'dense', 'pixelfly' or 'pixelfly+lowrankM'
  step_ms: number;
  val_loss: number;
  /** Mean training loss of the last 10 steps. */
  train_loss: number;
  /** Median forward + backward ms of the attention cores in a step. */
  attention_ms: number;
  density: number;
  layout: string;
  steps: number;
  context: number;
  batch: number;
  threads: number;
  corpus: string;
  load_before: string;
  load_after: string;
  speedup_vs_dense?: number;
  val_loss_vs_dense?: number;
}

/** The corpus file: --text, or the licence texts concatenated (written to a temporary file). */
function corpusFile(o: Options, dir: string): string {
  if (o.text) return o.text;
  const names = readdirSync(LICENSES).filter((n) => statSync(join(LICENSES, n)).isFile()).sort();
  const file = join(dir, 'common-licenses.txt');
  writeFileSync(file, names.map((n) => readFileSync(join(LICENSES, n), 'utf8')).join('\n'));
  return file;
}

async function trainBench(o: Options): Promise<TrainRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-bench-attention-'));
  try {
    const file = corpusFile(o, dir);
    const data = await loadTextCorpus(file);
    const dataset = new EngineDataset(data);
    const T = o.context;
    const pixelfly = o.gptAttention;
    attentionLayout(T, pixelfly, true);  // a layout that cannot stretch over the context fails here, before any training
    const base: GptSpec = { kind: 'gpt', vocab: data.classes, context: T, dim: 128, depth: 4, heads: 2, mlpHidden: 512 };
    console.log(
      `\n2. Char-level GPT on ${o.text || `${LICENSES}/* (concatenated)`}: ${data.trainTokens.length} train / ${data.testTokens.length} validation characters, vocab ${data.classes}; ` +
        `context ${T}, dim ${base.dim}, depth ${base.depth}, ${base.heads} heads of ${base.dim / base.heads}, dense MLPs (${base.mlpHidden}); batch ${o.batch}, ${o.steps} steps, ${o.threads} threads`,
    );
    const rows: TrainRow[] = [];
    const variants: Array<[string, AttentionSpec]> = [['dense', { kind: 'dense' }], ['pixelfly', pixelfly]];
    if (o.features > 0 && pixelfly.kind === 'pixelfly') variants.push([`pixelfly+lowrank${o.features}`, { ...pixelfly, features: o.features }]);
    // Every variant's model first, then their steps in turns of 10: a burst of load on the machine (a
    // shared host's neighbours) hits every variant alike, not whichever was training then. Each model
    // draws its own batches (its sampler is its own), so the turns change no model's run.
    const before = load();
    const runs = [];
    for (const [variant, attention] of variants) {
      const spec: GptSpec = { ...base, attention };
      const m = await createModel({
        spec, seed: 1, threads: o.threads,
        train: { batch: o.batch, lr: o.lr, totalSteps: o.steps, warmupSteps: Math.min(20, Math.floor(o.steps / 10)), weightDecay: 0.01 },
      });
      runs.push({ variant, attention, m, steps: [] as Awaited<ReturnType<typeof m.trainSteps>> });
    }
    const chunk = 10;
    for (let s = 0; s < o.steps; s += chunk) {
      for (const run of runs) run.steps.push(...(await run.m.trainSteps(dataset, Math.min(chunk, o.steps - s))));
      if (process.stdout.isTTY) {
        process.stdout.write(`\r  step ${s + Math.min(chunk, o.steps - s)}/${o.steps}: ${runs.map((r) => `${r.variant} loss ${r.steps[r.steps.length - 1].loss.toFixed(3)}`).join(', ')}   `);
      }
    }
    for (const { variant, attention, m, steps } of runs) {
      const timed = steps.slice(3);
      const val = await m.evaluate(dataset);
      const after = load();
      const parts = medianOfEach(timed.map(stepPartsMs));
      const layout = attentionLayout(T, attention, true);
      rows.push({
        kind: 'train', variant, step_ms: median(timed.map((s) => s.ms.total)), val_loss: val.loss,
        train_loss: steps.slice(-10).reduce((a, s) => a + s.loss, 0) / Math.min(10, steps.length), attention_ms: parts?.attention ?? NaN,
        density: layout.density, layout: describe(attention), steps: o.steps, context: T, batch: o.batch, threads: o.threads,
        corpus: o.text || `${LICENSES}/*`, load_before: before, load_after: after,
      });
      console.log(`${process.stdout.isTTY ? '\r' : ''}  ${variant}: median step ${rows[rows.length - 1].step_ms.toFixed(0)} ms (attention ${parts?.attention?.toFixed(0)} ms), training loss ${rows[rows.length - 1].train_loss.toFixed(4)}, validation loss ${val.loss.toFixed(4)}, load ${after}      `);
    }
    const dense = rows[0];
    for (const r of rows) {
      r.speedup_vs_dense = dense.step_ms / r.step_ms;
      r.val_loss_vs_dense = r.val_loss / dense.val_loss - 1;
    }
    console.log('\n| variant | layout | density | step ms | attention ms | speedup (target ≥ 1.5×) | val loss | vs dense (target within 2%) |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of rows) {
      console.log(
        `| ${r.variant} | ${r.layout} | ${r.density.toFixed(3)} | ${r.step_ms.toFixed(0)} | ${r.attention_ms.toFixed(0)} | ${r.speedup_vs_dense?.toFixed(2)}× | ${r.val_loss.toFixed(4)} | ${(100 * (r.val_loss_vs_dense ?? 0)).toFixed(2)}% |`,
      );
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  setKernelThreads(o.threads);
  const info = kernelInfo();
  console.log(`Pixelfly attention benchmark: CPU kernels ${info.isa} (best ${info.bestIsa}), ${o.threads} threads, load ${load()}`);
  const rows: Array<LayerRow | TrainRow> = [];
  if (!o.skipLayer) rows.push(...(await layerBench(o)));
  if (!o.skipTrain) rows.push(...(await trainBench(o)));
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(rows, null, 1));
  console.log(`\nwrote ${rows.length} rows to ${o.out}`);
}

main().catch((e) => {
  console.error(`bench:attention: ${(e as Error).message}`);
  process.exit(1);
});
