// Bundles: one per process (CLI/daemon, extension host, language server) and one per webview page.
// `node esbuild.config.mjs [--watch] [--minify]`
import * as esbuild from 'esbuild';

const watch = process.argv.includes('--watch');
const minify = process.argv.includes('--minify');

const node = { platform: 'node', target: 'node20', format: 'cjs', external: ['vscode'] };
const browser = { platform: 'browser', target: 'es2022', format: 'iife' };

/** @type {Array<{in: string, out: string, kind: object, banner?: string}>} */
const bundles = [
  { in: 'daemon/cli.ts', out: 'dist/pixelfly.js', kind: node, banner: '#!/usr/bin/env node' },
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

if (watch) {
  await Promise.all(contexts.map((c) => c.watch()));
} else {
  await Promise.all(contexts.map((c) => c.rebuild()));
  await Promise.all(contexts.map((c) => c.dispose()));
}
