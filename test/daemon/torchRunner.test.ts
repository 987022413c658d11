// The PyTorch runner from a real daemon process: the test corpus' own model files (nanoGPT, minGPT,
// Hugging Face GPT-2 with the transformers stand-in) are imported by path in a Python worker, built
// at small settings, made Pixelfly with the analysis' plan, and trained dense vs Pixelfly to the
// end; a model that raises, hangs, kills its process or fails to import ends only its own job; a
// job whose estimate is above the machine's memory is refused before the model is built; and
// the estimate is within 25% of the worker's measured peak.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonRpcError, type DaemonClient } from '../../client/daemonClient';
import type { JobInfo, MethodParamsIn } from '../../protocol/daemon';
import { analysisPlan } from '../../server/analysis/analyze';
import { parsePinValue } from '../../server/analysis/pragmas';
import { fixture, repoRoot, run as analyse } from '../server/helpers';
import { pinModelFile } from '../support/pins';
import { PYTHON, torchMissing } from '../support/torch';
import { CLI, killAfterCheckpoint, removeHome, sleep, startDaemon, tempHome, withDaemon } from './harness';
import { TCMALLOC } from '../../daemon/jobs/torchProcess';
import { cpuHasBf16 } from '../../native/engine';

const missing = torchMissing();
const SITE = join(repoRoot, 'test', 'fixtures', 'python-site');

type Settings = Record<string, number | string | boolean | null>;

/** The analysis' plan for `file` built with `settings` (what the CLI and the editor send). */
async function planFor(file: string, name: string, settings: Settings, paths: string[] = []) {
  const pins = new Map(Object.entries(settings).map(([k, v]) => [k, parsePinValue(v === null ? 'None' : String(v))]));
  const a = await analyse({ file, model: name, pins, extraPaths: paths });
  const plan = analysisPlan(a);
  assert.ok(plan.layers.some((l) => l.sparsify), `the analysis of ${file} sparsifies nothing at ${JSON.stringify(settings)}: ${plan.summary}`);
  return plan;
}

async function submitTorch(
  client: DaemonClient,
  file: string,
  name: string,
  settings: Settings,
  opts: { paths?: string[]; dataset?: MethodParamsIn<'job.submit'>['dataset']; steps?: number; batchSize?: number; stepTimeoutS?: number; plan?: unknown; trusted?: boolean; precision?: 'bf16'; checkpointEvery?: number; memoryLimitBytes?: number } = {},
): Promise<JobInfo> {
  const plan = 'plan' in opts ? opts.plan : await planFor(file, name, settings, opts.paths);
  return client.request(
    'job.submit',
    {
      runner: 'torch',
      model: { file, name, settings, python: PYTHON, paths: opts.paths ?? [], stepTimeoutS: opts.stepTimeoutS, trusted: opts.trusted ?? true },
      plan: plan as MethodParamsIn<'job.submit'>['plan'],
      dataset: opts.dataset ?? { kind: 'synthetic' },
      hyper: {
        epochs: 1,
        batchSize: opts.batchSize ?? 4,
        lr: 1e-3,
        maxSteps: opts.steps ?? 6,
        threads: 1,
        evalSamples: 256,
        ...(opts.precision ? { precision: opts.precision } : {}),
        ...(opts.checkpointEvery ? { checkpointEvery: opts.checkpointEvery } : {}),
        ...(opts.memoryLimitBytes ? { memoryLimitBytes: opts.memoryLimitBytes } : {}),
      },
      compare: true,
    },
    60_000,
  );
}

async function waitEnd(client: DaemonClient, jobId: string, timeoutMs = 240_000): Promise<JobInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await client.request('job.get', { jobId });
    if (['completed', 'failed', 'cancelled', 'interrupted'].includes(info.state)) return info;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${info.state} at step ${info.step} after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Estimate vs measured peak of a finished runner job, checked to within 25%. */
