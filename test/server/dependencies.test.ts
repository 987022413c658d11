// A model file imports its config dataclass from another file: the language server must refresh
// the model's diagnostics when that file changes in the editor (another open document) or on
// disk (file-watcher events), must not re-analyse documents that do not import it, and must give
// the model the usual "sizes unresolved" hints, not a crash, when the config file is deleted.
// The same for a library module in an extra path outside the workspace. Driven through the real
// server process over stdio, as lsp.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Diagnostic } from 'vscode-languageserver';
import { diagnostics } from '../../server/lsp/features';
import { run } from './helpers';
import { startServer } from './lspClient';

const config = (nEmbd: number): string => `from dataclasses import dataclass


@dataclass
class GPTConfig:
    n_embd: int = ${nEmbd}
    n_layer: int = 4
`;

const MODEL = `import torch.nn as nn
from .config import GPTConfig


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
`;

// Imports nothing from the workspace: no change to config.py may re-analyse it.
const OTHER = `import torch.nn as nn


class Mlp(nn.Module):
    def __init__(self, dim=1024, hidden=4096):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
`;

// Library code found through the extra-paths setting, in a directory outside the workspace.
const mlpLibrary = (ratio: number): string => `import torch.nn as nn


class Mlp(nn.Module):
    def __init__(self, dim, ratio=${ratio}):
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)
`;

const LIBRARY_USER = `import torch.nn as nn
from mlplib import Mlp


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = Mlp(1024)
`;

const dir = mkdtempSync(join(tmpdir(), 'pixelfly-deps-'));
const libDir = mkdtempSync(join(tmpdir(), 'pixelfly-deps-lib-'));
const path = (name: string): string => join(dir, name);
const uriOf = (name: string): string => pathToFileURL(name.startsWith('/') ? name : path(name)).toString();
writeFileSync(path('config.py'), config(768));
writeFileSync(path('model.py'), MODEL);
writeFileSync(path('other.py'), OTHER);
writeFileSync(path('net.py'), LIBRARY_USER);
writeFileSync(join(libDir, 'mlplib.py'), mlpLibrary(4));
const [modelUri, otherUri, configUri, netUri] = [uriOf('model.py'), uriOf('other.py'), uriOf('config.py'), uriOf('net.py')];

const client = startServer();
const { conn } = client;
after(() => {
  client.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(libDir, { recursive: true, force: true });
});

const publishedFor = (uri: string) => client.published.filter((p) => p.uri === uri);
const messages = (ds: Diagnostic[]): string => ds.map((d) => d.message).join('\n');

/** The first diagnostics published for `uri` after the first `seen` of them that satisfy `ok`. */
function nextDiagnostics(uri: string, seen: number, ok: (ds: Diagnostic[]) => boolean, what: string): Promise<Diagnostic[]> {
  return client.waitFor(`${uri}: ${what}`, () => publishedFor(uri).slice(seen).find((p) => ok(p.diagnostics))?.diagnostics);
}

