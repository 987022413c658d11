/**
 * Entry of the extension-host integration suite, in the shape @vscode/test-electron expects
 * (`extensionTestsPath` → a module exporting `run()`): run by test/e2e/electron.mjs in a desktop
 * VS Code where one can be downloaded, and by test/e2e/runSuite.mjs inside code-server here.
 */
import { join } from 'node:path';
import Mocha from 'mocha';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'tdd', color: false, timeout: 180000 });
  mocha.addFile(join(__dirname, 'extension.suite.js'));
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures > 0 ? reject(new Error(`${failures} extension-host test(s) failed`)) : resolve()));
  });
}
