/** The "Runs" tree: past and current runs (newest first); selecting one opens its metrics. */
import * as vscode from 'vscode';
import { runDescription, runDetailLines, runReportPath } from './runDetails';
import { engineOf, isActive, type RunRecord, type RunStore } from './runStore';

const ICON: Record<string, string> = {
  queued: 'clock',
  running: 'sync~spin',
  completed: 'pass',
  failed: 'error',
  cancelled: 'circle-slash',
  interrupted: 'debug-pause',
};

export class RunTree implements vscode.TreeDataProvider<RunRecord>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<RunRecord | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly unlisten: () => void;

  constructor(private readonly store: RunStore) {
    // Only info changes (state, speedup) alter the tree; metric points do not.
    this.unlisten = store.listen((_id, what) => what === 'info' && this.changed.fire(undefined));
  }

  getChildren(element?: RunRecord): RunRecord[] {
    return element ? [] : this.store.list();
  }

  getTreeItem(r: RunRecord): vscode.TreeItem {
    const item = new vscode.TreeItem(r.info.name, vscode.TreeItemCollapsibleState.None);
    item.id = r.info.jobId;
    item.description = runDescription(r.info);
    const engine = engineOf(r.info);
    item.tooltip = [r.info.jobId, `created ${r.info.createdAt}`, ...runDetailLines(r.info), ...(engine ? [`trained on ${engine}`] : []), r.info.runDir].join('\n');
    item.iconPath = new vscode.ThemeIcon(ICON[r.info.state] ?? 'circle-outline');
    item.contextValue = isActive(r) ? 'pixelfly.run.active' : runReportPath(r.info) ? 'pixelfly.run.report' : 'pixelfly.run';
    item.command = { command: 'pixelfly.openMetrics', title: 'Open metrics', arguments: [r.info.jobId] };
    return item;
  }

  dispose(): void {
    this.unlisten();
    this.changed.dispose();
  }
}
