// The editor's plan is costed with the device profile measured at the precision the settings train
// with (pixelfly.training.precision), as the daemon costs a job at its precision: an fp32 job on a
// CPU whose engine defaults to bf16 gets the fp32 profile, not the bf16 rates.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CodeLens } from 'vscode-languageserver';
import { DEFAULT_PROFILE } from '../../core/costModel';
import { fixture } from './helpers';
import { startServer } from './lspClient';

const home = mkdtempSync(join(tmpdir(), 'pixelfly-lsp-home-'));
const dir = mkdtempSync(join(tmpdir(), 'pixelfly-lsp-'));
cpSync(fixture('nanogpt'), dir, { recursive: true });
const uri = pathToFileURL(join(dir, 'model.py')).toString();
mkdirSync(join(home, 'profiles'));
const measured = (device: string, precision: 'fp32' | 'bf16', denseGflops: number) =>
  JSON.stringify({ ...DEFAULT_PROFILE, source: 'measured', device, precision, denseGflops, measuredAt: '2026-12-04T00:00:00Z' });
writeFileSync(join(home, 'profiles', 'device.json'), measured('cpu: test, bf16', 'bf16', 600));
writeFileSync(join(home, 'profiles', 'device-fp32.json'), measured('cpu: test, fp32', 'fp32', 200));
const client = startServer({ PIXELFLY_HOME: home });
after(() => {
  client.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});

async function trainLensDevice(): Promise<string> {
  const lenses = (await client.conn.sendRequest('textDocument/codeLens', { textDocument: { uri } })) as CodeLens[];
  const train = lenses.find((l) => l.command?.command === 'pixelfly.train');
  return (train!.command!.arguments![0] as { plan: { device: { name: string } } }).plan.device.name;
}

test('the lens plan follows pixelfly.training.precision to its device profile', async () => {
  const { conn } = client;
  await conn.sendRequest('initialize', { processId: process.pid, rootUri: pathToFileURL(dir).toString(), capabilities: {}, initializationOptions: { settings: {} } });
  await conn.sendNotification('initialized', {});
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'python', version: 1, text: readFileSync(join(dir, 'model.py'), 'utf8') } });
  await client.waitFor('diagnostics', () => client.published.find((p) => p.uri === uri));
  assert.equal(await trainLensDevice(), 'cpu: test, bf16', "'auto': the engine's default precision's profile");
  for (const [precision, device] of [['fp32', 'cpu: test, fp32'], ['bf16', 'cpu: test, bf16']] as const) {
    const seen = client.published.length;
    await conn.sendNotification('workspace/didChangeConfiguration', { settings: { pixelfly: { training: { precision } } } });
    await client.waitFor(`re-analysis at ${precision}`, () => (client.published.length > seen ? true : undefined));
    assert.equal(await trainLensDevice(), device, `training.precision ${precision}`);
  }
});
