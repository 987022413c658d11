/**
 * Supports of butterfly factors on an n×n grid (n a power of two).
 *
 * Factor i (stride s = 2^i) is block-diagonal with 2s×2s blocks, each an s-strided 2×2
 * butterfly: entry (r, c) is nonzero iff r and c differ at most in bit i, i.e. r XOR c ∈ {0, s}.
 * This is the support of the authors' `butterfly_factor_to_matrix(ones, i)` (HazyResearch/fly).
 */
import { PixelflyConfigError, isPowerOfTwo, requireInt } from './errors';

export function log2Exact(n: number): number {
  return Math.round(Math.log2(n));
}

export function validateButterfly(butterflySize: number, nFactors: number): void {
  requireInt('butterfly_size', butterflySize, 2);
  if (!isPowerOfTwo(butterflySize)) {
    const lower = 2 ** Math.floor(Math.log2(butterflySize));
    throw new PixelflyConfigError(
      'butterfly_size',
      `must be a power of two, got ${butterflySize} (try ${lower} or ${lower * 2})`,
    );
  }
  const logN = log2Exact(butterflySize);
  if (!Number.isInteger(nFactors) || nFactors < 1 || nFactors > logN) {
    throw new PixelflyConfigError(
      'n_factors',
      `must be an integer in 1..${logN} (log2 of butterfly_size ${butterflySize}), got ${nFactors}`,
    );
  }
}

/** Support of factor `index` as an n×n 0/1 matrix, row-major. */
export function butterflyFactorSupport(n: number, index: number): Uint8Array {
  validateButterfly(n, 1);
  const logN = log2Exact(n);
  if (!Number.isInteger(index) || index < 0 || index >= logN) {
    throw new PixelflyConfigError('factor_index', `must be an integer in 0..${logN - 1}, got ${index}`);
  }
  const stride = 1 << index;
  const out = new Uint8Array(n * n);
  for (let r = 0; r < n; r++) {
    out[r * n + r] = 1;
    out[r * n + (r ^ stride)] = 1;
  }
  return out;
}

/**
 * Union of the supports of factors 0…nFactors−1 (the "flat" butterfly), optionally with the
 * authors' channel shuffle applied to its columns: with g = 2^(log2 n − nFactors) groups of
 * n/g channels, column c·g + k of the result is column k·(n/g) + c of the unshuffled support.
 * The result is shared: callers must not modify it.
 */
export function flatButterflySupport(n: number, nFactors: number, shuffle = false): Uint8Array {
  validateButterfly(n, nFactors);
  // Planners score many layouts of the same few supports; they are small and never mutated.
  const key = `${n}/${nFactors}/${shuffle}`;
  let support = supportCache.get(key);
  if (!support) {
    support = buildFlatSupport(n, nFactors, shuffle);
    supportCache.set(key, support);
  }
  return support;
}

const supportCache = new Map<string, Uint8Array>();

function buildFlatSupport(n: number, nFactors: number, shuffle: boolean): Uint8Array {
  const flat = new Uint8Array(n * n);
  for (let i = 0; i < nFactors; i++) {
    const f = butterflyFactorSupport(n, i);
    for (let k = 0; k < f.length; k++) flat[k] |= f[k];
  }
  if (!shuffle) return flat;
  const groups = 2 ** (log2Exact(n) - nFactors);
  const perGroup = n / groups;
  const shuffled = new Uint8Array(n * n);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < n; j++) {
      const c = Math.floor(j / groups);
      const k = j % groups;
      shuffled[r * n + j] = flat[r * n + k * perGroup + c];
    }
  }
  return shuffled;
}
