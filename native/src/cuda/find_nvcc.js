// Prints the CUDA toolkit root that binding.gyp compiles the CUDA backend with, or nothing (then
// the addon is built CPU-only). PIXELFLY_CUDA=0 opts out; CUDA_HOME / CUDA_PATH / nvcc on PATH /
// /usr/local/cuda are tried in that order. The toolkit must have nvcc and libcudart_static.a
// (the runtime is linked statically so the addon loads on machines without a driver).
const { existsSync, realpathSync } = require('node:fs');
const { join, dirname } = require('node:path');
const { execFileSync } = require('node:child_process');

function fromPath() {
  // nvcc on PATH may be a wrapper script outside the toolkit; then /usr/local/cuda below still finds it.
  try {
    const p = execFileSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' }).trim();
    return p ? dirname(dirname(realpathSync(p))) : '';
  } catch {
    return '';
  }
}

function cudaHome() {
  if (process.env.PIXELFLY_CUDA === '0') return '';
  const candidates = [process.env.CUDA_HOME, process.env.CUDA_PATH, fromPath(), '/usr/local/cuda'].filter(Boolean);
  for (const c of candidates) {
    const home = existsSync(c) ? realpathSync(c) : c;
    if (existsSync(join(home, 'bin', 'nvcc')) && existsSync(join(home, 'lib64', 'libcudart_static.a'))) return home;
  }
  return '';
}

process.stdout.write(cudaHome());
