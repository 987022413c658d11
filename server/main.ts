/**
 * The Pixelfly language server (its own process; the extension starts dist/server.js over IPC,
 * and `node dist/server.js --stdio` serves any LSP client). It reads Python model definitions,
 * and offers diagnostics, inlay hints, hovers, CodeLens and quick fixes from the analysis.
 */
import { fileURLToPath } from 'node:url';
import {
  CodeActionKind,
  DidChangeWatchedFilesNotification,
  FileChangeType,
  ProposedFeatures,
  TextDocumentSyncKind,
  TextDocuments,
  createConnection,
  type Disposable,
  type InitializeResult,
} from 'vscode-languageserver/node';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { pythonParser } from './analysis/parser';
import { analysisJson } from './analysis/analysisJson';
import { codeActions, codeLenses, diagnostics, hover, inlayHints, previewArgs, sparsifyEdit, whyNoRewrite, type EditContext } from './lsp/features';
import { ANALYSIS_REQUEST, APPLY_LAYER_CONFIG, MODEL_CHOICE_NOTIFICATION, type AnalysisJson, type AnalysisParams, type ApplyLayerConfigArgs, type ModelChoiceParams } from '../protocol/lsp';
import { Session, settingsFrom } from './lsp/session';
import { pythonFileWatchers } from './lsp/watchers';
import { RunResults, runKey } from '../io/runResults';
import { homePaths } from '../io/home';
import type { Analysis } from './analysis/analyze';

const connection = createConnection(ProposedFeatures.all);
const documents = new TextDocuments(TextDocument);
let session: Session | undefined;
let canConfigure = false;
let canWatchFiles = false;
let canWatchRelative = false;
let canDisableActions = false;
let initOptions: unknown;
const sessionReady = pythonParser().then((parser) => {
  session = new Session(parser, documents, (uri, result) => {
    const file = uri.startsWith('file:') ? fileURLToPath(uri) : uri;
    const diags = result.analysis ? diagnostics(result.analysis, file) : [];
    if (result.error) connection.console.warn(`pixelfly: ${file}: ${result.error}`);
    void connection.sendDiagnostics({ uri, version: result.version, diagnostics: diags });
    // Hints and lenses depend on the analysis: ask the client to pull them again.
    void connection.languages.inlayHint.refresh().catch(() => undefined);
    void connection.sendRequest('workspace/codeLens/refresh').catch(() => undefined);
  });
  return session;
});

async function current(uri: string) {
  const s = await sessionReady;
  return s.analyseNow(uri);
}

connection.onInitialize((params): InitializeResult => {
  canConfigure = !!params.capabilities.workspace?.configuration;
  canWatchFiles = !!params.capabilities.workspace?.didChangeWatchedFiles?.dynamicRegistration;
  canWatchRelative = !!params.capabilities.workspace?.didChangeWatchedFiles?.relativePatternSupport;
  canDisableActions = !!params.capabilities.textDocument?.codeAction?.disabledSupport;
  initOptions = params.initializationOptions;
  const roots = (params.workspaceFolders ?? []).map((f) => f.uri).filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u));
  const choices = modelChoicesFrom(initOptions);
  void sessionReady.then((s) => {
    s.workspaceRoots = roots;
    for (const c of choices) s.chooseModel(c.uri, c.model);
  });
  return {
    capabilities: {
      textDocumentSync: TextDocumentSyncKind.Incremental,
      hoverProvider: true,
      inlayHintProvider: true,
      codeLensProvider: { resolveProvider: false },
      codeActionProvider: { codeActionKinds: [CodeActionKind.QuickFix] },
      executeCommandProvider: { commands: [APPLY_LAYER_CONFIG] },
    },
    serverInfo: { name: 'pixelfly-language-server' },
  };
});

