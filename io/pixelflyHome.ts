// The user's Pixelfly folder (~/.pixelfly, or $PIXELFLY_HOME) and what lives in it: read by the
// daemon (which owns it), the CLI and client (which find the daemon there), and the language
// server (which plans with the device profile the daemon measured, and shows past runs' speedups).
import { homedir } from 'node:os';
import { join } from 'node:path';

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
