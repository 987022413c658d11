// The extension-host suite under @vscode/test-electron, in a downloaded desktop VS Code 1.100.x.
// Needs update.code.visualstudio.com (not reachable on the offline CI machines, where
// `npm run test:e2e` runs the same suite inside code-server instead). Usage: node test/e2e/electron.mjs
import { runTests } from '@vscode/test-electron';
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'pixelfly-electron-'));
cpSync(join(root, 'test', 'e2e', 'workspace'), join(scratch, 'ws'), { recursive: true });
try {
  await runTests({
    version: process.env.VSCODE_VERSION ?? '1.100.3',
    extensionDevelopmentPath: root,
    extensionTestsPath: join(root, 'out', 'test', 'e2e', 'suite', 'index.js'),
    launchArgs: [join(scratch, 'ws'), '--disable-extensions', '--disable-workspace-trust'],
    extensionTestsEnv: { PIXELFLY_HOME: join(scratch, 'home') },
  });
} catch (e) {
  console.error(`extension-host suite failed: ${e?.message ?? e}`);
  process.exit(1);
}
