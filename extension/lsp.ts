/**
 * The language client: runs the bundled language server (dist/server.js) over IPC for Python
 * files. The server's CodeLens commands (`pixelfly.previewMasks`, `pixelfly.train`) are ours,
 * registered in commands.ts; commands the server itself offers (executeCommandProvider) are
 * registered by the client library and reached with vscode.commands.executeCommand.
 */
import { existsSync } from 'node:fs';
import * as vscode from 'vscode';
import { LanguageClient, TransportKind, type LanguageClientOptions, type ServerOptions } from 'vscode-languageclient/node';
import { ANALYSIS_REQUEST, type AnalysisJson, type AnalysisParams } from '../protocol/lsp';
import type { ModelChoices } from './modelChoice';

export function startLanguageClient(context: vscode.ExtensionContext, output: vscode.LogOutputChannel, modelChoices: ModelChoices): LanguageClient | undefined {
  const serverModule = context.asAbsolutePath('dist/server.js');
  if (!existsSync(serverModule)) {
    output.error(`language server bundle missing: ${serverModule} (run 'npm run bundle'); hints and quick fixes are off`);
    return undefined;
  }
  const serverOptions: ServerOptions = {
    run: { module: serverModule, transport: TransportKind.ipc },
    debug: { module: serverModule, transport: TransportKind.ipc, options: { execArgv: ['--nolazy', '--inspect=6019'] } },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file', language: 'python' }],
    outputChannel: output,
    synchronize: { configurationSection: 'pixelfly' },
    // Read at every (re)start of the server: it analyses each file with the model the user chose there.
    initializationOptions: () => ({ modelChoices: modelChoices.all() }),
  };
  const client = new LanguageClient('pixelfly', 'Pixelfly language server', serverOptions, clientOptions);
  client.start().then(
    () => output.info('language server started'),
    (e: Error) => output.error(`language server failed to start: ${e.message}`),
  );
  return client;
}

/**
 * The language server's analysis of a Python file (`pixelfly/analysis`): the one the hints and
 * lenses show, with the same settings; the open document's text, or the file on disk.
 */
export async function serverAnalysis(client: LanguageClient | undefined, uri: vscode.Uri): Promise<AnalysisJson> {
  if (!client) throw new Error('the Pixelfly language server is not running (see the Pixelfly output): the analysis comes from it');
  await client.start();
  const params: AnalysisParams = { uri: client.code2ProtocolConverter.asUri(uri) };
  return client.sendRequest<AnalysisJson>(ANALYSIS_REQUEST, params);
}
