/** Shared set-up of a webview panel: local resources only (dist/webview), scripts on, the CSP shell. */
import * as vscode from 'vscode';
import type { z } from 'zod';
import { parseFromPage } from '../../protocol/webview';
import { pageHtml } from './webviewHtml';

export function pageOptions(extensionUri: vscode.Uri): vscode.WebviewPanelOptions & vscode.WebviewOptions {
  return {
    enableScripts: true,
    // The page is rebuilt from host data (and its saved state) when shown again: no hidden retention.
    retainContextWhenHidden: false,
    enableFindWidget: true,
    localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist', 'webview')],
  };
}

/** (Re)initialises a panel created by us or revived by VS Code after a reload. */
export function loadPage(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, page: 'mask' | 'metrics', title: string): void {
  const w = panel.webview;
  w.options = pageOptions(extensionUri);
  const res = (f: string) => w.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', f)).toString();
  const styles = page === 'metrics' ? [res('uPlot.min.css'), res('pages.css')] : [res('pages.css')];
  w.html = pageHtml({ title, cspSource: w.cspSource, scriptUri: res(`${page}.js`), styleUris: styles });
}

/** A message from a page, validated; a bad one is logged (naming the field) and dropped (undefined). */
export function messageFromPage<T>(schema: z.ZodType<T>, raw: unknown, log: (line: string) => void, page: string): T | undefined {
  try {
    return parseFromPage(schema, raw);
  } catch (e) {
    log(`${page}: ${(e as Error).message}`);
    return undefined;
  }
}
