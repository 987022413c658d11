/**
 * The `pixelfly_torch` package in the user's own interpreter: after a sparsify quick fix the model
 * imports it, so the extension checks that the interpreter the Python extension selected has it,
 * and offers to install it (`pixelfly torch install`, run as a child process with its progress in
 * a notification and the log).
 */
import { execFile, spawn } from 'node:child_process';
import * as vscode from 'vscode';

/** The subset of the Python extension's API used here (ms-python.python `environments`). */
interface PythonApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { path: string };
    resolveEnvironment(env: { path: string }): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  };
}

/** The interpreter the user's code runs under: the Python extension's selection, else the settings, else python3. */
export async function selectedInterpreter(resource?: vscode.Uri): Promise<string> {
  const ext = vscode.extensions.getExtension<PythonApi>('ms-python.python');
  if (ext) {
    try {
      const api = ext.isActive ? ext.exports : await ext.activate();
      const envs = api?.environments;
      if (envs) {
        const env = await envs.resolveEnvironment(envs.getActiveEnvironmentPath(resource));
        if (env?.executable.uri) return env.executable.uri.fsPath;
      }
    } catch {
      // An older or broken Python extension: fall back to the settings.
    }
  }
  const own = vscode.workspace.getConfiguration('pixelfly', resource).get<string>('analysis.pythonPath');
  if (own) return own;
  return vscode.workspace.getConfiguration('python', resource).get<string>('defaultInterpreterPath') || 'python3';
}

export interface TorchStatus {
  executable: string;
  torch: string | null;
  installed: boolean;
  /** What `pixelfly_torch.backend()` says ("native (avx512, 2 threads)" or "masked-dense: why"), or the import error. */
  backend: string;
}

const childEnv = { ...process.env, ELECTRON_RUN_AS_NODE: '1' };

/** `pixelfly torch status --python X --json`. */
export function torchStatus(cli: string, python: string): Promise<TorchStatus> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [cli, 'torch', 'status', '--python', python, '--json'], { env: childEnv, timeout: 120_000 }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      if (line.startsWith('{')) return resolve(JSON.parse(line) as TorchStatus);
      reject(new Error((stderr || err?.message || 'no output').trim().split('\n').pop()));
    });
  });
}

/** `pixelfly torch install --python X`, its lines to `log` and the progress notification. */
export function installTorchPackage(cli: string, python: string, log: (line: string) => void): Thenable<TorchStatus> {
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Pixelfly: installing pixelfly_torch into ${python}`, cancellable: false },
    (progress) =>
      new Promise<TorchStatus>((resolve, reject) => {
        const child = spawn(process.execPath, [cli, 'torch', 'install', '--python', python], { env: childEnv });
        let tail = '';
        const onData = (chunk: Buffer): void => {
          for (const line of chunk.toString('utf8').split('\n').filter((l) => l.trim())) {
            log(line);
            tail = line;
            progress.report({ message: line.replace(/^\[pixelfly_torch\] /, '').slice(0, 120) });
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.on('error', reject);
        child.on('close', (code) => {
          if (code !== 0) return reject(new Error(tail.replace(/^pixelfly: /, '') || `pixelfly torch install exited ${code}`));
          torchStatus(cli, python).then(resolve, reject);
        });
      }),
  );
}
