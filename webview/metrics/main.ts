/**
 * Live metrics page: what the run trains (model and file, runner, dataset, parameters, batch and
 * context, memory), loss vs step and vs training time for dense and Pixelfly, step time, running
 * speedup, throughput and eval accuracy (uPlot), progress + ETA (while it runs), why a run that did
 * not complete stopped, CSV export, the HTML report and stop.
 * The host owns the data (it replays everything on `ready`), so the page keeps no metrics in its
 * saved state: a reloaded or re-shown page asks again and is redrawn from the full history.
 */
import uPlot from 'uplot';
import {
  HostToMetricsSchema,
  type HostToMetrics,
  type MetricsToHost,
  type Progress,
  type RunDetails,
  type RunInfo,
} from '../../protocol/webview';
import { compact, connect, el } from '../common/vscodeApi';
import { decimateIndices, pick } from './decimate';
import { lossVsTime, RunSeries } from './runSeries';

const COLORS = { dense: '#4e9de0', pixelfly: '#e06c1f' };
/** Buckets per chart (~1 per 2 px): each keeps ≤ 1 + 2·(series) points, so ≤ 4.5k drawn per chart however long the run. */
const BUCKETS = 500;
const STEP_INCRS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7].map((p) => m * p)).sort((a, b) => a - b);

const root = document.getElementById('app') as HTMLElement;
const errorBox = el('div', { id: 'error', class: 'error', hidden: '' });
const title = el('h2', { id: 'title' }, 'No run yet');
const stateBadge = el('span', { id: 'state', class: 'badge' });
const details = el('div', { id: 'details', class: 'details', hidden: '' });
const reasonBox = el('div', { id: 'reason', class: 'reason', hidden: '' });
const reportBtn = el('button', { id: 'open-report', hidden: '' }, 'Open report');
const progressBar = el('progress', { id: 'progress', max: '1', value: '0' });
const progressText = el('span', { id: 'progress-text' });
const summary = el('div', { id: 'summary', class: 'summary' });
const exportBtn = el('button', { id: 'export-csv', disabled: '' }, 'Export CSV');
const stopBtn = el('button', { id: 'stop-run', disabled: '' }, 'Stop run');
const charts = el('div', { id: 'charts', class: 'charts' });
// Where a step goes: median time per part of the model over the recent steps, dense vs Pixelfly.
const partsRows = el('div', { class: 'parts-rows' });
const swatch = (arm: 'dense' | 'pixelfly') => {
  const sw = el('span', { class: 'swatch' });
  sw.style.background = COLORS[arm];
  return sw;
};
const partsBox = el(
  'section',
  { id: 'parts', class: 'parts', hidden: '' },
  el('h3', {}, 'Where a step goes (median forward + backward ms per part, recent steps) ', el('span', { class: 'legend' }, swatch('dense'), 'dense ', swatch('pixelfly'), 'Pixelfly')),
  partsRows,
);
root.append(
  el('header', {}, title, stateBadge, el('div', { class: 'actions' }, reportBtn, exportBtn, stopBtn)),
  details,
  reasonBox,
  el('div', { class: 'progress-row' }, progressBar, progressText),
  summary,
  errorBox,
  partsBox,
  charts,
);

let run: RunInfo | null = null;
let series = new RunSeries();
let dirty = false;

const channel = connect<HostToMetrics, MetricsToHost, { runId?: string }>(HostToMetricsSchema, onMessage, showError);

function showError(e: Error): void {
  errorBox.textContent = e.message;
  errorBox.hidden = false;
}

interface Chart {
  plot: uPlot;
  data: () => uPlot.AlignedData;
}

/** Dense and Pixelfly series; `points` for sparse data (evals), where a lone point has no line. */
function armSeries(label: string, points = false): uPlot.Series[] {
  const pts = { show: points, size: 7 };
  return [
    { label: `dense ${label}`, stroke: COLORS.dense, fill: undefined, width: 1.5, spanGaps: true, points: { ...pts, fill: COLORS.dense } },
    { label: `Pixelfly ${label}`, stroke: COLORS.pixelfly, width: 1.5, spanGaps: true, points: { ...pts, fill: COLORS.pixelfly } },
  ];
}

