/** Small pure pieces of the extension: CSP shell, backoff, decimation, run series, model adapter, message validation. */
import { DEFAULT_TARGET } from '../../core/planner';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { contentSecurityPolicy, pageHtml } from '../../extension/panels/webviewHtml';
import { Backoff } from '../../extension/daemon/backoff';
import { decimateIndices } from '../../webview/metrics/decimate';
import { lossVsTime, RunSeries } from '../../webview/metrics/runSeries';
import { appliedMessage, benchParams, defaultConfig, toModelView } from '../../extension/modelView';
import { validateParams } from '../../core/layout';
import { KERNEL_BLOCK_SIZES } from '../../core/planner';
import { DEFAULTS, readSettings } from '../../extension/settings';
import { fittingBatch, fittingBatchOfRun, isTrainArgs, planCosting, specFromTrainArgs, trainLensFor, trainsTorch } from '../../extension/trainArgs';
import { isChooseModelArgs, ModelChoices, modelPickItems } from '../../extension/modelChoice';
import { MaskToHostSchema, MetricsToHostSchema, ModelViewSchema, parseFromPage, WebviewMessageError } from '../../protocol/webview';
import { ErrorCode, LayerRoleSchema } from '../../protocol/daemon';
import { DaemonRpcError } from '../../client/daemonClient';
import { LAYER_ROLES } from '../../core/inventory';

describe('webview HTML shell', () => {
  it('has a strict CSP: nothing by default, scripts only with the nonce, styles only from the extension', () => {
    const html = pageHtml({ title: 'T <x>', cspSource: 'https://res.vscode-cdn.net', scriptUri: 'https://res/x.js', styleUris: ['https://res/a.css'], nonce: 'abc123' });
    const csp = contentSecurityPolicy('https://res.vscode-cdn.net', 'abc123');
    assert.ok(html.includes(`content="${csp.replace(/'/g, "'")}"`));
    assert.match(csp, /^default-src 'none'/);
    assert.match(csp, /script-src 'nonce-abc123'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
    assert.match(html, /<script nonce="abc123" src="https:\/\/res\/x.js"><\/script>/);
    assert.match(html, /<title>T &lt;x&gt;<\/title>/);
    assert.equal((html.match(/<script/g) ?? []).length, 1, 'one script, no inline code');
  });

  it('makes a fresh nonce per page', () => {
    const a = pageHtml({ title: 't', cspSource: 's', scriptUri: 'u', styleUris: [] });
    const b = pageHtml({ title: 't', cspSource: 's', scriptUri: 'u', styleUris: [] });
    const nonce = (h: string) => /nonce-([A-Za-z0-9]+)/.exec(h)?.[1];
    assert.ok(nonce(a) && nonce(a)!.length >= 16);
    assert.notEqual(nonce(a), nonce(b));
  });
});

describe('Backoff', () => {
  it('doubles from the base up to the cap, jittered within bounds, and resets', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, jitter: 0 });
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => b.next()), [100, 200, 400, 800, 1000, 1000]);
    b.reset();
    assert.equal(b.next(), 100);
    const j = new Backoff({ baseMs: 1000, maxMs: 1000, jitter: 0.2 }, () => 1);
    assert.equal(j.next(), 1200);
    const k = new Backoff({ baseMs: 1000, maxMs: 1000, jitter: 0.2 }, () => 0);
    assert.equal(k.next(), 800);
  });
});

describe('decimateIndices', () => {
  it('keeps everything when small, and every spike when large', () => {
    assert.deepEqual(decimateIndices(5, [[1, 2, 3, 4, 5]], 10), [0, 1, 2, 3, 4]);
    const n = 100000;
    const ys = Array.from({ length: n }, (_, i) => Math.sin(i / 100));
    ys[31337] = 50; // a spike
    ys[77777] = -50;
    const keep = decimateIndices(n, [ys], 500);
    assert.ok(keep.length <= 500 * 3 + 1);
    assert.ok(keep.includes(31337) && keep.includes(77777));
    assert.equal(keep[0], 0);
    assert.equal(keep[keep.length - 1], n - 1);
    assert.ok(keep.every((v, i) => i === 0 || v > keep[i - 1]), 'ascending and unique');
  });
});

