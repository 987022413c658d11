// The user's Pixelfly folder (~/.pixelfly, or $PIXELFLY_HOME) and the files through which clients
// find the daemon: daemon.json (port, pid; readable by all of this user's tools) and token (0600).
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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
  reserve: join(home, 'space-reserve'),
});

export function ensureHome(home = pixelflyHome()): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
}

/**
 * Writes via a temporary file, fsync and rename: a reader never sees half a file, and a crash,
 * even of the machine, leaves the old content or the new one.
 */
export function writeFileAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w', mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    chmodSync(tmp, mode);
    renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Space the daemon keeps for the files it needs to start (lock, token, discovery) when the disk
 * has filled up; runs do not touch it (a run state that cannot be written stays in memory, and a
 * damaged or stale one is rebuilt from the run folder).
 */
const RESERVE_BYTES = 1024 * 1024;

/** Sets the reserve aside while there is room (a full disk just goes without). */
export function ensureReserve(home = pixelflyHome()): void {
  const file = homePaths(home).reserve;
  if (existsSync(file)) return;
  try {
    writeFileSync(file, Buffer.alloc(RESERVE_BYTES), { mode: 0o600 });
  } catch {
    rmSync(file, { force: true });
  }
}

/** Runs a write; when the disk is full, gives the reserve back and tries once more, so the daemon can still start. */
export function withSpace<T>(home: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    const file = homePaths(home).reserve;
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || !existsSync(file)) throw err;
    rmSync(file, { force: true });
    return write();
  }
}

/** A fresh random token, readable only by this user; a new one per daemon start. */
export function createToken(home = pixelflyHome()): string {
  const token = randomBytes(32).toString('base64url');
  withSpace(home, () => writeFileAtomic(homePaths(home).token, token + '\n', 0o600));
  return token;
}

export function readToken(home = pixelflyHome()): string {
  return readFileSync(homePaths(home).token, 'utf8').trim();
}

export function writeDiscovery(d: Discovery, home = pixelflyHome()): void {
  withSpace(home, () => writeFileAtomic(homePaths(home).discovery, JSON.stringify(d, null, 2) + '\n', 0o600));
}

/**
 * The discovery file: its content; 'gone' when the file or its folder no longer exists or it is no
 * discovery file (a stale or foreign file is not an error); 'unreadable' when it cannot be read just
 * now (EMFILE, ENFILE, EIO, ...), which says nothing about what it holds.
 */
function readDiscoveryFile(home: string): Discovery | 'gone' | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(homePaths(home).discovery, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' ? 'gone' : 'unreadable';
  }
  try {
    const d = JSON.parse(text) as Partial<Discovery>;
    if (typeof d.port !== 'number' || typeof d.pid !== 'number') return 'gone';
    return { host: '127.0.0.1', startedAt: '', version: '', ...d } as Discovery;
  } catch {
    return 'gone';
  }
}

/** The discovery file's content, or undefined when it is gone or cannot be read. */
export function readDiscovery(home = pixelflyHome()): Discovery | undefined {
  const d = readDiscoveryFile(home);
  return typeof d === 'object' ? d : undefined;
}

/** Which daemon the discovery file names: its pid, or why there is none (see readDiscoveryFile). */
export function discoveryOwner(home = pixelflyHome()): number | 'gone' | 'unreadable' {
  const d = readDiscoveryFile(home);
  return typeof d === 'object' ? d.pid : d;
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
