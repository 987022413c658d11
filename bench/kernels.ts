// `npm run bench:kernels -- [--threads 1,2] [--reps 15] [--shapes 768x3072,...] [--clock wall|cpu] [--out FILE]`
// Pixelfly block-sparse fwd / dX / dW against our dense GEMM and OpenBLAS sgemm, measured in the
// same run at M = 4096, block 32, flat block butterfly layouts at densities ≈ 1/8, 1/4, 1/2.
// Prints a table and writes JSON rows (default bench-results/kernels.json).
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

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadavg } from 'node:os';
import { flatBlockButterflyLayout, type BlockLayout } from '../core/layout';
import { buildBlockIndex } from '../core/blockIndex';
import { loadAddon, type NativeGemmArgs } from '../native/addon';
import {
  alignedFloat32Array,
  bsrBackwardData,
  bsrBackwardWeight,
  bsrForward,
  kernelInfo,
  setKernelThreads,
  type BsrWeight,
} from '../native/kernels';
import { gpuKernelRows } from './gpuKernels';
import { median, seededFloats } from '../daemon/measure';

interface Options {
  threads: number[];
  reps: number;
  shapes: Array<[number, number]>;
  out: string;
  m: number;
  block: number;
  clock: 'wall' | 'cpu';
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
    out: 'bench-results/kernels.json',
    m: 4096,
    block: 32,
    clock: 'wall',
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
      default:
        throw new Error(`unknown option '${flag}' (options: --threads 1,2 --reps N --m ROWS --shapes INxOUT,... --clock wall|cpu --out FILE)`);
    }
  }
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

