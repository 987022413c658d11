/**
 * The extension's commands (palette, CodeLens, run tree, webviews). Each one checks its inputs
 * and reports problems in words; none throws at the user.
 */
import { basename, isAbsolute, join } from 'node:path';
import { existsSync } from 'node:fs';
import * as vscode from 'vscode';
import { parseDataset } from '../client/datasetArg';
import { resolveExtraPaths } from '../io/extraPaths';
import { deviceMeasurement, hasMeasuredProfile, MEASURE_TIMEOUT_MS, trainsOnCpu } from '../client/deviceMeasure';
import { TERMINAL_STATES, type JobInfo, type MethodParamsIn } from '../protocol/daemon';
import type { AnalysisJson } from '../protocol/lsp';
import type { LayerConfig, ModelView } from '../protocol/webview';
import type { DaemonConnection } from './daemon/connection';
import { fittingBatch, fittingBatchOfRun, isTrainArgs, planCosting, specFromTrainArgs, trainLensFor, trainsTorch, type TrainArgs } from './trainArgs';
import { appliedMessage, benchParams, toModelView, type AnalyzedModel } from './modelView';
import { MaskPanel, type MaskActions } from './panels/maskPanel';
import { exportCsv, MetricsPanel, type MetricsActions } from './panels/metricsPanel';
import { isActive, type RunStore } from './runs/runStore';
import type { Settings } from './settings';
import { installTorchPackage, selectedInterpreter, torchStatus, type TorchStatus } from './torchPackage';
import { isChooseModelArgs, modelPickItems, type ModelChoices } from './modelChoice';
import { endReasonOf, runReportPath } from './runs/runDetails';
import type { ChooseModelArgs } from '../protocol/lsp';

export interface Services {
  context: vscode.ExtensionContext;
  output: vscode.LogOutputChannel;
  connection: DaemonConnection;
  store: RunStore;
  /** The model the user chose per file, where a file defines several. */
  modelChoices: ModelChoices;
  settings(): Settings;
  /** The language server's analysis of a Python file (the one its hints and lenses show). */
  analysis(uri: vscode.Uri): Promise<AnalysisJson>;
}

const cliPath = (s: Services) => s.context.asAbsolutePath(join('dist', 'pixelfly.js'));

function isAnalyzedModel(v: unknown): v is AnalyzedModel {
  return typeof v === 'object' && v !== null && Array.isArray((v as AnalyzedModel).layers);
}

/** The model to preview: CodeLens arguments, a file, or the active Python editor. */
async function resolveModel(s: Services, arg: unknown): Promise<{ view: ModelView; focus?: string }> {
  const settings = s.settings();
  const focus = typeof (arg as { focus?: unknown })?.focus === 'string' ? ((arg as { focus: string }).focus as string) : undefined;
  const model = (arg as { model?: unknown })?.model;
  if (isAnalyzedModel(arg)) return { view: toModelView(arg, 'model', settings.blockSize, settings.tokensPerSample), focus };
  if (isAnalyzedModel(model)) return { view: toModelView(model, 'model', settings.blockSize, settings.tokensPerSample), focus };
  let uri: vscode.Uri | undefined;
  if (arg instanceof vscode.Uri) uri = arg;
  else if (typeof (arg as { uri?: unknown })?.uri === 'string') uri = vscode.Uri.parse((arg as { uri: string }).uri);
  else uri = vscode.window.activeTextEditor?.document.uri;
  if (!uri || !uri.fsPath.endsWith('.py')) throw new Error('open a Python file with a model (or use the CodeLens on a model class) to preview its masks');
  let analyzed: AnalysisJson;
  try {
    analyzed = await s.analysis(uri);
  } catch (e) {
    throw new Error(`analysing ${basename(uri.fsPath)} failed: ${(e as Error).message}`);
  }
  if (analyzed.layers.length === 0) throw new Error(`no linear layers found in ${basename(uri.fsPath)}`);
  return { view: toModelView({ ...analyzed, uri: uri.toString() }, basename(uri.fsPath, '.py'), settings.blockSize, settings.tokensPerSample), focus };
}

