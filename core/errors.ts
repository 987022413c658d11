/**
 * A parameter the Pixelfly math cannot honour. `param` names the offending parameter
 * (as the user spells it: `butterfly_size`, `n_factors`, …) so that callers — CLI, language
 * server, daemon — can point at it; `message` says what to change.
 */
export class PixelflyConfigError extends Error {
  readonly param: string;
  constructor(param: string, message: string) {
    super(`${param}: ${message}`);
    this.name = 'PixelflyConfigError';
    this.param = param;
  }
}

/** Throws unless `value` is an integer ≥ `min`. */
export function requireInt(param: string, value: number, min: number): void {
  if (!Number.isInteger(value)) {
    throw new PixelflyConfigError(param, `must be an integer, got ${value}`);
  }
  if (value < min) {
    throw new PixelflyConfigError(param, `must be ≥ ${min}, got ${value}`);
  }
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}
