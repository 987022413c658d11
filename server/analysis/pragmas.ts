/**
 * `# pixelfly:` comments. `# pixelfly: dense` keeps the layer on that line (or, alone on a line,
 * the next line) dense; `# pixelfly: n_embd=768, n_layer=12` pins values anywhere in the file
 * (as `--set` and the workspace setting do); `# pixelfly: tokens=256` sets the tokens per sample.
 */
import { NONE, bool, num, str, type Value } from './values';

export interface PragmaError {
  line: number;
  message: string;
}

export interface Pragmas {
  pins: Map<string, Value>;
  /** 0-based lines whose layer is pinned dense. */
  denseLines: Set<number>;
  /** 0-based line of each pin, for diagnostics. */
  pinLines: Map<string, number>;
  errors: PragmaError[];
}

const PRAGMA = /#\s*pixelfly:\s*(.*)$/;

/** A pinned value as written: Python literals, else the text as a string. */
export function parsePinValue(text: string): Value {
  const t = text.trim();
  if (/^[-+]?\d[\d_]*$/.test(t)) return num(parseInt(t.replace(/_/g, ''), 10));
  if (/^[-+]?(\d[\d_]*\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$/.test(t)) return num(Number(t.replace(/_/g, '')));
  if (t === 'True' || t === 'true') return bool(true);
  if (t === 'False' || t === 'false') return bool(false);
  if (t === 'None') return NONE;
  const quoted = /^(['"])(.*)\1$/.exec(t);
  return str(quoted ? quoted[2] : t);
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parse `NAME=VALUE` (the same syntax for comments, --set and settings); throws with a clear message. */
export function parsePin(text: string): [string, Value] {
  const eq = text.indexOf('=');
  if (eq < 0) throw new Error(`expected NAME=VALUE, got '${text.trim()}'`);
  const name = text.slice(0, eq).trim();
  const value = text.slice(eq + 1).trim();
  if (!NAME.test(name)) throw new Error(`'${name}' is not a Python name`);
  if (value === '') throw new Error(`no value given for '${name}'`);
  // The "insert pins" quick fix writes `NAME=?` for the user to fill in.
  if (value === '?') throw new Error(`fill in the value of '${name}' the model is built with`);
  return [name, parsePinValue(value)];
}

export function readPragmas(source: string): Pragmas {
  const out: Pragmas = { pins: new Map(), denseLines: new Set(), pinLines: new Map(), errors: [] };
  const lines = source.split('\n');
  lines.forEach((line, i) => {
    if (!line.includes('pixelfly:')) return;
    const m = PRAGMA.exec(line);
    if (!m) return;
    const body = m[1].trim();
    const aloneOnLine = line.trimStart().startsWith('#');
    if (/^dense\b/.test(body)) {
      out.denseLines.add(aloneOnLine ? nextCodeLine(lines, i) : i);
      return;
    }
    for (const part of body.split(',')) {
      if (!part.trim()) continue;
      try {
        const [name, value] = parsePin(part);
        out.pins.set(name, value);
        out.pinLines.set(name, i);
      } catch (e) {
        out.errors.push({ line: i, message: `pixelfly pragma: ${(e as Error).message} (write '# pixelfly: dense' or '# pixelfly: NAME=VALUE, …')` });
      }
    }
  });
  return out;
}

function nextCodeLine(lines: string[], i: number): number {
  for (let j = i + 1; j < lines.length; j++) {
    const t = lines[j].trim();
    if (t && !t.startsWith('#')) return j;
  }
  return i;
}
