// Plans for the daemon's clients, through the core planner, costed with this device's measured
// profile when `bench.layers` has saved one (otherwise the core's default prior).
import { DEVICE_PROFILE_FORMAT, type DeviceProfile } from '../core/costModel';
import { loadProfile as readProfile, type ProfilePrecision } from '../io/deviceProfile';
import { PixelflyConfigError } from '../core/errors';
import { parseInventory, type Inventory } from '../core/inventory';
import { planModel, type PlanTarget } from '../core/planner';
import { describeZodError, PlanSchema } from '../protocol/daemon';
import type { Plan } from './jobs/trainer';
import { RejectedError } from './jobs/trainer';

/** This machine's device profile in `profilesDir` measured at `precision`, or core's default prior (an unreadable one is logged). */
export function loadProfile(profilesDir: string, log?: (line: string) => void, precision: ProfilePrecision = 'auto'): DeviceProfile {
  return readProfile(profilesDir, DEVICE_PROFILE_FORMAT, log, precision);
}

/**
 * Runs the planner; configuration errors become REJECTED with the core's message (which names the
 * parameter). A client's inventory is checked first; one derived from a validated spec (`fromSpec`)
 * is not: its widths (3·dim, channels·patch²) may exceed what a client may send, and the job's
 * admission, not the planner, says what does not fit, naming the spec's fields.
 */
export function plan(inventory: unknown, target: PlanTarget, profile: DeviceProfile, fromSpec = false, batchSize?: number): Plan {
  let planned;
  try {
    planned = planModel(fromSpec ? (inventory as Inventory) : parseInventory(inventory), target, { profile, batchSize });
  } catch (err) {
    if (err instanceof PixelflyConfigError || err instanceof Error) throw new RejectedError(err.message);
    throw err;
  }
  // Parsing through the protocol's schema gives the wire type (and checks the planner keeps its promises).
  const checked = PlanSchema.safeParse(planned);
  if (!checked.success) throw new RejectedError(describeZodError(checked.error, 'plan'));
  return checked.data;
}