describe('RunSeries', () => {
  it('keys columns by step (replays overwrite) and derives each arm\'s training time', () => {
    const s = new RunSeries();
    const p = (step: number, loss: number) => ({ step, pixelfly: { loss, stepMs: 1000 }, dense: { loss: loss + 1, stepMs: 2000 } });
    s.add([p(1, 5), p(3, 3)]);
    s.add([p(2, 4), p(3, 2.5)]);
    assert.deepEqual(s.steps, [1, 2, 3]);
    assert.deepEqual(s.arms.pixelfly.loss, [5, 4, 2.5]);
    assert.deepEqual(s.trainingTime('pixelfly'), [1, 2, 3]);
    assert.deepEqual(s.trainingTime('dense'), [2, 4, 6]);
    const [x, d, px] = lossVsTime(s, [0, 1, 2]);
    assert.deepEqual(x, [1, 2, 2, 3, 4, 6]);
    assert.deepEqual(px.filter((v) => v !== null), [5, 4, 2.5]);
    assert.deepEqual(d.filter((v) => v !== null), [6, 5, 3.5]);
  });
});

describe('model adapter', () => {
  it('maps analysed layers with the planner decision, and gives dense layers a valid starting config', () => {
    const view = toModelView(
      {
        name: 'Net',
        layers: [
          { name: 'fc1', role: 'mlp_fc1', in: 768, out: 3072, count: 12, line: 4, decision: { sparsify: true, config: { block: 32, butterflySize: 16, nFactors: 2, rank: 32, globalSize: 0, shuffle: false }, estSpeedup: 2.4, reason: 'big' } },
          { name: 'head', role: 'head', in: 768, out: 1000, count: 1, decision: { sparsify: false, estSpeedup: 1, reason: 'heads stay dense' } },
        ],
      },
      'file',
      32,
      196,
    );
    assert.equal(view.layers[0].config.rank, 32);
    assert.equal(view.layers[0].estimatedSpeedup, 2.4);
    assert.equal(view.layers[0].rowsPerSample, 196);
    assert.equal(view.layers[1].rowsPerSample, 1, 'a head sees one row per sample');
    assert.equal(view.layers[1].sparsify, false);
    assert.doesNotThrow(() => validateParams(1000, 768, view.layers[1].config));
    assert.doesNotThrow(() => validateParams(10, 256, defaultConfig(10, 256, 32)));
  });

  it('reads the model name and token count of `pixelfly analyze --json` output', () => {
    const v = toModelView({ model: { name: 'Mixer' }, tokensPerSample: 49, layers: [{ name: 'fc', role: 'mlp_fc1', in: 256, out: 1024, count: 2 }] }, 'file', 32, 256);
    assert.equal(v.name, 'Mixer');
    assert.equal(v.layers[0].rowsPerSample, 49);
  });

  it('leaves out layers the analysis lists but the model does not build, or whose sizes it could not resolve', () => {
    const v = toModelView(
      { layers: [{ name: 'fc', role: 'mlp_fc1', in: 256, out: 1024, count: 2 }, { name: 'Attn.q', role: 'attn_qkv', in: 'dim', out: 'dim', count: 0 } as never, { name: 'x', role: 'other', in: 4, out: 4, count: 'depth' } as never] },
      'file',
      32,
      64,
    );
    assert.deepEqual(v.layers.map((l) => l.name), ['fc']);
  });

  it('"Apply to code" reports what the language server skipped and why; nothing applied is an error', () => {
    assert.equal(appliedMessage({ applied: ['a', 'b'], skipped: ['c: built inside `mlp_layer(…)` (library code)'] }, 3, 'vit.py'), 'Applied 2 of 3 layer(s) to vit.py; not applied: c: built inside `mlp_layer(…)` (library code).');
    assert.equal(appliedMessage({ applied: ['a'], skipped: [] }, 1, 'm.py'), 'Applied 1 of 1 layer(s) to m.py.');
    assert.throws(() => appliedMessage({ applied: [], skipped: ['x: not a layer of this file'] }, 1, 'm.py'), /^Error: Applied 0 of 1 layer\(s\) to m\.py; not applied: x: not a layer of this file\.$/);
  });

  it('names the bad field of a malformed analysis', () => {
    assert.throws(() => toModelView({ layers: [{ name: 'x', role: 'other', in: 0, out: 4, count: 1 }] }, 'm', 32, 1), /layers\.0\.in/);
  });
});

