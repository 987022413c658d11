// Runs the extension's @vscode/test-electron-style mocha suite (out/test/e2e/suite/index.js, which
// exports run()) INSIDE code-server's Node extension host: the workbench URL `payload` carries
// extensionDevelopmentPath + extensionTestsPath (what test-electron passes on the command line), and
// the workbench reports the runner's result through window.codeAutomationExit (the hook
// @vscode/test-web uses). Adapted from ../shared/vscode-e2e/run-ext-tests.mjs.
// Usage: node runSuite.mjs <baseUrl> <extensionPath> <testsIndexJs> <folder> <outDir>
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';

// workbench chatter that is not test output
const QUIET = [/connection token/, /Creating a socket/, /Service Worker/, /builtin extensions cache/, /ChatSessionStore/, /open-vsx\.org/];
const [base, extDev, extTests, folder, outDir] = process.argv.slice(2);
if (!base || !extDev || !extTests || !folder || !outDir) {
  console.error('usage: node runSuite.mjs <baseUrl> <extensionPath> <testsIndexJs> <folder> <outDir>');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const host = new URL(base).host;
const remote = (p) => `vscode-remote://${host}${path.resolve(p)}`;
const payload = [['extensionDevelopmentPath', remote(extDev)], ['extensionTestsPath', remote(extTests)]];
const url = `${base}/?folder=${encodeURIComponent(path.resolve(folder))}&payload=${encodeURIComponent(JSON.stringify(payload))}`;

const t0 = Date.now();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const consoleLog = fs.createWriteStream(path.join(outDir, 'browser-console.log'));
let resolveExit;
const exited = new Promise((r) => { resolveExit = r; });
await page.exposeFunction('codeAutomationExit', (code) => resolveExit(code));
page.on('console', async (m) => {
  consoleLog.write(`[${m.type()}] ${m.text()}\n`);
  // Extension-host console output (mocha's reporter) arrives as ['%c INFO', 'color: #33f', fmt, ...args].
  let vals;
  try { vals = await Promise.all(m.args().map((a) => a.jsonValue())); } catch { return; }
  if (typeof vals[0] === 'string' && vals[0].startsWith('%c') && vals.length >= 3) {
    const level = vals[0].slice(2).trim();
    const msg = util.format(...vals.slice(2));
    if (/^(INFO|ERR|WARN)/.test(level) && !QUIET.some((re) => re.test(msg))) console.log(`${level === 'INFO' ? '' : level + ' '}${msg}`);
  }
});
page.on('pageerror', (e) => consoleLog.write(`[pageerror] ${e.message}\n`));
console.log(`opening ${url}`);
await page.goto(url, { waitUntil: 'domcontentloaded' });
const timeoutMs = Number(process.env.TEST_TIMEOUT_MS || 300000);
const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), timeoutMs))]);
await page.screenshot({ path: path.join(outDir, 'suite.png') }).catch(() => {});
await browser.close();
consoleLog.end();
console.log(`extension-host suite exit code: ${code} after ${((Date.now() - t0) / 1000).toFixed(1)}s`);
process.exit(code === 0 ? 0 : 1);
