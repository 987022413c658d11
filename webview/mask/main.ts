/**
 * Mask preview page: the model's layers with density, params, FLOPs and estimated vs measured
 * speedup; the selected layer's block mask on a canvas (zoom, hover shows the block and kept/total)
 * with its low-rank share; controls for the Pixelfly knobs, redrawn on every input by calling core
 * in the page (no round-trip to the host); "Apply to code" asks the host to edit the model file.
 */
import { PixelflyConfigError } from '../../core/errors';
import {
  HostToMaskSchema,
  type HostToMask,
  type LayerConfig,
  type LayerRow,
  type MaskToHost,
  type ModelView,
} from '../../protocol/webview';
import { compact, connect, el } from '../common/vscodeApi';
import { layerStats, modelTotals, replaceable, type LayerStats } from './layerStats';
import { blockAt, cellSize, drawMask } from './maskCanvas';

interface PageState {
  model?: ModelView;
  selected?: string;
  /** Configs the user edited here, by layer name (survive reloads until applied or the model changes). */
  overrides: Record<string, LayerConfig>;
  measured: Record<string, number>;
  zoom: number;
}

/** The controls, in the order shown; `param` is how core's errors name them. */
const CONTROLS: { key: keyof LayerConfig; label: string; param: string; min: number }[] = [
  { key: 'block', label: 'block', param: 'block', min: 1 },
  { key: 'butterflySize', label: 'butterfly size', param: 'butterfly_size', min: 1 },
  { key: 'nFactors', label: 'n_factors', param: 'n_factors', min: 1 },
  { key: 'rank', label: 'low-rank rank', param: 'rank', min: 0 },
  { key: 'globalSize', label: 'global size', param: 'global_size', min: 0 },
];

const MASK_PX = 480;

const root = document.getElementById('app') as HTMLElement;
const heading = el('h2', { id: 'model-name' }, 'Pixelfly mask preview');
const totals = el('div', { id: 'totals', class: 'summary' });
const pageError = el('div', { id: 'page-error', class: 'error', hidden: '' });
const table = el('table', { id: 'layers' });
const inputs = new Map<keyof LayerConfig, HTMLInputElement>();
const controlRow = el('div', { class: 'controls' });
for (const c of CONTROLS) {
  const input = el('input', { id: `ctl-${c.key}`, type: 'number', min: String(c.min), step: '1' });
  inputs.set(c.key, input);
  controlRow.append(el('label', {}, `${c.label} `, input));
}
const shuffle = el('input', { id: 'ctl-shuffle', type: 'checkbox' });
const zoom = el('input', { id: 'ctl-zoom', type: 'range', min: '0.25', max: '4', step: '0.25', value: '1' });
controlRow.append(el('label', {}, shuffle, ' shuffle'), el('label', {}, 'zoom ', zoom));
const layerTitle = el('h3', { id: 'layer-title' });
const layerError = el('div', { id: 'layer-error', class: 'error', hidden: '' });
const canvas = el('canvas', { id: 'mask', width: '1', height: '1' });
const hover = el('div', { id: 'hover', class: 'hover' }, 'hover a block');
const detail = el('div', { id: 'layer-detail', class: 'summary' });
const applyBtn = el('button', { id: 'apply' }, 'Apply to code');
const applyAllBtn = el('button', { id: 'apply-all' }, 'Apply all sparsified layers');
const measureBtn = el('button', { id: 'measure' }, 'Measure speedups on this device');
const applyStatus = el('div', { id: 'apply-status', class: 'summary' });
root.append(
  heading,
  totals,
  pageError,
  el('div', { class: 'split' }, el('div', { class: 'list' }, table), el('div', { class: 'detail' }, layerTitle, controlRow, layerError, el('div', { class: 'canvas-box' }, canvas), hover, detail, el('div', { class: 'actions' }, applyBtn, applyAllBtn, measureBtn), applyStatus)),
);

const channel = connect<HostToMask, MaskToHost, PageState>(HostToMaskSchema, onMessage, (e) => showPageError(e.message));
const state: PageState = { overrides: {}, measured: {}, zoom: 1, ...channel.getState() };
let current: { row: LayerRow; stats: LayerStats; cell: number } | null = null;

function showPageError(msg: string): void {
  pageError.textContent = msg;
  pageError.hidden = false;
}

function save(): void {
  channel.setState(state);
}

function configOf(row: LayerRow): LayerConfig {
  return state.overrides[row.name] ?? row.config;
}

function statsOrError(row: LayerRow, config: LayerConfig): LayerStats | PixelflyConfigError | Error {
  try {
    return layerStats(row, config);
  } catch (e) {
    return e as Error;
  }
}

