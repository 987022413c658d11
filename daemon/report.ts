// A run's self-contained HTML report: summary table, loss and running-speedup charts as inline
// SVG, evaluations. No scripts, no network: it opens from disk anywhere, and is safe to share.
import { describeRunner, describeShape, type JobEvent, type JobInfo } from '../protocol/daemon';
import { formatBytes } from '../io/userFile';

/** Points per series drawn; longer series are thinned evenly (first and last kept). */
const MAX_POINTS = 1500;

interface Series {
  label: string;
  color: string;
  points: [number, number][];
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function thin(points: [number, number][]): [number, number][] {
  if (points.length <= MAX_POINTS) return points;
  const out: [number, number][] = [];
  const stride = (points.length - 1) / (MAX_POINTS - 1);
  for (let i = 0; i < MAX_POINTS; i++) out.push(points[Math.round(i * stride)]);
  return out;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.01) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

function lineChart(title: string, xLabel: string, series: Series[], refLine?: number): string {
  const W = 720;
  const H = 300;
  const m = { l: 60, r: 16, t: 28, b: 40 };
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return `<figure><figcaption>${esc(title)}</figcaption><p class="empty">no data</p></figure>`;
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (refLine !== undefined) [y0, y1] = [Math.min(y0, refLine), Math.max(y1, refLine)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const ticks = (a: number, b: number) => Array.from({ length: 5 }, (_, i) => a + ((b - a) * i) / 4);
  const grid = [
    ...ticks(y0, y1).map(
      (y) => `<line x1="${m.l}" x2="${W - m.r}" y1="${sy(y).toFixed(1)}" y2="${sy(y).toFixed(1)}" class="grid"/><text x="${m.l - 6}" y="${(sy(y) + 4).toFixed(1)}" text-anchor="end">${fmt(y)}</text>`,
    ),
    ...ticks(x0, x1).map((x) => `<text x="${sx(x).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle">${fmt(Math.round(x))}</text>`),
  ].join('');
  const ref =
    refLine === undefined
      ? ''
      : `<line x1="${m.l}" x2="${W - m.r}" y1="${sy(refLine).toFixed(1)}" y2="${sy(refLine).toFixed(1)}" class="ref"/>`;
  const paths = series
    .filter((s) => s.points.length > 0)
    .map((s) => {
      const d = thin(s.points)
        .map((p, i) => `${i === 0 ? 'M' : 'L'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`)
        .join('');
      return `<path d="${d}" stroke="${s.color}" fill="none" stroke-width="1.5"/>`;
    })
    .join('');
  const legend = series
    .filter((s) => s.points.length > 0)
    .map((s, i) => `<rect x="${m.l + 10 + i * 140}" y="8" width="12" height="4" fill="${s.color}"/><text x="${m.l + 26 + i * 140}" y="14">${esc(s.label)}</text>`)
    .join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${grid}${ref}${paths}${legend}<text x="${(W + m.l) / 2}" y="${H - 6}" text-anchor="middle">${esc(xLabel)}</text></svg></figure>`;
}

/** Horizontal bars, one group per part of the model, one bar per variant (median ms). */
function partsChart(title: string, parts: string[], bars: Array<{ label: string; color: string; ms: Record<string, number> | undefined }>): string {
  const shown = bars.filter((b) => b.ms !== undefined);
  if (parts.length === 0 || shown.length === 0) return '';
  const W = 720;
  const barH = 14;
  const groupH = shown.length * barH + 10;
  const m = { l: 110, r: 70, t: 28 };
  const H = m.t + parts.length * groupH + 8;
  const max = Math.max(...shown.flatMap((b) => parts.map((p) => b.ms![p] ?? 0)), 1e-9);
  const sx = (v: number) => ((W - m.l - m.r) * v) / max;
  const rows = parts
    .map((part, i) => {
      const y = m.t + i * groupH;
      const label = `<text x="${m.l - 8}" y="${y + (shown.length * barH) / 2 + 4}" text-anchor="end">${esc(part)}</text>`;
      const rects = shown
        .map((b, j) => {
          const v = b.ms![part];
          if (v === undefined) return '';
          const yy = y + j * barH;
          return `<rect x="${m.l}" y="${yy}" width="${sx(v).toFixed(1)}" height="${barH - 3}" fill="${b.color}"/><text x="${(m.l + sx(v) + 4).toFixed(1)}" y="${yy + barH - 4}">${fmt(v)} ms</text>`;
        })
        .join('');
      return label + rects;
    })
    .join('');
  const legend = shown.map((b, i) => `<rect x="${m.l + i * 140}" y="8" width="12" height="8" fill="${b.color}"/><text x="${m.l + 16 + i * 140}" y="16">${esc(b.label)}</text>`).join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${legend}${rows}</svg></figure>`;
}

export function renderReport(info: JobInfo, events: Iterable<JobEvent>): string {
  const steps = new Map<number, Extract<JobEvent, { type: 'step' }>>();
  const evals: Extract<JobEvent, { type: 'eval' }>[] = [];
  const notes: string[] = [];
  for (const e of events) {
    if (e.type === 'step') steps.set(e.step, e);
    else if (e.type === 'eval') evals.push(e);
    else if (e.type === 'error') notes.push(`error: ${e.message}`);
    else if (e.type === 'status' && e.message) notes.push(`${e.state}: ${e.message}`);
  }
  const ordered = [...steps.values()].sort((a, b) => a.step - b.step);
  const loss: Series[] = [
    { label: 'Pixelfly', color: '#d9480f', points: ordered.map((e) => [e.step, e.pixelfly.loss]) },
    { label: 'dense', color: '#1c7ed6', points: ordered.filter((e) => e.dense).map((e) => [e.step, e.dense!.loss]) },
  ];
  const speedup: Series[] = [
    { label: 'running speedup (dense / Pixelfly step time)', color: '#2b8a3e', points: ordered.filter((e) => e.speedup !== undefined).map((e) => [e.step, e.speedup!]) },
  ];
  const s = info.summary;
  const row = (label: string, p?: string, d?: string) => `<tr><th>${esc(label)}</th><td>${esc(p ?? '')}</td><td>${esc(d ?? '')}</td></tr>`;
  const num = (v: number | undefined, digits = 3) => (v === undefined ? '' : Number(v.toPrecision(digits)).toString());
  const pct = (v: number | undefined) => (v === undefined ? '' : `${(v * 100).toFixed(2)} %`);
  const summaryTable = s
    ? `<table><tr><th></th><th>Pixelfly</th><th>dense</th></tr>
${row('parameters', s.pixelfly.params.toLocaleString('en-US'), s.dense?.params.toLocaleString('en-US'))}
${row('final training loss (mean of last steps)', num(s.pixelfly.finalLoss), num(s.dense?.finalLoss))}
${row('median step time (ms)', num(s.pixelfly.medianStepMs), num(s.dense?.medianStepMs))}
${row('throughput (tokens/s)', num(s.pixelfly.tokensPerSec), num(s.dense?.tokensPerSec))}
${row('eval loss', num(s.pixelfly.eval?.loss), num(s.dense?.eval?.loss))}
${s.pixelfly.eval?.accuracy !== undefined ? row('eval accuracy', pct(s.pixelfly.eval.accuracy), pct(s.dense?.eval?.accuracy)) : ''}
${s.pixelfly.eval?.perplexity !== undefined ? row('eval perplexity', num(s.pixelfly.eval.perplexity), num(s.dense?.eval?.perplexity)) : ''}
</table>
<p class="big">Speedup (median dense step / median Pixelfly step, measured in alternating steps): <b>${s.speedup === undefined ? 'n/a (no dense comparison)' : `${s.speedup.toFixed(2)}×`}</b></p>`
    : '<p>No summary yet.</p>';
  const evalRows = evals
    .map(
      (e) =>
        `<tr><td>${e.step}</td><td>${e.epoch.toFixed(2)}</td><td>${num(e.pixelfly.loss)}</td><td>${pct(e.pixelfly.accuracy)}${e.pixelfly.perplexity !== undefined ? ` ppl ${num(e.pixelfly.perplexity)}` : ''}</td><td>${num(e.dense?.loss)}</td><td>${pct(e.dense?.accuracy)}${e.dense?.perplexity !== undefined ? ` ppl ${num(e.dense.perplexity)}` : ''}</td></tr>`,
    )
    .join('\n');
  const ds = info.dataset;
  const subject = info.subject;
  const est = s?.estimatedMemoryBytes ?? info.estimatedMemoryBytes;
  const peak = s?.peakMemoryBytes ?? info.peakMemoryBytes;
  const params = subject?.params ?? (s ? { pixelfly: s.pixelfly.params, dense: s.dense?.params } : undefined);
  const what = (label: string, value: string) => `<tr><th>${esc(label)}</th><td class="l">${esc(value)}</td></tr>`;
  const whatTable = subject
    ? `<table class="what">
${what('model', `${subject.model}${subject.file ? ` in ${subject.file}` : ''}`)}
${what('runner', describeRunner(subject))}
${what('dataset', ds ? `${ds.name}${ds.synthetic ? ' (synthetic task)' : ''}, ${ds.trainSize} train / ${ds.testSize} test samples` : subject.dataset)}
${params ? what('parameters', `${params.dense !== undefined ? `dense ${params.dense.toLocaleString('en-US')}, ` : ''}Pixelfly ${params.pixelfly.toLocaleString('en-US')}`) : ''}
${what('shape', describeShape(subject))}
${est !== undefined || peak !== undefined ? what('memory', [est !== undefined ? `estimated ${formatBytes(est)}` : '', peak !== undefined ? `measured peak ${formatBytes(peak)} (job process)` : ''].filter(Boolean).join(', ')) : ''}
</table>`
    : '';
  // Why a run that did not complete stopped, above everything else.
  const why = info.state === 'completed' ? undefined : (info.endReason ?? info.error);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Pixelfly run ${esc(info.jobId)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:780px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{text-align:left}
svg text{font:11px system-ui,sans-serif;fill:#444}.grid{stroke:#eee}.ref{stroke:#999;stroke-dasharray:4 3}
figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}.big{font-size:16px}.note{color:#a61e4d}
td.l{text-align:left}.stopped{border-left:4px solid #a61e4d;padding:4px 10px;background:#fff5f5}
</style></head><body>
<h1>Pixelfly vs dense: ${esc(info.name)}</h1>
${why ? `<p class="stopped"><b>${esc(info.state)}:</b> ${esc(why)}</p>` : ''}
${whatTable}
<p>Run <code>${esc(info.jobId)}</code> — state <b>${esc(info.state)}</b>, step ${info.step} of ${info.totalSteps}.
Dataset: ${esc(ds ? `${ds.name}${ds.synthetic ? ' (synthetic task)' : ''}, ${ds.trainSize} train / ${ds.testSize} test samples` : 'unknown')}.
${info.backend ? `Engine: ${esc(info.backend)}${info.precision ? `, ${esc(info.precision)} products` : ''}${info.kernels ? ` (${esc(info.kernels)})` : ''}.` : ''}
${info.precisionNote ? ` <span class="note">${esc(info.precisionNote)}.</span>` : ''}
${ds?.note ? `<br><span class="note">${esc(ds.note)}</span>` : ''}
${info.error && info.error !== why ? `<br><span class="note">Error: ${esc(info.error)}</span>` : ''}</p>
${summaryTable}
${lineChart('Training loss', 'step', loss)}
${lineChart('Running speedup of Pixelfly over dense (1× dashed)', 'step', speedup, 1)}
${partsChart('Where a step goes: median forward + backward time per part of the model', Object.keys(s?.pixelfly.partsMs ?? s?.dense?.partsMs ?? {}), [
  { label: 'Pixelfly', color: '#d9480f', ms: s?.pixelfly.partsMs },
  { label: 'dense', color: '#1c7ed6', ms: s?.dense?.partsMs },
])}
<h2>Evaluations</h2>
${evals.length > 0 ? `<table><tr><th>step</th><th>epoch</th><th>Pixelfly loss</th><th>Pixelfly</th><th>dense loss</th><th>dense</th></tr>\n${evalRows}</table>` : '<p>None.</p>'}
${notes.length > 0 ? `<h2>Notes</h2><ul>${notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : ''}
<p><small>Generated by the Pixelfly daemon from ${esc(info.runDir)}/metrics.jsonl.</small></p>
</body></html>
`;
}
