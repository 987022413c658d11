// Shared by the language-server tests: the repository root (tests run compiled from out/test/server)
// and one parser per process.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pythonParser } from '../../server/analysis/parser';
import { ParseCache } from '../../server/analysis/modules';
import { analyze, type AnalyzeOptions, type Analysis, type LayerRow } from '../../server/analysis/analyze';

export const repoRoot = ((): string => {
  for (let dir = __dirname; dir !== '/'; dir = resolve(dir, '..')) if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test', 'fixtures'))) return dir;
  throw new Error(`no repository root above ${__dirname}`);
})();

export const fixture = (...parts: string[]): string => join(repoRoot, 'test', 'fixtures', 'models', ...parts);

let cache: Promise<ParseCache> | undefined;
export async function run(options: AnalyzeOptions): Promise<Analysis> {
  cache ??= pythonParser().then((p) => new ParseCache(p));
  return analyze(await cache, options);
}

/** Compact rows for comparison: [name, class, in, out, count, role]. */
export function inventory(a: Analysis): Array<[string, string, number | string, number | string, number | string, string]> {
  return a.layers.map((l: LayerRow) => [l.name, l.class, l.in, l.out, l.count, l.role]);
}

export function row(a: Analysis, name: string): LayerRow {
  const r = a.layers.find((l) => l.name === name);
  if (!r) throw new Error(`no layer '${name}' in ${a.layers.map((l) => l.name).join(', ')}`);
  return r;
}
