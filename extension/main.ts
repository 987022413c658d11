/**
 * Extension entry: wires the output channel, settings, daemon connection, run store, status bar,
 * run history tree, webview panels (with restore after reload) and the language client.
 * Activation: on Python files, on any Pixelfly command, and when VS Code restores one of our panels.
 */
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { metricsActions, maskActions, refreshRuns, registerCommands, type Services } from './commands';
import { DaemonConnection } from './daemon/connection';
import { serverAnalysis, startLanguageClient } from './lsp';
import { ModelChoices } from './modelChoice';
import { MODEL_CHOICE_NOTIFICATION, type ModelChoiceParams } from '../protocol/lsp';
import { MASK_VIEW_TYPE, MaskPanel } from './panels/maskPanel';
import { METRICS_VIEW_TYPE, MetricsPanel } from './panels/metricsPanel';
import { RunStore } from './runs/runStore';
import { RunTree } from './runs/runTree';
import { readSettings, type Settings } from './settings';
import { DaemonStatusBar } from './statusBar';

let client: LanguageClient | undefined;

/** What tests (the extension-host suite) can inspect; returned from activate(). */
export interface PixelflyApi {
  store: RunStore;
  connection: DaemonConnection;
  settings(): Settings;
}

export function activate(context: vscode.ExtensionContext): PixelflyApi {
  const output = vscode.window.createOutputChannel('Pixelfly', { log: true });
  const read = () => readSettings((key) => vscode.workspace.getConfiguration('pixelfly').get<unknown>(key));
  let current = read();
  const reportProblems = () => current.problems.forEach((p) => output.warn(`setting ignored: ${p}`));
  reportProblems();

  const store = new RunStore();
  const connection = new DaemonConnection({
    autostart: current.settings.daemonAutostart && vscode.workspace.isTrusted,
    port: current.settings.daemonPort,
    cliPath: context.asAbsolutePath('dist/pixelfly.js'),
    log: (l) => output.info(l),
  });
  const modelChoices = new ModelChoices(context.workspaceState, (uri, model) => {
    // A server that is not running gets every choice in its initializationOptions when it starts.
    if (client?.isRunning()) client.sendNotification(MODEL_CHOICE_NOTIFICATION, { uri, model } satisfies ModelChoiceParams).catch((e: Error) => output.warn(`model choice: ${e.message}`));
  });
  const services: Services = { context, output, connection, store, modelChoices, settings: () => current.settings, analysis: (uri) => serverAnalysis(client, uri) };
  const status = new DaemonStatusBar();
  const runTree = new RunTree(store);

  context.subscriptions.push(
    output,
    status,
    runTree,
    { dispose: () => connection.dispose() },
    { dispose: connection.listen({ onState: (st) => status.update(st), onEvent: (e) => store.apply(e) }) },
    // A run that is not followed (e.g. one started from the terminal) still shows in the tree after a refresh.
    { dispose: connection.listen({ onState: (st) => st.kind === 'connected' && refreshRuns(services).catch((e: Error) => output.warn(`job.list: ${e.message}`)) }) },
    vscode.window.registerTreeDataProvider('pixelfly.runs', runTree),
    ...registerCommands(services),
    vscode.window.registerWebviewPanelSerializer(MASK_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel, state) => MaskPanel.revive(panel, context.extensionUri, maskActions(services), state),
    }),
    vscode.window.registerWebviewPanelSerializer(METRICS_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel, state) => MetricsPanel.revive(panel, context.extensionUri, store, metricsActions(services), state),
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration('pixelfly')) return;
      current = read();
      reportProblems();
    }),
  );

  // Connect in the background; offline is a normal state (the status bar says so and offers a retry).
  connection.ensure().catch((e: Error) => output.info(`daemon not connected yet: ${e.message}`));
  client = startLanguageClient(context, output, modelChoices);
  output.info(`Pixelfly activated (workspace ${vscode.workspace.isTrusted ? 'trusted' : 'untrusted: training disabled'})`);
  return { store, connection, settings: () => current.settings };
}

export function deactivate(): Thenable<void> | undefined {
  return client?.stop();
}
