// Medians of repeated measurements (the daemon's speedups, the metrics page's step-time series and
// the benchmarks all summarise with these), and the grouping that measured points are averaged by.

/** Median (mean of the two middle values for an even count); NaN for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median of each key over the records that have one, keys in the order the first record lists them; undefined for no records. */
export function medianOfEach(records: ReadonlyArray<Record<string, number> | undefined>): Record<string, number> | undefined {
  const present = records.filter((r) => r !== undefined);
  if (present.length === 0) return undefined;
  return Object.fromEntries(Object.keys(present[0]).map((k) => [k, median(present.map((r) => r[k]).filter((v) => v !== undefined))]));
}

/** Items grouped by a key, groups and items in first-seen order. */
export function groupBy<T, K>(items: T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}