async function loadSettings(): Promise<void> {
  const s = await sessionReady;
  if (canConfigure) {
    const [pixelfly, python] = (await connection.workspace.getConfiguration([{ section: 'pixelfly' }, { section: 'python' }])) as unknown[];
    s.settings = settingsFrom(pixelfly, python);
  } else {
    s.settings = settingsFrom((initOptions as { settings?: unknown } | undefined)?.settings ?? initOptions);
  }
  for (const p of s.settings.problems ?? []) connection.console.warn(`setting ignored: ${p}`);
}

let watching: { key: string; registration: Promise<Disposable> } | undefined;

/**
 * Ask the client to report Python files changed on disk (registered by the server rather than the
 * extension, so every LSP client gets it); again, replacing the old registration, when the extra
 * paths change.
 */
function watchPythonFiles(extraPaths: readonly string[]): void {
  if (!canWatchFiles) return;
  const watchers = pythonFileWatchers(extraPaths, canWatchRelative);
  const key = JSON.stringify(watchers);
  if (watching?.key === key) return;
  const previous = watching?.registration;
  const registration = connection.client.register(DidChangeWatchedFilesNotification.type, { watchers });
  registration.catch((e: Error) => connection.console.warn(`pixelfly: cannot watch Python files: ${e.message}`));
  watching = { key, registration };
  void previous?.then((d) => d.dispose(), () => undefined);
}

function settingsChanged(s: Session): void {
  watchPythonFiles(s.extraPaths());
  s.invalidateAll();
}

connection.onInitialized(() => {
  void loadSettings().then(async () => settingsChanged(await sessionReady));
});

connection.onDidChangeConfiguration((change) => {
  void (async () => {
    const s = await sessionReady;
    if (canConfigure) await loadSettings();
    else s.settings = settingsFrom((change.settings as { pixelfly?: unknown })?.pixelfly);
    settingsChanged(s);
  })();
});

// Fired on open as well as on edits (TextDocuments fires both for didOpen).
documents.onDidChangeContent((e) => void sessionReady.then((s) => s.documentChanged(e.document.uri)));
documents.onDidClose((e) => {
  void sessionReady.then((s) => s.forget(e.document.uri));
  void connection.sendDiagnostics({ uri: e.document.uri, diagnostics: [] });
});

connection.onDidChangeWatchedFiles((p) => {
  const changes = p.changes.filter((c) => c.uri.startsWith('file:')).map((c) => ({ file: fileURLToPath(c.uri), deleted: c.type === FileChangeType.Deleted }));
  void sessionReady.then((s) => s.filesChangedOnDisk(changes));
});

const fileOf = (uri: string): string => fileURLToPath(uri);

// Past runs of the daemon (same home), so a lens and hover show what a run of this plan measured.
const runs = new RunResults(() => homePaths().runs);
function measured(a: Analysis) {
  if (!('plan' in a.engine)) return undefined;
  return runs.latest(runKey(a.engine.spec as unknown as Record<string, unknown>, a.engine.plan));
}

connection.onHover(async (p) => {
  const r = await current(p.textDocument.uri);
  return r?.analysis ? hover(r.analysis, fileOf(p.textDocument.uri), p.position, measured(r.analysis)) : null;
});

connection.languages.inlayHint.on(async (p) => {
  const r = await current(p.textDocument.uri);
  return r?.analysis ? inlayHints(r.analysis, fileOf(p.textDocument.uri), p.range) : [];
});

connection.onCodeLens(async (p) => {
  const r = await current(p.textDocument.uri);
  return r?.analysis ? codeLenses(r.analysis, fileOf(p.textDocument.uri), p.textDocument.uri, measured(r.analysis)) : [];
});

function editContext(uri: string): EditContext | undefined {
  const doc = documents.get(uri);
  const parsed = session?.cache.peek(fileOf(uri));
  if (!doc || !parsed || parsed.source !== doc.getText()) return undefined;
  return { uri, file: fileOf(uri), version: doc.version, root: parsed.root, disabledSupport: canDisableActions };
}