export function maskActions(s: Services): MaskActions {
  return {
    log: (l) => s.output.info(l),
    applyToCode: (model, layers) => applyToCode(model, layers),
    measure: (model) => measure(s, model),
  };
}

/**
 * "Apply to code": the language server owns the edit (it knows the source). It is asked through
 * its `pixelfly.applyLayerConfig` command when it offers one (with the configs edited in the
 * preview); otherwise each layer's "sparsify" quick fix is applied, which writes the plan's config.
 */
async function applyToCode(model: ModelView, layers: { name: string; line?: number; config: LayerConfig }[]): Promise<string> {
  if (!model.uri) throw new Error('this model has no source file to edit');
  const uri = vscode.Uri.parse(model.uri);
  const commands = await vscode.commands.getCommands(true);
  if (commands.includes('pixelfly.applyLayerConfig')) {
    const r = await vscode.commands.executeCommand<{ applied: string[]; skipped: string[] } | undefined>('pixelfly.applyLayerConfig', { uri: model.uri, layers });
    return appliedMessage(r ?? { applied: [], skipped: ['the language server returned no result'] }, layers.length, basename(uri.fsPath));
  }
  let applied = 0;
  const notes: string[] = [];
  for (const l of layers) {
    if (l.line === undefined) {
      notes.push(`${l.name}: no source line`);
      continue;
    }
    const range = new vscode.Range(l.line, 0, l.line, 1000);
    const actions = (await vscode.commands.executeCommand<vscode.CodeAction[]>('vscode.executeCodeActionProvider', uri, range, vscode.CodeActionKind.QuickFix.value)) ?? [];
    const fix = actions.find((a) => /pixelfly/i.test(a.title) && /sparsify/i.test(a.title) && !/all/i.test(a.title));
    if (!fix) {
      notes.push(`${l.name}: the language server offers no sparsify fix on line ${l.line + 1}`);
      continue;
    }
    if (fix.edit) await vscode.workspace.applyEdit(fix.edit);
    if (fix.command) await vscode.commands.executeCommand(fix.command.command, ...(fix.command.arguments ?? []));
    applied++;
  }
  const msg = `Applied ${applied}/${layers.length} layer(s) to ${basename(uri.fsPath)}${notes.length ? `; ${notes.join('; ')}` : ''}.`;
  if (applied === 0) throw new Error(msg);
  return msg;
}

/**
 * bench.layers on this device for the model's Pixelfly layers: one call, each layer with its own
 * config, so the saved device profile gets every point of the model at once.
 */
async function measure(s: Services, model: ModelView): Promise<Record<string, number>> {
  requireTrust('Measuring speedups');
  const params = benchParams(model);
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Pixelfly: measuring dense vs Pixelfly layers on this device' }, async (progress) => {
    progress.report({ message: params.shapes.map((l) => l.name).join(', ') });
    const r = await s.connection.call('bench.layers', params, 600000);
    const out: Record<string, number> = {};
    for (const row of r.rows) if (row.name) out[row.name] = row.speedup;
    s.output.info(`bench.layers: ${r.rows.map((x) => `${x.name}: dense ${x.denseMs.toFixed(2)} ms, Pixelfly ${x.pixelflyMs.toFixed(2)} ms, ${x.speedup.toFixed(2)}×`).join('; ')} (profile ${r.profilePath})`);
    return out;
  });
}

function requireTrust(what: string): void {
  if (!vscode.workspace.isTrusted) throw new Error(`${what} is disabled in untrusted workspaces: it runs code on this machine. Trust the workspace to enable it.`);
}

/** The dataset setting, with a relative path looked up in the dataset folders, then the workspace. */
function resolveDataset(settings: Settings): MethodParamsIn<'job.submit'>['dataset'] {
  let ds = parseDataset(settings.dataset, 'pixelfly.training.dataset');
  if (ds.path && !isAbsolute(ds.path)) {
    const roots = [...settings.datasetFolders, ...(vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath)];
    const found = roots.map((r) => join(r, ds.path as string)).find((p) => existsSync(p));
    if (!found) throw new Error(`pixelfly.training.dataset: '${ds.path}' not found in ${roots.join(', ') || '(no dataset folders or workspace)'}`);
    ds = { ...ds, path: found };
  }
  return ds;
}

