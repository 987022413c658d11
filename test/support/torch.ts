// PyTorch for the tests that check against Debian's python3-torch, and the pixelfly_torch package
// `npm run build` puts in dist/python.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The interpreter the PyTorch checks run under (Debian's python3-torch installs for it). */
export const PYTHON = '/usr/bin/python3';

const repoRoot = ((): string => {
  for (let dir = __dirname; dir !== '/'; dir = resolve(dir, '..')) if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'pytorch'))) return dir;
  throw new Error(`no repository root above ${__dirname}`);
})();

/** Where `npm run build` installs pixelfly_torch (pytorch/build.py --out dist/python). */
export const TORCH_PACKAGE_PATH = join(repoRoot, 'dist', 'python');

/** A loud skip reason when PyTorch itself is not importable by PYTHON, otherwise false. */
export function pytorchMissing(): string | false {
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    return `SKIPPED LOUDLY: PyTorch is not importable by ${PYTHON} (install Debian's python3-torch: apt-get install python3-torch); ${(r.stderr || String(r.error)).trim().split('\n').pop()}`;
  }
  return false;
}

/** A loud skip reason when PyTorch or the built pixelfly_torch is missing, otherwise false. */
export function torchMissing(): string | false {
  const noTorch = pytorchMissing();
  if (noTorch) return noTorch;
  if (!existsSync(join(TORCH_PACKAGE_PATH, 'pixelfly_torch', '__init__.py'))) {
    return `SKIPPED LOUDLY: pixelfly_torch is not built into ${TORCH_PACKAGE_PATH}: run npm run build`;
  }
  return false;
}

/** Runs PYTHON with the built pixelfly_torch importable (extra PYTHONPATH entries first). */
export function runPython(args: string[], opts: { env?: Record<string, string>; path?: string[]; timeout?: number } = {}): SpawnSyncReturns<string> {
  const PYTHONPATH = [...(opts.path ?? []), TORCH_PACKAGE_PATH].join(':');
  return spawnSync(PYTHON, args, { encoding: 'utf8', env: { ...process.env, ...opts.env, PYTHONPATH }, timeout: opts.timeout ?? 300_000, maxBuffer: 64 << 20 });
}