function renderTable(): void {
  const model = state.model;
  table.replaceChildren();
  if (!model) return;
  const head = ['layer', 'role', 'out × in × count', 'plan', 'density', 'params dense → Pixelfly', 'FLOPs/sample dense → Pixelfly', 'est. speedup', 'measured'];
  table.append(el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))));
  const body = el('tbody');
  const sparseOf = (row: LayerRow): boolean => (row.sparsify || row.name in state.overrides) && replaceable(row);
  for (const row of model.layers) {
    const edited = row.name in state.overrides;
    const s = statsOrError(row, configOf(row));
    const sparse = sparseOf(row);
    const tr = el('tr', { 'data-layer': row.name, class: row.name === state.selected ? 'selected' : '' });
    const measured = state.measured[row.name];
    const cells: string[] =
      s instanceof Error
        ? [row.name, row.role, `${row.out} × ${row.in} × ${row.count}`, sparse ? 'Pixelfly' : 'dense', 'invalid', s.message, '', '', '']
        : [
            row.name,
            row.role,
            `${row.out} × ${row.in} × ${row.count}`,
            (sparse ? 'Pixelfly' : 'dense') + (edited ? ' (edited)' : ''),
            `${(s.density * 100).toFixed(1)}%`,
            `${compact(s.denseParams)} → ${compact(s.pixelflyParams)}`,
            `${compact(s.denseFlops)} → ${compact(s.pixelflyFlops)}`,
            `${s.estimatedSpeedup.toFixed(2)}×`,
            measured !== undefined ? `${measured.toFixed(2)}×` : '–',
          ];
    cells.forEach((c, i) => tr.append(el('td', i === 0 ? { title: row.reason } : {}, c)));
    tr.addEventListener('click', () => select(row.name));
    body.append(tr);
  }
  table.append(body);
  // The same totals as the CodeLens (attention cores count in FLOPs, not in layers).
  const t = modelTotals(model.layers, configOf, sparseOf);
  const layers = model.layers.filter((l) => l.role !== 'attn_core');
  totals.textContent =
    `${layers.filter(sparseOf).length} of ${layers.length} layers sparse · params ${compact(t.denseParams)} → ${compact(t.planParams)} · ` +
    `FLOPs/sample ${compact(t.denseFlops)} → ${compact(t.planFlops)} (${t.denseFlops > 0 ? ((t.planFlops / t.denseFlops) * 100).toFixed(0) : '–'}% of dense)`;
}

function select(name: string): void {
  state.selected = name;
  save();
  renderTable();
  renderLayer(true);
}

/** Draws the selected layer; `fillControls` copies its config into the inputs (not while typing). */
function renderLayer(fillControls: boolean): void {
  const row = state.model?.layers.find((l) => l.name === state.selected);
  if (!row) {
    current = null;
    return;
  }
  const config = configOf(row);
  if (fillControls) {
    for (const c of CONTROLS) (inputs.get(c.key) as HTMLInputElement).value = String(config[c.key]);
    shuffle.checked = config.shuffle;
  }
  zoom.value = String(state.zoom);
  layerTitle.textContent = `${row.name} — ${row.out} × ${row.in}${row.count > 1 ? ` × ${row.count}` : ''} (${row.role})`;
  for (const i of inputs.values()) i.classList.remove('invalid');
  const s = statsOrError(row, config);
  if (s instanceof Error) {
    current = null;
    layerError.textContent = s.message;
    layerError.hidden = false;
    if (s instanceof PixelflyConfigError) {
      const ctl = CONTROLS.find((c) => c.param === s.param);
      if (ctl) inputs.get(ctl.key)?.classList.add('invalid');
    }
    canvas.width = 1;
    canvas.height = 1;
    detail.textContent = '';
    return;
  }
  layerError.hidden = true;
  const { layout } = s;
  const cell = cellSize(layout.blockRows, layout.blockCols, MASK_PX, state.zoom);
  drawMask(canvas, layout, cell);
  canvas.dataset.blockRows = String(layout.blockRows);
  canvas.dataset.blockCols = String(layout.blockCols);
  canvas.dataset.cell = String(cell);
  current = { row, stats: s, cell };
  const total = layout.blockRows * layout.blockCols;
  detail.textContent =
    `${layout.nnzBlocks}/${total} blocks kept (${((layout.nnzBlocks / total) * 100).toFixed(1)}%) · ` +
    `low-rank share: ${(s.lowRankFlopShare * 100).toFixed(1)}% of FLOPs, ${(s.lowRankParamShare * 100).toFixed(1)}% of params · ` +
    `estimated speedup ${s.estimatedSpeedup.toFixed(2)}×` +
    (state.measured[row.name] !== undefined ? ` · measured ${state.measured[row.name].toFixed(2)}×` : '');
}

