// Measurement helpers shared by the daemon's bench.layers and running speedups and by bench/*.
import { median } from '../core/stats';

/** Median wall time in ms of `repeats` runs, after one warm-up (first-touch page faults and thread start-up are not the work's cost). */
export async function medianMs(repeats: number, run: () => Promise<unknown>): Promise<number> {
  return (await interleavedMediansMs(repeats, [run]))[0];
}

/** interleavedMedians of the runs' wall times in ms, after one warm-up round. */
export function interleavedMediansMs(repeats: number, runs: ReadonlyArray<() => Promise<unknown>>): Promise<number[]> {
  return interleavedMedians(
    repeats,
    runs.map((run) => async () => {
      const t0 = process.hrtime.bigint();
      await run();
      return Number(process.hrtime.bigint() - t0) / 1e6;
    }),
  );
}

/**
 * Medians of what each of `runs` measures, in rounds that run each once (after `warmups` rounds
 * whose measurements are dropped): a slower minute of a shared host then weighs on every run alike,
 * so the ratios between them, which is what a profile's efficiencies are, hold even when the
 * absolute times drift.
 */
export async function interleavedMedians(repeats: number, runs: ReadonlyArray<() => Promise<number>>, warmups = 1): Promise<number[]> {
  const times: number[][] = runs.map(() => []);
  for (let i = 0; i < warmups + repeats; i++) {
    for (const [k, run] of runs.entries()) {
      const t = await run();
      if (i >= warmups) times[k].push(t);
    }
  }
  return times.map(median);
}

/** Reproducible operands in [-0.5, 0.5): a 32-bit LCG, so benchmarks need no random state. */
export function seededFloats(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  fillSeeded(a, 0, n, seed >>> 0);
  return a;
}

/** Fills a[from, to) with the LCG continuing from state `s`; returns the state after. */
function fillSeeded(a: Float32Array, from: number, to: number, s: number): number {
  for (let i = from; i < to; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296 - 0.5;
  }
  return s;
}

/** seededFloats (the same values), a million at a time between turns of the event loop: a daemon stays responsive while it makes large operands. */
export async function seededFloatsAsync(n: number, seed: number): Promise<Float32Array> {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let from = 0; from < n; from += 1 << 20) {
    s = fillSeeded(a, from, Math.min(n, from + (1 << 20)), s);
    await new Promise((r) => setImmediate(r));
  }
  return a;
}
