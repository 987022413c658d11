/**
 * Finding and parsing the Python modules an analysis touches: the analysed file, workspace files
 * it imports, library stubs, `--path` directories and the selected environment's site-packages.
 * Parsed trees are cached by path and text, so re-analysis after an edit re-parses only the
 * edited file (incrementally, with the previous tree) and re-uses every imported module's tree.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve, basename } from 'node:path';
import { execFile } from 'node:child_process';
import type { Parser } from 'web-tree-sitter';
import { toPyAst, type PyNode } from './ast';
import { parsePython, type Edit, type Tree } from './parser';
import { STUBS } from './stubs';
import type { ModuleInfo } from './values';
import type { ModuleSource } from './interpreter';
import { FileRefusedError, readUserTextSync } from '../../io/userFile';

/** Largest Python file read (the biggest real model files are a few hundred kB). */
const MAX_SOURCE_BYTES = 16 * 1024 * 1024;

export interface SearchRoot {
  dir: string;
  /** Library roots (extra paths, site-packages) report layers at the user's call site, not inside the library. */
  library: boolean;
}

interface Parsed {
  source: string;
  root: PyNode;
  tree: Tree;
}

/**
 * Parses shared across analyses (keyed by path; re-used while the text is unchanged). Entries are
 * checked by text, not by mtime: every analysis's loader reads its files anew (overlay or disk),
 * so a file changed on disk is re-parsed on the next analysis that reads it; `forget` frees the
 * tree of a file that was closed or deleted.
 */
export class ParseCache {
  private readonly byPath = new Map<string, Parsed>();
  constructor(readonly parser: Parser) {}

  /** Parse a file's text; an edited text re-uses the previous tree (tree-sitter's incremental parse). */
  get(path: string, source: string): Parsed {
    const hit = this.byPath.get(path);
    if (hit && hit.source === source) return hit;
    let tree: Tree;
    if (hit) {
      hit.tree.edit(textEdit(hit.source, source));
      tree = parsePython(this.parser, source, hit.tree);
      hit.tree.delete();
    } else {
      tree = parsePython(this.parser, source);
    }
    const parsed = { source, root: toPyAst(tree, source), tree };
    this.byPath.set(path, parsed);
    return parsed;
  }

  forget(path: string): void {
    this.byPath.get(path)?.tree.delete();
    this.byPath.delete(path);
  }

  peek(path: string): Parsed | undefined {
    return this.byPath.get(path);
  }
}

/** The package root of a file: climb while the directory is a package (has __init__.py). */
export function moduleNameOf(file: string): { root: string; name: string; isPackage: boolean } {
  const abs = resolve(file);
  let dir = dirname(abs);
  const stem = basename(abs).replace(/\.pyi?$/, '');
  const isPackage = stem === '__init__';
  const parts = isPackage ? [] : [stem];
  while (existsSync(join(dir, '__init__.py'))) {
    parts.unshift(basename(dir));
    dir = dirname(dir);
  }
  return { root: dir, name: parts.join('.'), isPackage };
}

export class ModuleLoader implements ModuleSource {
  private readonly loaded = new Map<string, ModuleInfo | null>();
  /**
   * Files this loader read (from an overlay or disk) and paths an import looked for in vain: what
   * an analysis depends on, so the language server knows whose edit, save or deletion (files read)
   * or creation (paths looked for) must re-run it.
   */
  readonly read = new Set<string>();
  readonly lookedFor = new Set<string>();

  constructor(
    private readonly cache: ParseCache,
    private readonly roots: SearchRoot[],
    /** Unsaved editor buffers, by absolute path. */
    private readonly overlays: ReadonlyMap<string, string> = new Map(),
  ) {}

  /** Load a file as the module with the given name (the analysed file, or a stub). */
  loadFile(path: string, name: string, library: boolean, isPackage = false, source?: string): ModuleInfo {
    // Bounded: a path may name a device, a FIFO or a huge file (refused with the reason).
    const text = source ?? this.overlays.get(path) ?? readUserTextSync(path, { maxBytes: MAX_SOURCE_BYTES, what: 'Python source file' });
    if (source === undefined) this.read.add(path);
    const parsed = this.cache.get(path, text);
    const mod: ModuleInfo = { name, path, source: text, root: parsed.root, globals: new Map(), library, state: 'new', isPackage };
    if (name) this.loaded.set(name, mod);
    return mod;
  }

  find(name: string): ModuleInfo | undefined {
    if (!name) return undefined;
    const hit = this.loaded.get(name);
    if (hit !== undefined) return hit ?? undefined;
    const found = this.locate(name);
    this.loaded.set(name, found ?? null);
    return found;
  }

  private locate(name: string): ModuleInfo | undefined {
    const rel = name.split('.');
    for (const root of this.roots) {
      const asFile = join(root.dir, ...rel) + '.py';
      const asPackage = join(root.dir, ...rel, '__init__.py');
      try {
        if (isFile(asFile)) return this.loadFile(asFile, name, root.library);
        if (isFile(asPackage)) return this.loadFile(asPackage, name, root.library, true);
      } catch (err) {
        // A module that cannot be read (too large, unreadable) stays unresolved, like a missing one.
        if (!(err instanceof FileRefusedError)) throw err;
      }
      this.lookedFor.add(asFile).add(asPackage);
    }
    const stub = STUBS.get(name);
    if (stub !== undefined) return this.loadFile(`<stub>/${rel.join('/')}.py`, name, true, false, stub);
    return undefined;
  }

  /** A relative import that does not resolve (a library file copied out of its package): try the stub of that name. */
  findStubBySuffix(name: string): ModuleInfo | undefined {
    for (const key of STUBS.keys()) if (key.endsWith(`.${name}`)) return this.find(key);
    return undefined;
  }
}

/** The single edit turning `before` into `after` (common prefix and suffix kept), in tree-sitter's terms. */
export function textEdit(before: string, after: string): Edit {
  const max = Math.min(before.length, after.length);
  let start = 0;
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  let tail = 0;
  while (tail < max - start && before.charCodeAt(before.length - 1 - tail) === after.charCodeAt(after.length - 1 - tail)) tail++;
  return {
    startIndex: start,
    oldEndIndex: before.length - tail,
    newEndIndex: after.length - tail,
    startPosition: pointAt(before, start),
    oldEndPosition: pointAt(before, before.length - tail),
    newEndPosition: pointAt(after, after.length - tail),
  } as Edit;
}

function pointAt(text: string, index: number): { row: number; column: number } {
  let row = 0;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) {
    row++;
    lineStart = i + 1;
  }
  return { row, column: index - lineStart };
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** site-packages directories of a Python interpreter (empty when it cannot be run). */
export function sitePackages(python: string, timeoutMs = 5000): Promise<string[]> {
  const code = 'import json, site, sys; print(json.dumps([p for p in site.getsitepackages() + [site.getusersitepackages()] + sys.path if p]))';
  return new Promise((done) => {
    execFile(python, ['-c', code], { timeout: timeoutMs }, (err, stdout) => {
      if (err) return done([]);
      try {
        const dirs = (JSON.parse(stdout) as string[]).filter((d) => /(site|dist)-packages/.test(d) && existsSync(d));
        done([...new Set(dirs)]);
      } catch {
        done([]);
      }
    });
  });
}
