#!/usr/bin/env node
// `npm run demo`: the main job on built-in defaults. Sets everything up, then trains the example
// Mixer dense vs Pixelfly on the local daemon (`pixelfly train`, starting the daemon if needed).
// Extra arguments go to `pixelfly train`, e.g. `npm run demo -- --max-steps 50`.
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const setup = spawnSync(process.execPath, [join(root, 'scripts', 'setup.mjs')], { stdio: 'inherit' });
if (setup.status !== 0) process.exit(setup.status ?? 1);
const train = spawnSync(process.execPath, [join(root, 'dist', 'pixelfly.js'), 'train', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(train.status ?? 1);