function makeChart(id: string, heading: string, xLabel: string, ys: uPlot.Series[], data: () => uPlot.AlignedData): Chart {
  const box = el('section', { id, class: 'chart' }, el('h3', {}, heading));
  charts.append(box);
  const fg = getComputedStyle(document.body).color || '#ccc';
  const axis: uPlot.Axis = { stroke: fg, grid: { stroke: 'rgba(128,128,128,0.2)' }, ticks: { stroke: 'rgba(128,128,128,0.3)' } };
  const plot = new uPlot(
    {
      width: chartWidth(),
      height: 220,
      scales: { x: { time: false } },
      // Steps are whole numbers: no 1.25-step ticks on short runs.
      axes: [{ ...axis, label: xLabel, ...(xLabel === 'step' ? { incrs: STEP_INCRS } : {}) }, { ...axis, size: 70 }],
      series: [{ label: xLabel }, ...ys],
      legend: { live: true },
    },
    [[], ...ys.map(() => [])],
    box,
  );
  return { plot, data };
}

function chartWidth(): number {
  return Math.max(320, Math.min(900, (charts.clientWidth || window.innerWidth) - 24));
}

/** Indices of the per-step columns to draw this frame (decimated over every drawn column). */
function stepKeep(): number[] {
  const a = series.arms;
  return decimateIndices(series.steps.length, [a.dense.loss, a.pixelfly.loss, a.dense.stepMs, a.pixelfly.stepMs], BUCKETS);
}

let keep: number[] = [];
const chartList: Chart[] = [
  makeChart('chart-loss-step', 'Loss vs step', 'step', armSeries('loss'), () =>
    pick<number | null>([series.steps, series.arms.dense.loss, series.arms.pixelfly.loss], keep) as uPlot.AlignedData,
  ),
  makeChart('chart-loss-time', 'Loss vs training time', 'seconds', armSeries('loss'), () => lossVsTime(series, keep) as uPlot.AlignedData),
  makeChart('chart-step-time', 'Step time (ms)', 'step', armSeries('ms'), () =>
    pick<number | null>([series.steps, series.arms.dense.stepMs, series.arms.pixelfly.stepMs], keep) as uPlot.AlignedData,
  ),
  makeChart(
    'chart-speedup',
    'Running speedup (median dense / Pixelfly step time)',
    'step',
    [{ label: 'speedup', stroke: COLORS.pixelfly, width: 1.5, spanGaps: true, points: { show: false } }],
    () => pick<number | null>([series.steps, series.speedup], keep) as uPlot.AlignedData,
  ),
  makeChart('chart-throughput', 'Throughput (tokens/s)', 'step', armSeries('tokens/s'), () =>
    pick<number | null>([series.steps, series.arms.dense.tokensPerSec, series.arms.pixelfly.tokensPerSec], keep) as uPlot.AlignedData,
  ),
  makeChart('chart-eval', 'Evaluation', 'step', armSeries('eval', true), () => evalData()),
];

/** Eval points of both arms on one step axis (evals are rare: no decimation needed). */
function evalData(): uPlot.AlignedData {
  const steps = [...new Set([...series.evals.dense.step, ...series.evals.pixelfly.step])].sort((a, b) => a - b);
  const col = (arm: 'dense' | 'pixelfly') => {
    const m = new Map<number, number>();
    series.evals[arm].step.forEach((s, i) => m.set(s, series.evals[arm].value[i]));
    return steps.map((s) => m.get(s) ?? null);
  };
  return [steps, col('dense'), col('pixelfly')] as uPlot.AlignedData;
}

