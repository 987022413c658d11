// The device profiles `bench.layers` measured on this machine (<home>/profiles/device.json at the
// engine's default precision, device-<precision>.json at another one asked for): the daemon plans
// jobs with the one at the job's precision and the language server plans the editor's hints with
// the one at the precision the settings train with, so both cost a model with the same numbers;
// without one, both use core's default prior and say so.
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

/** The products' input precision a profile was measured at ('auto': the engine's default on this device). */
export const PROFILE_PRECISIONS = ['auto', 'fp32', 'bf16', 'fp16'] as const;
export type ProfilePrecision = (typeof PROFILE_PRECISIONS)[number];

/**
 * Where the profile measured at `precision` is kept: PROFILE_FILE holds the one at the engine's
 * default precision on this device (what jobs run unless told otherwise), and a precision asked for
 * that is not the default has its own file beside it (an fp32 job on a CPU with bf16 instructions).
 */
export function profileFile(profilesDir: string, precision: Exclude<ProfilePrecision, 'auto'> | 'default'): string {
  return join(profilesDir, precision === 'default' ? PROFILE_FILE : `device-${precision}.json`);
}

function readProfile<P>(file: string, format: ProfileFormat<P>, log: (line: string) => void): P | undefined {
  if (!existsSync(file)) return undefined;
  try {
    if (statSync(file).size > MAX_PROFILE_BYTES) throw new Error(`larger than ${MAX_PROFILE_BYTES} bytes`);
    return format.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    log(`ignoring ${file}: ${(err as Error).message}`);
    return undefined;
  }
}

/**
 * The profile measured in `profilesDir` at `precision` (default 'auto'): the default precision's
 * file, when it was measured at that precision, else that precision's own; the default prior when
 * there is none or it is unreadable (logged).
 */
export function loadProfile<P extends { precision?: string }>(
  profilesDir: string,
  format: ProfileFormat<P>,
  log: (line: string) => void = () => undefined,
  precision: ProfilePrecision = 'auto',
): P {
  const main = readProfile(profileFile(profilesDir, 'default'), format, log);
  if (precision === 'auto' || main?.precision === precision) return main ?? format.fallback;
  return readProfile(profileFile(profilesDir, precision), format, log) ?? format.fallback;
}

/**
 * loadProfile, re-read only when a profile file changes (the language server asks on every
 * analysis): keyed by the files' modification times and sizes and the precision asked for.
 */
export class ProfileWatcher<P extends { precision?: string }> {
  private key = '';
  private profile: P;
  constructor(
    private readonly profilesDir: () => string,
    private readonly format: ProfileFormat<P>,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.profile = format.fallback;
  }

  current(precision: ProfilePrecision = 'auto'): P {
    const dir = this.profilesDir();
    const files = [profileFile(dir, 'default'), ...(precision === 'auto' ? [] : [profileFile(dir, precision)])];
    const key = [precision, ...files.map((f) => {
      try {
        const st = statSync(f);
        return `${f}:${st.mtimeMs}:${st.size}`;
      } catch {
        return `${f}:none`;
      }
    })].join('|');
    if (key !== this.key) {
      this.key = key;
      this.profile = loadProfile(dir, this.format, this.log, precision);
    }
    return this.profile;
  }
}
