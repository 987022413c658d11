// The user's Pixelfly folder (~/.pixelfly, or $PIXELFLY_HOME) and the files through which clients
// find the daemon: daemon.json (port, pid; readable by all of this user's tools) and token (0600).
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface Discovery {
  port: number;
  pid: number;
  host: string;
  startedAt: string;
  version: string;
}

export function pixelflyHome(): string {
  const override = process.env.PIXELFLY_HOME;
  return override && override.length > 0 ? override : join(homedir(), '.pixelfly');
}

export const homePaths = (home = pixelflyHome()) => ({
  home,
  discovery: join(home, 'daemon.json'),
  token: join(home, 'token'),
  lock: join(home, 'daemon.lock'),
  log: join(home, 'daemon.log'),
  runs: join(home, 'runs'),
  profiles: join(home, 'profiles'),
});

export function ensureHome(home = pixelflyHome()): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
}

/** Writes via a temporary file and rename, so a reader never sees half a file. */
export function writeFileAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

/** A fresh random token, readable only by this user; a new one per daemon start. */
export function createToken(home = pixelflyHome()): string {
  const token = randomBytes(32).toString('base64url');
  writeFileAtomic(homePaths(home).token, token + '\n', 0o600);
  return token;
}

export function readToken(home = pixelflyHome()): string {
  return readFileSync(homePaths(home).token, 'utf8').trim();
}

export function writeDiscovery(d: Discovery, home = pixelflyHome()): void {
  writeFileAtomic(homePaths(home).discovery, JSON.stringify(d, null, 2) + '\n', 0o600);
}

/** The discovery file's content, or undefined when absent or unreadable (a stale or foreign file is not an error). */
export function readDiscovery(home = pixelflyHome()): Discovery | undefined {
  try {
    const d = JSON.parse(readFileSync(homePaths(home).discovery, 'utf8')) as Partial<Discovery>;
    if (typeof d.port !== 'number' || typeof d.pid !== 'number') return undefined;
    return { host: '127.0.0.1', startedAt: '', version: '', ...d } as Discovery;
  } catch {
    return undefined;
  }
}

export function removeDiscovery(pid: number, home = pixelflyHome()): void {
  // Only the daemon that wrote the file removes it: a newer daemon may have replaced it.
  if (readDiscovery(home)?.pid === pid) rmSync(homePaths(home).discovery, { force: true });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
