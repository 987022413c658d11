/** Status bar item: the daemon's state and the device it trains on; click to reconnect or show the log. */
import * as vscode from 'vscode';
import type { ConnectionState } from './daemon/connection';

export function deviceSummary(hello: Extract<ConnectionState, { kind: 'connected' }>['hello']): string {
  if (hello.gpus.length > 0) return `GPU ${hello.gpus[0].name}`;
  // The SIMD level the fp32 kernels can use decides CPU speed; show the best one the daemon reports.
  const simd = ['avx512f', 'avx2', 'neon'].find((f) => hello.cpu.features.includes(f));
  return `CPU ${hello.cpu.cores}c${simd ? ` ${simd}` : ''}`;
}

export class DaemonStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('pixelfly.daemon', vscode.StatusBarAlignment.Left, 50);

  constructor() {
    this.item.name = 'Pixelfly daemon';
    this.item.command = 'pixelfly.connectDaemon';
    this.update({ kind: 'disconnected', reason: 'not connected yet' });
    this.item.show();
  }

  update(s: ConnectionState): void {
    switch (s.kind) {
      case 'connected':
        this.item.text = `$(pulse) Pixelfly: ${deviceSummary(s.hello)}`;
        this.item.tooltip = `Pixelfly daemon ${s.hello.version} (pid ${s.hello.pid}), ${s.hello.threads} threads\n${s.hello.cpu.model}\nbackends: ${s.hello.backends.join(', ')}${
          s.hello.engine.available ? '' : `\nengine unavailable: ${s.hello.engine.error ?? ''}`
        }`;
        this.item.backgroundColor = undefined;
        this.item.command = 'pixelfly.showLog';
        break;
      case 'connecting':
      case 'starting':
        this.item.text = `$(sync~spin) Pixelfly: ${s.kind === 'starting' ? 'starting daemon' : 'connecting'}`;
        this.item.tooltip = 'Connecting to the Pixelfly daemon';
        this.item.command = 'pixelfly.showLog';
        break;
      case 'disconnected':
        this.item.text = '$(debug-disconnect) Pixelfly: offline';
        this.item.tooltip = `Pixelfly daemon not connected: ${s.reason}\nClick to connect.`;
        this.item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
        this.item.command = 'pixelfly.connectDaemon';
        break;
    }
  }

  dispose(): void {
    this.item.dispose();
  }
}
