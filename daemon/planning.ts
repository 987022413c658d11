// Plans for the daemon's clients, through the core planner, costed with this device's measured
// profile when `bench.layers` has saved one (otherwise the core's default prior).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PROFILE, parseDeviceProfile, type DeviceProfile } from '../core/costModel';
import { PixelflyConfigError } from '../core/errors';
import { parseInventory, type Inventory } from '../core/inventory';
import { planModel, type PlanTarget } from '../core/planner';
import { describeZodError, PlanSchema } from '../protocol/daemon';
import type { Plan } from './jobs/trainer';
import { RejectedError } from './jobs/trainer';

export const PROFILE_FILE = 'device.json';

/** The measured profile in <home>/profiles/device.json, or the default prior when there is none or it is unreadable. */
export function loadProfile(profilesDir: string, log: (line: string) => void = () => undefined): DeviceProfile {
  const file = join(profilesDir, PROFILE_FILE);
  if (!existsSync(file)) return DEFAULT_PROFILE;
  try {
    return parseDeviceProfile(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    log(`ignoring ${file}: ${(err as Error).message}`);
    return DEFAULT_PROFILE;
  }
}

/**
 * Runs the planner; configuration errors become REJECTED with the core's message (which names the
 * parameter). A client's inventory is checked first; one derived from a validated spec (`fromSpec`)
 * is not: its widths (3·dim, channels·patch²) may exceed what a client may send, and the job's
 * admission, not the planner, says what does not fit, naming the spec's fields.
 */
export function plan(inventory: unknown, target: PlanTarget, profile: DeviceProfile, fromSpec = false): Plan {
  let planned;
  try {
    planned = planModel(fromSpec ? (inventory as Inventory) : parseInventory(inventory), target, { profile });
  } catch (err) {
    if (err instanceof PixelflyConfigError || err instanceof Error) throw new RejectedError(err.message);
    throw err;
  }
  // Parsing through the protocol's schema gives the wire type (and checks the planner keeps its promises).
  const checked = PlanSchema.safeParse(planned);
  if (!checked.success) throw new RejectedError(describeZodError(checked.error, 'plan'));
  return checked.data;
}
