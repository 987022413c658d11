// `pixelfly train`'s one-time measurement of a device with no measured profile
// (client/deviceMeasure.ts says why), reported on stderr.
import type { DaemonClient } from '../../client/daemonClient';
import { deviceMeasurement, MEASURE_TIMEOUT_MS } from '../../client/deviceMeasure';
import type { ProfilePrecision } from '../../io/deviceProfile';

/** Measures this device at the model's shapes (bench.layers), saying what it does on stderr. A spec that does not parse is not measured. */
export async function measureDevice(client: DaemonClient, rawSpec: unknown, batchSize: number, threads: number, precision?: ProfilePrecision): Promise<void> {
  const m = deviceMeasurement(rawSpec, batchSize, threads, precision);
  if (!m) return;
  const at = m.params.precision && m.params.precision !== 'auto' ? ` for ${m.params.precision} products` : '';
  process.stderr.write(`this device has no measured profile${at} yet: timing ${m.what}, once, so the plan is costed with this machine's numbers (--no-measure skips it)\n`);
  const t0 = Date.now();
  const r = await client.request('bench.layers', m.params, MEASURE_TIMEOUT_MS);
  process.stderr.write(`measured in ${((Date.now() - t0) / 1000).toFixed(1)} s; profile saved to ${r.profilePath}\n`);
}
