// `pixelfly train` and `pixelfly daemon` as users run them: real processes, a temporary home.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeFifo } from '../support/dataFiles';
import { CLI, engineMissing, removeHome, tempHome, waitFor } from '../daemon/harness';

function pixelfly(home: string, args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 60_000 });
}

test('pixelfly train starts the daemon, trains dense vs Pixelfly, and ends with a summary and an HTML report', { skip: engineMissing(), timeout: 90_000 }, () => {
  const home = tempHome();
  try {
    const spec = join(home, 'mlp.json');
    writeFileSync(spec, JSON.stringify({ kind: 'mlp', name: 'cli-mlp', inputFeatures: 784, hidden: [512, 512], classes: 10 }));
    const r = pixelfly(home, ['train', spec, '--dataset', 'synthetic', '--max-steps', '40', '--batch-size', '32', '--threads', '1']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /started the daemon on 127\.0\.0\.1:\d+/);
    // A fresh home has no measured profile: the model's products are timed first, and the plan trained is costed with them.
    assert.match(r.stderr, /this device has no measured profile yet: timing the model's 3 product shapes dense and with \d+ Pixelfly configs/);
    assert.match(r.stderr, /measured in [\d.]+ s; profile saved to .*device\.json/);
    const runDir = /job \S+ submitted \((.+)\)/.exec(r.stderr)?.[1] ?? '';
    assert.equal(JSON.parse(readFileSync(join(runDir, 'plan.json'), 'utf8')).device.source, 'measured');
    assert.match(r.stderr, /\[#{20}\] 100% \| step 40\/40 \| loss pixelfly [\d.]+ dense [\d.]+ \| speedup [\d.]+x/);
    assert.match(r.stdout, /completed after 40 steps/);
    // What was trained, in the words of the metrics panel and the runs view.
    assert.match(r.stdout, /^model: cli-mlp — engine stand-in \(mlp\); batch 32$/m);
    // 'auto' precision: bf16 on CUDA and on CPUs with bf16 instructions, with the kernels that ran.
    assert.match(r.stdout, /^engine: (cpu, (fp32|bf16)|cuda, bf16) products \((cuda|\w+ kernels(, bf16 on [\w-]+)?)\)$/m);
    assert.match(r.stdout, /speedup \(median dense step \/ median Pixelfly step, alternating steps\): [\d.]+x/);
    const report = /report: (\S+)/.exec(r.stdout)?.[1];
    assert.ok(report && existsSync(report), `report at ${report}`);
    const html = readFileSync(report, 'utf8');
    assert.match(html, /aria-label="Training loss"/);
    assert.match(html, /aria-label="Running speedup/);
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained: no scripts, no network');
    // A PyTorch model file: analysed by the language server's analysis into a spec, then trained.
    const py = join(home, 'net.py');
    writeFileSync(
      py,
      [
        'import torch.nn as nn',
        '',
        'class Net(nn.Module):',
        '    def __init__(self, width=256):',
        '        super().__init__()',
        '        self.fc1 = nn.Linear(64, width)',
        '        self.fc2 = nn.Linear(width, width)',
        '        self.head = nn.Linear(width, 10)',
        '',
        '    def forward(self, x):',
        '        return self.head(self.fc2(self.fc1(x).relu()).relu())',
        '',
      ].join('\n'),
    );
    const fromPy = pixelfly(home, ['train', py, '--dataset', 'synthetic', '--max-steps', '5', '--threads', '1']);
    assert.equal(fromPy.status, 0, fromPy.stderr);
    assert.doesNotMatch(fromPy.stderr, /no measured profile/, 'the device is measured once');
    assert.match(fromPy.stderr, /Net analysed as \{"kind":"mlp","name":"Net","inputFeatures":64,"hidden":\[256,256\],"classes":10\}/);
    assert.match(fromPy.stdout, /completed after 5 steps/);
    const status = pixelfly(home, ['daemon', 'status']);
    assert.equal(status.status, 0);
    assert.match(status.stdout, /jobs: 2 \(0 queued or running\)/);
  } finally {
    pixelfly(home, ['daemon', 'stop']);
    removeHome(home);
  }
});

test('pixelfly train refuses bad input with messages naming it', { timeout: 30_000 }, () => {
  const home = tempHome();
  try {
    const missing = pixelfly(home, ['train', join(home, 'nope.json')]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot read model spec '.*nope\.json': ENOENT/);
    const py = pixelfly(home, ['train', join(home, 'model.py')]);
    assert.equal(py.status, 1);
    assert.match(py.stderr, /model\.py: cannot read .*model\.py: ENOENT/);
    // A PyTorch file goes through the language server's analysis; a family the engine lacks is named.
    const tiny = pixelfly(home, ['train', join(__dirname, '..', '..', '..', 'test', 'fixtures', 'models', 'tiny', 'model.py')]);
    assert.equal(tiny.status, 1);
    assert.match(tiny.stderr, /TinyTransformer does not map onto an engine model family/);
    const modelFlag = pixelfly(home, ['train', '--model', 'GPT']);
    assert.equal(modelFlag.status, 2);
    assert.match(modelFlag.stderr, /--model only applies to a \.py model file/);
    const badData = pixelfly(home, ['train', '--dataset', 'imagenet']);
    assert.equal(badData.status, 2);
    assert.match(badData.stderr, /--dataset: unknown kind 'imagenet'/);
    const badPrecision = pixelfly(home, ['train', '--precision', 'fp8']);
    assert.equal(badPrecision.status, 2);
    assert.match(badPrecision.stderr, /--precision must be one of auto, fp32, bf16, fp16, got 'fp8'/);
    const badLimit = pixelfly(home, ['train', '--memory-limit', '2 gallons']);
    assert.equal(badLimit.status, 2);
    assert.match(badLimit.stderr, /--memory-limit must be a size such as 8G, 512MB or 1\.5GiB, got '2 gallons'/);
    // 64 MiB: sizes are decimal (as the messages write them) unless binary units are named.
    const overLimit = pixelfly(home, ['train', '--memory-limit', '64MiB', '--no-measure']);
    assert.equal(overLimit.status, 1);
    assert.match(overLimit.stderr, /but only 57\.0 MB can be given to it \(the job's memory limit of 67\.1 MB, less 15% for the estimate's error/);
    const bad = join(home, 'bad.json');
    writeFileSync(bad, '{"kind": "mlp", "inputFeatures": 10, "hidden": [], "classes": 1}');
    const rejected = pixelfly(home, ['train', bad]);
    assert.equal(rejected.status, 1);
    assert.match(rejected.stderr, /classes: must be between 2/);
  } finally {
    pixelfly(home, ['daemon', 'stop']);
    removeHome(home);
  }
});

test('plan, analyze and train refuse devices and FIFOs at once, flag syntax errors, plan a 2^30-wide layer quickly, and check options before starting a daemon', { timeout: 60_000 }, () => {
  const home = tempHome();
  try {
    const fifo = join(home, 'model.fifo');
    makeFifo(fifo);
    const cases: Array<[string[], RegExp]> = [
      [['plan', '/dev/zero', '--budget', '0.5'], /cannot read inventory '\/dev\/zero': is a device, not a file/],
      [['plan', fifo, '--budget', '0.5'], /cannot read inventory '.*model\.fifo': is a named pipe \(FIFO\)/],
      [['analyze', '/dev/zero'], /cannot read \/dev\/zero: is a device/],
      [['analyze', fifo], /cannot read .*model\.fifo: is a named pipe/],
      [['train', '/dev/urandom'], /cannot read model spec '\/dev\/urandom': is a device/],
      [['train', fifo], /cannot read model spec '.*model\.fifo': is a named pipe/],
      [['train', '--budget', '2'], /--budget: budget must be in \(0, 1\]/],
      [['train', '--lr', '0'], /--lr: lr must be in \(0, 10\)/],
    ];
    for (const [args, message] of cases) {
      const t0 = Date.now();
      const r = pixelfly(home, args);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.match(r.stderr, message, args.join(' '));
      assert.ok(Date.now() - t0 < 20_000, `${args.join(' ')} answered in ${Date.now() - t0} ms`);
    }
    assert.ok(!existsSync(join(home, 'daemon.json')), 'no daemon was started for options that were wrong');
    const broken = join(home, 'broken.py');
    writeFileSync(broken, 'import torch.nn as nn\nclass M(nn.Module):\n    def __init__(self:\n        self.fc = nn.Linear(10, 10)\n');
    const syntax = pixelfly(home, ['analyze', broken]);
    assert.equal(syntax.status, 1);
    assert.match(syntax.stderr, /broken\.py:3:\d+: syntax error/);
    assert.match(syntax.stderr, /broken\.py has 1 syntax error; the analysis above covers only what parsed/);
    const huge = join(home, 'huge.py');
    writeFileSync(huge, 'import torch.nn as nn\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2**30, 2**30)\n');
    const t0 = Date.now();
    const planned = pixelfly(home, ['analyze', huge, '--json']);
    assert.equal(planned.status, 0, planned.stderr);
    assert.equal(JSON.parse(planned.stdout).layers[0].in, 2 ** 30);
    assert.ok(Date.now() - t0 < 20_000, `analysing a 2^30-wide layer took ${Date.now() - t0} ms`);
  } finally {
    removeHome(home);
  }
});

test('pixelfly daemon stop interrupts a run in progress (checkpointed); pixelfly train --resume finishes it', { skip: engineMissing(), timeout: 90_000 }, async () => {
  const home = tempHome();
  try {
    const spec = join(home, 'mlp.json');
    // Wide enough that the steps after 100 outlast \`pixelfly daemon stop\`'s start-up (with 256-wide
    // layers, one quick thread finished all 1000 steps first and nothing was interrupted).
    writeFileSync(spec, JSON.stringify({ kind: 'mlp', inputFeatures: 64, hidden: [1024, 1024], classes: 10 }));
    const child = spawn(process.execPath, [CLI, 'train', spec, '--epochs', '100', '--max-steps', '1000', '--batch-size', '64', '--threads', '1', '--no-measure'], {
      env: { ...process.env, PIXELFLY_HOME: home },
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.stdout.on('data', (d) => (stdout += String(d)));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await waitFor(() => /job (\S+) submitted/.test(stderr), 30_000, 'the job to be submitted');
    const jobId = /job (\S+) submitted/.exec(stderr)![1];
    const metrics = join(home, 'runs', jobId, 'metrics.jsonl');
    await waitFor(() => existsSync(metrics) && /"step":100,/.test(readFileSync(metrics, 'utf8')), 30_000, 'step 100');
    const stop = pixelfly(home, ['daemon', 'stop']);
    assert.equal(stop.status, 0, stop.stderr);
    assert.equal(await exited, 1);
    // The CLI reads the interrupted run back while the daemon writes its report (then it says why), or finds the daemon gone.
    if (stdout.includes(`'pixelfly train --resume ${jobId}' continues it`)) {
      if (/^run \S+: interrupted/m.test(stdout)) assert.match(stdout, new RegExp(`^run ${jobId}: interrupted: the daemon was stopped; resume continues from the last checkpoint$`, 'm'));
    } else {
      assert.match(stderr, new RegExp(`run ${jobId} was interrupted: the daemon stopped; 'pixelfly train --resume ${jobId}'`));
    }
    const state = JSON.parse(readFileSync(join(home, 'runs', jobId, 'state.json'), 'utf8'));
    assert.equal(state.state, 'interrupted');
    assert.ok(state.lastCheckpointStep >= 100 && state.lastCheckpointStep < 1000, `stopped and checkpointed at ${state.lastCheckpointStep}`);

    const resumed = pixelfly(home, ['train', '--resume', jobId]);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`job ${jobId} resumed`));
    assert.match(resumed.stdout, /completed after 1000 steps/);
    assert.match(readFileSync(metrics, 'utf8'), new RegExp(`"state":"running","resumedFromStep":${state.lastCheckpointStep}`));
  } finally {
    pixelfly(home, ['daemon', 'stop']);
    removeHome(home);
  }
});