function readControls(): LayerConfig | string {
  const cfg: Partial<LayerConfig> = { shuffle: shuffle.checked };
  for (const c of CONTROLS) {
    const raw = (inputs.get(c.key) as HTMLInputElement).value.trim();
    const v = Number(raw);
    if (raw === '' || !Number.isInteger(v) || v < c.min) return `${c.param}: must be an integer ≥ ${c.min}, got '${raw}'`;
    (cfg as Record<string, number | boolean>)[c.key] = v;
  }
  return cfg as LayerConfig;
}

function onControlInput(): void {
  const row = state.model?.layers.find((l) => l.name === state.selected);
  if (!row) return;
  const cfg = readControls();
  if (typeof cfg === 'string') {
    layerError.textContent = cfg;
    layerError.hidden = false;
    return;
  }
  state.overrides[row.name] = cfg;
  save();
  renderTable();
  renderLayer(false);
}

for (const i of inputs.values()) i.addEventListener('input', onControlInput);
shuffle.addEventListener('change', onControlInput);
zoom.addEventListener('input', () => {
  state.zoom = Number(zoom.value);
  save();
  renderLayer(false);
});

canvas.addEventListener('mousemove', (ev) => {
  if (!current) return;
  const r = canvas.getBoundingClientRect();
  const x = ((ev.clientX - r.left) * canvas.width) / r.width;
  const y = ((ev.clientY - r.top) * canvas.height) / r.height;
  const hit = blockAt(current.stats.layout, current.cell, x, y);
  if (!hit) return;
  const { layout } = current.stats;
  let rowKept = 0;
  for (let c = 0; c < layout.blockCols; c++) rowKept += layout.mask[hit.row * layout.blockCols + c];
  hover.textContent =
    `block (row ${hit.row}, col ${hit.col}) ${hit.kept ? 'kept' : 'pruned'} · ` +
    `weights [${hit.row * layout.block}:${(hit.row + 1) * layout.block}, ${hit.col * layout.block}:${(hit.col + 1) * layout.block}] · ` +
    `row ${hit.row}: ${rowKept}/${layout.blockCols} kept · layer: ${layout.nnzBlocks}/${layout.blockRows * layout.blockCols} kept`;
});

function applyLayers(rows: LayerRow[]): void {
  if (rows.length === 0) {
    applyStatus.textContent = 'Nothing to apply: no layer is planned for Pixelfly or edited here.';
    return;
  }
  applyStatus.textContent = `Applying ${rows.length} layer(s)…`;
  channel.post({ type: 'applyToCode', layers: rows.map((r) => ({ name: r.name, line: r.line, config: configOf(r) })) });
}

applyBtn.addEventListener('click', () => {
  const row = state.model?.layers.find((l) => l.name === state.selected);
  applyLayers(row ? [row] : []);
});
applyAllBtn.addEventListener('click', () => {
  applyLayers((state.model?.layers ?? []).filter((l) => l.sparsify || l.name in state.overrides));
});
measureBtn.addEventListener('click', () => {
  applyStatus.textContent = 'Measuring on this device…';
  channel.post({ type: 'measure' });
});

function onMessage(m: HostToMask): void {
  switch (m.type) {
    case 'mask.model': {
      const sameModel = state.model?.name === m.model.name && state.model?.uri === m.model.uri;
      state.model = m.model;
      if (!sameModel) state.overrides = {};
      const names = new Set(m.model.layers.map((l) => l.name));
      for (const k of Object.keys(state.overrides)) if (!names.has(k)) delete state.overrides[k];
      const pick = m.focus && names.has(m.focus) ? m.focus : state.selected && names.has(state.selected) ? state.selected : undefined;
      state.selected = pick ?? (m.model.layers.find((l) => l.sparsify) ?? m.model.layers[0]).name;
      heading.textContent = `Pixelfly mask preview — ${m.model.name}`;
      pageError.hidden = true;
      save();
      renderTable();
      renderLayer(true);
      break;
    }
    case 'mask.measured':
      Object.assign(state.measured, m.speedups);
      applyStatus.textContent = `Measured ${Object.keys(m.speedups).length} layer(s) on this device.`;
      save();
      renderTable();
      renderLayer(false);
      break;
    case 'mask.applied':
      applyStatus.textContent = m.message;
      applyStatus.classList.toggle('error', !m.ok);
      break;
  }
}

// Restored after a reload (state survives; the host also re-sends the model on `ready`).
if (state.model) {
  heading.textContent = `Pixelfly mask preview — ${state.model.name}`;
  renderTable();
  renderLayer(true);
}
channel.post({ type: 'ready' });
