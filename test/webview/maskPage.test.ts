/**
 * The mask preview page in headless Chromium: the canvas shows exactly core's block mask (checked
 * pixel by pixel at every block's centre), controls redraw it, bad values are reported by name,
 * hover names the block, "Apply to code" posts the edited config, and saved state restores the page.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { flatBlockButterflyLayout, layoutRows } from '../../core/layout';
import type { LayerConfig, ModelView } from '../../protocol/webview';
import { ARTIFACTS, launch, openPage, skipReason } from './pageHarness';

const skip = skipReason('mask');

const MODEL: ModelView = {
  name: 'TinyViT',
  uri: 'file:///tmp/tiny_vit.py',
  layers: [
    {
      name: 'blocks.*.attn.qkv', role: 'attn_qkv', in: 256, out: 768, count: 4, rowsPerSample: 65, sparsify: true,
      config: { block: 32, butterflySize: 8, nFactors: 2, rank: 8, globalSize: 0, shuffle: false }, estimatedSpeedup: 1.8, reason: 'large projection', line: 12,
    },
    {
      name: 'blocks.*.mlp.fc1', role: 'mlp_fc1', in: 256, out: 1024, count: 4, rowsPerSample: 65, sparsify: true,
      config: { block: 16, butterflySize: 16, nFactors: 3, rank: 16, globalSize: 0, shuffle: false }, estimatedSpeedup: 2.1, reason: 'large projection', line: 20,
    },
    {
      name: 'head', role: 'head', in: 256, out: 10, count: 1, rowsPerSample: 1, sparsify: false,
      config: { block: 32, butterflySize: 4, nFactors: 2, rank: 0, globalSize: 0, shuffle: false }, estimatedSpeedup: null, reason: 'heads stay dense', line: 30,
    },
  ],
};

/** Reads the canvas back: '1' where the block's centre pixel has the kept colour. */
async function canvasRows(page: import('playwright-core').Page): Promise<string[]> {
  return page.evaluate(() => {
    const c = document.getElementById('mask') as HTMLCanvasElement;
    const rows = Number(c.dataset.blockRows);
    const cols = Number(c.dataset.blockCols);
    const cell = Number(c.dataset.cell);
    const img = (c.getContext('2d') as CanvasRenderingContext2D).getImageData(0, 0, c.width, c.height).data;
    const out: string[] = [];
    for (let r = 0; r < rows; r++) {
      let s = '';
      for (let k = 0; k < cols; k++) {
        const x = Math.floor(k * cell + (cell - 1) / 2);
        const y = Math.floor(r * cell + (cell - 1) / 2);
        const i = (y * c.width + x) * 4;
        s += img[i] > 0xa0 && img[i + 1] < 0x90 ? '1' : '0'; // KEPT #e06c1f vs EMPTY #2b2b2b
      }
      out.push(s);
    }
    return out;
  });
}

function expectedRows(out: number, inF: number, cfg: LayerConfig): string[] {
  return layoutRows(flatBlockButterflyLayout(out, inF, cfg));
}

