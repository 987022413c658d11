/**
 * Min/max decimation so a chart stays smooth at 100k+ points: a plot is at most ~2k px wide, so
 * drawing more than a few points per pixel column only costs time. Per bucket we keep the first
 * index plus each series' min and max, so spikes (a loss blow-up, a slow step) are never hidden.
 */

/** Indices (ascending, unique) of the points to draw; all indices when n ≤ 4·buckets. */
export function decimateIndices(n: number, series: ReadonlyArray<ArrayLike<number | null>>, buckets: number): number[] {
  if (n <= buckets * 4) return Array.from({ length: n }, (_, i) => i);
  const keep: number[] = [];
  const size = n / buckets;
  for (let b = 0; b < buckets; b++) {
    const lo = Math.floor(b * size);
    const hi = Math.min(n, Math.floor((b + 1) * size));
    if (hi <= lo) continue;
    const picked = new Set<number>([lo]);
    for (const ys of series) {
      let iMin = -1;
      let iMax = -1;
      for (let i = lo; i < hi; i++) {
        const v = ys[i];
        if (v === null || v === undefined) continue;
        if (iMin < 0 || v < (ys[iMin] as number)) iMin = i;
        if (iMax < 0 || v > (ys[iMax] as number)) iMax = i;
      }
      if (iMin >= 0) picked.add(iMin);
      if (iMax >= 0) picked.add(iMax);
    }
    keep.push(...[...picked].sort((a, b2) => a - b2));
  }
  if (keep[keep.length - 1] !== n - 1) keep.push(n - 1);
  return keep;
}

/** Picks `indices` out of each array (x first, then the series). */
export function pick<T>(arrays: ReadonlyArray<ArrayLike<T>>, indices: readonly number[]): T[][] {
  return arrays.map((a) => indices.map((i) => a[i]));
}