/** Sizes the model's fc layer is reported with (in its sparsify diagnostic). */
const fcSizes = (ds: Diagnostic[]): string | undefined => /sparsify h\.\*\.fc \((\d+→\d+) ×4/.exec(messages(ds))?.[1];

const mlpSizes = (ds: Diagnostic[]): string | undefined => /sparsify mlp\.fc1 \((\d+→\d+),/.exec(messages(ds))?.[1];

/** Past the debounce (150 ms) with a margin: a wrongly scheduled re-analysis would have published by then. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));

async function watched(changes: Array<{ name: string; type: 1 | 2 | 3 }>): Promise<void> {
  await conn.sendNotification('workspace/didChangeWatchedFiles', { changes: changes.map((c) => ({ uri: uriOf(c.name), type: c.type })) });
}

test('the analysis lists the files it read and the paths its imports looked for', async () => {
  const a = await run({ file: path('model.py'), workspaceRoots: [dir] });
  assert.deepEqual(a.dependencies, [path('model.py'), path('config.py')]);
  assert.deepEqual(a.missingImports, [], 'config.py is found in the first place looked');
  const viaOverlay = await run({ file: path('model.py'), overlays: new Map([[path('config.py'), config(512)]]) });
  assert.deepEqual(viaOverlay.dependencies, [path('model.py'), path('config.py')], 'an editor buffer counts as read');
  assert.equal(viaOverlay.layers[0].in, 512);
  const standalone = await run({ file: path('other.py') });
  assert.deepEqual(standalone.dependencies, [path('other.py')], 'torch is modelled, not read');
  assert.deepEqual(standalone.missingImports, []);
  const library = await run({ file: path('net.py'), extraPaths: [libDir] });
  assert.deepEqual(library.dependencies, [path('net.py'), join(libDir, 'mlplib.py')]);
  assert.deepEqual(library.missingImports, [path('mlplib.py'), path('mlplib/__init__.py')], 'a workspace module of that name would shadow the library');
});

test('the server asks the client to watch Python files (workspace and extra paths) and analyses the open documents', async () => {
  await conn.sendRequest('initialize', {
    processId: process.pid,
    rootUri: pathToFileURL(dir).toString(),
    workspaceFolders: [{ uri: pathToFileURL(dir).toString(), name: 'ws' }],
    capabilities: { workspace: { didChangeWatchedFiles: { dynamicRegistration: true, relativePatternSupport: true } } },
    initializationOptions: { settings: { plan: { budget: 0.5 }, analysis: { extraPaths: [libDir] } } },
  });
  await conn.sendNotification('initialized', {});
  const reg = await client.waitFor('file-watcher registration', () => client.registrations.find((r) => r.method === 'workspace/didChangeWatchedFiles'));
  assert.deepEqual(reg.registerOptions, { watchers: [{ globPattern: '**/*.py' }, { globPattern: { baseUri: pathToFileURL(libDir).toString(), pattern: '**/*.py' } }] });
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri: modelUri, languageId: 'python', version: 1, text: MODEL } });
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri: otherUri, languageId: 'python', version: 1, text: OTHER } });
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri: netUri, languageId: 'python', version: 1, text: LIBRARY_USER } });
  assert.equal(fcSizes(await nextDiagnostics(modelUri, 0, (ds) => !!fcSizes(ds), 'first analysis')), '768→3072');
  assert.equal(mlpSizes(await nextDiagnostics(netUri, 0, (ds) => !!mlpSizes(ds), 'first analysis')), '1024→4096');
  await nextDiagnostics(otherUri, 0, () => true, 'first analysis');
});

test('editing the imported config in another open document refreshes the model, not the unrelated file', async () => {
  let seen = publishedFor(modelUri).length;
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri: configUri, languageId: 'python', version: 1, text: config(768) } });
  await conn.sendNotification('textDocument/didChange', { textDocument: { uri: configUri, version: 2 }, contentChanges: [{ text: config(1024) }] });
  const edited = await nextDiagnostics(modelUri, seen, (ds) => fcSizes(ds) === '1024→4096', 'diagnostics from the edited (unsaved) config');
  assert.match(messages(edited), /sparsify h\.\*\.proj \(4096→1024 ×4/);
  assert.equal(publishedFor(modelUri).at(-1)!.version, 1, 'the model document itself was not touched');
  const inventory = (await conn.sendRequest('pixelfly/analysis', { uri: modelUri })) as { layers: Array<{ name: string; in: number; out: number }> };
  assert.deepEqual(inventory.layers.map((l) => [l.name, l.in, l.out]), [['h.*.fc', 1024, 4096], ['h.*.proj', 4096, 1024]]);

  // Closing the buffer unsaved: the model reads config.py from disk again (768).
  seen = publishedFor(modelUri).length;
  await conn.sendNotification('textDocument/didClose', { textDocument: { uri: configUri } });
  await nextDiagnostics(modelUri, seen, (ds) => fcSizes(ds) === '768→3072', 'diagnostics after the unsaved config was closed');
  await settle();
  assert.equal(publishedFor(otherUri).length, 1, 'other.py imports nothing that changed: analysed once');
});

test('a config changed on disk, reported by the file watcher, refreshes the model, not the unrelated file', async () => {
  const seen = publishedFor(modelUri).length;
  writeFileSync(path('config.py'), config(512));
  await watched([{ name: 'config.py', type: 2 }]);
  await nextDiagnostics(modelUri, seen, (ds) => fcSizes(ds) === '512→2048', 'diagnostics from the config on disk');
  await settle();
  assert.equal(publishedFor(otherUri).length, 1, 'other.py analysed once');
  assert.equal(publishedFor(modelUri).length, seen + 1, 'one re-analysis of the model for one change');
});

test('a deleted config gives the model the hints of a missing module, and its re-creation resolves it again', async () => {
  let seen = publishedFor(modelUri).length;
  unlinkSync(path('config.py'));
  await watched([{ name: 'config.py', type: 3 }]);
  const missing = await nextDiagnostics(modelUri, seen, (ds) => !fcSizes(ds), 'diagnostics without config.py');
  // What the analysis says of a model whose config module does not exist (a fresh parse, no server state).
  const expected = diagnostics(await run({ file: path('model.py'), workspaceRoots: [dir] }), path('model.py'));
  assert.deepEqual(missing, expected);
  assert.deepEqual(missing.map((d) => d.code), ['pixelfly.unresolved', 'pixelfly.unresolved']);
  assert.match(missing[0].message, /^Pixelfly: h\.\*\.fc: Sizes unresolved \(config\.n_embd, 4 \* config\.n_embd, config\.n_layer\): pin them/);
  const inventory = (await conn.sendRequest('pixelfly/analysis', { uri: modelUri })) as { layers: Array<{ name: string; in: number | string }> };
  assert.deepEqual(inventory.layers.map((l) => [l.name, l.in]), [['h.*.fc', 'config.n_embd'], ['h.*.proj', '4 * config.n_embd']], 'the server still answers');

  seen = publishedFor(modelUri).length;
  writeFileSync(path('config.py'), config(768));
  await watched([{ name: 'config.py', type: 1 }]);
  await nextDiagnostics(modelUri, seen, (ds) => fcSizes(ds) === '768→3072', 'diagnostics once config.py exists again');
  await settle();
  assert.equal(publishedFor(otherUri).length, 1, 'other.py analysed once');
});

test('events for open documents and unrelated files re-analyse nothing (the editor\'s text is what is read)', async () => {
  const [model, other] = [publishedFor(modelUri).length, publishedFor(otherUri).length];
  writeFileSync(path('unrelated.py'), 'x = 1\n');
  await watched([{ name: 'model.py', type: 2 }, { name: 'unrelated.py', type: 1 }, { name: 'other.py', type: 3 }]);
  await settle();
  assert.deepEqual([publishedFor(modelUri).length, publishedFor(otherUri).length], [model, other]);
  assert.equal(readFileSync(path('model.py'), 'utf8'), MODEL);
});

test('a library module changed on disk in an extra path outside the workspace refreshes its importer only', async () => {
  const [net, model, other] = [publishedFor(netUri).length, publishedFor(modelUri).length, publishedFor(otherUri).length];
  writeFileSync(join(libDir, 'mlplib.py'), mlpLibrary(2));
  await watched([{ name: join(libDir, 'mlplib.py'), type: 2 }]);
  await nextDiagnostics(netUri, net, (ds) => mlpSizes(ds) === '1024→2048', 'diagnostics from the changed library');
  await settle();
  assert.deepEqual([publishedFor(modelUri).length, publishedFor(otherUri).length], [model, other]);
});

test('new extra paths replace the file-watcher registration, and every document is re-analysed with the new settings', async () => {
  const [first] = client.registrations;
  const [net, other] = [publishedFor(netUri).length, publishedFor(otherUri).length];
  await conn.sendNotification('workspace/didChangeConfiguration', { settings: { pixelfly: { plan: { budget: 0.5 } } } });
  await client.waitFor('the old registration withdrawn', () => client.unregistrations.find((u) => u.id === first.id));
  assert.deepEqual(client.registrations.at(-1)!.registerOptions, { watchers: [{ globPattern: '**/*.py' }] });
  // Without the extra path, mlplib is an unknown package: Net builds no layer it can see.
  await nextDiagnostics(netUri, net, (ds) => ds.length === 0, 'diagnostics without the library');
  await nextDiagnostics(otherUri, other, () => true, 'a re-analysis at the same version');
});

test('a relative extra path is read from the first workspace folder (where the PyTorch runner imports it from)', async () => {
  const net = publishedFor(netUri).length;
  await conn.sendNotification('workspace/didChangeConfiguration', { settings: { pixelfly: { plan: { budget: 0.5 }, analysis: { extraPaths: [relative(dir, libDir)] } } } });
  await client.waitFor('the extra path watched again', () =>
    client.registrations.find((r) => JSON.stringify(r.registerOptions).includes(pathToFileURL(libDir).toString()) && r !== client.registrations[0]));
  assert.match(mlpSizes(await nextDiagnostics(netUri, net, (ds) => !!mlpSizes(ds), 'the library found again')) ?? '', /^1024→/);
});
