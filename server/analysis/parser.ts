/**
 * Python parsing with web-tree-sitter and the tree-sitter-python grammar (both wasm, loaded from
 * disk: next to the bundle in dist/, or from node_modules when running compiled tests).
 * Initialisation is asynchronous and done once per process; parsing afterwards is synchronous.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Parser, Language, type Tree, type Node, type Edit } from 'web-tree-sitter';

export type { Tree, Node, Edit };

let ready: Promise<Parser> | undefined;

/** The first existing candidate: the bundle copies both wasm files beside dist/server.js. */
function locate(file: string, packageRelative: string): string {
  const beside = join(__dirname, file);
  if (existsSync(beside)) return beside;
  return require.resolve(packageRelative);
}

export function pythonParser(): Promise<Parser> {
  ready ??= (async () => {
    const runtime = locate('web-tree-sitter.wasm', 'web-tree-sitter/web-tree-sitter.wasm');
    await Parser.init({ locateFile: () => runtime });
    const language = await Language.load(locate('tree-sitter-python.wasm', 'tree-sitter-python/tree-sitter-python.wasm'));
    const parser = new Parser();
    parser.setLanguage(language);
    return parser;
  })();
  return ready;
}

export function parsePython(parser: Parser, source: string, previous?: Tree): Tree {
  const tree = parser.parse(source, previous ?? null);
  if (!tree) throw new Error('tree-sitter returned no tree (parser has no language?)');
  return tree;
}
