// The language server as an editor runs it: the compiled server in its own process over stdio,
// with a client that records what the server pushes (diagnostics, capability registrations)
// and answers the requests the server sends (refreshes, applyEdit).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import type { PublishDiagnosticsParams, Registration, Unregistration } from 'vscode-languageserver';
import { repoRoot } from './helpers';

export interface AppliedEdit {
  label?: string;
  edit: { documentChanges: unknown[] };
}

export interface LspClient {
  conn: MessageConnection;
  /** Every publishDiagnostics notification, in arrival order (one per analysis the server stored). */
  published: PublishDiagnosticsParams[];
  registrations: Registration[];
  unregistrations: Unregistration[];
  applied: AppliedEdit[];
  /** Resolves with `find()`'s first defined value, re-checked on each notification (and every 0.5 s). */
  waitFor<T>(what: string, find: () => T | undefined, timeoutMs?: number): Promise<T>;
  stop(): void;
}

/** The server over stdio; `env` adds to this process's (PIXELFLY_HOME: whose device profiles it plans with). */
export function startServer(env: Record<string, string> = {}): LspClient {
  const server = spawn(process.execPath, [join(repoRoot, 'out', 'server', 'main.js'), '--stdio'], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const conn = createMessageConnection(new StreamMessageReader(server.stdout!), new StreamMessageWriter(server.stdin!));
  const published: PublishDiagnosticsParams[] = [];
  const registrations: Registration[] = [];
  const unregistrations: Unregistration[] = [];
  const applied: AppliedEdit[] = [];
  const waiters: Array<() => void> = [];
  const wake = (): void => waiters.splice(0).forEach((w) => w());
  conn.onNotification('textDocument/publishDiagnostics', (p: PublishDiagnosticsParams) => {
    published.push(p);
    wake();
  });
  // The server asks the client to refresh hints and lenses after each analysis.
  conn.onRequest('workspace/inlayHint/refresh', () => null);
  conn.onRequest('workspace/codeLens/refresh', () => null);
  conn.onRequest('client/registerCapability', (p: { registrations: Registration[] }) => {
    registrations.push(...p.registrations);
    wake();
    return null;
  });
  // The LSP spells the field 'unregisterations'.
  conn.onRequest('client/unregisterCapability', (p: { unregisterations: Unregistration[] }) => {
    unregistrations.push(...p.unregisterations);
    wake();
    return null;
  });
  // "Apply to code" makes the server ask the client to apply an edit.
  conn.onRequest('workspace/applyEdit', (p: AppliedEdit) => {
    applied.push(p);
    return { applied: true };
  });
  conn.listen();
  return {
    conn,
    published,
    registrations,
    unregistrations,
    applied,
    async waitFor<T>(what: string, find: () => T | undefined, timeoutMs = 20000): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = find();
        if (hit !== undefined) return hit;
        if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 500);
        });
      }
    },
    stop(): void {
      conn.dispose();
      server.kill();
    },
  };
}
