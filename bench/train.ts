// `npm run bench:train -- [--threads 2] [--epochs 1] [--dim 512] [--token-hidden 256] [--channel-hidden 2048]
//                         [--depth 4] [--batch 128] [--budget 0.25 | --plan PLAN.json] [--train-limit 20000]
//                         [--skip-torch] [--out FILE]`
// Defaults: Mixer-S widths (dim 512, token hidden 256, channel hidden 2048) at depth 4, 1 epoch over
// the first 20000 training images (--train-limit 0 uses all 60000): about 12 minutes on 2 cores,
// most of it PyTorch. The test accuracy is always on the full 10000-image test set.
// An MLP-Mixer on Fashion-MNIST (patch 4 → 49 tokens) trained dense and Pixelfly in our engine and
// dense in PyTorch-CPU (bench/mixer_torch.py) with the same batch, optimizer, schedule, epochs and
// thread count. Reports the median step time (batch + forward + backward + optimizer, first steps
// excluded), speedups against PyTorch and our dense, and test accuracy after the same epochs.
// Prints a table and writes JSON rows (default bench-results/train.json).
// The Pixelfly plan comes from the core planner (spec → specInventory → planModel) at --budget,
// or from --plan (a JSON plan with the inventory's layer names, e.g. `blocks.channel_mix.fc1`).

// One libuv worker runs every engine call, so one OpenMP pool serves all of them (several pools
// would leave idle-spinning workers competing for the two cores).
process.env.UV_THREADPOOL_SIZE = '1';
// Idle OpenMP workers sleep instead of spinning (native/engine.ts sets the same default); the
// PyTorch child process inherits it, so both sides run under the same policy.
process.env.OMP_WAIT_POLICY ??= 'PASSIVE';

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { planModel } from '../core/planner';
import { specInventory, type MixerSpec } from '../core/modelSpec';
import { createModel, engineBackend, EngineDataset, stepPartsMs, type PlanLike, type TrainConfig } from '../native/engine';
import { DEBIAN_FASHION_MNIST, loadFashionMnist } from '../native/datasets';
import { median, medianOfEach } from '../daemon/measure';