function checkMemory(t: { diagnostic(m: string): void }, what: string, info: JobInfo): void {
  assert.ok(info.estimatedMemoryBytes, `${what}: no estimate`);
  assert.ok(info.peakMemoryBytes, `${what}: no measured peak`);
  const ratio = info.estimatedMemoryBytes / info.peakMemoryBytes;
  t.diagnostic(`${what}: estimated ${(info.estimatedMemoryBytes / 2 ** 20).toFixed(0)} MiB, measured peak ${(info.peakMemoryBytes / 2 ** 20).toFixed(0)} MiB (estimate/peak ${ratio.toFixed(2)})`);
  assert.ok(ratio >= 0.75 && ratio <= 1.25, `${what}: estimate ${info.estimatedMemoryBytes} is not within 25% of the measured peak ${info.peakMemoryBytes}`);
}

/** The precision a runner job trained at: as asked; 'auto' is bf16 where the CPU has bf16 products and the
 * model trains under torch.autocast(bfloat16) (`autocastFails`: it does not), and the note says why. */
function checkPrecision(info: JobInfo, asked: 'auto' | 'bf16', autocastFails?: RegExp): void {
  const note = info.precisionNote ?? '';
  if (asked === 'bf16') {
    assert.equal(info.precision, 'bf16', 'bf16 (torch.autocast) when asked');
    assert.equal(info.precisionNote, undefined, 'a precision asked for needs no reason');
  } else if (!cpuHasBf16()) {
    assert.equal(info.precision, 'fp32');
    assert.match(note, /precision auto: fp32 \(the kernels have no bf16 products on this CPU\)/);
  } else if (autocastFails) {
    assert.equal(info.precision, 'fp32', 'a model torch.autocast fails on trains in fp32');
    assert.match(note, /precision auto: fp32, as torch \S+'s autocast\(bfloat16\) fails on this model/);
    assert.match(note, autocastFails);
  } else {
    assert.equal(info.precision, 'bf16', "'auto' is bf16 on a CPU with bf16 products");
    assert.match(note, /precision auto: bf16 products \((amx|avx512bf16)\) under torch\.autocast, weights fp32/);
  }
  assert.match(info.kernels ?? '', info.precision === 'bf16' ? /^native \(\w+, bf16 products on (amx|avx512bf16), \d+ threads\)$/ : /^native \(\w+, \d+ threads\)$/);
}

function checkCompleted(info: JobInfo, asked: 'auto' | 'bf16' = 'auto', autocastFails?: RegExp): void {
  assert.equal(info.state, 'completed', `the job ended ${info.state}: ${info.error}`);
  assert.equal(info.subject?.runner, 'torch');
  checkPrecision(info, asked, autocastFails);
  const s = info.summary!;
  assert.equal(s.steps, info.totalSteps);
  assert.ok(s.dense?.medianStepMs && s.pixelfly.medianStepMs, 'both variants trained');
  assert.ok(Number.isFinite(s.pixelfly.finalLoss) && Number.isFinite(s.dense!.finalLoss), 'finite losses');
  assert.ok(s.pixelfly.params < s.dense!.params, `the Pixelfly copy has fewer parameters (${s.pixelfly.params} vs ${s.dense!.params})`);
  assert.ok(s.speedup !== undefined && s.speedup > 0, 'a measured speedup');
  assert.ok(existsSync(join(info.runDir, 'model.json')) && existsSync(join(info.runDir, 'report.html')), 'the run folder has the model and the report');
  assert.ok(existsSync(join(info.runDir, 'checkpoints', `step-${s.steps}`, 'pixelfly.ckpt')), 'a final checkpoint of each variant');
  assert.ok(existsSync(join(info.runDir, 'checkpoints', `step-${s.steps}`, 'dense.ckpt')));
}

const FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

/** An image model trained on Fashion-MNIST: the input it is found to eat, and the dataset's name once fitted to it. */
type Images = { image: { channels: number; height: number; width: number }; name: string };

const corpus: Array<{ what: string; file: string; name: string; settings: Settings; paths?: string[]; text?: boolean; images?: Images; precision?: 'bf16'; autocastFails?: RegExp; note: RegExp }> = [
  {
    what: 'nanoGPT, bf16 products (torch.autocast)',
    precision: 'bf16',
    file: fixture('nanogpt', 'model.py'),
    name: 'GPT',
    settings: { n_layer: 2, n_head: 4, n_embd: 256, block_size: 64, vocab_size: 96 },
    text: true,
    note: /model's own loss \(forward given targets\)/,
  },
  {
    what: 'minGPT',
    file: fixture('mingpt', 'mingpt', 'model.py'),
    name: 'GPT',
    settings: { model_type: null, n_layer: 2, n_head: 4, n_embd: 256, vocab_size: 96, block_size: 64 },
    note: /model's own loss \(forward given targets\)/,
  },
  {
    what: 'Hugging Face GPT-2',
    file: fixture('hf_gpt2', 'modeling_gpt2.py'),
    name: 'GPT2LMHeadModel',
    settings: { vocab_size: 96, n_positions: 64, n_embd: 256, n_layer: 2, n_head: 4 },
    paths: [SITE],
    note: /model's own loss \(forward given labels\)/,
  },
  {
    what: "lucidrains' ViT on Fashion-MNIST",
    file: fixture('lucidrains', 'vit.py'),
    name: 'ViT',
    settings: { image_size: 32, patch_size: 8, num_classes: 10, dim: 256, depth: 2, heads: 4, mlp_dim: 512, dim_head: 64 },
    paths: [SITE],
    images: { image: { channels: 3, height: 32, width: 32 }, name: 'Fashion-MNIST (padded to 32×32, grey repeated to 3 channels)' },
    note: /cross-entropy on the model's output/,
  },
  {
    // Its image size is neither a setting nor in a config: the file states it (IMAGE = 28).
    what: 'the example Mixer (a convolution first, its image size a module constant)',
    file: join(repoRoot, 'test', 'e2e', 'workspace', 'mixer.py'),
    name: 'Mixer',
    settings: {},
    images: { image: { channels: 1, height: 28, width: 28 }, name: 'Fashion-MNIST' },
    note: /image size 28×28 from the file's IMAGE = 28; loss: cross-entropy on the model's output/,
  },
];

test('the PyTorch runner trains the corpus models dense vs Pixelfly from their own files', { skip: missing, timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-torch-runner-'));
  const corpusText = join(dir, 'corpus.txt');
  writeFileSync(corpusText, 'the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n'.repeat(600));
  try {
    await withDaemon(async (client) => {
      for (const m of corpus) {
        await t.test(m.what, async (st) => {
          const dataset = m.text ? { kind: 'text' as const, path: corpusText } : m.images ? { kind: 'fashion-mnist' as const } : undefined;
          const job = await submitTorch(client, m.file, m.name, m.settings, { paths: m.paths, dataset, precision: m.precision });
          // The run names what it trains from submission on: your PyTorch model, its file and model, the dataset.
          assert.deepEqual(job.subject && [job.subject.runner, job.subject.model, job.subject.file], ['torch', m.name, m.file]);
          assert.ok(job.subject?.dataset, 'the dataset asked for');
          const info = await waitEnd(client, job.jobId);
          st.diagnostic(`${m.what}: precision ${info.precision}${info.precisionNote ? `; ${info.precisionNote}` : ''}`);
          assert.doesNotMatch(info.dataset?.note ?? '', /precision/, "the precision's reason is its own field, not the dataset's note");
          checkCompleted(info, m.precision, m.autocastFails);
          assert.match(info.dataset!.note ?? '', m.note);
          if (m.text) assert.match(info.dataset!.name, /corpus\.txt \(\d[\d,]* tokens as characters/);
          else if (m.images && existsSync(FASHION_MNIST)) assert.equal(info.dataset!.name, m.images.name);
          else if (m.images) assert.match(info.dataset!.note ?? '', /Fashion-MNIST is not installed/);
          else assert.ok(info.dataset!.synthetic);
          // The worker's inspect step fills in what the built model eats, both parameter counts and the runtime.
          const sub = info.subject!;
          assert.deepEqual([sub.context, sub.image], m.images ? [undefined, m.images.image] : [64, undefined]);
          assert.deepEqual(sub.params, { pixelfly: info.summary!.pixelfly.params, dense: info.summary!.dense!.params });
          assert.equal(sub.batchSize, job.subject!.batchSize);
          if (m.images) assert.ok(info.summary!.pixelfly.eval?.accuracy !== undefined, 'a classifier is evaluated with its accuracy');
          // The worker runs on tcmalloc where it is installed (PyTorch under glibc faults its large tensors in every step).
          assert.match(sub.runtime ?? '', existsSync(TCMALLOC) ? /^PyTorch .*, tcmalloc$/ : /^PyTorch .*, glibc malloc$/);
          st.diagnostic(`${m.what}: speedup ${info.summary!.speedup!.toFixed(2)}x (median dense ${info.summary!.dense!.medianStepMs!.toFixed(1)} ms / Pixelfly ${info.summary!.pixelfly.medianStepMs!.toFixed(1)} ms), kernels: ${info.kernels}`);
          checkMemory(st, m.what, info);
        });
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A small token model whose forward misbehaves at its third call (mode: raise, hang, kill), calls a norm that
 * torch.autocast fails on (mode: norm), or whose file fails to import. */
const FAULTY = `
import os, signal, time
import torch
import torch.nn as nn
import torch.nn.functional as F

MODE = os.environ.get("PIXELFLY_TEST_MODE", "none")
if MODE == "import":
    raise ImportError("no module named 'missing_dependency' (raised by the test model)")


class Faulty(nn.Module):
    def __init__(self, mode="none", vocab_size=64, block_size=32, n_embd=256):
        super().__init__()
        self.mode, self.calls = mode, 0
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.fc1 = nn.Linear(n_embd, 4 * n_embd)
        self.fc2 = nn.Linear(4 * n_embd, n_embd)
        self.head = nn.Linear(n_embd, vocab_size)
        self.norm_weight = nn.Parameter(torch.ones(4 * n_embd))

    def forward(self, idx, targets=None):
        self.calls += 1
        if self.calls > 3:
            if self.mode == "raise":
                raise ValueError("boom from the model's forward")
            if self.mode == "hang":
                time.sleep(3600)
            if self.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        h = self.fc1(x)
        if self.mode == "norm":  # a norm called as a function on a product's output: fails under torch 1.13's CPU autocast
            h = F.layer_norm(h, h.shape[-1:], self.norm_weight)
        x = x + self.fc2(F.gelu(h))
        logits = self.head(x)
        loss = None if targets is None else F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss
`;

test('a model that raises, hangs, kills its worker or fails to import ends only its own job; one autocast fails on trains in fp32', { skip: missing, timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-torch-faulty-'));
  const file = join(dir, 'faulty.py');
  writeFileSync(file, FAULTY);
  const plan = await planFor(file, 'Faulty', { mode: 'none' });
  try {
    await withDaemon(
      async (client, daemon) => {
        const cases: Array<{ mode: string; error: RegExp; stepTimeoutS?: number }> = [
          { mode: 'raise', error: /training step of the (dense|pixelfly) model failed: ValueError: boom from the model's forward[\s\S]*faulty\.py", line \d+, in forward/ },
          { mode: 'hang', error: /hung: no answer within 3 s; stopped the PyTorch runner .*while training the (dense|pixelfly) model/, stepTimeoutS: 3 },
          { mode: 'kill', error: /the PyTorch runner .* was killed by SIGKILL/ },
        ];
        for (const c of cases) {
          await t.test(c.mode, async () => {
            const job = await submitTorch(client, file, 'Faulty', { mode: c.mode }, { plan, stepTimeoutS: c.stepTimeoutS ?? 120 });
            const info = await waitEnd(client, job.jobId, 120_000);
            assert.equal(info.state, 'failed');
            assert.match(info.error ?? '', c.error);
          });
        }
        await t.test("a model torch.autocast fails on trains in fp32 at 'auto', saying why", async () => {
          const job = await submitTorch(client, file, 'Faulty', { mode: 'norm' }, { plan, steps: 2 });
          checkCompleted(await waitEnd(client, job.jobId, 120_000), 'auto', /RuntimeError: expected scalar type BFloat16 but found Float/);
        });
        await t.test('the daemon is alive and still trains after them', async () => {
          assert.equal(daemon.proc.exitCode, null);
          const job = await submitTorch(client, file, 'Faulty', { mode: 'none' }, { plan, steps: 2 });
          assert.equal((await waitEnd(client, job.jobId, 120_000)).state, 'completed');
        });
      },
      [],
      () => ({}),
    );
    await withDaemon(
      async (client) => {
        await t.test('an import error', async () => {
          const job = await submitTorch(client, file, 'Faulty', { mode: 'none' }, { plan });
          const info = await waitEnd(client, job.jobId, 120_000);
          assert.equal(info.state, 'failed');
          assert.match(info.error ?? '', /importing .*faulty\.py failed: ImportError: no module named 'missing_dependency'/);
        });
      },
      [],
      () => ({ PIXELFLY_TEST_MODE: 'import' }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Each step's losses (Pixelfly, dense) from a run's metrics.jsonl, by step; the last record of a step wins. */
function stepLosses(runDir: string): Map<number, [number, number | undefined]> {
  const out = new Map<number, [number, number | undefined]>();
  for (const line of readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').split('\n')) {
    if (!line.includes('"type":"step"')) continue;
    const e = JSON.parse(line) as { step: number; pixelfly: { loss: number }; dense?: { loss: number } };
    out.set(e.step, [e.pixelfly.loss, e.dense?.loss]);
  }
  return out;
}

test('a runner job interrupted by a daemon killed mid-run resumes from its checkpoint and trains as if never stopped', { skip: missing, timeout: 300_000 }, async (t) => {
  const m = corpus[1]; // minGPT, fp32: no dropout, one thread, so each step is reproducible
  const plan = await planFor(m.file, m.name, m.settings);
  const opts = { plan, steps: 12, checkpointEvery: 4 };
  const home = tempHome();
  let daemon = await startDaemon(home);
  try {
    let client = await daemon.client();
    const whole = await submitTorch(client, m.file, m.name, m.settings, opts);
    const reference = await waitEnd(client, whole.jobId);
    checkCompleted(reference);

    const job = await submitTorch(client, m.file, m.name, m.settings, opts);
    const killedAt = await killAfterCheckpoint(daemon, client, job.jobId, 4);
    assert.ok(killedAt >= 4 && killedAt < 12, `killed after a checkpoint mid-run (at step ${killedAt})`);

    daemon = await startDaemon(home);
    client = await daemon.client();
    const listed = (await client.request('job.list', {})).jobs.find((j) => j.jobId === job.jobId);
    assert.equal(listed?.state, 'interrupted');
    await client.request('job.resume', { jobId: job.jobId });
    const info = await waitEnd(client, job.jobId);
    checkCompleted(info);
    const running = readFileSync(join(info.runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"type":"status"') && l.includes('"state":"running"'))
      .map((l) => JSON.parse(l) as { resumedFromStep?: number });
    const resumedFrom = running.at(-1)?.resumedFromStep;
    assert.ok(resumedFrom !== undefined && resumedFrom >= killedAt, `resumed from the checkpoint at step ${killedAt} or later (got ${resumedFrom})`);

    // Weights, AdamW moments, the schedule and the data position came back: every step after the
    // resume has the loss the uninterrupted run had at that step, for both models.
    const want = stepLosses(reference.runDir);
    const got = stepLosses(info.runDir);
    for (let step = 1; step <= 12; step++) {
      const [p, d] = got.get(step) ?? [NaN, NaN];
      const [wp, wd] = want.get(step)!;
      assert.ok(Math.abs(p - wp) <= 1e-5 * Math.abs(wp) && Math.abs((d ?? NaN) - wd!) <= 1e-5 * Math.abs(wd!), `step ${step}: losses ${p}, ${d} after the resume; ${wp}, ${wd} uninterrupted`);
    }
    t.diagnostic(`killed at step ${killedAt}, resumed from step ${resumedFrom}; final losses ${info.summary!.pixelfly.finalLoss!.toFixed(4)} (Pixelfly), ${info.summary!.dense!.finalLoss!.toFixed(4)} (dense), as uninterrupted`);
    client.close();
  } finally {
    await daemon.stop();
    removeHome(home);
  }
});

test('torch jobs are refused where they enter: an untrusted workspace, a relative path, no plan; an estimate above free memory before the model is built', { skip: missing, timeout: 300_000 }, async (t) => {
  const m = corpus[0];
  const plan = await planFor(m.file, m.name, m.settings);
  await withDaemon(async (client) => {
    const refused = async (p: Promise<unknown>, re: RegExp) => {
      const err = await p.then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof DaemonRpcError, `refused (got ${String(err)})`);
      assert.match(err.message, re);
    };
    await t.test('untrusted', () => refused(submitTorch(client, m.file, m.name, m.settings, { plan, trusted: false }), /only does so for a file in a workspace the user trusts/));
    await t.test('relative path', () => refused(submitTorch(client, 'nanogpt/model.py', m.name, m.settings, { plan }), /must be an absolute path/));
    await t.test('no plan', () => refused(submitTorch(client, m.file, m.name, m.settings, { plan: null }), /a torch job needs its plan/));
    await t.test('a backend or precision it does not train with', async () => {
      const base = { runner: 'torch' as const, model: { file: m.file, name: m.name, settings: m.settings, python: PYTHON, trusted: true }, plan: plan as MethodParamsIn<'job.submit'>['plan'], dataset: { kind: 'synthetic' as const } };
      await refused(client.request('job.submit', { ...base, hyper: { epochs: 1, batchSize: 4, lr: 1e-3, backend: 'cuda' } }), /trains on the CPU: backend 'cuda'/);
      await refused(client.request('job.submit', { ...base, hyper: { epochs: 1, batchSize: 4, lr: 1e-3, precision: 'fp16' } }), /trains on the CPU, where fp16 products are not faster/);
    });
    await t.test('over memory', async (st) => {
      const free = (await client.request('hello', {})).memory!.availableBytes;
      // Batch 65536 of 1024-token windows: activations alone are far beyond any machine's memory.
      const huge = { ...m.settings, block_size: 1024 };
      const job = await submitTorch(client, m.file, m.name, huge, { plan, batchSize: 65536 });
      const info = await waitEnd(client, job.jobId, 120_000);
      assert.equal(info.state, 'failed');
      assert.match(info.error ?? '', /this job needs about [\d.]+ [GT]B of memory .*activations .*read from the model sized on the meta device, before building it\), but only .* can be given to it .*a size that fits: batchSize \d+/);
      // The failed run carries that batch, for the editor's one-click retry.
      assert.equal(info.fits?.batchSize, Number(/a size that fits: batchSize (\d+)/.exec(info.error ?? '')?.[1]));
      // Refused before the batch: the worker held PyTorch and the model, not the batch's activations.
      const runDir = info.runDir;
      assert.ok(!existsSync(join(runDir, 'checkpoints', 'step-1')));
      st.diagnostic(`${info.error} (machine free: ${(free / 2 ** 30).toFixed(1)} GiB)`);
      const metrics = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8');
      assert.ok(!metrics.includes('"type":"step"'), 'no step ran');
    });
    await t.test('over its own memory limit: refused with the batch that fits, which trains within the limit', async (st) => {
      const limit = 1.5e9;
      const job = await submitTorch(client, m.file, m.name, m.settings, { plan, batchSize: 8192, memoryLimitBytes: limit, steps: 2 });
      const info = await waitEnd(client, job.jobId, 120_000);
      assert.equal(info.state, 'failed');
      assert.match(info.error ?? '', /but only 1\.3 GB can be given to it \(the job's memory limit of 1\.5 GB, less 15% for the estimate's error; .*\); a size that fits: batchSize \d+/);
      const batch = info.fits?.batchSize ?? 0;
      assert.ok(batch > 1 && batch < 8192, `offered batch ${batch}`);
      const retried = await waitEnd(client, (await submitTorch(client, m.file, m.name, m.settings, { plan, batchSize: batch, memoryLimitBytes: limit, steps: 2 })).jobId, 240_000);
      assert.equal(retried.state, 'completed', retried.error);
      assert.ok((retried.peakMemoryBytes ?? Infinity) <= limit, `peak ${retried.peakMemoryBytes} above the limit`);
      st.diagnostic(`batch ${batch}: estimated ${retried.estimatedMemoryBytes}, peak ${retried.peakMemoryBytes} (limit ${limit})`);
    });
    await t.test('parameters over memory: refused before the model is built', async (st) => {
      // 16 blocks of width 32768: about 200 G parameters, 800 GB in fp32 before any gradient. Built,
      // it would take the worker's memory (or the machine's) long before an estimate could be made.
      const giant = { ...m.settings, n_layer: 16, n_embd: 32768, n_head: 256 };
      const job = await submitTorch(client, m.file, m.name, giant, { plan: await planFor(m.file, m.name, giant) });
      const info = await waitEnd(client, job.jobId, 120_000);
      assert.equal(info.state, 'failed');
      assert.match(info.error ?? '', /this job needs about [\d.]+ TB of memory \(parameters [\d.]+ [GT]B, .*read from the model sized on the meta device, before building it\).*no batch size or context fits: reduce the model/);
      assert.equal(info.fits, undefined, 'no batch fits');
      st.diagnostic(info.error ?? '');
    });
  });
});

test('pixelfly train FILE --runner torch trains the file\'s own model and its JSON has the runner, speedup and memory', { skip: missing, timeout: 300_000 }, () => {
  const home = tempHome();
  try {
    const m = corpus[2];
    const args = ['train', m.file, '--runner', 'torch', '--model', m.name, ...Object.entries(m.settings).map(([k, v]) => `--set=${k}=${v}`)];
    args.push('--path', SITE, '--python', PYTHON, '--steps', '3', '--batch-size', '2', '--threads', '1', '--json');
    const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 240_000 });
    const stopped = spawnSync(process.execPath, [CLI, 'daemon', 'stop'], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `${r.stderr}\n${r.stdout}`);
    assert.equal(stopped.status, 0, stopped.stderr);
    const out = JSON.parse(r.stdout) as JobInfo & { measuredSpeedup?: number };
    assert.equal(out.subject?.runner, 'torch');
    assert.equal(out.state, 'completed');
    assert.ok(out.measuredSpeedup !== undefined && out.measuredSpeedup > 0 && out.measuredSpeedup === out.summary?.speedup);
    assert.ok(out.estimatedMemoryBytes! > 0 && out.peakMemoryBytes! > 0);
    assert.match(r.stderr, /GPT2LMHeadModel/);
  } finally {
    removeHome(home);
  }
});

test('pixelfly train FILE --runner torch builds the model with the file\'s own `# pixelfly:` pins, as the editor\'s lens does', { skip: missing, timeout: 300_000 }, () => {
  const home = tempHome();
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-pins-'));
  try {
    // minGPT's config needs its sizes (or a model_type): here they are pinned in the file only.
    cpSync(fixture('mingpt'), join(dir, 'mingpt'), { recursive: true });
    const file = join(dir, 'mingpt', 'mingpt', 'model.py');
    pinModelFile(file, 'model_type=None, n_layer=2, n_head=4, n_embd=256, vocab_size=96, block_size=64');
    const args = ['train', file, '--runner', 'torch', '--python', PYTHON, '--steps', '2', '--batch-size', '2', '--threads', '1', '--json'];
    const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 240_000 });
    spawnSync(process.execPath, [CLI, 'daemon', 'stop'], { env: { ...process.env, PIXELFLY_HOME: home }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `${r.stderr}\n${r.stdout}`);
    const out = JSON.parse(r.stdout) as JobInfo;
    assert.equal(out.state, 'completed', out.error);
    assert.equal(out.subject?.context, 64, 'the pinned block_size');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    removeHome(home);
  }
});
