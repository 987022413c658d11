// Choosing which model of a file the hints, preview and runs use: the analysis lists the file's
// models (its own ones, and the parts they use) and defaults to the first model class, not the last;
// the language server, as a client drives it, analyses the model the client chose (at start, in its
// initializationOptions, and later by notification), falls back to the default when the chosen one is
// gone (saying so), and offers the choice as a CodeLens only where there is one to make.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CodeLens } from 'vscode-languageserver';
import { CHOOSE_MODEL, MODEL_CHOICE_NOTIFICATION, type ChooseModelArgs, type ModelChoiceParams, type PreviewMasksArgs, type TrainLensArgs } from '../../protocol/lsp';
import { fixture, run } from './helpers';
import { startServer } from './lspClient';

const SOURCE = `import torch.nn as nn


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)


class Small(nn.Module):
    def __init__(self, dim=256):
        super().__init__()
        self.block = Block(dim)
        self.head = nn.Linear(dim, 10)


class Big(nn.Module):
    def __init__(self, dim=1024, depth=4):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, 10)
`;

const dir = mkdtempSync(join(tmpdir(), 'pixelfly-models-'));
const file = join(dir, 'models.py');
writeFileSync(file, SOURCE);
const uri = pathToFileURL(file).toString();

after(() => rmSync(dir, { recursive: true, force: true }));

test('the analysis lists the file\'s models and defaults to the first model class; a chosen one is analysed instead', async () => {
  const a = await run({ file });
  assert.deepEqual(a.models, [
    { name: 'Block', kind: 'class', line: 4, top: false },
    { name: 'Small', kind: 'class', line: 10, top: true },
    { name: 'Big', kind: 'class', line: 17, top: true },
  ]);
  assert.equal(a.defaultModel, 'Small', 'two models of one size: the first, not the last');
  assert.equal(a.model?.name, 'Small');
  const big = await run({ file, model: 'Big' });
  assert.equal(big.model?.name, 'Big');
  assert.equal(big.defaultModel, 'Small', 'the default does not depend on the choice');
  assert.ok(big.layers.some((l) => l.name === 'blocks.*.fc' && l.in === 1024 && l.count === 4), big.layers.map((l) => l.name).join(', '));
  // Registry functions of one class (timm): the class is the default, and the functions are models too.
  const timm = await run({ file: fixture('timm', 'vision_transformer.py') });
  assert.equal(timm.defaultModel, 'VisionTransformer');
  assert.ok(timm.models.filter((m) => m.top && m.kind === 'function').length >= 2, 'the registry functions are offered');
});

test('the language server analyses the model the client chose, and offers the choice where there is one', { timeout: 60_000 }, async () => {
  const client = startServer();
  const { conn } = client;
  try {
    await conn.sendRequest('initialize', {
      processId: process.pid,
      rootUri: pathToFileURL(dir).toString(),
      workspaceFolders: [{ uri: pathToFileURL(dir).toString(), name: 'ws' }],
      capabilities: {},
      // What the extension keeps in its workspace state, passed at every (re)start of the server.
      initializationOptions: { settings: { plan: { budget: 0.5 } }, modelChoices: { [uri]: 'Big', 'file:///elsewhere.py': 7 } },
    });
    await conn.sendNotification('initialized', {});
    await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'python', version: 1, text: SOURCE } });
    const lenses = async (): Promise<CodeLens[]> => (await conn.sendRequest('textDocument/codeLens', { textDocument: { uri } })) as CodeLens[];
    const using = async (model: string): Promise<CodeLens[]> => {
      // Each choice re-analyses the document at its unchanged version: wait until the lenses show it.
      for (const deadline = Date.now() + 20_000; ; ) {
        const ls = await lenses();
        const preview = ls.find((l) => l.command?.command === 'pixelfly.previewMasks')?.command?.arguments?.[0] as PreviewMasksArgs | undefined;
        if (preview?.name === model) return ls;
        if (Date.now() > deadline) throw new Error(`the lenses show ${preview?.name}, not ${model}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    let ls = await using('Big');
    const choose = ls.find((l) => l.command?.command === CHOOSE_MODEL);
    assert.ok(choose, 'a file of two models offers the choice');
    assert.equal(choose.command!.title, 'Pixelfly model: Big · 1 other in this file · choose…');
    assert.equal(choose.range.start.line, 16, 'on the chosen model\'s definition');
    const args = choose.command!.arguments![0] as ChooseModelArgs;
    assert.deepEqual({ ...args, models: args.models.map((m) => m.name) }, { uri, current: 'Big', defaultModel: 'Small', models: ['Block', 'Small', 'Big'] });
    const train = ls.find((l) => l.command?.command === 'pixelfly.train')!.command!.arguments![0] as TrainLensArgs;
    assert.equal(train.name, 'Big', 'runs train the chosen model');
    const analysis = (await conn.sendRequest('pixelfly/analysis', { uri })) as { model: { name: string }; defaultModel: string };
    assert.equal(analysis.model.name, 'Big');

    // Back to the default.
    await conn.sendNotification(MODEL_CHOICE_NOTIFICATION, { uri, model: null } satisfies ModelChoiceParams);
    ls = await using('Small');
    assert.equal(ls.find((l) => l.command?.command === CHOOSE_MODEL)!.command!.title, 'Pixelfly model: Small (default) · 1 other in this file · choose…');

    // A part of a model can be chosen too; then a choice that is not in the file: the default, saying why.
    await conn.sendNotification(MODEL_CHOICE_NOTIFICATION, { uri, model: 'Block' } satisfies ModelChoiceParams);
    await using('Block');
    await conn.sendNotification(MODEL_CHOICE_NOTIFICATION, { uri, model: 'Gone' } satisfies ModelChoiceParams);
    for (const deadline = Date.now() + 20_000; ; ) {
      const a = (await conn.sendRequest('pixelfly/analysis', { uri })) as { model: { name: string }; notes: string[] };
      if (a.notes.some((n) => /the model chosen for this file, Gone, is not in it now: showing the default, Small/.test(n))) {
        assert.equal(a.model.name, 'Small');
        break;
      }
      if (Date.now() > deadline) throw new Error(`no fallback note: ${a.model.name}, ${a.notes.join('; ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // A malformed notification changes nothing and does not take the server down.
    await conn.sendNotification(MODEL_CHOICE_NOTIFICATION, { uri, model: 3 });
    assert.ok((await lenses()).length > 0);
  } finally {
    client.stop();
  }
});
