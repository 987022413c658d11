// `npm run bench:kernels -- [--threads 1,2] [--reps 15] [--shapes 768x3072,...] [--clock wall|cpu]
//                          [--precision fp32|bf16] [--out FILE]`
// Pixelfly block-sparse fwd / dX / dW against our dense GEMM and OpenBLAS sgemm, measured in the
// same run at M = 4096, block 32, flat block butterfly layouts at densities ≈ 1/8, 1/4, 1/2.
// With --precision bf16: bf16 products (inputs stored bf16, fp32 accumulation and outputs) of
// Pixelfly and of our dense GEMM, against PyTorch's bf16 F.linear products (bench/linear_torch.py,
// oneDNN; bf16 outputs) timed the same way in a child process just before each shape's rounds.
// Prints a table and writes JSON rows (default bench-results/kernels.json, kernels-bf16.json).
//
// --clock cpu times each product by the process's CPU time instead of wall time: on a machine that
// others are loading, a 1-thread product's CPU time is close to what it takes on a quiet machine,
// while wall time includes whatever the scheduler gave to other processes. It is only meaningful
// with --threads 1 (idle OpenMP/OpenBLAS workers spin and would be counted).
//
// Noise: every product is timed `reps` times in rounds (each round runs every product once), and
// medians are reported, so a burst of load on a shared machine hits all variants alike. The load
// average before and after is recorded in each row.

// All async calls on one libuv thread, so one OpenMP pool serves every kernel call (several pools
// would leave idle-spinning workers competing for the cores).
process.env.UV_THREADPOOL_SIZE = '1';

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadavg } from 'node:os';
import { flatBlockButterflyLayout, type BlockLayout } from '../core/layout';
import { buildBlockIndex } from '../core/blockIndex';
import { loadAddon, type KernelArray, type NativeGemmArgs, type NativeTypedGemmArgs } from '../native/addon';
import {
  alignedFloat32Array,
  bsrBackwardData,
  bsrBackwardWeight,
  bsrForward,
  kernelInfo,
  setKernelThreads,
  toBf16,
  type BsrWeight,
  type KernelInfo,
  type KernelPrecision,
} from '../native/kernels';
import { gpuKernelRows } from './gpuKernels';
import { median } from '../core/stats';
import { seededFloats } from '../daemon/measure';