interface Options {
  threads: number;
  epochs: number;
  dim: number;
  depth: number;
  tokenHidden: number;
  channelHidden: number;
  batch: number;
  lr: number;
  budget: number;
  trainLimit: number;
  data: string;
  plan: string;
  skipTorch: boolean;
  out: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    threads: 2, epochs: 1, dim: 512, depth: 4, tokenHidden: 256, channelHidden: 2048, batch: 128, lr: 2e-3,
    budget: 0.25, trainLimit: 20000, data: DEBIAN_FASHION_MNIST, plan: '', skipTorch: false, out: 'bench-results/train.json',
  };
  const numeric: Record<string, keyof Options> = {
    '--threads': 'threads', '--epochs': 'epochs', '--dim': 'dim', '--depth': 'depth', '--token-hidden': 'tokenHidden',
    '--channel-hidden': 'channelHidden', '--batch': 'batch', '--lr': 'lr', '--budget': 'budget', '--train-limit': 'trainLimit',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--skip-torch') {
      o.skipTorch = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--out') o.out = value;
    else if (flag === '--data') o.data = value;
    else if (flag === '--plan') o.plan = value;
    else if (numeric[flag]) {
      const v = Number(value);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${flag}: expected a non-negative number, got ${value}`);
      (o as unknown as Record<string, number>)[numeric[flag]] = v;
    } else throw new Error(`unknown option ${flag}`);
  }
  if (o.epochs <= 0) throw new Error('--epochs must be > 0');
  return o;
}

interface Row {
  model: string;
  variant: 'pytorch_dense' | 'dense' | 'pixelfly';
  /** Where the step ran: 'pytorch-cpu', or the engine's backend ('cuda' when a GPU is usable, else 'cpu'). */
  backend: string;
  /** The products' input precision: the engine's 'auto' (bf16 on CUDA, fp32 on the CPU); PyTorch runs fp32. */
  precision: string;
  threads: number;
  step_ms: number;
  epochs: number;
  steps: number;
  batch: number;
  test_accuracy: number;
  params: number;
  speedup_vs_pytorch?: number;
  speedup_vs_dense?: number;
  load_avg: number;
  omp_wait_policy: string;
  /** Engine rows: median forward + backward ms per part of the model. */
  parts_ms?: Record<string, number>;
  note?: string;
}

interface EngineResult {
  stepMs: number;
  /** Median forward + backward ms of each part of the model (token mixing, channel mixing, ...). */
  partsMs: Record<string, number>;
  /** The products' input precision the model was built with (createModel resolved 'auto'). */
  precision: string;
  accuracy: number;
  params: number;
  finalLoss: number;
}

/**
 * Trains our dense and Pixelfly models in alternating chunks of 10 steps, so a burst of load on a
 * shared machine hits both alike (their ratio is the figure that matters), then evaluates both.
 */
async function trainEngineVariants(
  spec: MixerSpec, plan: PlanLike, data: EngineDataset, train: TrainConfig, o: Options, steps: number,
): Promise<{ dense: EngineResult; pixelfly: EngineResult }> {
  const variants = [
    { name: 'dense', model: await createModel({ spec, train, seed: 0, threads: o.threads, precision: 'auto' }), times: [] as number[], parts: [] as Record<string, number>[], loss: NaN },
    { name: 'pixelfly', model: await createModel({ spec, plan, train, seed: 0, threads: o.threads, precision: 'auto' }), times: [] as number[], parts: [] as Record<string, number>[], loss: NaN },
  ];
  for (let done = 0; done < steps; ) {
    const n = Math.min(10, steps - done);
    for (const v of variants) {
      const r = await v.model.trainSteps(data, n);
      for (const s of r) {
        v.times.push(s.ms.total);
        v.parts.push(stepPartsMs(s));
      }
      v.loss = r[r.length - 1].loss;
    }
    done += n;
    const status = variants.map((v) => `${v.name} loss ${v.loss.toFixed(3)} median ${median(v.times).toFixed(1)} ms`).join(' | ');
    process.stdout.write(`\r  step ${done}/${steps}  ${status}   `);
  }
  process.stdout.write('\n');
  const result = async (v: (typeof variants)[number]): Promise<EngineResult> => ({
    // The first steps warm up buffers and thread pools: time the rest.
    stepMs: median(v.times.slice(Math.min(5, v.times.length - 1))),
    partsMs: medianOfEach(v.parts.slice(Math.min(5, v.parts.length - 1))) ?? {},
    precision: v.model.precision,
    accuracy: (await v.model.evaluate(data)).accuracy ?? NaN,
    params: v.model.paramCount,
    finalLoss: v.loss,
  });
  return { dense: await result(variants[0]), pixelfly: await result(variants[1]) };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (!existsSync(o.data)) {
    throw new Error(`Fashion-MNIST not found at ${o.data}: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data FOLDER`);
  }
  const loaded = await loadFashionMnist(o.data);
  if (o.trainLimit > 0) {
    loaded.trainX = loaded.trainX.slice(0, o.trainLimit * loaded.features);
    loaded.trainY = loaded.trainY.slice(0, o.trainLimit);
  }
  const data = new EngineDataset(loaded);
  const nTrain = loaded.trainY.length;
  const steps = Math.max(1, Math.round((o.epochs * nTrain) / o.batch));
  const spec: MixerSpec = {
    kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: o.dim, depth: o.depth,
    tokenHidden: o.tokenHidden, channelHidden: o.channelHidden, classes: 10,
  };
  const plan: PlanLike & { summary?: string } = o.plan
    ? { summary: `from ${o.plan}`, ...(JSON.parse(readFileSync(o.plan, 'utf8')) as PlanLike) }
    : planModel(specInventory(spec), { budget: o.budget });
  const sparse = plan.layers.filter((l) => l.sparsify);
  if (sparse.length === 0) throw new Error(`the plan sparsifies no layer (${plan.summary}): raise --dim/--channel-hidden or pass --plan`);
  const train: TrainConfig = { batch: o.batch, lr: o.lr, totalSteps: steps, warmupSteps: Math.min(100, Math.floor(steps / 10)), minLrRatio: 0.01, weightDecay: 0.05, clipNorm: 1 };
  const model = `mixer-${o.dim}x${o.depth}`;
  console.log(`MLP-Mixer on Fashion-MNIST: 49 tokens, dim ${o.dim}, depth ${o.depth}, token hidden ${o.tokenHidden}, channel hidden ${o.channelHidden}`);
  console.log(`${nTrain} training samples, batch ${o.batch}, ${o.epochs} epoch(s) = ${steps} steps, ${o.threads} thread(s), load average ${loadavg()[0].toFixed(2)}`);
  console.log(`plan (${o.plan ? o.plan : `core planner, budget ${o.budget}`}): ${plan.summary}`);
  for (const l of sparse) console.log(`  ${l.name}: ${JSON.stringify(l.config)}`);

  const rows: Row[] = [];
  // PyTorch rows carry no precision: PyTorch runs fp32.
  const row = (variant: Row['variant'], r: { stepMs: number; accuracy: number; params: number; precision?: string }, note?: string): Row => ({
    model, variant, backend: variant === 'pytorch_dense' ? 'pytorch-cpu' : engineBackend(),
    precision: r.precision ?? 'fp32', threads: o.threads, step_ms: r.stepMs, epochs: o.epochs, steps, batch: o.batch,
    test_accuracy: r.accuracy, params: r.params, load_avg: loadavg()[0], omp_wait_policy: process.env.OMP_WAIT_POLICY ?? '', ...(note ? { note } : {}),
  });

  console.log('\n[1/2] PyTorch-CPU dense');
  if (o.skipTorch) {
    console.log('  skipped (--skip-torch)');
  } else {
    const cfg = { ...spec.image, patch: spec.patch, dim: o.dim, depth: o.depth, tokenHidden: o.tokenHidden, channelHidden: o.channelHidden,
      classes: 10, threads: o.threads, seed: 0, batch: o.batch, lr: o.lr, weightDecay: 0.05, totalSteps: steps,
      warmupSteps: train.warmupSteps, minLrRatio: train.minLrRatio, clipNorm: 1, data: o.data, trainLimit: o.trainLimit };
    const r = spawnSync('/usr/bin/python3', [join(__dirname, '..', '..', 'bench', 'mixer_torch.py'), JSON.stringify(cfg)], { encoding: 'utf8' });
    if (r.status !== 0) {
      console.log(`  PyTorch baseline FAILED (is python3-torch installed?): ${(r.stderr || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`);
    } else {
      const t = JSON.parse(r.stdout.trim().split('\n').pop() as string);
      console.log(`  torch ${t.torch}, ${t.threads} threads: median step ${t.step_ms.toFixed(1)} ms, final loss ${t.final_loss.toFixed(3)}`);
      rows.push(row('pytorch_dense', { stepMs: t.step_ms, accuracy: t.test_accuracy, params: NaN }, `torch ${t.torch}`));
    }
  }
  console.log('[2/2] engine dense and Pixelfly, alternating every 10 steps');
  const { dense, pixelfly: pf } = await trainEngineVariants(spec, plan, data, train, o, steps);
  rows.push({ ...row('dense', dense), parts_ms: dense.partsMs });
  rows.push({ ...row('pixelfly', pf), parts_ms: pf.partsMs });

  const torchRow = rows.find((r) => r.variant === 'pytorch_dense');
  for (const r of rows) {
    if (torchRow) r.speedup_vs_pytorch = torchRow.step_ms / r.step_ms;
    r.speedup_vs_dense = dense.stepMs / r.step_ms;
  }
  console.log('\n| variant | threads | step ms (median) | vs PyTorch | vs our dense | test acc | params |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.variant} | ${r.threads} | ${r.step_ms.toFixed(1)} | ${r.speedup_vs_pytorch !== undefined ? `${r.speedup_vs_pytorch.toFixed(2)}×` : '-'} | ${r.speedup_vs_dense?.toFixed(2)}× | ${(100 * r.test_accuracy).toFixed(2)}% | ${Number.isNaN(r.params) ? '-' : r.params} |`);
  }
  // Where a step goes: the parts Pixelfly changes (the sparsified layers) against those it shares.
  console.log('\n| part of the model (fwd + bwd) | dense ms | Pixelfly ms | speedup |');
  console.log('|---|---|---|---|');
  for (const name of Object.keys(dense.partsMs)) {
    const d = dense.partsMs[name], p = pf.partsMs[name];
    console.log(`| ${name} | ${d.toFixed(1)} | ${p.toFixed(1)} | ${(d / p).toFixed(2)}× |`);
  }
  const diff = 100 * (pf.accuracy - dense.accuracy);
  console.log(`\nPixelfly − our dense test accuracy: ${diff >= 0 ? '+' : '−'}${Math.abs(diff).toFixed(2)} points (target: Pixelfly no more than 1 point below dense)`);
  if (torchRow) console.log(`Pixelfly vs PyTorch dense step: ${(torchRow.step_ms / pf.stepMs).toFixed(2)}× (target ≥ 2×)`);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(rows, null, 2));
  console.log(`wrote ${o.out}`);
}

main().catch((e) => {
  console.error(`bench:train failed: ${(e as Error).message}`);
  process.exit(1);
});