connection.onCodeAction(async (p) => {
  const r = await current(p.textDocument.uri);
  const ctx = editContext(p.textDocument.uri);
  const doc = documents.get(p.textDocument.uri);
  if (!r?.analysis || !ctx || !doc) return [];
  return codeActions(r.analysis, ctx, p.range, doc.getText().split('\n'), p.context.diagnostics, previewArgs(r.analysis, p.textDocument.uri));
});

/** The choices the client keeps (`initializationOptions.modelChoices`: uri -> model), checked: they came from another process. */
function modelChoicesFrom(options: unknown): ModelChoiceParams[] {
  const raw = (options as { modelChoices?: unknown } | undefined)?.modelChoices;
  if (typeof raw !== 'object' || raw === null) return [];
  return Object.entries(raw as Record<string, unknown>)
    .filter((e): e is [string, string] => typeof e[1] === 'string' && e[1] !== '')
    .map(([uri, model]) => ({ uri, model }));
}

connection.onNotification(MODEL_CHOICE_NOTIFICATION, (p: ModelChoiceParams) => {
  if (typeof p?.uri !== 'string' || !(typeof p.model === 'string' || p.model === null)) {
    connection.console.warn(`pixelfly: ${MODEL_CHOICE_NOTIFICATION}: expected {uri, model: string | null}`);
    return;
  }
  void sessionReady.then((s) => s.chooseModel(p.uri, p.model));
});

connection.onRequest(ANALYSIS_REQUEST, async (p: AnalysisParams): Promise<AnalysisJson> => {
  if (typeof p?.uri !== 'string') throw new Error(`${ANALYSIS_REQUEST}: expected {uri}`);
  const r = await (await sessionReady).analyseFile(p.uri);
  if (!r) throw new Error(`${p.uri} is not a Python file on disk or an open document`);
  if (!r.analysis) throw new Error(r.error ?? 'analysis failed');
  return analysisJson(r.analysis);
});

connection.onExecuteCommand(async (p) => {
  const arg = (p.arguments ?? [])[0] as { uri?: unknown } | undefined;
  if (typeof arg?.uri !== 'string') throw new Error(`${p.command}: expected an argument with a document 'uri'`);
  if (p.command !== APPLY_LAYER_CONFIG) throw new Error(`unknown command ${p.command}`);
  const args = arg as ApplyLayerConfigArgs;
  if (!Array.isArray(args.layers)) throw new Error(`${APPLY_LAYER_CONFIG}: expected 'layers': [{name, config}]`);
  const r = await current(args.uri);
  const ctx = editContext(args.uri);
  if (!r?.analysis || !ctx) throw new Error(`${APPLY_LAYER_CONFIG}: ${args.uri} is not an open, analysed Python document`);
  const analysis = r.analysis;
  // Layers that cannot be rewritten are skipped with the reason (the result says which), never a request error.
  const wanted = new Map(args.layers.map((l) => [l.name, l.config]));
  const configOf = (o: { name: string; decision: { sparsify: boolean; config?: typeof args.layers[number]['config'] } | null }) =>
    wanted.get(o.name) ?? (o.decision?.sparsify ? o.decision.config ?? null : null);
  const chosen = [];
  const skipped: string[] = [];
  for (const l of args.layers) {
    const row = analysis.layers.find((x) => x.name === l.name && x.file === ctx.file && x.count !== 0);
    const why = !row ? 'not a layer of this file' : whyNoRewrite(analysis, row, l.config, configOf);
    if (why || !row) skipped.push(`${l.name}: ${why}`);
    else chosen.push({ row, config: l.config });
  }
  if (chosen.length === 0) return { applied: [], skipped };
  const e = sparsifyEdit(ctx, chosen, analysis);
  if ('error' in e) return { applied: [], skipped: [...skipped, e.error] };
  const applied = await connection.workspace.applyEdit({ label: 'Pixelfly: apply layer configs', edit: e.edit });
  if (!applied.applied) return { applied: [], skipped: [...skipped, `the editor refused the edit${applied.failureReason ? `: ${applied.failureReason}` : ''}`] };
  return { applied: chosen.map((c) => c.row.name), skipped };
});

documents.listen(connection);
connection.listen();