interface Options {
  threads: number[];
  reps: number;
  shapes: Array<[number, number]>;
  out: string;
  m: number;
  block: number;
  clock: 'wall' | 'cpu';
  precision: KernelPrecision;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    threads: [1, 2],
    reps: 15,
    shapes: [
      [768, 3072],
      [3072, 768],
      [1024, 4096],
      [512, 2048],
    ],
    out: '',
    m: 4096,
    block: 32,
    clock: 'wall',
    precision: 'fp32',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const need = () => {
      if (value === undefined) throw new Error(`${flag} needs a value`);
      i++;
      return value;
    };
    const posInt = (s: string, what: string) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${what}: expected a positive integer, got '${s}'`);
      return n;
    };
    switch (flag) {
      case '--threads':
        opts.threads = need().split(',').map((s) => posInt(s, '--threads'));
        break;
      case '--reps':
        opts.reps = posInt(need(), '--reps');
        break;
      case '--m':
        opts.m = posInt(need(), '--m');
        break;
      case '--shapes':
        opts.shapes = need()
          .split(',')
          .map((s) => {
            const [a, b] = s.split('x').map((t) => posInt(t, '--shapes'));
            if (!b) throw new Error(`--shapes: expected INxOUT pairs like 768x3072, got '${s}'`);
            return [a, b] as [number, number];
          });
        break;
      case '--out':
        opts.out = need();
        break;
      case '--clock': {
        const c = need();
        if (c !== 'wall' && c !== 'cpu') throw new Error(`--clock: expected 'wall' or 'cpu', got '${c}'`);
        opts.clock = c;
        break;
      }
      case '--precision': {
        const p = need();
        if (p !== 'fp32' && p !== 'bf16') throw new Error(`--precision: expected 'fp32' or 'bf16', got '${p}'`);
        opts.precision = p;
        break;
      }
      default:
        throw new Error(`unknown option '${flag}' (options: --threads 1,2 --reps N --m ROWS --shapes INxOUT,... --clock wall|cpu --precision fp32|bf16 --out FILE)`);
    }
  }
  opts.out ||= opts.precision === 'bf16' ? 'bench-results/kernels-bf16.json' : 'bench-results/kernels.json';
  if (opts.clock === 'cpu' && opts.threads.some((t) => t !== 1)) throw new Error('--clock cpu needs --threads 1');
  return opts;
}

/** The flat block butterfly layout whose density is nearest `target` (ties: more factors). Also picks scripts/gpu-check.mjs's layouts. */
export function layoutNear(out: number, inF: number, block: number, target: number): BlockLayout {
  let best: BlockLayout | undefined;
  for (let s = 2; s <= 128; s *= 2) {
    for (let f = 1; 1 << f <= s; f++) {
      let l: BlockLayout;
      try {
        l = flatBlockButterflyLayout(out, inF, { block, butterflySize: s, nFactors: f });
      } catch {
        continue; // this butterfly size does not stretch over the shape
      }
      const d = Math.abs(l.density - target);
      const bd = best ? Math.abs(best.density - target) : Infinity;
      if (d < bd - 1e-9 || (Math.abs(d - bd) <= 1e-9 && best && f > best.params.nFactors)) best = l;
    }
  }
  if (!best) throw new Error(`no flat block butterfly layout fits ${out}x${inF} with block ${block}`);
  return best;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A named group of timed products; groups are separated by a pause so one library's idle-spinning threads are asleep before the next runs. */
interface Group {
  name: string;
  ops: Array<{ name: string; run: () => Promise<unknown> }>;
}

/** Milliseconds now, by the chosen clock. */
function clockFn(kind: 'wall' | 'cpu'): () => number {
  if (kind === 'wall') return () => performance.now();
  return () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
}

async function timeGroups(groups: Group[], reps: number, now: () => number): Promise<Map<string, number>> {
  const times = new Map<string, number[]>();
  for (const g of groups) for (const op of g.ops) times.set(`${g.name}.${op.name}`, []);
  for (let round = -1; round < reps; round++) {
    for (const g of groups) {
      await sleep(15);
      for (const op of g.ops) {
        const t0 = now();
        await op.run();
        const dt = now() - t0;
        if (round >= 0) times.get(`${g.name}.${op.name}`)!.push(dt); // round -1 warms caches and pools
      }
    }
  }
  return new Map([...times].map(([k, v]) => [k, median(v)]));
}

function denseGroup(name: string, gemm: (a: NativeTypedGemmArgs) => Promise<void>, m: number, inF: number, out: number, bufs: Buffers): Group {
  return {
    name,
    ops: [
      { name: 'fwd', run: () => gemm({ transB: true, m, n: out, k: inF, a: bufs.x, b: bufs.w, c: bufs.y }) },
      { name: 'dx', run: () => gemm({ m, n: inF, k: out, a: bufs.dy, b: bufs.w, c: bufs.dx }) },
      { name: 'dw', run: () => gemm({ transA: true, m: out, n: inF, k: m, a: bufs.dy, b: bufs.x, c: bufs.dw }) },
    ],
  };
}

interface Buffers {
  x: KernelArray;
  w: KernelArray;
  dy: KernelArray;
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

/** M×in activations, out×in weights and M×out gradients (fp32, or bf16 for bf16 products), 64-byte aligned fp32 outputs. */
function buffers(m: number, inF: number, out: number, precision: KernelPrecision): Buffers {
  // Every operand in the memory the engine gives its kernels (native/src/kernels/host_memory.h:
  // 64-byte aligned, huge pages from 2 MB), the same buffers for every library timed in this process.
  const input = (n: number, seed: number): KernelArray => {
    const a = seededFloats(n, seed);
    if (precision === 'bf16') return toBf16(a);
    const b = alignedFloat32Array(n);
    b.set(a);
    return b;
  };
  return {
    x: input(m * inF, 1),
    w: input(out * inF, 2),
    dy: input(m * out, 3),
    y: alignedFloat32Array(m * out),
    dx: alignedFloat32Array(m * inF),
    dw: alignedFloat32Array(out * inF),
  };
}

/** Pixelfly's three products on one layout, as a timed group. */
function pixelflyGroup(name: string, l: BlockLayout, m: number, inF: number, out: number, block: number, bufs: Buffers, precision: KernelPrecision): Group {
  const weights = seededFloats(l.nnzBlocks * block * block, 4);
  const w: BsrWeight = { index: buildBlockIndex(l), out, in: inF, weights: precision === 'bf16' ? toBf16(weights) : weights };
  const dwb = new Float32Array(l.nnzBlocks * block * block);
  return {
    name,
    ops: [
      { name: 'fwd', run: () => bsrForward(w, bufs.x, m, { into: bufs.y }) },
      { name: 'dx', run: () => bsrBackwardData(w, bufs.dy, m, { into: bufs.dx }) },
      { name: 'dw', run: () => bsrBackwardWeight(w, bufs.dy, bufs.x, m, { into: dwb }) },
    ],
  };
}

/** PyTorch's bf16 F.linear products at one shape (bench/linear_torch.py), or why they could not be timed. */
function pytorchBf16(m: number, inF: number, out: number, threads: number, reps: number, clock: 'wall' | 'cpu'): { fwd: number; dx: number; dw: number; torch: string } | string {
  const script = join(__dirname, '..', '..', 'bench', 'linear_torch.py');
  const r = spawnSync('/usr/bin/python3', [script, JSON.stringify({ m, in: inF, out, threads, reps, clock })], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  if (r.status !== 0) return `PyTorch bf16 baseline failed (is python3-torch installed?): ${(r.stderr || String(r.error)).trim().split('\n').slice(-2).join(' | ')}`;
  const t = JSON.parse(r.stdout.trim().split('\n').pop() as string);
  return { fwd: t.fwd_ms, dx: t.dx_ms, dw: t.dw_ms, torch: t.torch };
}

function fmt(n: number, digits = 1): string {
  return n.toFixed(digits);
}

/** One shape's timed products: our dense GEMM ('ours'), Pixelfly at densities ≈ 1/8, 1/4, 1/2, and the baseline's groups. */
interface ShapeTimes {
  layouts: BlockLayout[];
  /** fwd + dX + dW median ms of a group. */
  total(group: string): number;
  ms(group: string, product: 'fwd' | 'dx' | 'dw'): number;
  load0: number;
  load1: number;
}

async function timeShape(opts: Options, inF: number, out: number, precision: KernelPrecision, baseline: (bufs: Buffers) => Group[]): Promise<ShapeTimes> {
  const { m, block } = opts;
  const bufs = buffers(m, inF, out, precision);
  const layouts = [1 / 8, 1 / 4, 1 / 2].map((d) => layoutNear(out, inF, block, d));
  const groups: Group[] = [denseGroup('ours', (a) => loadAddon().kernels.gemm(a), m, inF, out, bufs), ...baseline(bufs)];
  layouts.forEach((l, i) => groups.push(pixelflyGroup(`pixelfly${i}`, l, m, inF, out, block, bufs, precision)));
  const load0 = loadavg()[0];
  const t = await timeGroups(groups, opts.reps, clockFn(opts.clock));
  const load1 = loadavg()[0];
  const ms = (g: string, p: string) => t.get(`${g}.${p}`) ?? NaN;
  return { layouts, ms, total: (g) => ms(g, 'fwd') + ms(g, 'dx') + ms(g, 'dw'), load0, load1 };
}

/** The fields every row has: the shape and layout, our dense and Pixelfly's products, their ratio, and how they were timed. */
function commonRow(opts: Options, s: ShapeTimes, i: number, inF: number, out: number, threads: number, precision: KernelPrecision, info: KernelInfo) {
  const l = s.layouts[i], g = `pixelfly${i}`;
  const denseMs = s.total('ours'), pfMs = s.total(g);
  const vsDense = denseMs / pfMs;
  return {
    head: {
      m: opts.m, in: inF, out, block: opts.block, density: +l.density.toFixed(4), butterfly_size: l.params.butterflySize,
      n_factors: l.params.nFactors, threads, precision, isa: info.isa,
    },
    products: {
      dense_fwd_ms: +s.ms('ours', 'fwd').toFixed(3),
      dense_dx_ms: +s.ms('ours', 'dx').toFixed(3),
      dense_dw_ms: +s.ms('ours', 'dw').toFixed(3),
      dense_fwd_bwd_ms: +denseMs.toFixed(3),
      pixelfly_fwd_ms: +s.ms(g, 'fwd').toFixed(3),
      pixelfly_dx_ms: +s.ms(g, 'dx').toFixed(3),
      pixelfly_dw_ms: +s.ms(g, 'dw').toFixed(3),
      pixelfly_fwd_bwd_ms: +pfMs.toFixed(3),
      pixelfly_useful_gflops: +((6 * opts.m * inF * out * l.density) / (pfMs * 1e6)).toFixed(1),
      fraction_of_ideal: +(vsDense * l.density).toFixed(3),
      speedup_vs_dense: +vsDense.toFixed(3),
    },
    tail: { reps: opts.reps, clock: opts.clock, load_avg_start: +s.load0.toFixed(2), load_avg_end: +s.load1.toFixed(2) },
  };
}

/** The table's columns up to 'ideal': shape, threads, density | baseline, ours | Pixelfly's products | GFLOP/s, fraction of ideal. */
function lineStart(c: ReturnType<typeof commonRow>, baselineMs: number): string {
  const { head: h, products: p } = c;
  return (
    `${String(h.in).padEnd(6)}${String(h.out).padEnd(6)}${String(h.threads).padEnd(4)}${fmt(h.density, 3).padEnd(8)}| ` +
    `${(Number.isNaN(baselineMs) ? 'n/a' : fmt(baselineMs)).padStart(8)} ${fmt(p.dense_fwd_bwd_ms).padStart(6)} | ` +
    `${fmt(p.pixelfly_fwd_ms).padStart(12)} ${fmt(p.pixelfly_dx_ms).padStart(6)} ${fmt(p.pixelfly_dw_ms).padStart(6)} ${fmt(p.pixelfly_fwd_bwd_ms).padStart(6)} | ` +
    `${fmt(p.pixelfly_useful_gflops, 0).padStart(7)} ${fmt(p.fraction_of_ideal * 100, 0).padStart(5)}% | `
  );
}

/** fp32: Pixelfly and our dense GEMM against OpenBLAS sgemm. */
async function fp32Rows(opts: Options, info: KernelInfo): Promise<Record<string, unknown>[]> {
  const addon = loadAddon();
  // OpenBLAS reads these when it is loaded: a value tuned for another machine would skew the
  // baseline, so they are set aside for this process only.
  const cleared = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'].filter((k) => process.env[k] !== undefined);
  for (const k of cleared) delete process.env[k];
  // After each call OpenBLAS's idle workers spin for 2^28 cycles (about 0.1 s) by default, taking a
  // core from whatever is timed next: our products and its own next product alike. 2^4 cycles
  // (the least it allows) puts them to sleep at once, as our OpenMP workers soon do.
  process.env.OPENBLAS_THREAD_TIMEOUT ??= '4';
  const ob = addon.openblas.info();
  if (cleared.length) console.log(`unset for this run: ${cleared.join(', ')}`);
  if (ob.available) console.log(`OpenBLAS: ${ob.library}, kernel ${ob.coreName}, ${ob.config}, OPENBLAS_THREAD_TIMEOUT=${process.env.OPENBLAS_THREAD_TIMEOUT}`);
  else console.log(`OpenBLAS IS MISSING, so its columns are empty: ${ob.error}`);
  printRunLine(opts);

  const rows: Record<string, unknown>[] = [];
  for (const [threads, inF, out] of runs(opts, 'openblas  dense  | pixelfly fwd    dX     dW  total | GFLOP/s  ideal | vs dense  vs OpenBLAS (target)')) {
    if (ob.available) addon.openblas.setThreads(threads);
    const s = await timeShape(opts, inF, out, 'fp32', (bufs) =>
      ob.available ? [denseGroup('openblas', (a) => addon.openblas.gemm(a as NativeGemmArgs), opts.m, inF, out, bufs)] : []);
    const denseMs = s.total('ours');
    const obMs = ob.available ? s.total('openblas') : NaN;
    s.layouts.forEach((l, i) => {
      const c = commonRow(opts, s, i, inF, out, threads, 'fp32', info);
      const pfMs = c.products.pixelfly_fwd_bwd_ms;
      const target = 0.8 / l.density;
      const row = {
        ...c.head,
        openblas_core: ob.available ? ob.coreName : null,
        openblas_thread_timeout: process.env.OPENBLAS_THREAD_TIMEOUT,
        openblas_fwd_ms: ob.available ? +s.ms('openblas', 'fwd').toFixed(3) : null,
        openblas_dx_ms: ob.available ? +s.ms('openblas', 'dx').toFixed(3) : null,
        openblas_dw_ms: ob.available ? +s.ms('openblas', 'dw').toFixed(3) : null,
        openblas_fwd_bwd_ms: ob.available ? +obMs.toFixed(3) : null,
        dense_vs_openblas: ob.available ? +(obMs / denseMs).toFixed(3) : null,
        ...c.products,
        speedup_vs_openblas: ob.available ? +(obMs / pfMs).toFixed(3) : null,
        target_vs_openblas: +target.toFixed(3),
        ...c.tail,
      };
      rows.push(row);
      console.log(
        lineStart(c, obMs) +
          `${fmt(c.products.speedup_vs_dense, 2).padStart(8)}× ${(ob.available ? fmt(obMs / pfMs, 2) + '×' : 'n/a').padStart(8)} ` +
          `(${fmt(target, 1)}×${ob.available && l.density <= 0.25 ? (obMs / pfMs >= target ? ' met' : ' MISSED') : ''})`,
      );
    });
    const denseFlop = 6 * opts.m * inF * out;
    if (ob.available)
      console.log(
        `${' '.repeat(24)}dense (ours) at ${fmt((100 * obMs) / denseMs, 0)}% of OpenBLAS speed (target 90%); ` +
          `OpenBLAS ${fmt(denseFlop / (obMs * 1e6), 0)} GFLOP/s, ours ${fmt(denseFlop / (denseMs * 1e6), 0)} GFLOP/s; load ${s.load0.toFixed(1)}→${s.load1.toFixed(1)}`,
      );
}
  return rows;
}

/**
 * bf16: Pixelfly's and our dense GEMM's bf16 products (inputs stored bf16, fp32 outputs) against
 * PyTorch's bf16 F.linear products (bf16 outputs), the targets being Pixelfly ≥ 0.8/density × our
 * bf16 dense and our bf16 dense ≥ 0.9 × PyTorch.
 */
async function bf16Rows(opts: Options, info: KernelInfo): Promise<Record<string, unknown>[]> {
  console.log(`bf16 products on the '${info.bf16}' path${info.amxUnavailable ? ` (AMX: ${info.amxUnavailable})` : ''}`);
  printRunLine(opts);
  const rows: Record<string, unknown>[] = [];
  for (const [threads, inF, out] of runs(opts, 'pytorch  dense  | pixelfly fwd    dX     dW  total | GFLOP/s  ideal | vs dense (target)  vs PyTorch')) {
    const torch = pytorchBf16(opts.m, inF, out, threads, opts.reps, opts.clock);
    if (typeof torch === 'string') console.log(`  ${torch}`);
    const s = await timeShape(opts, inF, out, 'bf16', () => []);
    const denseMs = s.total('ours');
    const torchMs = typeof torch === 'string' ? NaN : torch.fwd + torch.dx + torch.dw;
    const known = (v: number) => (Number.isNaN(torchMs) ? null : +v.toFixed(3));
    s.layouts.forEach((l, i) => {
      const c = commonRow(opts, s, i, inF, out, threads, 'bf16', info);
      const vsDense = c.products.speedup_vs_dense;
      const target = 0.8 / l.density;
      const row = {
        ...c.head,
        bf16_path: info.bf16,
        pytorch_torch_version: typeof torch === 'string' ? null : torch.torch,
        pytorch_bf16_fwd_ms: typeof torch === 'string' ? null : +torch.fwd.toFixed(3),
        pytorch_bf16_dx_ms: typeof torch === 'string' ? null : +torch.dx.toFixed(3),
        pytorch_bf16_dw_ms: typeof torch === 'string' ? null : +torch.dw.toFixed(3),
        pytorch_bf16_fwd_bwd_ms: known(torchMs),
        dense_vs_pytorch_bf16: known(torchMs / denseMs),
        ...c.products,
        target_vs_dense: +target.toFixed(3),
        speedup_vs_pytorch_bf16: known(torchMs / c.products.pixelfly_fwd_bwd_ms),
        ...c.tail,
      };
      rows.push(row);
      console.log(
        lineStart(c, torchMs) +
          `${fmt(vsDense, 2).padStart(8)}× (${fmt(target, 1)}×${l.density <= 0.25 ? (vsDense >= target ? ' met' : ' MISSED') : ''})`.padEnd(24) +
          `${Number.isNaN(torchMs) ? 'n/a' : fmt(torchMs / c.products.pixelfly_fwd_bwd_ms, 2) + '×'}`,
      );
    });
    const denseFlop = 6 * opts.m * inF * out;
    console.log(
      `${' '.repeat(24)}bf16 dense (ours) at ${Number.isNaN(torchMs) ? 'n/a' : fmt((100 * torchMs) / denseMs, 0) + '%'} of PyTorch bf16 speed (target 90%); ` +
        `PyTorch ${Number.isNaN(torchMs) ? 'n/a' : fmt(denseFlop / (torchMs * 1e6), 0)} GFLOP/s, ours ${fmt(denseFlop / (denseMs * 1e6), 0)} GFLOP/s; load ${s.load0.toFixed(1)}→${s.load1.toFixed(1)}`,
    );
}
  return rows;
}

/** Prints the table header (its columns after the shape's), then yields each thread count and shape, with the kernels' threads set. */
function* runs(opts: Options, columns: string): Generator<[number, number, number]> {
  const header = `in    out   thr density | ${columns}`;
  console.log(header);
  console.log('-'.repeat(header.length));
  for (const threads of opts.threads) {
    setKernelThreads(threads);
    for (const [inF, out] of opts.shapes) yield [threads, inF, out];
  }
}

function printRunLine(opts: Options): void {
  console.log(
    `M = ${opts.m}, block ${opts.block}, ${opts.reps} timed rounds (medians of ${opts.clock === 'cpu' ? 'process CPU time' : 'wall time'}), load average at start ${loadavg()[0].toFixed(2)}\n`,
  );
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const info = kernelInfo();
  console.log(`Pixelfly kernels: isa ${info.isa} (supported: ${info.supportedIsas.join(', ')}), bf16 products: ${info.bf16}, hardware threads ${info.maxThreads}`);
  const rows = opts.precision === 'bf16' ? await bf16Rows(opts, info) : await fp32Rows(opts, info);
  // On a machine with a usable CUDA device: the same layers on the GPU against cuBLAS (issue 8).
  rows.push(...(await gpuKernelRows({ m: opts.m, block: opts.block, reps: opts.reps, shapes: opts.shapes, layoutNear })));
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, JSON.stringify(rows, null, 2) + '\n');
  console.log(`\nwrote ${rows.length} rows to ${opts.out}`);
}

// Only when run as the benchmark: scripts/gpu-check.mjs imports layoutNear from here.
if (require.main === module)
  main().catch((err) => {
    console.error(`bench:kernels failed: ${(err as Error).message}`);
    process.exit(1);
  });
