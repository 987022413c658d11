// What every `pixelfly` sub-command provides, and the error type that carries an exit status.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FileRefusedError, readUserTextSync } from '../../io/userFile';

export interface Command {
  /** One line for `pixelfly --help`. */
  summary: string;
  /** Options synopsis for `pixelfly <command> --help`. */
  usage: string;
  /** Returns the exit status. */
  run(argv: string[]): Promise<number>;
}

/** A user error: printed as `pixelfly: message` with exit status `status` (2 = bad usage). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly status = 2,
  ) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs in strict mode, with its errors turned into usage errors. */
export function parse<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

/** A required integer option, with a message naming the option when it is missing or malformed. */
export function intOption(values: Record<string, unknown>, name: string, fallback?: number): number {
  const raw = values[name];
  if (raw === undefined) {
    if (fallback !== undefined) return fallback;
    throw new CliError(`--${name} is required`);
  }
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isInteger(n)) {
    throw new CliError(`--${name} must be an integer, got '${String(raw)}'`);
  }
  return n;
}

/** An option that must be one of `choices` (undefined when absent). */
export function choiceOption<C extends string>(values: Record<string, unknown>, name: string, choices: readonly C[]): C | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (!choices.includes(raw as C)) throw new CliError(`--${name} must be one of ${choices.join(', ')}, got '${String(raw)}'`);
  return raw as C;
}

export function numberOption(values: Record<string, unknown>, name: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n)) {
    throw new CliError(`--${name} must be a number, got '${String(raw)}'`);
  }
  return n;
}

/** A size in bytes: a number with an optional unit, as the daemon's messages write sizes (8G = 8 GB = 8·10⁹; 512MiB = 512·2²⁰). */
export function sizeOption(values: Record<string, unknown>, name: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const m = typeof raw === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)b?)?\s*$/i.exec(raw) : null;
  if (!m) throw new CliError(`--${name} must be a size such as 8G, 512MB or 1.5GiB, got '${String(raw)}'`);
  const power = m[2] ? 'kmgt'.indexOf(m[2].toLowerCase()) + 1 : 0;
  return Math.round(Number(m[1]) * (m[3] ? 1024 : 1000) ** power);
}

/** Largest JSON file a command reads (specs, plans, inventories, profiles are kilobytes to a few megabytes). */
const MAX_JSON_BYTES = 64 * 1024 * 1024;

/** A JSON file named on the command line, read with the bounded reader; errors name the file and `what` it is. */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readUserTextSync(path, { maxBytes: MAX_JSON_BYTES, what });
  } catch (err) {
    if (err instanceof FileRefusedError) throw new CliError(`cannot read ${what} '${path}': ${err.code ?? err.problem}`, 1);
    throw err;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError(`${what} '${path}' is not valid JSON: ${(err as Error).message}`, 1);
  }
}
