/**
 * A plain-JavaScript copy of a tree-sitter syntax tree. The interpreter visits the same
 * nodes many times (a Block's __init__ once per layer of depth); reading them through
 * web-tree-sitter's wasm accessors each time costs far more than one cursor walk up front.
 */
import type { Tree } from './parser';

/** Line starts of a source text: rows and columns are computed from indices only when asked for. */
export class LineIndex {
  private readonly starts: number[] = [0];
  constructor(source: string) {
    for (let i = source.indexOf('\n'); i !== -1; i = source.indexOf('\n', i + 1)) this.starts.push(i + 1);
  }

  row(index: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  column(index: number): number {
    return index - this.starts[this.row(index)];
  }
}

export class PyNode {
  readonly children: PyNode[] = [];
  fields: Record<string, PyNode[]> | undefined;
  parent: PyNode | undefined;
  constructor(
    readonly type: string,
    readonly source: string,
    readonly startIndex: number,
    readonly endIndex: number,
    private readonly lines: LineIndex,
  ) {}

  // Rows and columns (0-based, UTF-16 units like LSP positions) from the line index.
  get startRow(): number {
    return this.lines.row(this.startIndex);
  }
  get startCol(): number {
    return this.lines.column(this.startIndex);
  }
  get endRow(): number {
    return this.lines.row(this.endIndex);
  }
  get endCol(): number {
    return this.lines.column(this.endIndex);
  }

  get text(): string {
    return this.source.slice(this.startIndex, this.endIndex);
  }

  field(name: string): PyNode | undefined {
    return this.fields?.[name]?.[0];
  }

  fieldAll(name: string): PyNode[] {
    return this.fields?.[name] ?? [];
  }
}

/** Named nodes become PyNodes; anonymous tokens (operators, keywords) are kept only under a field name. */
export function toPyAst(tree: Tree, source: string): PyNode {
  const cursor = tree.walk();
  const lines = new LineIndex(source);
  const make = (): PyNode => new PyNode(cursor.nodeType, source, cursor.startIndex, cursor.endIndex, lines);
  const root = make();
  const stack: PyNode[] = [root];
  // Iterative depth-first walk: deep expression nesting must not overflow the JS stack.
  if (cursor.gotoFirstChild()) {
    for (;;) {
      const parent = stack[stack.length - 1];
      const fieldName = cursor.currentFieldName;
      const named = cursor.nodeIsNamed;
      let node: PyNode | undefined;
      if (named || fieldName) {
        node = make();
        node.parent = parent;
        if (named) parent.children.push(node);
        if (fieldName) {
          parent.fields ??= {};
          (parent.fields[fieldName] ??= []).push(node);
        }
      }
      if (node && cursor.gotoFirstChild()) {
        stack.push(node);
        continue;
      }
      while (!cursor.gotoNextSibling()) {
        if (!cursor.gotoParent() || stack.length === 1) {
          cursor.delete();
          return root;
        }
        stack.pop();
      }
    }
  }
  cursor.delete();
  return root;
}