function render(): void {
  dirty = false;
  const t0 = performance.now();
  keep = stepKeep();
  for (const c of chartList) c.plot.setData(c.data());
  const last = series.steps.length ? series.steps[series.steps.length - 1] : null;
  const sp = series.latest(series.speedup);
  const parts = [
    `${series.points} points`,
    last !== null ? `last step ${last}` : '',
    sp !== null ? `running speedup ${sp.toFixed(2)}×` : '',
    tokensText(),
    evalText(),
  ].filter(Boolean);
  summary.textContent = parts.join(' · ');
  renderParts();
  summary.dataset.points = String(series.points);
  summary.dataset.drawn = String(keep.length);
  // uPlot draws in a microtask after setData; this one is queued after theirs, so the figure
  // includes the drawing (read by the page benchmark, bench/metricsPage.ts).
  queueMicrotask(() => (summary.dataset.renderMs = (performance.now() - t0).toFixed(2)));
}

function renderParts(): void {
  const arms = { dense: series.partsMedian('dense'), pixelfly: series.partsMedian('pixelfly') };
  const names = Object.keys(arms.pixelfly ?? arms.dense ?? {});
  partsBox.hidden = names.length === 0;
  const max = Math.max(1e-9, ...names.flatMap((n) => [arms.dense?.[n] ?? 0, arms.pixelfly?.[n] ?? 0]));
  const bar = (arm: 'dense' | 'pixelfly', ms: number | undefined) => {
    if (ms === undefined) return el('div', { class: 'part-bar' });
    const fill = el('span', { class: `part-fill ${arm}` });
    fill.style.width = `${((100 * ms) / max).toFixed(1)}%`; // CSSOM, which the page's CSP allows
    fill.style.background = COLORS[arm];
    const track = el('span', { class: 'part-track' }, fill);
    return el('div', { class: 'part-bar', 'data-arm': arm, 'data-ms': ms.toFixed(3), title: `${arm === 'dense' ? 'dense' : 'Pixelfly'} ${ms.toFixed(1)} ms` }, track, el('span', { class: 'part-ms' }, `${ms.toFixed(1)} ms`));
  };
  partsRows.replaceChildren(
    ...names.map((n) => el('div', { class: 'part-row', 'data-part': n }, el('span', { class: 'part-name' }, n), bar('dense', arms.dense?.[n]), bar('pixelfly', arms.pixelfly?.[n]))),
  );
}

function tokensText(): string {
  const d = series.latest(series.arms.dense.tokensPerSec);
  const p = series.latest(series.arms.pixelfly.tokensPerSec);
  return d !== null && p !== null ? `throughput ${compact(d)} vs ${compact(p)} tokens/s` : '';
}

function evalText(): string {
  const last = (arm: 'dense' | 'pixelfly') => {
    const e = series.evals[arm];
    return e.value.length ? `${e.metric[e.metric.length - 1]} ${fmtEval(e.value[e.value.length - 1], e.metric[e.metric.length - 1])}` : null;
  };
  const d = last('dense');
  const p = last('pixelfly');
  return d || p ? `eval: dense ${d ?? '–'}, Pixelfly ${p ?? '–'}` : '';
}

function fmtEval(v: number, metric: string): string {
  return metric === 'accuracy' ? `${(v * 100).toFixed(1)}%` : v.toFixed(3);
}

function scheduleRender(): void {
  if (dirty) return;
  dirty = true;
  // One redraw per frame however many appends arrive; hidden pages get no frames, and the host
  // does not post to hidden pages anyway (it replays on `ready`).
  requestAnimationFrame(render);
}

