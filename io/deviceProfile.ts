// The device profile `bench.layers` measured on this machine (<home>/profiles/device.json): the
// daemon plans jobs with it and the language server plans the editor's hints with it, so both
// cost a model with the same numbers; without one, both use core's default prior and say so.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * How a profile file's JSON becomes a profile, and what stands in without one: core's
 * DEVICE_PROFILE_FORMAT (io reads the file, core owns the format and the prior).
 */
export interface ProfileFormat<P> {
  parse(raw: unknown): P;
  fallback: P;
}

export const PROFILE_FILE = 'device.json';
/** A profile is a few kB; a larger file is not one (and is not read whole). */
const MAX_PROFILE_BYTES = 1 << 20;

/** The measured profile in `profilesDir`, or the default prior when there is none or it is unreadable (logged). */
export function loadProfile<P>(profilesDir: string, format: ProfileFormat<P>, log: (line: string) => void = () => undefined): P {
  const file = join(profilesDir, PROFILE_FILE);
  if (!existsSync(file)) return format.fallback;
  try {
    if (statSync(file).size > MAX_PROFILE_BYTES) throw new Error(`larger than ${MAX_PROFILE_BYTES} bytes`);
    return format.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    log(`ignoring ${file}: ${(err as Error).message}`);
    return format.fallback;
  }
}

/**
 * loadProfile, re-read only when the file changes (the language server asks on every analysis):
 * keyed by the file's modification time and size.
 */
export class ProfileWatcher<P> {
  private key = '';
  private profile: P;
  constructor(
    private readonly profilesDir: () => string,
    private readonly format: ProfileFormat<P>,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.profile = format.fallback;
  }

  current(): P {
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
      this.profile = loadProfile(dir, this.format, this.log);
    }
    return this.profile;
  }
}
