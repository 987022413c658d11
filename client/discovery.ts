// Finding the running daemon (discovery file + token) and starting one when none is running.
// Shared by the CLI and the VS Code extension (no VS Code imports).
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { DaemonClient, daemonUrl } from './daemonClient';
import { ensureHome, homePaths, processAlive, readDiscovery, readToken } from '../io/home';

export interface DaemonEndpoint {
  port: number;
  token: string;
  pid: number;
}

/** Connection details of the running daemon, or undefined when none is running. */
export function discover(home: string): DaemonEndpoint | undefined {
  const d = readDiscovery(home);
  if (!d || !processAlive(d.pid)) return undefined;
  try {
    return { port: d.port, pid: d.pid, token: readToken(home) };
  } catch {
    return undefined;
  }
}

/**
 * Node flags the daemon runs with: a small young generation (2 MB semi-spaces instead of up to
 * 16 MB), so that its resident memory follows what it holds rather than how much short-lived
 * garbage it has made (answering requests, streaming events); collections stay a millisecond.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=2'];
/** The flags for this executable: VS Code's Electron, run as Node, is not handed V8 flags. */
const nodeFlags = () => (process.versions.electron === undefined ? DAEMON_NODE_FLAGS : []);

/**
 * Starts `pixelfly daemon foreground` detached (its output goes to <home>/daemon.log) and waits
 * until it answers. `cli` is the pixelfly entry script (this process's own by default).
 */
export async function spawnDaemon(home: string, extraArgs: string[] = [], cli = process.argv[1], timeoutMs = 15000): Promise<DaemonEndpoint> {
  ensureHome(home);
  const logFd = openSync(homePaths(home).log, 'a', 0o600);
  const child = spawn(process.execPath, [...nodeFlags(), cli, 'daemon', 'foreground', ...extraArgs], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    // Inside VS Code's extension host process.execPath is Electron: this makes it behave as Node.
    env: { ...process.env, PIXELFLY_HOME: home, ELECTRON_RUN_AS_NODE: '1' },
  });
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = discover(home);
    if (found) {
      try {
        const c = await DaemonClient.connect(daemonUrl(found.port), found.token, 2000);
        c.close();
        return found;
      } catch {
        // Not answering yet.
      }
    }
    if (exited !== null && !found) throw new Error(`the daemon exited with status ${exited}; see ${homePaths(home).log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the daemon did not start within ${timeoutMs / 1000} s; see ${homePaths(home).log}`);
}

/** The running daemon, started first when there is none. */
export async function ensureDaemon(home: string, extraArgs: string[] = []): Promise<DaemonEndpoint & { started: boolean }> {
  const found = discover(home);
  if (found) return { ...found, started: false };
  return { ...(await spawnDaemon(home, extraArgs)), started: true };
}

/** A connected client of the daemon found by discover()/ensureDaemon(). */
export function connectDaemon(found: DaemonEndpoint): Promise<DaemonClient> {
  return DaemonClient.connect(daemonUrl(found.port), found.token);
}
