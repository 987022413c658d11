// The one-time measurement a train request makes before it plans on a device with no measured
// profile, shared by `pixelfly train` and the editor's "Train dense vs Pixelfly": the default
// prior's rates are a guess for a generic 2-core AVX-512 CPU in fp32, and a plan costed with them
// can promise what this device does not deliver (the demo Mixer: estimated 1.77×, measured 1.43×
// with bf16 products). bench.layers times the model's own products, dense and at the layouts the
// planner weighs, and saves the profile every later plan (CLI, editor, daemon) reads.
import { DEVICE_PROFILE_FORMAT } from '../core/costModel';
import { calibrationShapes } from '../core/planner';
import { parseModelSpec, specInventory } from '../core/modelSpec';
import { loadProfile, type ProfilePrecision } from '../io/deviceProfile';
import { homePaths } from '../io/home';
import type { MethodParamsIn } from '../protocol/daemon';

/** bench.layers walks every shape and config in turn: the largest calibration takes tens of seconds on 2 cores. */
export const MEASURE_TIMEOUT_MS = 900_000;

export interface DeviceMeasurement {
  params: MethodParamsIn<'bench.layers'>;
  /** What is timed, in words ("the model's 6 product shapes dense and with 24 Pixelfly configs"). */
  what: string;
}

/**
 * The bench.layers request that calibrates this device for a model: its product shapes at the rows
 * one step of `batchSize` multiplies, with the layouts and ranks the planner weighs, and the step
 * rates, at the products' precision. Undefined for a spec that does not parse, or fp16: the daemon
 * rejects those jobs with its own message.
 */
export function deviceMeasurement(rawSpec: unknown, batchSize: number, threads: number, precision: ProfilePrecision = 'auto'): DeviceMeasurement | undefined {
  let spec;
  try {
    spec = parseModelSpec(rawSpec);
  } catch {
    return undefined;
  }
  // fp16 products are CUDA's: the CPU's kernels have none to time (the engine refuses such a CPU job).
  if (precision === 'fp16') return undefined;
  const shapes = calibrationShapes(specInventory(spec), batchSize);
  const configs = shapes.reduce((n, s) => n + s.configs.length, 0);
  return {
    params: { shapes, repeats: 5, threads, step: true, precision },
    what: `the model's ${shapes.length} product shape${shapes.length === 1 ? '' : 's'} dense and with ${configs} Pixelfly config${configs === 1 ? '' : 's'}${precision === 'auto' ? '' : ` in ${precision}`}`,
  };
}

/** Whether this home holds a profile bench.layers measured at `precision` (otherwise plans at that precision use the default prior). */
export function hasMeasuredProfile(home?: string, precision: ProfilePrecision = 'auto'): boolean {
  return loadProfile(homePaths(home).profiles, DEVICE_PROFILE_FORMAT, undefined, precision).source === 'measured';
}

/**
 * Whether the daemon, whose hello listed `backends`, trains a job with this backend choice on the
 * CPU, whose kernels bench.layers times (a CUDA job's plan is not costed by them).
 */
export function trainsOnCpu(backends: readonly string[], backend: 'auto' | 'cpu' | 'cuda'): boolean {
  if (backend !== 'auto') return backend === 'cpu';
  return backends.some((b) => b.startsWith('cpu'));
}
