/**
 * Host of the live metrics page: shows one run (switchable from the run history), feeds it from
 * the RunStore through a MetricsFeed (nothing while hidden; full replay when a page says ready),
 * and handles the page's CSV export and stop requests.
 */
import * as vscode from 'vscode';
import { MetricsToHostSchema } from '../../protocol/webview';
import { runCsv } from '../runs/csv';
import type { RunStore } from '../runs/runStore';
import { MetricsFeed } from './metricsFeed';
import { loadPage, messageFromPage } from './pagePanel';

export const METRICS_VIEW_TYPE = 'pixelfly.metrics';

export interface MetricsActions {
  stopRun(jobId: string): Promise<void>;
  /** Makes sure the store has (or is receiving) this run's full history. */
  follow(jobId: string): Promise<void>;
  log(line: string): void;
}

export class MetricsPanel implements vscode.Disposable {
  private static current: MetricsPanel | undefined;
  private readonly feed = new MetricsFeed();
  private readonly subs: vscode.Disposable[] = [];

  private constructor(
    private readonly panel: vscode.WebviewPanel,
    extensionUri: vscode.Uri,
    private readonly store: RunStore,
    private readonly actions: MetricsActions,
  ) {
    loadPage(panel, extensionUri, 'metrics', 'Pixelfly metrics');
    const unlisten = store.listen((jobId) => {
      if (jobId === this.feed.shownRun) this.flush();
    });
    this.subs.push(
      { dispose: unlisten },
      panel.webview.onDidReceiveMessage((m) => this.onMessage(m)),
      // Becoming visible again: the page was discarded while hidden and will say `ready`;
      // if it was kept, this delivers what was held back.
      panel.onDidChangeViewState(() => this.flush()),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  static show(extensionUri: vscode.Uri, store: RunStore, actions: MetricsActions, jobId: string | undefined): MetricsPanel {
    let p = MetricsPanel.current;
    if (!p) {
      const panel = vscode.window.createWebviewPanel(METRICS_VIEW_TYPE, 'Pixelfly metrics', { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, {});
      p = MetricsPanel.current = new MetricsPanel(panel, extensionUri, store, actions);
    } else {
      p.panel.reveal(undefined, true);
    }
    if (jobId) p.showRun(jobId);
    return p;
  }

  static revive(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, store: RunStore, actions: MetricsActions, state: unknown): void {
    const p = (MetricsPanel.current = new MetricsPanel(panel, extensionUri, store, actions));
    const runId = (state as { runId?: unknown } | undefined)?.runId;
    if (typeof runId === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(runId)) p.showRun(runId);
  }

  static get shownRun(): string | null {
    return MetricsPanel.current?.feed.shownRun ?? null;
  }

  private showRun(jobId: string): void {
    this.feed.show(jobId);
    const r = this.store.get(jobId);
    this.panel.title = `Pixelfly metrics: ${r?.info.name ?? jobId}`;
    this.actions.follow(jobId).catch((e: Error) => this.actions.log(`metrics: cannot follow ${jobId}: ${e.message}`));
    this.flush();
  }

  private flush(): void {
    const id = this.feed.shownRun;
    for (const m of this.feed.pending(id ? this.store.get(id) : undefined, this.panel.visible)) void this.panel.webview.postMessage(m);
  }

  private async onMessage(raw: unknown): Promise<void> {
    const m = messageFromPage(MetricsToHostSchema, raw, (l) => this.actions.log(l), 'metrics page');
    if (!m) return;
    switch (m.type) {
      case 'ready':
        this.feed.pageLoaded();
        this.flush();
        break;
      case 'exportCsv':
        await exportCsv(this.store, m.runId);
        break;
      case 'stopRun':
        await vscode.commands.executeCommand('pixelfly.stopRun', m.runId);
        break;
      case 'openReport':
        await vscode.commands.executeCommand('pixelfly.openReport', m.runId);
        break;
    }
  }

  dispose(): void {
    if (MetricsPanel.current === this) MetricsPanel.current = undefined;
    this.feed.pageGone();
    for (const s of this.subs.splice(0)) s.dispose();
    this.panel.dispose();
  }
}

/** Writes a run's CSV to `to`, or where the user picks in a save dialog. */
export async function exportCsv(store: RunStore, jobId: string, to?: vscode.Uri): Promise<vscode.Uri | undefined> {
  const r = store.get(jobId);
  if (!r) {
    void vscode.window.showErrorMessage(`Pixelfly: no metrics for run ${jobId} in this window.`);
    return undefined;
  }
  const base = vscode.workspace.workspaceFolders?.[0]?.uri;
  const target = to ?? await vscode.window.showSaveDialog({
    defaultUri: base ? vscode.Uri.joinPath(base, `${r.info.name}-${jobId}.csv`) : undefined,
    filters: { CSV: ['csv'] },
    title: 'Export run metrics as CSV',
  });
  if (!target) return undefined;
  await vscode.workspace.fs.writeFile(target, Buffer.from(runCsv(r), 'utf8'));
  void vscode.window.showInformationMessage(`Pixelfly: wrote ${r.steps.length} steps to ${target.fsPath}`);
  return target;
}