/**
 * The training arguments for the model under the cursor in a Python editor: the language server's
 * own "Train dense vs Pixelfly" CodeLens (it maps the model to an engine spec), the nearest one
 * above the cursor (or the first, when the cursor is above every model).
 */
async function lensTrainArgs(editor: vscode.TextEditor): Promise<TrainArgs | undefined> {
  const lenses = (await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', editor.document.uri, 100)) ?? [];
  const trains = lenses.filter((l) => l.command?.command === 'pixelfly.train').sort((a, b) => a.range.start.line - b.range.start.line);
  const line = editor.selection.active.line;
  const pick = [...trains].reverse().find((l) => l.range.start.line <= line) ?? trains[0];
  return pick?.command?.arguments?.[0] as TrainArgs | undefined;
}

/** A model spec from the arguments, a JSON file, or the active editor (JSON spec, or the Python model under the cursor). */
async function resolveSpec(arg: unknown): Promise<{ spec: Record<string, unknown>; name: string; plan?: unknown; source?: { file: string; model: string } }> {
  const editor = vscode.window.activeTextEditor;
  if (arg === undefined && editor?.document.languageId === 'python') {
    arg = await lensTrainArgs(editor);
    if (!arg) throw new Error(`the language server found no model to train in ${basename(editor.document.fileName)}`);
  }
  if (isTrainArgs(arg)) return specFromTrainArgs(arg);
  const doc = arg instanceof vscode.Uri ? vscode.workspace.textDocuments.find((d) => d.uri.toString() === arg.toString()) : editor?.document;
  if (doc && (doc.languageId === 'json' || doc.fileName.endsWith('.json'))) {
    let spec: unknown;
    try {
      spec = JSON.parse(doc.getText());
    } catch (e) {
      throw new Error(`${basename(doc.fileName)} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new Error(`${basename(doc.fileName)} must be a JSON model spec object`);
    return { spec: spec as Record<string, unknown>, name: String((spec as { name?: unknown }).name ?? basename(doc.fileName, '.json')) };
  }
  throw new Error('Train needs a model: open a Python model (or use its "Train dense vs Pixelfly" CodeLens), or a JSON model spec');
}

/**
 * The user's own model for the daemon's PyTorch runner: the file the lens analysed, the model and
 * the settings the analysis built it with, the analysis' plan, and the interpreter the Python
 * extension selected. Sent only from a trusted workspace (train() checks it; the daemon refuses
 * the job without `trusted`).
 */
async function torchJob(a: TrainArgs, extraPaths: readonly string[]): Promise<Pick<MethodParamsIn<'job.submit'>, 'runner' | 'model' | 'plan'>> {
  const uri = vscode.Uri.parse(a.uri as string);
  const plan = a.torchPlan as { layers?: Array<{ sparsify?: boolean }> } | undefined;
  if (!plan?.layers?.some((l) => l.sparsify)) {
    throw new Error(`${a.name ?? 'this model'}: the plan keeps every layer dense, so there is nothing to compare (pin unresolved sizes, or lower pixelfly.plan.budget)`);
  }
  return {
    runner: 'torch',
    model: {
      file: uri.fsPath,
      name: a.name as string,
      settings: a.settings ?? {},
      python: await selectedInterpreter(uri),
      paths: importPaths(extraPaths),
      trusted: vscode.workspace.isTrusted,
    },
    plan: a.torchPlan as MethodParamsIn<'job.submit'>['plan'],
  };
}

/**
 * Where the runner imports from besides the model's own folder: the workspace folders and the
 * analysis's extra paths, resolved as the language server resolves them.
 */
function importPaths(extraPaths: readonly string[]): string[] {
  const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  return [...new Set([...folders, ...resolveExtraPaths(extraPaths, folders)])];
}

async function train(s: Services, arg: unknown): Promise<JobInfo | undefined> {
  requireTrust('Training');
  const settings = s.settings();
  const editor = vscode.window.activeTextEditor;
  if (arg === undefined && editor?.document.languageId === 'python') {
    arg = await lensTrainArgs(editor);
    if (!arg) throw new Error(`the language server found no model to train in ${basename(editor.document.fileName)}`);
  }
  const common = {
    target: { budget: settings.budget },
    dataset: resolveDataset(settings),
    hyper: {
      epochs: settings.epochs,
      batchSize: settings.batchSize,
      lr: settings.lr,
      maxSteps: settings.maxSteps,
      evalEvery: settings.evalEvery,
      backend: settings.backend,
      precision: settings.precision,
      memoryLimitBytes: Math.round(settings.memoryLimitGB * 1e9),
    },
    compare: true,
  };
  let params: MethodParamsIn<'job.submit'>;
  if (isTrainArgs(arg) && trainsTorch(arg, settings.runner)) {
    // The job's model names the file and the model itself.
    params = { name: (arg.name ?? 'model').slice(0, 128), ...common, ...(await torchJob(arg, settings.extraPaths)) };
  } else {
    // `source`: the file and model the engine's spec stands in for, so the run's record names them.
    let resolved = await resolveSpec(arg);
    if (settings.measureDevice && !hasMeasuredProfile(undefined, settings.precision) && trainsOnCpu((await s.connection.hello()).backends, settings.backend)) {
      resolved = await measureThenReplan(s, resolved, isTrainArgs(arg) ? arg : undefined, settings.batchSize, settings.precision);
    }
    const { spec, name, plan, source } = resolved;
    params = { name: name.slice(0, 128), spec, plan: (plan as MethodParamsIn<'job.submit'>['plan']) ?? null, ...common, ...(source ? { source } : {}) };
  }
  return submitRun(s, params);
}

/**
 * Submits a run and follows it (metrics page, progress notification). A run refused because it
 * does not fit in memory, where a smaller batch of the same model would, offers that batch: one
 * click trains it (pixelfly.training.batchSize is left as it is). The refusal comes at submission
 * (engine jobs) or as the run's failure (a PyTorch runner job is admitted by its worker).
 */
async function submitRun(s: Services, params: MethodParamsIn<'job.submit'>): Promise<JobInfo | undefined> {
  const asked = () => params.hyper?.batchSize ?? s.settings().batchSize;
  const offerBatch = (msg: string, batch: number) => {
    const retry = `Train with batch size ${batch}`;
    void vscode.window.showErrorMessage(msg, retry).then(async (pick) => {
      if (pick !== retry) return;
      try {
        await submitRun(s, { ...params, hyper: { ...params.hyper, batchSize: batch } });
      } catch (e) {
        void vscode.window.showErrorMessage(`Pixelfly: Train dense vs Pixelfly: ${(e as Error).message}`);
      }
    });
  };
  let info: JobInfo;
  try {
    info = await s.connection.call('job.submit', params);
  } catch (err) {
    const batch = fittingBatch(err, asked());
    if (batch === undefined) throw err;
    const msg = (err as Error).message;
    s.output.error(`Train dense vs Pixelfly: ${msg}`);
    offerBatch(`Pixelfly: ${msg}`, batch);
    return undefined;
  }
  s.output.info(`submitted run ${info.jobId} (${info.name}), ${info.totalSteps} steps, batch ${params.hyper?.batchSize ?? '-'}, run folder ${info.runDir}`);
  s.store.upsert(info);
  await s.connection.follow(info.jobId, 0);
  MetricsPanel.show(s.context.extensionUri, s.store, metricsActions(s), info.jobId);
  void followInNotification(s, info, (ended, msg) => {
    const batch = fittingBatchOfRun(ended, asked());
    if (batch === undefined) return false;
    offerBatch(msg, batch);
    return true;
  });
  return info;
}

/**
 * A device with no measured profile is measured before its first engine run, as `pixelfly train`
 * does (client/deviceMeasure.ts): the lens's plan and estimate were costed with the default
 * profile. The language server re-plans once the profile file changes, so the plan trained is its
 * lens's new one, the one the hints now show; the user is told how the estimate moved.
 */
async function measureThenReplan(
  s: Services,
  resolved: Awaited<ReturnType<typeof resolveSpec>>,
  lens: TrainArgs | undefined,
  batchSize: number,
  precision: Settings['precision'],
): Promise<Awaited<ReturnType<typeof resolveSpec>>> {
  const m = deviceMeasurement(resolved.spec, batchSize, 0, precision);
  if (!m) return resolved; // the daemon rejects the spec with its own message
  const t0 = Date.now();
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'Pixelfly: measuring this device once, so the plan is costed with its own numbers' },
    async (progress) => {
      progress.report({ message: `timing ${m.what} (pixelfly.training.measureDevice)` });
      try {
        await s.connection.call('bench.layers', m.params, MEASURE_TIMEOUT_MS);
      } catch (err) {
        throw new Error(`measuring this device failed: ${(err as Error).message} (set pixelfly.training.measureDevice to false to train the plan costed with the default profile)`);
      }
    },
  );
  const took = `measured this device in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
  if (!lens?.uri || !lens.name || resolved.plan === undefined) {
    s.output.info(`${took}; the daemon plans this job with the measured profile`);
    return resolved;
  }
  const before = planCosting(resolved.plan);
  const uri = vscode.Uri.parse(lens.uri);
  // The server notices the new profile on its next analysis of the file: ask for the lenses again.
  for (let attempt = 0; attempt < 20; attempt++) {
    const lenses = (await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri, 100)) ?? [];
    const again = trainLensFor(lenses.map((l) => l.command), lens.name);
    if (again && planCosting(again.plan).measured) {
      const after = planCosting(again.plan);
      const est = (c: typeof after) => (c.speedup !== undefined ? `${c.speedup.toFixed(2)}×` : 'no estimate');
      const msg = `Pixelfly: ${took}. ${lens.name}'s plan, re-costed with it: est. ${est(after)} per step (was ${est(before)} with the default profile).`;
      s.output.info(msg);
      void vscode.window.showInformationMessage(msg);
      return specFromTrainArgs(again);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  s.output.warn(`${took}, but the language server's plan for ${lens.name} is still costed with the default profile: training the plan the hints showed`);
  return resolved;
}

/**
 * Progress notification with cancel, following the run in the store until it ends. `onFailed` may
 * say the failure itself (with an action): it returns true when it did.
 */
function followInNotification(s: Services, info: JobInfo, onFailed?: (ended: JobInfo, msg: string) => boolean): Thenable<void> {
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Pixelfly: ${info.name} (dense vs Pixelfly)`, cancellable: true },
    (progress, token) =>
      new Promise<void>((resolve) => {
        let reported = 0;
        const update = () => {
          const r = s.store.get(info.jobId);
          if (!r) return;
          const frac = r.progress.totalSteps > 0 ? r.progress.step / r.progress.totalSteps : 0;
          const last = r.steps[r.steps.length - 1];
          const parts = [
            `step ${r.progress.step}/${r.progress.totalSteps}`,
            last ? `loss ${last.pixelfly.loss.toFixed(3)}` : '',
            last?.speedup ? `speedup ${last.speedup.toFixed(2)}×` : '',
            r.progress.etaS !== null ? `ETA ${Math.round(r.progress.etaS)} s` : '',
          ];
          progress.report({ message: parts.filter(Boolean).join(' · '), increment: Math.max(0, frac * 100 - reported) });
          reported = Math.max(reported, frac * 100);
          // A finished run's terminal status comes just before its `completed` event (the summary,
          // with the speedup): the message waits for the latter.
          if ((TERMINAL_STATES.includes(r.info.state) && r.info.summary) || r.info.state === 'interrupted') {
            done();
            const sp = r.info.summary?.speedup;
            const why = endReasonOf(r.info);
            const msg = `Pixelfly: ${r.info.name} ${r.info.state}${sp !== undefined ? ` — ${sp.toFixed(2)}× speedup` : ''}${why ? `: ${why}` : ''}`;
            if (r.info.state !== 'failed') void vscode.window.showInformationMessage(msg);
            else if (!onFailed?.(r.info, msg)) void vscode.window.showErrorMessage(msg);
          }
        };
        const unlisten = s.store.listen((id) => id === info.jobId && update());
        const cancel = token.onCancellationRequested(() => {
          s.connection.call('job.cancel', { jobId: info.jobId }).catch((e: Error) => s.output.error(`cancel failed: ${e.message}`));
        });
        const done = () => {
          unlisten();
          cancel.dispose();
          resolve();
        };
        update();
      }),
  );
}

export function metricsActions(s: Services): MetricsActions {
  return {
    log: (l) => s.output.info(l),
    stopRun: async (jobId) => void (await s.connection.call('job.cancel', { jobId })),
    follow: async (jobId) => {
      if (!s.store.get(jobId)) s.store.upsert(await s.connection.call('job.get', { jobId }));
      await s.connection.follow(jobId, 0);
    },
  };
}

/** job.list into the store (the run history). */
export async function refreshRuns(s: Services): Promise<void> {
  const { jobs } = await s.connection.call('job.list', {});
  for (const j of jobs) s.store.upsert(j);
}

/** A run's job id from a command's argument: the id itself, or the runs view's item (a RunRecord). */
function jobIdArg(arg: unknown): string | undefined {
  if (typeof arg === 'string') return arg;
  const id = (arg as { info?: { jobId?: unknown } } | undefined)?.info?.jobId;
  return typeof id === 'string' ? id : undefined;
}

async function openMetrics(s: Services, jobId?: unknown): Promise<void> {
  let id = jobIdArg(jobId);
  if (!id) {
    if (s.store.list().length === 0) await refreshRuns(s);
    id = MetricsPanel.shownRun ?? s.store.list()[0]?.info.jobId;
  }
  if (!id) {
    void vscode.window.showInformationMessage('Pixelfly: no runs yet. Start one with "Pixelfly: Train dense vs Pixelfly".');
    return;
  }
  MetricsPanel.show(s.context.extensionUri, s.store, metricsActions(s), id);
}

async function stopRun(s: Services, jobId?: unknown): Promise<void> {
  const id = jobIdArg(jobId) ?? s.store.list().find(isActive)?.info.jobId;
  if (!id) {
    void vscode.window.showInformationMessage('Pixelfly: no run is active.');
    return;
  }
  const info = await s.connection.call('job.cancel', { jobId: id });
  s.store.upsert(info);
  s.output.info(`cancel requested for ${id}: ${info.state}`);
}

/**
 * Writes the plan the language server made for the model — the one its hints, lens and Train
 * show, nothing planned again — to `to`, or where the user picks: the layers under their names in
 * the source (for pixelfly_torch.sparsify), and the engine spec with the same plan on its layers.
 */
async function exportPlan(s: Services, arg: unknown, to?: vscode.Uri): Promise<vscode.Uri | undefined> {
  const { view } = await resolveModel(s, arg);
  if (!view.uri) throw new Error(`${view.name} has no source file: open the Python file to export its plan`);
  const analyzed = await s.analysis(vscode.Uri.parse(view.uri));
  if (!analyzed.plan) throw new Error(`the language server has no plan for ${view.name} (unresolved sizes?): see its hints`);
  const layers = analyzed.layers
    .filter((l) => l.count !== 0 && l.decision && l.role !== 'attn_core')
    .map((l) => ({ name: l.name, role: l.role, in: l.in, out: l.out, count: l.count, ...l.decision }));
  const device = analyzed.plan.device;
  const plannedBy = `language server, ${device?.source === 'measured' ? 'device profile measured on this machine' : 'default device profile'}${device?.name ? ` (${device.name})` : ''}`;
  const target = analyzed.target;
  const plan = { ...analyzed.plan, layers };
  const base = vscode.workspace.workspaceFolders?.[0]?.uri;
  const target_ = to ?? await vscode.window.showSaveDialog({
    defaultUri: base ? vscode.Uri.joinPath(base, `${view.name}.pixelfly-plan.json`) : undefined,
    filters: { JSON: ['json'] },
    title: 'Export Pixelfly plan',
  });
  if (!target_) return undefined;
  const doc = { model: view.name, source: view.uri, plannedBy, target, plan, engine: analyzed.engine };
  await vscode.workspace.fs.writeFile(target_, Buffer.from(JSON.stringify(doc, null, 2) + '\n', 'utf8'));
  void vscode.window.showInformationMessage(`Pixelfly: plan written to ${target_.fsPath}`);
  return target_;
}

function uriArg(arg: unknown): vscode.Uri | undefined {
  if (arg instanceof vscode.Uri) return arg;
  const uri = (arg as { uri?: unknown } | undefined)?.uri;
  return typeof uri === 'string' ? vscode.Uri.parse(uri) : vscode.window.activeTextEditor?.document.uri;
}

/** Installs pixelfly_torch into the selected interpreter (palette command, or from the check below). */
async function installTorch(s: Services, arg: unknown, python?: string): Promise<TorchStatus> {
  requireTrust('Installing pixelfly_torch');
  const py = python ?? (await selectedInterpreter(uriArg(arg)));
  const st = await installTorchPackage(cliPath(s), py, (l) => s.output.info(l));
  void vscode.window.showInformationMessage(`Pixelfly: pixelfly_torch installed for ${st.executable}: ${st.backend}`);
  return st;
}

/**
 * Run after a sparsify quick fix: the edited model imports pixelfly_torch; if the interpreter the
 * file runs under cannot import it (or runs it without its extension), offer the install.
 */
async function ensureTorch(s: Services, arg: unknown): Promise<TorchStatus | undefined> {
  const python = await selectedInterpreter(uriArg(arg));
  const st = await torchStatus(cliPath(s), python);
  s.output.info(`pixelfly_torch for ${st.executable}: ${st.installed ? st.backend : `not installed (${st.backend})`}`);
  if (st.installed && st.backend.startsWith('native')) return st;
  if (!st.torch) {
    void vscode.window.showWarningMessage(`Pixelfly: the model now imports pixelfly_torch, but ${st.executable} has no PyTorch; select an interpreter with torch (Python: Select Interpreter).`);
    return st;
  }
  const why = st.installed ? `runs pixelfly_torch without its kernels (${st.backend})` : 'cannot import pixelfly_torch';
  const choice = await vscode.window.showInformationMessage(`Pixelfly: ${st.executable} ${why}. Install it for this interpreter?`, 'Install', 'Not now');
  return choice === 'Install' ? installTorch(s, arg, python) : st;
}

/**
 * Which model of a file the hints, preview and runs use: the CodeLens's list (the language server's
 * view of the file), or from the palette the analysis of the active Python file.
 */
async function chooseModel(s: Services, arg: unknown): Promise<string | undefined> {
  let args: ChooseModelArgs;
  if (isChooseModelArgs(arg)) {
    args = arg;
  } else {
    const uri = uriArg(arg);
    if (!uri || !uri.fsPath.endsWith('.py')) throw new Error('open a Python file with a model to choose which of its models Pixelfly uses');
    const a = await s.analysis(uri);
    args = { uri: uri.toString(), current: a.model?.name ?? '', defaultModel: a.defaultModel, models: a.models };
  }
  const items = modelPickItems(args);
  if (items.length === 0) throw new Error(`no model found in ${basename(vscode.Uri.parse(args.uri).fsPath)}`);
  const picked = await vscode.window.showQuickPick(items, {
    title: `Pixelfly: the model of ${basename(vscode.Uri.parse(args.uri).fsPath)} that hints, the mask preview and runs use`,
    placeHolder: `now ${args.current || '(none)'}${args.defaultModel ? `; default ${args.defaultModel}` : ''}`,
  });
  if (!picked) return undefined;
  await s.modelChoices.set(args.uri, picked.model);
  s.output.info(`model for ${args.uri}: ${picked.model}`);
  return picked.model;
}

/** Opens a run's HTML report (self-contained, no scripts) in the system's browser. */
async function openReport(s: Services, jobId?: unknown): Promise<void> {
  const id = jobIdArg(jobId) ?? MetricsPanel.shownRun ?? undefined;
  let r = id ? s.store.get(id) : undefined;
  if (id && !runReportPath(r?.info)) {
    // The store may predate the summary (an interrupted run's report is written as the daemon stops).
    r = s.store.upsert(await s.connection.call('job.get', { jobId: id }));
  }
  const path = runReportPath(r?.info);
  if (!id || !path) throw new Error(`run ${id ?? '(none)'} has no report yet: it is written when the run ends`);
  if (!existsSync(path)) throw new Error(`the report ${path} is not on this machine (the daemon wrote it elsewhere, or the run folder was removed)`);
  await vscode.env.openExternal(vscode.Uri.file(path));
}

/** Registers every command; errors become one readable message plus the full text in the log. */
export function registerCommands(s: Services): vscode.Disposable[] {
  const wrap =
    (title: string, fn: (...args: unknown[]) => Promise<unknown>) =>
    async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (e) {
        const msg = (e as Error).message ?? String(e);
        s.output.error(`${title}: ${msg}`);
        void vscode.window.showErrorMessage(`Pixelfly: ${title}: ${msg}`);
        return undefined;
      }
    };
  const table: Record<string, [string, (...args: unknown[]) => Promise<unknown>]> = {
    'pixelfly.previewMasks': [
      'Preview masks',
      async (arg) => {
        const { view, focus } = await resolveModel(s, arg);
        MaskPanel.show(s.context.extensionUri, maskActions(s), view, focus);
        return view.layers.length;
      },
    ],
    'pixelfly.train': ['Train dense vs Pixelfly', (arg) => train(s, arg)],
    'pixelfly.openMetrics': ['Open metrics', (id) => openMetrics(s, id)],
    'pixelfly.openReport': ['Open report', (id) => openReport(s, id)],
    'pixelfly.chooseModel': ['Choose model', (arg) => chooseModel(s, arg)],
    'pixelfly.stopRun': ['Stop run', (id) => stopRun(s, id)],
    'pixelfly.measureSpeedups': [
      'Measure speedups',
      async (arg) => {
        const { view } = arg === undefined && MaskPanel.visibleModel ? { view: MaskPanel.visibleModel } : await resolveModel(s, arg);
        const measured = await measure(s, view);
        void vscode.window.showInformationMessage(
          `Pixelfly: measured on this device: ${Object.entries(measured).map(([k, v]) => `${k} ${v.toFixed(2)}×`).join(', ')}`,
        );
        return measured;
      },
    ],
    // An optional Uri argument skips the save dialog (scripts, tests).
    'pixelfly.exportPlan': ['Export plan', (arg, to) => exportPlan(s, arg, to instanceof vscode.Uri ? to : undefined)],
    'pixelfly.exportCsv': [
      'Export CSV',
      async (id, to) => exportCsv(s.store, jobIdArg(id) ?? MetricsPanel.shownRun ?? '', to instanceof vscode.Uri ? to : undefined),
    ],
    'pixelfly.connectDaemon': [
      'Connect to daemon',
      async () => {
        await s.connection.ensure();
        await refreshRuns(s);
      },
    ],
    'pixelfly.refreshRuns': ['Refresh runs', () => refreshRuns(s)],
    'pixelfly.showLog': ['Show log', async () => s.output.show(true)],
    'pixelfly.installTorchPackage': ['Install pixelfly_torch', (arg) => installTorch(s, arg)],
    'pixelfly.ensureTorchPackage': ['Check pixelfly_torch', (arg) => ensureTorch(s, arg)],
  };
  return Object.entries(table).map(([id, [title, fn]]) => vscode.commands.registerCommand(id, wrap(title, fn)));
}

