// What every `pixelfly` sub-command provides, and the error type that carries an exit status.
import { parseArgs, type ParseArgsConfig } from 'node:util';

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
