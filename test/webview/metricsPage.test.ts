/**
 * The live metrics page in headless Chromium: a reset + 100k steps in protocol-sized chunks end
 * up drawn (decimated) in six uPlot charts; progress, ETA and summary show; the buttons post the
 * right requests; a reload starts empty and asks for a replay; bad messages are reported.
 * The redraw time at 100k points is printed for the record, not asserted (timings belong in benchmarks).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { MAX_POINTS_PER_MESSAGE, type RunInfo, type StepPoint } from '../../protocol/webview';
import { ARTIFACTS, launch, openPage, skipReason } from './pageHarness';

const skip = skipReason('metrics');

const RUN: RunInfo = { id: 'job-1', title: 'mixer — dense vs Pixelfly', state: 'running', totalSteps: 200000, startedAt: 1764050000000 };

function steps(from: number, n: number): StepPoint[] {
  return Array.from({ length: n }, (_, k) => {
    const s = from + k;
    const decay = 2.3 * Math.exp(-s / 20000);
    return {
      step: s,
      pixelfly: { loss: decay + 0.05 + 0.02 * Math.sin(s / 50), stepMs: 4 + (s % 7) * 0.1, tokensPerSec: 16000 },
      dense: { loss: decay + 0.02 * Math.cos(s / 50), stepMs: 9 + (s % 5) * 0.1, tokensPerSec: 7100 },
      speedup: 2.2,
    };
  });
}

/** Pixels of the Pixelfly orange in a chart's canvas: > 0 means its line was drawn. */
async function orangePixels(page: import('playwright-core').Page, chartId: string): Promise<number> {
  return page.evaluate((id) => {
    const c = document.querySelector(`#${id} canvas`) as HTMLCanvasElement;
    const d = (c.getContext('2d') as CanvasRenderingContext2D).getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 0xc0 && d[i + 1] > 0x50 && d[i + 1] < 0x90 && d[i + 2] < 0x50) n++;
    return n;
  }, chartId);
}

