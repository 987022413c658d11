/**
 * Host of the mask preview page: one panel, reused; it sends the model on every `ready` (first
 * load, reload, re-show) and runs the page's requests (apply to code, measure) through the
 * language server and the daemon. Everything the page sends is validated first.
 */
import * as vscode from 'vscode';
import { MaskToHostSchema, type HostToMask, type MaskToHost, type ModelView } from '../../protocol/webview';
import { loadPage, messageFromPage } from './pagePanel';

export const MASK_VIEW_TYPE = 'pixelfly.maskPreview';

export interface MaskActions {
  /** Writes the layers' configs into the model file; resolves with a message for the user. */
  applyToCode(model: ModelView, layers: Extract<MaskToHost, { type: 'applyToCode' }>['layers']): Promise<string>;
  /** Measured speedups by layer name. */
  measure(model: ModelView): Promise<Record<string, number>>;
  log(line: string): void;
}

export class MaskPanel implements vscode.Disposable {
  private static current: MaskPanel | undefined;
  private model: ModelView | undefined;
  private focus: string | undefined;
  private readonly subs: vscode.Disposable[] = [];

  private constructor(
    private readonly panel: vscode.WebviewPanel,
    extensionUri: vscode.Uri,
    private readonly actions: MaskActions,
  ) {
    loadPage(panel, extensionUri, 'mask', 'Pixelfly masks');
    this.subs.push(
      panel.webview.onDidReceiveMessage((m) => this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  static show(extensionUri: vscode.Uri, actions: MaskActions, model: ModelView, focus?: string): MaskPanel {
    let p = MaskPanel.current;
    if (!p) {
      const panel = vscode.window.createWebviewPanel(MASK_VIEW_TYPE, 'Pixelfly masks', vscode.ViewColumn.Beside, {});
      p = MaskPanel.current = new MaskPanel(panel, extensionUri, actions);
    } else {
      p.panel.reveal(vscode.ViewColumn.Beside);
    }
    p.model = model;
    p.focus = focus;
    p.panel.title = `Pixelfly masks: ${model.name}`;
    p.post({ type: 'mask.model', model, focus });
    return p;
  }

  /** After a window reload: the page restores itself from its saved state and re-sends ready. */
  static revive(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, actions: MaskActions, state: unknown): void {
    const p = (MaskPanel.current = new MaskPanel(panel, extensionUri, actions));
    const saved = (state as { model?: unknown } | undefined)?.model;
    // The saved model is page data: it is re-validated by the page; the host only keeps it for "measure"/"apply".
    if (saved && typeof saved === 'object') p.model = saved as ModelView;
  }

  static get visibleModel(): ModelView | undefined {
    return MaskPanel.current?.model;
  }

  private post(m: HostToMask): void {
    void this.panel.webview.postMessage(m);
  }

  private async onMessage(raw: unknown): Promise<void> {
    const m = messageFromPage(MaskToHostSchema, raw, (l) => this.actions.log(l), 'mask preview');
    if (!m) return;
    const model = this.model;
    switch (m.type) {
      case 'ready':
        if (model) this.post({ type: 'mask.model', model, focus: this.focus });
        break;
      case 'applyToCode':
        if (!model) return;
        try {
          this.post({ type: 'mask.applied', ok: true, message: await this.actions.applyToCode(model, m.layers) });
        } catch (e) {
          this.post({ type: 'mask.applied', ok: false, message: (e as Error).message });
        }
        break;
      case 'measure':
        if (!model) return;
        try {
          this.post({ type: 'mask.measured', speedups: await this.actions.measure(model) });
        } catch (e) {
          this.post({ type: 'mask.applied', ok: false, message: `measuring failed: ${(e as Error).message}` });
        }
        break;
    }
  }

  dispose(): void {
    if (MaskPanel.current === this) MaskPanel.current = undefined;
    for (const s of this.subs.splice(0)) s.dispose();
    this.panel.dispose();
  }
}