function setStatus(r: RunInfo, p: Progress): void {
  run = r;
  title.textContent = r.title;
  stateBadge.textContent = r.state;
  stateBadge.dataset.state = r.state;
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
  progressBar.value = frac;
  // Only a running run has time left: a stopped one shows no (stale) ETA, whatever the host last had.
  progressText.textContent =
    `step ${p.step}/${p.totalSteps} (${(frac * 100).toFixed(0)}%)` + (p.etaS !== null && r.state === 'running' ? ` · ETA ${fmtDuration(p.etaS)}` : '');
  exportBtn.disabled = false;
  stopBtn.disabled = !(r.state === 'running' || r.state === 'queued');
  renderDetails(r.details);
  reasonBox.hidden = !r.reason;
  reasonBox.textContent = r.reason ? `${STOPPED[r.state] ?? r.state}: ${r.reason}` : '';
  reasonBox.dataset.state = r.state;
  reportBtn.hidden = !r.details?.report;
  // The reason box already says why a failed run failed.
  if (r.error && r.error !== r.reason) showError(new Error(r.error));
  channel.setState({ runId: r.id });
}

const STOPPED: Partial<Record<RunInfo['state'], string>> = { failed: 'Failed', cancelled: 'Cancelled', interrupted: 'Interrupted' };

/** 1.2e9 → "1.20 GB" (decimal units, as the daemon's messages). */
function fmtBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(0)} MB` : `${(n / 1e3).toFixed(0)} kB`;
}

/** One line of what the run trains, each field in its own span (data-field) so it reads and tests alike. */
function renderDetails(d: RunDetails | undefined): void {
  details.hidden = !d;
  if (!d) return details.replaceChildren();
  const field = (name: string, text: string, tip?: string) => el('span', { class: 'field', 'data-field': name, ...(tip ? { title: tip } : {}) }, text);
  const file = d.file?.split(/[\\/]/).pop();
  const parts = [
    field('model', file ? `${d.model} · ${file}` : d.model, d.file),
    field('runner', d.runner),
    field('dataset', d.dataset),
  ];
  if (d.params) {
    const share = d.params.dense ? ` (${((100 * d.params.pixelfly) / d.params.dense).toFixed(0)}%)` : '';
    parts.push(field('params', `${d.params.dense !== undefined ? `dense ${compact(d.params.dense)} · ` : ''}Pixelfly ${compact(d.params.pixelfly)} parameters${share}`));
  }
  const per = d.context !== undefined ? ` × context ${d.context}` : d.image ? ` × ${d.image.channels}×${d.image.height}×${d.image.width} images` : '';
  parts.push(field('shape', `batch ${d.batchSize}${per}`));
  if (d.estimatedMemoryBytes !== undefined || d.peakMemoryBytes !== undefined) {
    const est = d.estimatedMemoryBytes !== undefined ? `estimated ${fmtBytes(d.estimatedMemoryBytes)}` : '';
    const peak = d.peakMemoryBytes !== undefined ? `peak ${fmtBytes(d.peakMemoryBytes)}` : '';
    parts.push(field('memory', `memory ${[est, peak].filter(Boolean).join(', ')}`));
  }
  details.replaceChildren(...parts.flatMap((p, i) => (i === 0 ? [p] : [el('span', { class: 'sep' }, ' · '), p])));
}

function fmtDuration(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function onMessage(m: HostToMetrics): void {
  switch (m.type) {
    case 'metrics.reset':
      series = new RunSeries();
      errorBox.hidden = true;
      setStatus(m.run, m.progress);
      scheduleRender();
      break;
    case 'metrics.append':
      if (!run || m.runId !== run.id) return; // a late append of a run the user switched away from
      series.add(m.steps);
      series.addEvals(m.evals);
      scheduleRender();
      break;
    case 'metrics.status':
      if (!run || m.run.id === run.id) setStatus(m.run, m.progress);
      break;
  }
}

exportBtn.addEventListener('click', () => run && channel.post({ type: 'exportCsv', runId: run.id }));
stopBtn.addEventListener('click', () => run && channel.post({ type: 'stopRun', runId: run.id }));
reportBtn.addEventListener('click', () => run && channel.post({ type: 'openReport', runId: run.id }));
window.addEventListener('resize', () => {
  for (const c of chartList) c.plot.setSize({ width: chartWidth(), height: 220 });
});
channel.post({ type: 'ready' });
