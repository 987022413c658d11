/**
 * Extension-host integration tests (mocha TDD, for @vscode/test-electron): run inside a real VS Code
 * with the workspace test/e2e/workspace open. They use the real daemon (autostarted through the
 * discovery file in $PIXELFLY_HOME), the real native engine and the real webview panels.
 */
import * as assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { PixelflyApi } from '../../../extension/main';
import type { JobInfo } from '../../../protocol/daemon';
import { pinModelFile } from '../../support/pins';
import { PYTHON, torchMissing } from '../../support/torch';

const EXT_ID = 'pixelfly.pixelfly';
const COMMANDS = [
  'pixelfly.previewMasks',
  'pixelfly.train',
  'pixelfly.openMetrics',
  'pixelfly.openReport',
  'pixelfly.chooseModel',
  'pixelfly.stopRun',
  'pixelfly.measureSpeedups',
  'pixelfly.exportPlan',
  'pixelfly.exportCsv',
  'pixelfly.connectDaemon',
  'pixelfly.refreshRuns',
  'pixelfly.showLog',
];

function workspaceFile(name: string): vscode.Uri {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'a workspace folder is open');
  return vscode.Uri.joinPath(folder.uri, name);
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 120000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function webviewTabs(viewType: string): vscode.Tab[] {
  return vscode.window.tabGroups.all.flatMap((g) => g.tabs).filter((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith(viewType));
}

suite('Pixelfly extension (inside VS Code)', () => {
  let api: PixelflyApi;

  test('activates on a Python file and registers every command', async () => {
    const doc = await vscode.workspace.openTextDocument(workspaceFile('mixer.py'));
    await vscode.window.showTextDocument(doc);
    const ext = vscode.extensions.getExtension<PixelflyApi>(EXT_ID);
    assert.ok(ext, `${EXT_ID} is installed`);
    api = await waitFor('activation', () => ext.isActive && ext.exports, 30000);
    const all = await vscode.commands.getCommands(true);
    for (const c of COMMANDS) assert.ok(all.includes(c), `command ${c} registered`);
  });

  test('settings are declared with their defaults, and the workspace overrides apply', () => {
    const c = vscode.workspace.getConfiguration('pixelfly');
    assert.equal(c.inspect('daemon.autostart')?.defaultValue, true);
    assert.equal(c.inspect('plan.blockSize')?.defaultValue, 32);
    assert.equal(c.inspect('analysis.tokensPerSample')?.defaultValue, null, 'unset: the model\'s own tokens per sample wins');
    assert.equal(api.settings().dataset, 'synthetic', 'from test/e2e/workspace/.vscode/settings.json');
    assert.ok(api.settings().maxSteps > 0);
  });

  test('connects to the daemon (autostarted) and reports the device', async () => {
    await api.connection.ensure();
    const st = api.connection.state;
    assert.equal(st.kind, 'connected');
    if (st.kind === 'connected') {
      assert.equal(st.hello.name, 'pixelfly-daemon');
      assert.ok(st.hello.cpu.cores > 0);
      console.log(`daemon ${st.hello.version}, pid ${st.hello.pid}, ${st.hello.cpu.model}, engine available: ${st.hello.engine.available}`);
    }
  });

  test('Preview masks opens the mask preview for an explicit model (CodeLens-style arguments)', async () => {
    const n = await vscode.commands.executeCommand<number>('pixelfly.previewMasks', {
      name: 'suite-model',
      layers: [
        { name: 'fc1', role: 'mlp_fc1', in: 256, out: 1024, count: 2, decision: { sparsify: true, config: { block: 32, butterflySize: 8, nFactors: 2, rank: 8, globalSize: 0, shuffle: false }, estSpeedup: 1.5, reason: 'test' } },
        { name: 'head', role: 'head', in: 256, out: 10, count: 1, decision: { sparsify: false, estSpeedup: 1, reason: 'dense' } },
      ],
    });
    assert.equal(n, 2);
    await waitFor('mask preview tab', () => webviewTabs('pixelfly.maskPreview').length === 1, 15000);
  });

  test('Preview masks on the open Python model analyses it (the language server\'s pixelfly/analysis)', async () => {
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(workspaceFile('mixer.py')));
    const n = await vscode.commands.executeCommand<number | undefined>('pixelfly.previewMasks');
    assert.ok(typeof n === 'number' && n >= 4, `analysed ${n} layers`);
  });

  test('Measure speedups runs bench.layers on this device for the planned layers', async () => {
    const measured = await vscode.commands.executeCommand<Record<string, number> | undefined>('pixelfly.measureSpeedups', {
      name: 'bench-model',
      layers: [
        { name: 'fc1', role: 'mlp_fc1', in: 256, out: 1024, count: 1, rowsPerSample: 16, decision: { sparsify: true, config: { block: 32, butterflySize: 8, nFactors: 2, rank: 8, globalSize: 0, shuffle: false }, estSpeedup: 1.5, reason: 'test' } },
        { name: 'fc2', role: 'mlp_fc2', in: 1024, out: 256, count: 1, rowsPerSample: 16, decision: { sparsify: true, config: { block: 16, butterflySize: 8, nFactors: 2, rank: 4, globalSize: 0, shuffle: false }, estSpeedup: 1.5, reason: 'test' } },
        { name: 'head', role: 'head', in: 256, out: 10, count: 1, decision: { sparsify: false, estSpeedup: 1, reason: 'dense' } },
      ],
    });
    assert.ok(measured, 'measured');
    assert.deepEqual(Object.keys(measured).sort(), ['fc1', 'fc2'], 'only the Pixelfly layers are measured');
    assert.ok(measured.fc1 > 0 && Number.isFinite(measured.fc1));
    // Both configs land in the saved device profile (one call, nothing overwritten).
    const profile = JSON.parse(readFileSync(join(process.env.PIXELFLY_HOME as string, 'profiles', 'device.json'), 'utf8')) as { blockSparse: { block: number }[]; lowRank: { rank: number }[] };
    for (const block of [16, 32]) assert.ok(profile.blockSparse.some((p) => p.block === block), `block ${block} in ${JSON.stringify(profile.blockSparse)}`);
    for (const rank of [4, 8]) assert.ok(profile.lowRank.some((p) => p.rank === rank), `rank ${rank} in ${JSON.stringify(profile.lowRank)}`);
    console.log(`bench.layers fc1 256->1024, fc2 1024->256 x 256 rows: ${measured.fc1.toFixed(2)}x, ${measured.fc2.toFixed(2)}x (informational)`);
  });

  let job: JobInfo | undefined;
  test('Train dense vs Pixelfly runs a short comparison with live metrics to completion', async () => {
    const spec = JSON.parse(Buffer.from(await vscode.workspace.fs.readFile(workspaceFile('mixer.spec.json'))).toString('utf8')) as Record<string, unknown>;
    job = await vscode.commands.executeCommand<JobInfo | undefined>('pixelfly.train', { name: 'suite-run', spec: { ...spec, name: 'suite-run' } });
    assert.ok(job, 'job submitted');
    const id = job.jobId;
    await waitFor('metrics panel', () => webviewTabs('pixelfly.metrics').length === 1, 15000);
    // The daemon sends the terminal status, then the `completed` event with the summary: wait for the latter.
    const r = await waitFor('run completion', () => {
      const rec = api.store.get(id);
      return rec && ['completed', 'failed', 'cancelled'].includes(rec.info.state) && rec.info.summary !== undefined && rec;
    }, 240000);
    assert.equal(r.info.state, 'completed', r.info.error);
    assert.ok(r.steps.length > 0 && r.steps.length <= api.settings().maxSteps);
    assert.deepEqual(r.steps.map((s) => s.step), r.steps.map((_, i) => i + 1), 'every step once, in order');
    assert.ok(r.steps.every((s) => s.dense && s.pixelfly.loss > 0), 'both arms every step');
    assert.ok(r.evals.length > 0, 'evaluated');
    assert.ok((r.info.summary?.speedup ?? 0) > 0);
    console.log(`run ${id}: ${r.steps.length} steps, speedup ${r.info.summary?.speedup?.toFixed(2)}x, eval ${JSON.stringify(r.evals[r.evals.length - 1])}`);
  });

  test('Export CSV and Export plan write their files', async () => {
    assert.ok(job);
    const csv = await vscode.commands.executeCommand<vscode.Uri | undefined>('pixelfly.exportCsv', job.jobId, workspaceFile('suite-run.csv'));
    assert.ok(csv);
    const lines = Buffer.from(await vscode.workspace.fs.readFile(csv)).toString('utf8').trim().split('\n');
    assert.match(lines[0], /^step,pixelfly_loss,/);
    assert.equal(lines.filter((l) => /^\d+,\d/.test(l)).length >= api.store.get(job.jobId)!.steps.length, true);
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(workspaceFile('mixer.py')));
    const planUri = await vscode.commands.executeCommand<vscode.Uri | undefined>('pixelfly.exportPlan', undefined, workspaceFile('mixer.pixelfly-plan.json'));
    assert.ok(planUri);
    const plan = JSON.parse(Buffer.from(await vscode.workspace.fs.readFile(planUri)).toString('utf8')) as { model: string; plannedBy: string; plan: { layers: { name: string }[] } };
    assert.equal(plan.model, 'Mixer');
    assert.match(plan.plannedBy, /language server/);
    assert.ok(plan.plan.layers.length >= 4);
  });

  test('Train from the palette takes the Python model under the cursor, on a device never measured measures it first; Stop run cancels it', async () => {
    // A device with no measured profile: the first engine run measures it, and trains the lens's plan re-costed with it.
    rmSync(join(process.env.PIXELFLY_HOME as string, 'profiles', 'device.json'), { force: true });
    const editor = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(workspaceFile('mixer.py')));
    const classLine = editor.document.getText().split('\n').findIndex((l) => l.startsWith('class Mixer('));
    editor.selection = new vscode.Selection(classLine + 3, 0, classLine + 3, 0);
    await vscode.workspace.getConfiguration('pixelfly').update('training.maxSteps', 100000, vscode.ConfigurationTarget.Workspace);
    try {
      const j = await vscode.commands.executeCommand<JobInfo | undefined>('pixelfly.train');
      assert.ok(j);
      assert.equal(j.name, 'Mixer', 'the class under the cursor');
      // The run names the model and file its engine stand-in was built from.
      assert.deepEqual([j.subject?.runner, j.subject?.model, j.subject?.file], ['engine', 'Mixer', workspaceFile('mixer.py').fsPath]);
      const profile = JSON.parse(readFileSync(join(process.env.PIXELFLY_HOME as string, 'profiles', 'device.json'), 'utf8')) as { source: string };
      assert.equal(profile.source, 'measured', 'the device was measured before the run');
      const trained = JSON.parse(readFileSync(join(j.runDir, 'plan.json'), 'utf8')) as { device?: { source?: string } };
      assert.equal(trained.device?.source, 'measured', 'the run trains the plan costed with the measured profile');
      await waitFor('first step', () => (api.store.get(j.jobId)?.steps.length ?? 0) > 0, 120000);
      await vscode.commands.executeCommand('pixelfly.stopRun', j.jobId);
      const r = await waitFor('cancelled', () => api.store.get(j.jobId)?.info.state === 'cancelled' && api.store.get(j.jobId), 60000);
      assert.ok(r.steps.length < 100000);
      assert.equal(r.progress.etaS, null, 'a stopped run has no ETA');
      assert.equal(r.info.endReason, 'cancelled on request (job.cancel)');
    } finally {
      await vscode.workspace.getConfiguration('pixelfly').update('training.maxSteps', undefined, vscode.ConfigurationTarget.Workspace);
    }
  });

  /** The PyTorch runner's tests need python3-torch: without it they skip, saying why. */
  function requireTorch(ctx: Mocha.Context): void {
    const missing = torchMissing();
    if (missing) {
      console.log(missing);
      ctx.skip();
    }
  }

  /** Runs `fn` with these workspace settings, then takes them away again. */
  async function withSettings<T>(settings: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    const cfg = vscode.workspace.getConfiguration('pixelfly');
    for (const [k, v] of Object.entries(settings)) await cfg.update(k, v, vscode.ConfigurationTarget.Workspace);
    try {
      return await fn();
    } finally {
      for (const k of Object.keys(settings)) await cfg.update(k, undefined, vscode.ConfigurationTarget.Workspace);
    }
  }

  /**
   * "Train dense vs Pixelfly" with the cursor inside the class `cls` of `file`, as the lens's click
   * trains the model it sits on; checks the run completed with both variants every step.
   */
  async function trainModelIn(file: vscode.Uri, cls: string, steps: number) {
    const editor = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(file));
    const classLine = editor.document.getText().split('\n').findIndex((l) => l.startsWith(cls));
    assert.ok(classLine >= 0, `${file.fsPath}: no '${cls}'`);
    editor.selection = new vscode.Selection(classLine + 1, 0, classLine + 1, 0);
    const job = await vscode.commands.executeCommand<JobInfo | undefined>('pixelfly.train');
    assert.ok(job, `${file.fsPath}: job submitted`);
    assert.deepEqual([job.subject?.runner, job.subject?.file], ['torch', file.fsPath], "the PyTorch runner trains the file's own model");
    const run = await waitFor(`${file.fsPath}: the run to end`, () => {
      const rec = api.store.get(job.jobId);
      return rec && ['completed', 'failed', 'cancelled'].includes(rec.info.state) && rec.info.summary !== undefined && rec;
    }, 240000);
    assert.equal(run.info.state, 'completed', `${file.fsPath}: ${run.info.error}`);
    assert.equal(run.steps.length, steps);
    assert.ok(run.steps.every((s) => s.dense && s.pixelfly.loss > 0), `${file.fsPath}: both variants every step`);
    return { job, run };
  }

  test("Train with the PyTorch runner trains the file's own model (your model, not an engine stand-in) to completion", async function () {
    requireTorch(this);
    this.timeout(300000);
    await withSettings({ 'training.runner': 'torch', 'analysis.pythonPath': PYTHON, 'training.maxSteps': 4 }, async () => {
      const { job, run } = await trainModelIn(workspaceFile('mixer.py'), 'class Mixer(', 4);
      assert.equal(job.subject?.model, 'Mixer');
      console.log(`torch run ${job.jobId}: ${run.steps.length} steps, speedup ${run.info.summary?.speedup?.toFixed(2)}x (informational)`);
    });
  });

  test('one click trains the corpus GPTs (nanoGPT, minGPT, Hugging Face GPT-2) from their own code with the PyTorch runner', async function () {
    requireTorch(this);
    this.timeout(600000);
    // The corpus's model files copied into the workspace (the runner imports only from a trusted
    // workspace), each with the pins a user would write at the top for a small run; Hugging Face's
    // library code comes from pixelfly.analysis.extraPaths, which the runner imports from too.
    const fixtures = join(__dirname, '..', '..', '..', '..', 'test', 'fixtures');
    const folder = workspaceFile('corpus').fsPath;
    const cases = [
      { dir: 'nanogpt', file: 'nanogpt/model.py', cls: 'class GPT(', pins: 'n_layer=2, n_head=4, n_embd=256, block_size=64, vocab_size=96' },
      { dir: 'mingpt', file: 'mingpt/mingpt/model.py', cls: 'class GPT(', pins: 'model_type=None, n_layer=2, n_head=4, n_embd=256, vocab_size=96, block_size=64' },
      { dir: 'hf_gpt2', file: 'hf_gpt2/modeling_gpt2.py', cls: 'class GPT2LMHeadModel(', pins: 'vocab_size=96, n_positions=64, n_embd=256, n_layer=2, n_head=4' },
    ];
    for (const c of cases) {
      cpSync(join(fixtures, 'models', c.dir), join(folder, c.dir), { recursive: true });
      pinModelFile(join(folder, c.file), c.pins);
    }
    const settings = { 'training.runner': 'torch', 'analysis.pythonPath': PYTHON, 'training.maxSteps': 3, 'analysis.extraPaths': [join(fixtures, 'python-site')] };
    try {
      await withSettings(settings, async () => {
        for (const c of cases) {
          const { job, run } = await trainModelIn(vscode.Uri.file(join(folder, c.file)), c.cls, 3);
          const speedup = run.info.summary?.speedup;
          assert.ok(speedup !== undefined && speedup > 0, `${c.file}: a measured speedup`);
          console.log(`${c.file} (${job.subject?.model}): ${run.steps.length} steps, measured speedup ${speedup.toFixed(2)}x, params dense ${run.info.summary?.dense?.params} / Pixelfly ${run.info.summary?.pixelfly.params}`);
        }
      });
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test('the run history lists both runs (from job.list)', async () => {
    await vscode.commands.executeCommand('pixelfly.refreshRuns');
    const names = api.store.list().map((r) => r.info.name);
    assert.ok(names.includes('suite-run') && names.includes('Mixer'), names.join(', '));
  });

  test('a bad argument gives an error message, never a crash', async () => {
    const r = await vscode.commands.executeCommand('pixelfly.previewMasks', { layers: [{ name: 'x', role: 'other', in: -3, out: 4, count: 1 }] });
    assert.equal(r, undefined);
    const t = await vscode.commands.executeCommand('pixelfly.train', { spec: { kind: 'nonsense' } });
    assert.equal(t, undefined, 'rejected by the daemon with a message');
  });
});