describe('messages from pages are validated', () => {
  it('accepts the protocol and rejects anything else with the field named', () => {
    assert.deepEqual(parseFromPage(MetricsToHostSchema, { type: 'ready' }), { type: 'ready' });
    assert.throws(() => parseFromPage(MetricsToHostSchema, { type: 'exec', cmd: 'rm -rf /' }), WebviewMessageError);
    assert.throws(() => parseFromPage(MetricsToHostSchema, { type: 'stopRun', runId: '' }), /runId/);
    assert.throws(
      () => parseFromPage(MaskToHostSchema, { type: 'applyToCode', layers: [{ name: 'a', config: { block: 0, butterflySize: 4, nFactors: 2, rank: 0, globalSize: 0, shuffle: false } }] }),
      /layers\.0\.config\.block/,
    );
    assert.throws(() => parseFromPage(MaskToHostSchema, null), WebviewMessageError);
  });
});

describe('package.json contributions', () => {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    engines: { vscode: string };
    activationEvents: string[];
    capabilities: { untrustedWorkspaces: { supported: string | boolean; restrictedConfigurations?: string[] } };
    contributes: { commands: { command: string; enablement?: string }[]; configuration: { properties: Record<string, { default?: unknown; description?: string; enum?: unknown[] }> } };
  };

  it('runs nothing on this machine from an untrusted workspace', () => {
    assert.equal(pkg.capabilities.untrustedWorkspaces.supported, 'limited');
    assert.ok(pkg.capabilities.untrustedWorkspaces.restrictedConfigurations?.includes('pixelfly.daemon.autostart'));
    for (const id of ['pixelfly.train', 'pixelfly.measureSpeedups', 'pixelfly.stopRun']) {
      assert.equal(pkg.contributes.commands.find((c) => c.command === id)?.enablement, 'isWorkspaceTrusted', id);
    }
  });

  it('activates on Python files and restores its panels; engines allow VS Code 1.100', () => {
    assert.ok(pkg.activationEvents.includes('onLanguage:python'));
    assert.ok(pkg.activationEvents.includes('onWebviewPanel:pixelfly.maskPreview'));
    assert.ok(pkg.activationEvents.includes('onWebviewPanel:pixelfly.metrics'));
    assert.equal(pkg.engines.vscode, '^1.100.0');
  });

  it('declares every setting the extension reads, with the defaults the code falls back to', () => {
    const props = pkg.contributes.configuration.properties;
    const asked: string[] = [];
    const fromPackage = readSettings((key) => {
      asked.push(key);
      assert.ok(`pixelfly.${key}` in props, `pixelfly.${key} is declared in package.json`);
      return props[`pixelfly.${key}`].default;
    });
    assert.deepEqual(fromPackage.problems, []);
    assert.deepEqual(fromPackage.settings, DEFAULTS);
    assert.equal(asked.length, Object.keys(DEFAULTS).length);
    // One default target: the planner's, whoever plans (the editor's setting, the CLI, a job without a plan).
    assert.deepEqual({ budget: DEFAULTS.budget }, DEFAULT_TARGET);
  });

  it('tokens per sample: unset by default, so the model\'s own sequence length wins; when set, only a fallback', () => {
    assert.equal(DEFAULTS.tokensPerSample, null);
    assert.match(pkg.contributes.configuration.properties['pixelfly.analysis.tokensPerSample'].description ?? '', /only when a model does not say/);
    assert.equal(readSettings((k) => (k === 'analysis.tokensPerSample' ? 300 : undefined)).settings.tokensPerSample, 300);
  });

  it('the block-size setting offers exactly the block sizes the kernels implement (core\'s list)', () => {
    assert.deepEqual(pkg.contributes.configuration.properties['pixelfly.plan.blockSize'].enum, [...KERNEL_BLOCK_SIZES]);
    assert.match(pkg.contributes.configuration.properties['pixelfly.plan.blockSize'].description ?? '', new RegExp(`${KERNEL_BLOCK_SIZES.slice(0, -1).join(', ')} and ${KERNEL_BLOCK_SIZES.at(-1)}`));
    for (const b of KERNEL_BLOCK_SIZES) assert.equal(readSettings((k) => (k === 'plan.blockSize' ? b : undefined)).settings.blockSize, b);
    for (const b of [8, 128]) assert.match(readSettings((k) => (k === 'plan.blockSize' ? b : undefined)).problems.join(), /plan\.blockSize: must be one of 16, 32, 64/);
  });

  it('rejects bad setting values by name and keeps the default', () => {
    const bad: Record<string, unknown> = { 'daemon.port': 70000, 'plan.blockSize': 24, 'training.dataset': 'imagenet', 'plan.budget': 0 };
    const r = readSettings((key) => bad[key]);
    assert.equal(r.problems.length, 4);
    assert.match(r.problems.join('\n'), /pixelfly\.daemon\.port: must be an integer port 0-65535 .*got 70000; using 0/);
    assert.match(r.problems.join('\n'), /pixelfly\.training\.dataset: .*got "imagenet"/);
    assert.deepEqual(r.settings, DEFAULTS);
  });
});