function denseGroup(name: string, gemm: (a: NativeGemmArgs) => Promise<void>, m: number, inF: number, out: number, bufs: Buffers): Group {
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
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

function fmt(n: number, digits = 1): string {
  return n.toFixed(digits);
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
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
  const info = kernelInfo();
  console.log(`Pixelfly kernels: isa ${info.isa} (supported: ${info.supportedIsas.join(', ')}), hardware threads ${info.maxThreads}`);
  if (cleared.length) console.log(`unset for this run: ${cleared.join(', ')}`);
  if (ob.available) console.log(`OpenBLAS: ${ob.library}, kernel ${ob.coreName}, ${ob.config}, OPENBLAS_THREAD_TIMEOUT=${process.env.OPENBLAS_THREAD_TIMEOUT}`);
  else console.log(`OpenBLAS IS MISSING, so its columns are empty: ${ob.error}`);
  console.log(
    `M = ${opts.m}, block ${opts.block}, ${opts.reps} timed rounds (medians of ${opts.clock === 'cpu' ? 'process CPU time' : 'wall time'}), load average at start ${loadavg()[0].toFixed(2)}\n`,
  );

  const rows: Record<string, unknown>[] = [];
  const header =
    'in    out   thr density | openblas  dense  | pixelfly fwd    dX     dW  total | GFLOP/s  ideal | vs dense  vs OpenBLAS (target)';
  console.log(header);
  console.log('-'.repeat(header.length));
  for (const threads of opts.threads) {
    setKernelThreads(threads);
    if (ob.available) addon.openblas.setThreads(threads);
    for (const [inF, out] of opts.shapes) {
      const { m, block } = opts;
      // 64-byte aligned activations for every library, as a C++ caller's aligned allocator gives.
      const aligned = (a: Float32Array) => {
        const b = alignedFloat32Array(a.length);
        b.set(a);
        return b;
      };
      const bufs: Buffers = {
        x: aligned(seededFloats(m * inF, 1)),
        w: aligned(seededFloats(out * inF, 2)),
        dy: aligned(seededFloats(m * out, 3)),
        y: alignedFloat32Array(m * out),
        dx: alignedFloat32Array(m * inF),
        dw: alignedFloat32Array(out * inF),
      };
      const layouts = [1 / 8, 1 / 4, 1 / 2].map((d) => layoutNear(out, inF, block, d));
      const groups: Group[] = [denseGroup('ours', (a) => addon.kernels.gemm(a), m, inF, out, bufs)];
      if (ob.available) groups.push(denseGroup('openblas', (a) => addon.openblas.gemm(a), m, inF, out, bufs));
      layouts.forEach((l, i) => {
        const w: BsrWeight = { index: buildBlockIndex(l), out, in: inF, weights: seededFloats(l.nnzBlocks * block * block, 4) };
        const dwb = new Float32Array(l.nnzBlocks * block * block);
        groups.push({
          name: `pixelfly${i}`,
          ops: [
            { name: 'fwd', run: () => bsrForward(w, bufs.x, m, { into: bufs.y }) },
            { name: 'dx', run: () => bsrBackwardData(w, bufs.dy, m, { into: bufs.dx }) },
            { name: 'dw', run: () => bsrBackwardWeight(w, bufs.dy, bufs.x, m, { into: dwb }) },
          ],
        });
      });
      const load0 = loadavg()[0];
      const t = await timeGroups(groups, opts.reps, clockFn(opts.clock));
      const load1 = loadavg()[0];
      const sum = (g: string) => ['fwd', 'dx', 'dw'].reduce((s, p) => s + (t.get(`${g}.${p}`) ?? NaN), 0);
      const denseMs = sum('ours');
      const obMs = ob.available ? sum('openblas') : NaN;
      const denseFlop = 3 * 2 * m * inF * out;
      layouts.forEach((l, i) => {
        const g = `pixelfly${i}`;
        const pfMs = sum(g);
        const usefulGflops = (denseFlop * l.density) / (pfMs * 1e6);
        const vsDense = denseMs / pfMs;
        const vsOb = obMs / pfMs;
        const target = 0.8 / l.density;
        const row = {
          m,
          in: inF,
          out,
          block,
          density: +l.density.toFixed(4),
          butterfly_size: l.params.butterflySize,
          n_factors: l.params.nFactors,
          threads,
          isa: info.isa,
          openblas_core: ob.available ? ob.coreName : null,
          openblas_thread_timeout: process.env.OPENBLAS_THREAD_TIMEOUT,
          openblas_fwd_ms: ob.available ? +t.get('openblas.fwd')!.toFixed(3) : null,
          openblas_dx_ms: ob.available ? +t.get('openblas.dx')!.toFixed(3) : null,
          openblas_dw_ms: ob.available ? +t.get('openblas.dw')!.toFixed(3) : null,
          openblas_fwd_bwd_ms: ob.available ? +obMs.toFixed(3) : null,
          dense_fwd_ms: +t.get('ours.fwd')!.toFixed(3),
          dense_dx_ms: +t.get('ours.dx')!.toFixed(3),
          dense_dw_ms: +t.get('ours.dw')!.toFixed(3),
          dense_fwd_bwd_ms: +denseMs.toFixed(3),
          dense_vs_openblas: ob.available ? +(obMs / denseMs).toFixed(3) : null,
          pixelfly_fwd_ms: +t.get(`${g}.fwd`)!.toFixed(3),
          pixelfly_dx_ms: +t.get(`${g}.dx`)!.toFixed(3),
          pixelfly_dw_ms: +t.get(`${g}.dw`)!.toFixed(3),
          pixelfly_fwd_bwd_ms: +pfMs.toFixed(3),
          pixelfly_useful_gflops: +usefulGflops.toFixed(1),
          fraction_of_ideal: +(vsDense * l.density).toFixed(3),
          speedup_vs_dense: +vsDense.toFixed(3),
          speedup_vs_openblas: ob.available ? +vsOb.toFixed(3) : null,
          target_vs_openblas: +target.toFixed(3),
          reps: opts.reps,
          clock: opts.clock,
          load_avg_start: +load0.toFixed(2),
          load_avg_end: +load1.toFixed(2),
        };
        rows.push(row);
        console.log(
          `${String(inF).padEnd(6)}${String(out).padEnd(6)}${String(threads).padEnd(4)}${fmt(l.density, 3).padEnd(8)}| ` +
            `${(ob.available ? fmt(obMs) : 'n/a').padStart(8)} ${fmt(denseMs).padStart(6)} | ` +
            `${fmt(row.pixelfly_fwd_ms).padStart(12)} ${fmt(row.pixelfly_dx_ms).padStart(6)} ${fmt(row.pixelfly_dw_ms).padStart(6)} ${fmt(pfMs).padStart(6)} | ` +
            `${fmt(usefulGflops, 0).padStart(7)} ${fmt(row.fraction_of_ideal * 100, 0).padStart(5)}% | ` +
            `${fmt(vsDense, 2).padStart(8)}× ${(ob.available ? fmt(vsOb, 2) + '×' : 'n/a').padStart(8)} (${fmt(target, 1)}×${ob.available && l.density <= 0.25 ? (vsOb >= target ? ' met' : ' MISSED') : ''})`,
        );
      });
      if (ob.available)
        console.log(
          `${' '.repeat(24)}dense (ours) at ${fmt((100 * obMs) / denseMs, 0)}% of OpenBLAS speed (target 90%); ` +
            `OpenBLAS ${fmt(denseFlop / (obMs * 1e6), 0)} GFLOP/s, ours ${fmt(denseFlop / (denseMs * 1e6), 0)} GFLOP/s; load ${load0.toFixed(1)}→${load1.toFixed(1)}`,
        );
    }
  }
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