describe('metrics page (headless Chromium)', { skip: skip ?? false }, () => {
  let browser: Browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });

  it('draws 100k steps in six charts, with progress, ETA and summary', async () => {
    const p = await openPage(browser, 'metrics', undefined, { width: 1400, height: 1100 });
    assert.deepEqual(await p.posted(), [{ type: 'ready' }]);
    await p.send({ type: 'metrics.reset', run: RUN, progress: { step: 0, totalSteps: 200000, etaS: null } });
    assert.equal(await p.page.locator('#title').innerText(), RUN.title);
    assert.equal(await p.page.locator('.chart').count(), 6);

    const total = 100000;
    for (let s = 0; s < total; s += MAX_POINTS_PER_MESSAGE) {
      await p.send({ type: 'metrics.append', runId: 'job-1', steps: steps(s, MAX_POINTS_PER_MESSAGE), evals: [] });
    }
    await p.send({
      type: 'metrics.append',
      runId: 'job-1',
      steps: [],
      evals: [
        { arm: 'pixelfly', step: 50000, metric: 'accuracy', value: 0.81 },
        { arm: 'dense', step: 50000, metric: 'accuracy', value: 0.83 },
      ],
    });
    await p.send({ type: 'metrics.status', run: RUN, progress: { step: 100000, totalSteps: 200000, etaS: 125 } });
    await p.page.waitForFunction((n) => document.getElementById('summary')?.dataset.points === String(n), total);

    const drawn = Number(await p.page.locator('#summary').getAttribute('data-drawn'));
    // 500 buckets, ≤ 1 + 2·4 points each (first, min and max of the four decimated columns)
    assert.ok(drawn >= 500 && drawn <= 9 * 500 + 1, `decimated to ${drawn} points`);
    const summary = await p.page.locator('#summary').innerText();
    assert.match(summary, /100000 points/);
    assert.match(summary, /running speedup 2\.20×/);
    assert.match(summary, /eval: dense accuracy 83\.0%, Pixelfly accuracy 81\.0%/);
    assert.match(await p.page.locator('#progress-text').innerText(), /step 100000\/200000 \(50%\) · ETA 2 min 5 s/);
    for (const id of ['chart-loss-step', 'chart-loss-time', 'chart-step-time', 'chart-speedup', 'chart-throughput']) {
      assert.ok((await orangePixels(p.page, id)) > 50, `Pixelfly line drawn in ${id}`);
    }
    // one more append redraws incrementally; its time is logged for the record
    await p.send({ type: 'metrics.append', runId: 'job-1', steps: steps(total, 100), evals: [] });
    await p.page.waitForFunction(() => document.getElementById('summary')?.dataset.points === '100100');
    console.log(`# metrics page redraw at 100,100 points: ${await p.page.locator('#summary').getAttribute('data-render-ms')} ms (informational)`);
    await p.page.screenshot({ path: join(ARTIFACTS, 'metrics-100k.png'), fullPage: true });

    // buttons
    await p.page.click('#export-csv');
    await p.page.click('#stop-run');
    const posted = await p.posted();
    assert.deepEqual(posted.slice(-2), [{ type: 'exportCsv', runId: 'job-1' }, { type: 'stopRun', runId: 'job-1' }]);

    // a finished run disables Stop
    await p.send({ type: 'metrics.status', run: { ...RUN, state: 'done' }, progress: { step: 200000, totalSteps: 200000, etaS: 0 } });
    assert.equal(await p.page.locator('#stop-run').isDisabled(), true);
    // appends for another run are ignored
    await p.send({ type: 'metrics.append', runId: 'other', steps: steps(0, 10), evals: [] });
    assert.equal(await p.page.locator('#summary').getAttribute('data-points'), '100100');
    assert.deepEqual(p.errors, [], `console errors (CSP?): ${p.errors.join(' | ')}`);

    // reload: the page keeps only the run id and asks the host to replay
    const q = await openPage(browser, 'metrics', await p.state());
    assert.deepEqual(await q.posted(), [{ type: 'ready' }]);
    assert.deepEqual(await q.state(), { runId: 'job-1' });
  });

  it('shows where a step goes: median time per part of the model, dense vs Pixelfly, as bars', async () => {
    const p = await openPage(browser, 'metrics');
    await p.send({ type: 'metrics.reset', run: RUN, progress: { step: 0, totalSteps: 200000, etaS: null } });
    assert.equal(await p.page.locator('#parts').isHidden(), true, 'no bars before any step reports its parts');
    const withParts = steps(0, 9).map((st, k) => ({
      ...st,
      pixelfly: { ...st.pixelfly, partsMs: { token_mix: 300, channel_mix: 400 + k } },
      dense: { ...st.dense!, partsMs: { token_mix: 310, channel_mix: 1200 } },
    }));
    await p.send({ type: 'metrics.append', runId: 'job-1', steps: withParts, evals: [] });
    await p.page.waitForSelector('#parts:not([hidden])');
    assert.deepEqual(await p.page.locator('.part-row').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.part)), ['token_mix', 'channel_mix']);
    const ms = (part: string, arm: string) => p.page.locator(`.part-row[data-part=${part}] .part-bar[data-arm=${arm}]`).getAttribute('data-ms');
    assert.equal(await ms('channel_mix', 'pixelfly'), '404.000', 'median of 400..408');
    assert.equal(await ms('channel_mix', 'dense'), '1200.000');
    const width = (part: string, arm: string) =>
      p.page.locator(`.part-row[data-part=${part}] .part-bar[data-arm=${arm}] .part-fill`).evaluate((e) => e.getBoundingClientRect().width);
    const [dense, pixelfly] = [await width('channel_mix', 'dense'), await width('channel_mix', 'pixelfly')];
    assert.ok(Math.abs(pixelfly / dense - 404 / 1200) < 0.02, `bar widths ${pixelfly} / ${dense} follow the times`);
    await p.page.screenshot({ path: join(ARTIFACTS, 'metrics-parts.png') });
    assert.deepEqual(p.errors, [], `console errors (CSP?): ${p.errors.join(' | ')}`);
  });

  it('names what the run trains, links its report, and for a stopped run says why and drops the ETA', async () => {
    const p = await openPage(browser, 'metrics');
    const details = {
      model: 'GPT',
      file: '/ws/nanogpt/model.py',
      runner: 'engine stand-in (gpt)',
      dataset: 'tiny.txt, 90,000 train / 10,000 test',
      params: { pixelfly: 4_000_000, dense: 12_000_000 },
      batchSize: 16,
      context: 256,
      estimatedMemoryBytes: 1.5e9,
      peakMemoryBytes: 1.25e9,
      report: false,
    };
    await p.send({ type: 'metrics.reset', run: { ...RUN, details }, progress: { step: 10, totalSteps: 100, etaS: 30 } });
    const field = (name: string) => p.page.locator(`#details [data-field=${name}]`).innerText();
    assert.equal(await field('model'), 'GPT · model.py');
    assert.equal(await p.page.locator('#details [data-field=model]').getAttribute('title'), '/ws/nanogpt/model.py');
    assert.equal(await field('runner'), 'engine stand-in (gpt)');
    assert.equal(await field('dataset'), 'tiny.txt, 90,000 train / 10,000 test');
    assert.equal(await field('params'), 'dense 12.00M · Pixelfly 4.00M parameters (33%)');
    assert.equal(await field('shape'), 'batch 16 × context 256');
    assert.equal(await field('memory'), 'memory estimated 1.50 GB, peak 1.25 GB');
    assert.equal(await p.page.locator('#open-report').isHidden(), true, 'no report before the run ends');
    assert.equal(await p.page.locator('#reason').isHidden(), true);
    assert.match(await p.page.locator('#progress-text').innerText(), /ETA 30 s/);

    // The run is interrupted; the host still had an ETA: the page shows the reason, and no ETA.
    const why = 'the daemon was stopped; resume continues from the last checkpoint';
    await p.send({ type: 'metrics.status', run: { ...RUN, state: 'interrupted', reason: why, details: { ...details, report: true } }, progress: { step: 10, totalSteps: 100, etaS: 30 } });
    assert.equal(await p.page.locator('#reason').innerText(), `Interrupted: ${why}`);
    assert.equal(await p.page.locator('#progress-text').innerText(), 'step 10/100 (10%)');
    assert.equal(await p.page.locator('#stop-run').isDisabled(), true);
    await p.page.click('#open-report');
    assert.deepEqual((await p.posted()).slice(-1), [{ type: 'openReport', runId: 'job-1' }]);

    // A failed run: its error is the reason, shown once.
    const error = 'stopped: the machine\'s free memory fell to 300 MB';
    await p.send({ type: 'metrics.status', run: { ...RUN, state: 'failed', error, reason: error, details }, progress: { step: 10, totalSteps: 100, etaS: null } });
    assert.equal(await p.page.locator('#reason').innerText(), `Failed: ${error}`);
    assert.equal(await p.page.locator('#error').isHidden(), true);
    await p.page.screenshot({ path: join(ARTIFACTS, 'metrics-stopped.png') });
    // The user's own PyTorch image model: the runtime with the runner, the images with the batch.
    const vit = { ...details, model: 'ViT', file: '/ws/vit.py', runner: 'your PyTorch model (PyTorch 1.13.1, Python 3.11.2)', context: undefined, image: { channels: 3, height: 32, width: 32 } };
    await p.send({ type: 'metrics.reset', run: { ...RUN, details: vit }, progress: { step: 0, totalSteps: 100, etaS: null } });
    assert.equal(await field('model'), 'ViT · vit.py');
    assert.equal(await field('runner'), 'your PyTorch model (PyTorch 1.13.1, Python 3.11.2)');
    assert.equal(await field('shape'), 'batch 16 × 3×32×32 images');
    // A run recorded before the daemon described runs: no details line.
    await p.send({ type: 'metrics.reset', run: RUN, progress: { step: 0, totalSteps: 100, etaS: null } });
    assert.equal(await p.page.locator('#details').isHidden(), true);
    assert.deepEqual(p.errors, [], `console errors (CSP?): ${p.errors.join(' | ')}`);
  });

  it('reports a message that does not match the protocol, naming the field', async () => {
    const p = await openPage(browser, 'metrics');
    await p.send({ type: 'metrics.append', runId: 'job-1', steps: [{ step: 1, pixelfly: { loss: 'NaN', stepMs: 1 } }], evals: [] });
    await p.page.waitForSelector('#error:not([hidden])');
    assert.match(await p.page.locator('#error').innerText(), /steps\.0\.pixelfly\.loss/);
  });
});