describe('Train CodeLens arguments', () => {
  it('train the spec the language server sends; without one, show its reason (specError)', () => {
    const spec = { kind: 'vit', name: 'ViT' };
    // The run records the file and model the spec stands in for.
    assert.deepEqual(specFromTrainArgs({ uri: 'file:///m.py', name: 'VisionTransformer', spec }), { spec, name: 'VisionTransformer', plan: undefined, source: { file: '/m.py', model: 'VisionTransformer' } });
    assert.deepEqual(specFromTrainArgs({ spec }), { spec, name: 'ViT', plan: undefined });
    const lens = { uri: 'file:///m.py', name: 'UNet', specError: 'Conv2d layers are not supported by the engine' };
    assert.equal(isTrainArgs(lens), true);
    assert.throws(() => specFromTrainArgs(lens), /^Error: UNet cannot be trained by the engine: Conv2d layers are not supported by the engine$/);
    assert.equal(isTrainArgs({ uri: 'file:///m.py', name: 'UNet' }), true, 'a lens without either field is still a lens');
    assert.throws(() => specFromTrainArgs({ uri: 'file:///m.py', name: 'UNet' }), /UNet cannot be trained by the engine: the language server gave no engine spec and no reason/);
    assert.equal(isTrainArgs(undefined), false);
    assert.equal(isTrainArgs({ scheme: 'file', fsPath: '/m.json' }), false, 'a Uri is not lens arguments');
  });

  it("trains the user's own model (the PyTorch runner) when asked, or with 'auto' when the model maps onto no engine family", () => {
    const mapped = { uri: 'file:///w/m.py', name: 'ViT', spec: { kind: 'vit' } };
    const unmapped = { uri: 'file:///w/modeling_gpt2.py', name: 'GPT2LMHeadModel', specError: 'Conv1D …' };
    assert.equal(trainsTorch(mapped, 'auto'), false);
    assert.equal(trainsTorch(unmapped, 'auto'), true);
    assert.equal(trainsTorch(mapped, 'torch'), true);
    assert.equal(trainsTorch(unmapped, 'engine'), false);
    assert.equal(trainsTorch({ uri: 'file:///w/spec.json', name: 'x' }, 'torch'), false, 'only a Python file');
  });

  it("reads a lens plan's costing, and finds a model's Train lens again after a re-plan", () => {
    assert.deepEqual(planCosting({ device: { name: 'cpu', source: 'measured' }, estimate: { speedup: 1.4 }, layers: [] }), { measured: true, speedup: 1.4 });
    assert.deepEqual(planCosting({ device: { name: 'prior', source: 'default' }, layers: [] }), { measured: false });
    assert.deepEqual(planCosting(undefined), { measured: false });
    assert.deepEqual(planCosting({ estimate: { speedup: Number.NaN } }), { measured: false }, 'a non-number estimate is no estimate');
    const block = { uri: 'file:///w/m.py', name: 'Block', spec: { kind: 'mlp' } };
    const mixer = { uri: 'file:///w/m.py', name: 'Mixer', spec: { kind: 'mixer' } };
    const commands = [undefined, { command: 'pixelfly.previewMasks', arguments: [mixer] }, { command: 'pixelfly.train', arguments: [block] }, { command: 'pixelfly.train', arguments: [mixer] }];
    assert.equal(trainLensFor(commands, 'Mixer'), mixer, 'the Train lens of that model, not another command with its arguments');
    assert.equal(trainLensFor(commands, 'ViT'), undefined);
  });

  it('a run refused for memory is offered the batch size the daemon says fits, only for the same model and a smaller batch', () => {
    const refusal = (fits: unknown, code: number = ErrorCode.REJECTED) => new DaemonRpcError('job.submit', code, 'this job needs about 31.5 GB …', { reason: 'memory', neededBytes: 3e10, availableBytes: 8e9, budgetBytes: 6e9, parts: {}, fits });
    assert.equal(fittingBatch(refusal({ batchSize: 16 }), 256), 16);
    assert.equal(fittingBatch(refusal({ field: 'dim', value: 512, batchSize: 16 }), 256), undefined, 'a smaller width is another model: no one-click retry');
    assert.equal(fittingBatch(refusal(undefined), 256), undefined, 'nothing fits');
    assert.equal(fittingBatch(refusal({ batchSize: 256 }), 256), undefined, 'not smaller than asked');
    assert.equal(fittingBatch(refusal({ batchSize: 16 }, ErrorCode.INVALID_PARAMS), 256), undefined);
    assert.equal(fittingBatch(new Error('socket closed'), 256), undefined);
    // A PyTorch runner job is refused by its worker, after submission: the failed run carries the batch.
    assert.equal(fittingBatchOfRun({ state: 'failed', fits: { batchSize: 192 } }, 65536), 192);
    assert.equal(fittingBatchOfRun({ state: 'failed' }, 65536), undefined, 'failed for another reason');
    assert.equal(fittingBatchOfRun({ state: 'completed', fits: { batchSize: 192 } }, 65536), undefined);
    assert.equal(fittingBatchOfRun({ state: 'failed', fits: { batchSize: 64 } }, 64), undefined, 'not smaller than asked');
  });
});

