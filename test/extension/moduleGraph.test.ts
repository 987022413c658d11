/**
 * What the extension bundle pulls in: the extension host must not load the CLI's commands or the
 * Python analysis (the language server runs that in its own process). Walks the compiled
 * extension's relative requires from out/extension/main.js, as esbuild would.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { parseDataset } from '../../client/datasetArg';

const OUT = resolve(__dirname, '..', '..');

function localRequires(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
    const base = resolve(dirname(file), m[1]);
    const found = [`${base}.js`, join(base, 'index.js'), base].find((p) => existsSync(p) && p.endsWith('.js'));
    if (found) out.push(found);
  }
  return out;
}

function moduleGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const f = todo.pop() as string;
    if (seen.has(f)) continue;
    seen.add(f);
    todo.push(...localRequires(f));
  }
  return new Set([...seen].map((f) => relative(OUT, f)));
}

describe('extension module graph', () => {
  it('loads neither the Python analysis nor the CLI commands', () => {
    const graph = moduleGraph(join(OUT, 'extension', 'main.js'));
    assert.ok(graph.has(join('extension', 'commands.js')), `the walk reaches commands.js: ${[...graph].join(', ')}`);
    const heavy = [...graph].filter((f) => f.startsWith(join('server', 'analysis')) || f.startsWith(join('cli', 'commands')));
    assert.deepEqual(heavy, []);
  });
});

describe('parseDataset', () => {
  it('names the setting or option it read, and the problem', () => {
    assert.deepEqual(parseDataset('synthetic'), { kind: 'synthetic' });
    assert.deepEqual(parseDataset('npy:/data/x'), { kind: 'npy', path: '/data/x' });
    assert.throws(() => parseDataset('imagenet', 'pixelfly.training.dataset'), /^Error: pixelfly\.training\.dataset: unknown kind 'imagenet'/);
    assert.throws(() => parseDataset('text'), /--dataset: text needs a path/);
  });
});
