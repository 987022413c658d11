// PyTorch detection for the tests that check against Debian's python3-torch.
import { spawnSync } from 'node:child_process';

/** The interpreter the PyTorch checks run under (Debian's python3-torch installs for it). */
export const PYTHON = '/usr/bin/python3';

/** A loud skip reason when PyTorch is not importable by PYTHON, otherwise false. */
export function torchMissing(): string | false {
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    return `SKIPPED LOUDLY: PyTorch is not importable by ${PYTHON} (install Debian's python3-torch: apt-get install python3-torch); ${(r.stderr || String(r.error)).trim().split('\n').pop()}`;
  }
  return false;
}