describe('benchParams', () => {
  it('measures every Pixelfly layer in one bench.layers request, each with its own config, and the dense layers dense only', () => {
    const view = toModelView(
      {
        tokensPerSample: 64,
        layers: [
          { name: 'fc1', role: 'mlp_fc1', in: 256, out: 1024, count: 2, decision: { sparsify: true, config: { block: 32, butterflySize: 8, nFactors: 2, rank: 8, globalSize: 0, shuffle: false } } },
          { name: 'fc2', role: 'mlp_fc2', in: 1024, out: 256, count: 2, decision: { sparsify: true, config: { block: 16, butterflySize: 4, nFactors: 2, rank: 0, globalSize: 0, shuffle: false } } },
          { name: 'head', role: 'head', in: 256, out: 10, count: 1, decision: { sparsify: false } },
        ],
      },
      'm',
      32,
      null,
    );
    const p = benchParams(view);
    assert.equal(p.configs, undefined);
    assert.deepEqual(
      p.shapes.map((s) => [s.name, s.in, s.out, s.rows, s.config?.block, s.config?.rank]),
      [
        ['fc1', 256, 1024, 1024, 32, 8],
        ['fc2', 1024, 256, 1024, 16, 0],
        // the dense head too, measured dense only: estimates cost it at its own shape's GEMM rate
        ['head', 256, 10, 16, undefined, undefined],
      ],
    );
    assert.throws(() => benchParams({ ...view, layers: view.layers.filter((l) => !l.sparsify) }), /nothing to measure/);
  });
});

