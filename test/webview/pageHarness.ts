/**
 * Loads a webview page bundle (dist/webview/<page>.js) in headless Chromium with the exact HTML
 * shell and CSP the extension serves, plus a stand-in for VS Code's `acquireVsCodeApi` that
 * records what the page posts and keeps its saved state. Messages from the "host" are delivered
 * with window.postMessage, as VS Code does.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { pageHtml } from '../../extension/panels/webviewHtml';

export const ROOT = resolve(__dirname, '..', '..', '..');
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'webview');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or null when they can. */
export function skipReason(page: 'mask' | 'metrics'): string | null {
  if (!existsSync(CHROMIUM)) return `SKIPPED: ${CHROMIUM} not found — install Debian's chromium (npm test's set-up does it as root) to run the webview page tests`;
  if (!existsSync(join(ROOT, 'dist', 'webview', `${page}.js`))) return `SKIPPED: dist/webview/${page}.js missing — run 'node esbuild.config.mjs' (npm test does)`;
  return null;
}

export async function launch(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking'],
  });
}

export interface LoadedPage {
  page: Page;
  /** Console errors and page errors (CSP violations show up here). */
  errors: string[];
  posted(): Promise<unknown[]>;
  send(message: unknown): Promise<void>;
  state(): Promise<unknown>;
}

/** Opens `page` with optional saved state (as VS Code would restore it). */
export async function openPage(browser: Browser, name: 'mask' | 'metrics', savedState?: unknown, viewport = { width: 1280, height: 900 }): Promise<LoadedPage> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const dist = join(ROOT, 'dist', 'webview');
  const url = (f: string) => pathToFileURL(join(dist, f)).toString();
  const html = pageHtml({
    title: name,
    cspSource: 'file:',
    scriptUri: url(`${name}.js`),
    styleUris: name === 'metrics' ? [url('uPlot.min.css'), url('pages.css')] : [url('pages.css')],
  });
  const file = join(ARTIFACTS, `${name}.html`);
  writeFileSync(file, html);
  const page = await browser.newPage({ viewport });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.addInitScript((saved) => {
    const w = window as unknown as { __posted: unknown[]; __state: unknown; acquireVsCodeApi: () => unknown };
    w.__posted = [];
    w.__state = saved ?? undefined;
    let acquired = false;
    w.acquireVsCodeApi = () => {
      if (acquired) throw new Error('acquireVsCodeApi called twice');
      acquired = true;
      return {
        postMessage: (m: unknown) => w.__posted.push(JSON.parse(JSON.stringify(m))),
        getState: () => w.__state,
        setState: (s: unknown) => {
          w.__state = JSON.parse(JSON.stringify(s));
        },
      };
    };
  }, savedState ?? null);
  await page.goto(pathToFileURL(file).toString());
  await page.waitForFunction(() => (window as unknown as { __posted: unknown[] }).__posted.length > 0);
  return {
    page,
    errors,
    posted: () => page.evaluate(() => (window as unknown as { __posted: unknown[] }).__posted),
    // Resolves after the page's own handler ran (it registered its listener first). Sent as a
    // JSON string: Playwright's structured argument serialisation is slow for 20k-point messages.
    send: (m) =>
      page.evaluate(
        (json) =>
          new Promise<void>((res) => {
            window.addEventListener('message', () => setTimeout(res, 0), { once: true });
            window.postMessage(JSON.parse(json), '*');
          }),
        JSON.stringify(m),
      ),
    state: () => page.evaluate(() => (window as unknown as { __state: unknown }).__state),
  };
}
