// The device profile `bench.layers` measured on this machine (<home>/profiles/device.json): the
// daemon plans jobs with it and the language server plans the editor's hints with it, so both
// cost a model with the same numbers; without one, both use core's default prior and say so.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PROFILE, parseDeviceProfile, type DeviceProfile } from '../core/costModel';

export const PROFILE_FILE = 'device.json';
/** A profile is a few kB; a larger file is not one (and is not read whole). */
const MAX_PROFILE_BYTES = 1 << 20;

/** The measured profile in `profilesDir`, or the default prior when there is none or it is unreadable (logged). */
export function loadProfile(profilesDir: string, log: (line: string) => void = () => undefined): DeviceProfile {
  const file = join(profilesDir, PROFILE_FILE);
  if (!existsSync(file)) return DEFAULT_PROFILE;
  try {
    if (statSync(file).size > MAX_PROFILE_BYTES) throw new Error(`larger than ${MAX_PROFILE_BYTES} bytes`);
    return parseDeviceProfile(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    log(`ignoring ${file}: ${(err as Error).message}`);
    return DEFAULT_PROFILE;
  }
}

/**
 * loadProfile, re-read only when the file changes (the language server asks on every analysis):
 * keyed by the file's modification time and size.
 */
export class ProfileWatcher {
  private key = '';
  private profile: DeviceProfile = DEFAULT_PROFILE;
  constructor(
    private readonly profilesDir: () => string,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  current(): DeviceProfile {
    const dir = this.profilesDir();
    let key = `${dir}:none`;
    try {
      const st = statSync(join(dir, PROFILE_FILE));
      key = `${dir}:${st.mtimeMs}:${st.size}`;
    } catch {
      // no profile: the prior
    }
    if (key !== this.key) {
      this.key = key;
      this.profile = loadProfile(dir, this.log);
    }
    return this.profile;
  }
}
