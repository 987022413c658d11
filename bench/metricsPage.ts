// `npm run bench:metrics-page -- [--out FILE]`: is the live metrics page smooth with long runs?
// Loads the real page bundle in headless Chromium (the harness of test/webview), fills it with N
// steps of a dense-vs-Pixelfly run, then times the redraw after each of 15 incremental appends of
// 100 steps (all six uPlot charts, decimation included; the page measures it itself, uPlot's
// drawing microtask included). Prints a table and writes JSON rows (default
// bench-results/metrics-page.json): N, median and max redraw ms, and the median as a ratio to the
// 1,000-step baseline measured in the same run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MAX_POINTS_PER_MESSAGE, type StepPoint } from '../protocol/webview';
import { launch, openPage, ROOT, skipReason } from '../test/webview/pageHarness';
import { median } from '../core/stats';

function steps(from: number, n: number): StepPoint[] {
  return Array.from({ length: n }, (_, k) => {
    const s = from + k;
    return {
      step: s,
      pixelfly: { loss: 2 * Math.exp(-s / 5e4) + 0.02 * Math.sin(s), stepMs: 4 + (s % 7) * 0.1, tokensPerSec: 16000 },
      dense: { loss: 2 * Math.exp(-s / 5e4) + 0.02 * Math.cos(s), stepMs: 9 + (s % 5) * 0.1, tokensPerSec: 7000 },
      speedup: 2.2,
    };
  });
}


async function main(): Promise<void> {
  const why = skipReason('metrics');
  if (why) throw new Error(why);
  const outIndex = process.argv.indexOf('--out');
  const out = outIndex > 0 ? process.argv[outIndex + 1] : join(ROOT, 'bench-results', 'metrics-page.json');
  const browser = await launch();
  const rows: { steps: number; median_redraw_ms: number; max_redraw_ms: number; drawn_points: number; ratio_to_1k: number; repeats: number }[] = [];
  try {
    for (const n of [1000, 10000, 100000, 300000]) {
      const p = await openPage(browser, 'metrics', undefined, { width: 1400, height: 1100 });
      await p.send({ type: 'metrics.reset', run: { id: 'b', title: 'bench', state: 'running', totalSteps: n * 2, startedAt: 0 }, progress: { step: 0, totalSteps: n * 2, etaS: null } });
      for (let s = 0; s < n; s += MAX_POINTS_PER_MESSAGE) {
        await p.send({ type: 'metrics.append', runId: 'b', steps: steps(s, Math.min(MAX_POINTS_PER_MESSAGE, n - s)), evals: [] });
      }
      const times: number[] = [];
      let drawn = 0;
      for (let r = 0, at = n; r < 15; r++, at += 100) {
        await p.send({ type: 'metrics.append', runId: 'b', steps: steps(at, 100), evals: [] });
        await p.page.waitForFunction((want) => document.getElementById('summary')?.dataset.points === String(want), at + 100);
        await p.page.evaluate(() => new Promise((res) => setTimeout(res, 0)));
        times.push(Number(await p.page.locator('#summary').getAttribute('data-render-ms')));
        drawn = Number(await p.page.locator('#summary').getAttribute('data-drawn'));
      }
      rows.push({ steps: n, median_redraw_ms: +median(times).toFixed(2), max_redraw_ms: +Math.max(...times).toFixed(2), drawn_points: drawn, ratio_to_1k: 0, repeats: times.length });
      await p.page.close();
    }
  } finally {
    await browser.close();
  }
  for (const r of rows) r.ratio_to_1k = +(r.median_redraw_ms / rows[0].median_redraw_ms).toFixed(2);
  console.log('steps    median redraw ms   max ms   drawn points   ratio to 1k');
  for (const r of rows) {
    console.log(`${String(r.steps).padStart(7)}  ${r.median_redraw_ms.toFixed(2).padStart(16)}  ${r.max_redraw_ms.toFixed(2).padStart(7)}  ${String(r.drawn_points).padStart(13)}  ${r.ratio_to_1k.toFixed(2).padStart(12)}`);
  }
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(rows, null, 2) + '\n');
  console.log(`wrote ${out}`);
}

main().catch((e: unknown) => {
  console.error(`bench:metrics-page: ${(e as Error).message}`);
  process.exit(1);
});