describe('layer roles: one list, in core', () => {
  it('the daemon and webview protocols accept exactly core\'s LAYER_ROLES', () => {
    assert.deepEqual(LayerRoleSchema.options, [...LAYER_ROLES]);
    const row = { name: 'fc', in: 4, out: 4, count: 1, sparsify: false, config: defaultConfig(64, 64, 32), estimatedSpeedup: null, reason: 'r' };
    for (const role of LAYER_ROLES) assert.equal(ModelViewSchema.safeParse({ name: 'm', layers: [{ ...row, role }] }).success, true, role);
    const bad = ModelViewSchema.safeParse({ name: 'm', layers: [{ ...row, role: 'pooling' }] });
    assert.equal(bad.success, false, 'a role core does not know is refused');
    assert.throws(() => toModelView({ layers: [{ name: 'x', role: 'pooling', in: 4, out: 4, count: 1 }] }, 'm', 32, 1), /layers\.0\.role/);
  });
});

describe('choosing the model of a file', () => {
  const models = [
    { name: 'Block', kind: 'class' as const, line: 3, top: false },
    { name: 'Small', kind: 'class' as const, line: 10, top: true },
    { name: 'Big', kind: 'class' as const, line: 20, top: true },
    { name: 'make_big', kind: 'function' as const, line: 40, top: true },
  ];

  it('lists the file\'s own models first, in file order, marking the default and the one in use', () => {
    const items = modelPickItems({ current: 'Big', defaultModel: 'Small', models });
    assert.deepEqual(items.map((i) => i.model), ['Small', 'Big', 'make_big', 'Block']);
    assert.equal(items[0].description, 'class, line 10 · default');
    assert.equal(items[1].description, 'class, line 20 · in use');
    assert.equal(items[2].description, 'function, line 40');
    assert.equal(items[3].description, 'class, line 3 · part of another model');
    assert.ok(isChooseModelArgs({ uri: 'file:///m.py', current: 'Big', defaultModel: null, models }));
    assert.ok(!isChooseModelArgs({ uri: 'file:///m.py' }));
  });

  it('keeps each file\'s choice in the workspace state and tells the server; null goes back to the default', async () => {
    const state = new Map<string, unknown>();
    const memento = { get: <T>(k: string) => state.get(k) as T | undefined, update: async (k: string, v: unknown) => void state.set(k, v) };
    const told: Array<[string, string | null]> = [];
    const choices = new ModelChoices(memento, (uri, model) => told.push([uri, model]));
    await choices.set('file:///a.py', 'Big');
    await choices.set('file:///b.py', 'make_big');
    assert.equal(choices.get('file:///a.py'), 'Big');
    // A second instance (a reloaded window) reads the same state.
    const again = new ModelChoices(memento, () => undefined);
    assert.deepEqual(again.all(), { 'file:///a.py': 'Big', 'file:///b.py': 'make_big' });
    await choices.set('file:///a.py', null);
    assert.deepEqual(choices.all(), { 'file:///b.py': 'make_big' });
    assert.deepEqual(told, [['file:///a.py', 'Big'], ['file:///b.py', 'make_big'], ['file:///a.py', null]]);
    // Whatever else is in the state is ignored, not passed to the server.
    state.set('pixelfly.modelChoices', { 'file:///c.py': 42, 'file:///d.py': 'Net' });
    assert.deepEqual(choices.all(), { 'file:///d.py': 'Net' });
  });
});