describe('mask preview page (headless Chromium)', { skip: skip ?? false }, () => {
  let browser: Browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });

  it('draws every layer exactly as core lays it out; controls redraw it; errors name the parameter', async () => {
    const p = await openPage(browser, 'mask');
    assert.deepEqual(await p.posted(), [{ type: 'ready' }]);
    await p.send({ type: 'mask.model', model: MODEL, focus: 'blocks.*.attn.qkv' });
    await p.page.waitForSelector('#layers tbody tr');
    assert.equal(await p.page.locator('#layers tbody tr').count(), 3);
    assert.match(await p.page.locator('#totals').innerText(), /3 layers/);

    const qkv = MODEL.layers[0];
    assert.deepEqual(await canvasRows(p.page), expectedRows(768, 256, qkv.config));
    const dims = await p.page.evaluate(() => {
      const c = document.getElementById('mask') as HTMLCanvasElement;
      return { w: c.width, h: c.height, cell: Number(c.dataset.cell) };
    });
    assert.equal(dims.w, (256 / 32) * dims.cell);
    assert.equal(dims.h, (768 / 32) * dims.cell);
    assert.match(await p.page.locator('#layer-detail').innerText(), /low-rank share: \d+\.\d% of FLOPs/);
    await p.page.screenshot({ path: join(ARTIFACTS, 'mask-qkv.png') });

    // select another layer from the list
    await p.page.locator('#layers tbody tr[data-layer="blocks.*.mlp.fc1"]').click();
    assert.deepEqual(await canvasRows(p.page), expectedRows(1024, 256, MODEL.layers[1].config));

    // edit butterfly size and shuffle: redrawn at once with core's new layout
    await p.page.fill('#ctl-butterflySize', '8');
    await p.page.check('#ctl-shuffle');
    const edited = { ...MODEL.layers[1].config, butterflySize: 8, shuffle: true };
    assert.deepEqual(await canvasRows(p.page), expectedRows(1024, 256, edited));
    assert.match(await p.page.locator('tr[data-layer="blocks.*.mlp.fc1"]').innerText(), /edited/);

    // an impossible value: core's message, naming the parameter, and the input marked
    await p.page.fill('#ctl-nFactors', '9');
    const err = await p.page.locator('#layer-error').innerText();
    assert.match(err, /n_factors/);
    assert.equal(await p.page.locator('#ctl-nFactors.invalid').count(), 1);
    await p.page.fill('#ctl-nFactors', '3');
    assert.equal(await p.page.locator('#layer-error').isHidden(), true);

    // hover: block coordinates and kept/total
    const cell = Number(await p.page.locator('#mask').getAttribute('data-cell'));
    const box = await p.page.locator('#mask').boundingBox();
    assert.ok(box);
    const rows = expectedRows(1024, 256, edited);
    await p.page.mouse.move(box.x + 3 * cell + cell / 2, box.y + 5 * cell + cell / 2);
    const hover = await p.page.locator('#hover').innerText();
    assert.match(hover, /block \(row 5, col 3\)/);
    assert.match(hover, rows[5][3] === '1' ? /kept/ : /pruned/);
    const nnz = rows.join('').split('').filter((c) => c === '1').length;
    assert.match(hover, new RegExp(`layer: ${nnz}/${rows.length * rows[0].length} kept`));

    // zoom doubles the cell size
    await p.page.locator('#ctl-zoom').fill('2');
    const cell2 = Number(await p.page.locator('#mask').getAttribute('data-cell'));
    assert.equal(cell2, cell * 2);
    assert.deepEqual(await canvasRows(p.page), rows);

    // Apply to code posts the edited config for the selected layer
    await p.page.click('#apply');
    const posted = await p.posted();
    assert.deepEqual(posted[posted.length - 1], { type: 'applyToCode', layers: [{ name: 'blocks.*.mlp.fc1', line: 20, config: edited }] });
    await p.send({ type: 'mask.applied', ok: true, message: 'Applied 1 layer' });
    assert.equal(await p.page.locator('#apply-status').innerText(), 'Applied 1 layer');

    // measured speedups appear in the list
    await p.send({ type: 'mask.measured', speedups: { 'blocks.*.mlp.fc1': 1.73 } });
    assert.match(await p.page.locator('tr[data-layer="blocks.*.mlp.fc1"]').innerText(), /1\.73×/);
    await p.page.screenshot({ path: join(ARTIFACTS, 'mask-fc1-edited.png'), fullPage: true });

    // saved state restores the page after a reload, before the host answers
    const saved = await p.state();
    const q = await openPage(browser, 'mask', saved);
    assert.match(await q.page.locator('#model-name').innerText(), /TinyViT/);
    assert.deepEqual(await canvasRows(q.page), rows.map((r) => r)); // zoom 2, same mask
    assert.equal(await q.page.inputValue('#ctl-butterflySize'), '8');
    assert.deepEqual(p.errors, [], `console errors (CSP?): ${p.errors.join(' | ')}`);
    assert.deepEqual(q.errors, []);
  });

  it('shows a clear error for a message that does not match the protocol', async () => {
    const p = await openPage(browser, 'mask');
    await p.send({ type: 'mask.model', model: { name: 'x', layers: [{ name: 'l', in: -1 }] } });
    await p.page.waitForSelector('#page-error:not([hidden])');
    assert.match(await p.page.locator('#page-error').innerText(), /invalid webview message \(fromHost\): model\.layers\.0/);
  });
});
