// Bundles: one per process (CLI/daemon, extension host, language server) and one per webview page.
// `node esbuild.config.mjs [--watch] [--minify]`
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

const watch = process.argv.includes('--watch');
const minify = process.argv.includes('--minify');

// web-tree-sitter's ESM build finds its wasm through import.meta.url, which a CJS bundle lacks: use its CJS build.
const node = {
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['vscode'],
  alias: { 'web-tree-sitter': './node_modules/web-tree-sitter/web-tree-sitter.cjs' },
};
const browser = { platform: 'browser', target: 'es2022', format: 'iife' };

/** @type {Array<{in: string, out: string, kind: object, banner?: string}>} */
const bundles = [
  { in: 'cli/main.ts', out: 'dist/pixelfly.js', kind: node, banner: '#!/usr/bin/env node' },
  // the daemon's job and task processes (daemon/workers.ts finds it beside pixelfly.js)
  { in: 'daemon/worker.ts', out: 'dist/worker.js', kind: node },
  { in: 'extension/main.ts', out: 'dist/extension.js', kind: node },
  { in: 'server/main.ts', out: 'dist/server.js', kind: node },
  { in: 'webview/mask/main.ts', out: 'dist/webview/mask.js', kind: browser },
  { in: 'webview/metrics/main.ts', out: 'dist/webview/metrics.js', kind: browser },
];

const contexts = await Promise.all(
  bundles.map((b) =>
    esbuild.context({
      entryPoints: [b.in],
      outfile: b.out,
      bundle: true,
      sourcemap: true,
      minify,
      logLevel: 'warning',
      banner: b.banner ? { js: b.banner } : undefined,
      ...b.kind,
    }),
  ),
);

// Stylesheets the webview pages link (served from dist/webview, the panels' only local resource root).
mkdirSync('dist/webview', { recursive: true });
copyFileSync('webview/pages.css', 'dist/webview/pages.css');
copyFileSync('node_modules/uplot/dist/uPlot.min.css', 'dist/webview/uPlot.min.css');
// The language server (and `pixelfly analyze`) load the tree-sitter runtime and Python grammar
// from beside the bundle: nothing is fetched.
copyFileSync('node_modules/web-tree-sitter/web-tree-sitter.wasm', 'dist/web-tree-sitter.wasm');
copyFileSync('node_modules/tree-sitter-python/tree-sitter-python.wasm', 'dist/tree-sitter-python.wasm');

if (watch) {
  await Promise.all(contexts.map((c) => c.watch()));
} else {
  await Promise.all(contexts.map((c) => c.rebuild()));
  await Promise.all(contexts.map((c) => c.dispose()));
}
