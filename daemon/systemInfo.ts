// What `hello` reports about this machine: CPU model, cores and the SIMD features the kernels
// care about, and GPUs. Read from /proc and /sys (no command is run); other OSes report less.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { cudaInfo } from '../native/cuda';

/** Features that matter to the native kernels' choice of code path. */
const INTERESTING = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_bf16', 'amx_int8', 'asimd', 'sve'];

export interface CpuInfo {
  model: string;
  cores: number;
  features: string[];
}

/**
 * Threads a job uses when it does not say: OMP_NUM_THREADS when set (as the kernels and every
 * OpenMP program honour it: test runners and batch schedulers bound a process's threads with it),
 * else one per core.
 */
export function defaultThreads(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number.parseInt(env.OMP_NUM_THREADS ?? '', 10);
  return Number.isInteger(n) && n >= 1 && n <= 1024 ? n : availableParallelism();
}

export function cpuInfo(): CpuInfo {
  const model = cpus()[0]?.model ?? 'unknown';
  const cores = availableParallelism();
  let features: string[] = [];
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(text);
    const have = new Set((line?.[1] ?? '').split(/\s+/));
    features = INTERESTING.filter((f) => have.has(f));
  } catch {
    // Not Linux: no feature list.
  }
  return { model, cores, features };
}

/**
 * NVIDIA GPUs: from the CUDA runtime in the native addon (name, memory, compute capability) when
 * it can see them, else from the driver's /proc entries (no nvidia-smi call).
 */
export function gpuInfo(): { name: string; memoryMiB?: number; computeCapability?: string }[] {
  const cuda = cudaInfo();
  if (cuda && cuda.devices.length > 0) {
    return cuda.devices.map((d) => ({ name: d.name, memoryMiB: Math.round(d.memoryBytes / 2 ** 20), computeCapability: d.computeCapability }));
  }
  const root = '/proc/driver/nvidia/gpus';
  if (!existsSync(root)) return [];
  const out: { name: string }[] = [];
  for (const bus of readdirSync(root)) {
    try {
      const text = readFileSync(join(root, bus, 'information'), 'utf8');
      const model = /^Model:\s*(.*)$/m.exec(text)?.[1]?.trim();
      out.push({ name: model ?? `NVIDIA GPU ${bus}` });
    } catch {
      // Unreadable entry: skip it.
    }
  }
  return out;
}
