// The one-time measurement `pixelfly train` makes before it plans on a device with no measured
// profile: the default prior's rates are a guess for a generic 2-core AVX-512 CPU in fp32, and a
// plan costed with them can promise what this device does not deliver (the demo Mixer: estimated
// 1.77×, measured 1.43× with bf16 products). bench.layers times the model's own products, dense
// and at the layouts the planner weighs, and saves the profile every later plan (CLI, editor,
// daemon) reads.
import type { DaemonClient } from '../../client/daemonClient';
import { calibrationShapes } from '../../core/planner';
import { parseModelSpec, specInventory } from '../../core/modelSpec';
import { loadProfile } from '../../daemon/planning';
import { homePaths } from '../../io/home';

/** Whether the daemon trains a job with this backend choice on the CPU, whose kernels bench.layers times (a CUDA job's plan is not costed by them). */
export async function trainsOnCpu(client: DaemonClient, backend: 'auto' | 'cpu' | 'cuda'): Promise<boolean> {
  if (backend !== 'auto') return backend === 'cpu';
  const hello = await client.request('hello', {});
  return hello.backends.some((b) => b.startsWith('cpu'));
}

/** Whether this home holds a profile bench.layers measured (otherwise plans use the default prior). */
export function hasMeasuredProfile(home: string): boolean {
  return loadProfile(homePaths(home).profiles).source === 'measured';
}

/**
 * Measures this device at the model's shapes (bench.layers), saying what it does on stderr. A spec
 * that does not parse is not measured: the daemon rejects the job with its own message.
 */
export async function measureDevice(client: DaemonClient, rawSpec: unknown, batchSize: number, threads: number): Promise<void> {
  let spec;
  try {
    spec = parseModelSpec(rawSpec);
  } catch {
    return;
  }
  const shapes = calibrationShapes(specInventory(spec), batchSize);
  const configs = shapes.reduce((n, s) => n + s.configs.length, 0);
  process.stderr.write(
    `this device has no measured profile yet: timing the model's ${shapes.length} product shapes dense and with ${configs} Pixelfly configs, once, so the plan is costed with this machine's numbers (--no-measure skips it)\n`,
  );
  const t0 = Date.now();
  const r = await client.request('bench.layers', { shapes, repeats: 5, threads, step: true }, 900_000);
  process.stderr.write(`measured in ${((Date.now() - t0) / 1000).toFixed(1)} s; profile saved to ${r.profilePath}\n`);
}
