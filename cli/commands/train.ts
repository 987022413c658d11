// `pixelfly train [spec.json] [options]`: one run, dense vs Pixelfly, from a terminal. Connects to
// the daemon (starting it when needed), submits the job, shows a live progress line, and ends
// with a summary and the path of the run's self-contained HTML report.
import { readFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { DaemonRpcError, type DaemonClient } from '../../client/daemonClient';
import { connectDaemon, discover, ensureDaemon } from '../../client/discovery';
import { pixelflyHome } from '../../io/home';
import { BACKEND_CHOICES, describeRunner, describeShape, describeZodError, methods, PRECISION_CHOICES, RUNNER_CHOICES, TERMINAL_STATES, type JobEvent, type JobInfo, type MethodParamsIn, type RunSummary } from '../../protocol/daemon';
import { defaultDemo } from '../demo';
import { analysisPlan, analysisSettings, analyze, AnalysisInputError } from '../../server/analysis/analyze';
import { pythonParser } from '../../server/analysis/parser';
import { ParseCache, sitePackages } from '../../server/analysis/modules';
import type { Value } from '../../server/analysis/values';
import { DEFAULT_TARGET, type PlanTarget } from '../../core/planner';
import type { Plan } from '../../protocol/plan';
import { cliPlanOptions, pinsOption } from './analyze';
import { hasMeasuredProfile, trainsOnCpu } from '../../client/deviceMeasure';
import { measureDevice } from './measureDevice';
import { parseDataset } from '../../client/datasetArg';
import { choiceOption, CliError, intOption, numberOption, parse, readJsonFile, sizeOption, type Command } from './command';

const options = {
  dataset: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  'max-steps': { type: 'string' },
  'eval-every': { type: 'string' },
  threads: { type: 'string' },
  'memory-limit': { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
  precision: { type: 'string' },
  budget: { type: 'string' },
  speedup: { type: 'string' },
  'no-compare': { type: 'boolean' },
  resume: { type: 'string' },
  model: { type: 'string' },
  runner: { type: 'string' },
  set: { type: 'string', multiple: true },
  path: { type: 'string', multiple: true },
  python: { type: 'string' },
  steps: { type: 'string' },
  'step-timeout': { type: 'string' },
  'no-measure': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

type SubmitParams = MethodParamsIn<'job.submit'>;

/** The option behind each job.submit field the options fill, for messages. */
const OPTION_OF: Record<string, string> = {
  'hyper.epochs': '--epochs',
  'hyper.batchSize': '--batch-size',
  'hyper.lr': '--lr',
  'hyper.maxSteps': '--max-steps / --steps',
  'hyper.evalEvery': '--eval-every',
  'hyper.threads': '--threads',
  'hyper.memoryLimitBytes': '--memory-limit',
  'hyper.seed': '--seed',
  'target.budget': '--budget',
  'target.speedup': '--speedup',
  'dataset.path': '--dataset',
};

/**
 * A PyTorch model file goes through the language server's analysis (the same one behind the
 * editor's hints and `pixelfly analyze`, with the same options): its architecture and widths
 * become the engine's model spec, and the plan `pixelfly analyze` prints is the plan trained.
 */
async function jobFromPython(
  file: string,
  o: { model?: string; pins: Map<string, Value>; target?: PlanTarget; batchSize: number; precision: (typeof PRECISION_CHOICES)[number] },
  notes: string[],
): Promise<{ spec: Record<string, unknown>; plan: Plan }> {
  let analysis;
  try {
    analysis = analyze(await pythonParser(), { file, model: o.model, pins: o.pins, target: o.target, planOptions: cliPlanOptions(o.batchSize, o.precision) });
  } catch (err) {
    if (err instanceof AnalysisInputError) throw new CliError(`${file}: ${err.message}`, 1);
    throw err;
  }
  const r = analysis.engine;
  if ('error' in r) throw new CliError(`${file}: ${r.error}`, 1);
  notes.push(`${file}: ${analysis.model?.name ?? 'model'} analysed as ${JSON.stringify(r.spec)}`, r.plan.summary);
  return { spec: { ...r.spec }, plan: r.plan };
}

function readSpec(file: string): Record<string, unknown> {
  const spec = readJsonFile(file, 'model spec');
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new CliError(`model spec '${file}' must be a JSON object`, 1);
  return spec as Record<string, unknown>;
}

function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Renders the live state as one line; on a terminal it is redrawn in place. */
class ProgressLine {
  private last: { step?: Extract<JobEvent, { type: 'step' }>; progress?: Extract<JobEvent, { type: 'progress' }> } = {};
  private printedAt = 0;
  private readonly tty = process.stderr.isTTY === true;

  update(e: JobEvent): void {
    if (e.type === 'step') this.last.step = e;
    else if (e.type === 'progress') this.last.progress = e;
    else return;
    const now = Date.now();
    // Not a terminal (CI logs): a line every 5 s rather than a redraw per step.
    if (now - this.printedAt < (this.tty ? 100 : 5000) && !(e.type === 'progress' && e.step === e.totalSteps)) return;
    this.printedAt = now;
    const p = this.last.progress;
    const s = this.last.step;
    const frac = p && p.totalSteps > 0 ? p.step / p.totalSteps : 0;
    const width = 20;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const parts = [`[${bar}] ${(frac * 100).toFixed(0).padStart(3)}%`, `step ${p?.step ?? s?.step ?? 0}/${p?.totalSteps ?? '?'}`];
    if (s) parts.push(`loss pixelfly ${s.pixelfly.loss.toFixed(3)}${s.dense ? ` dense ${s.dense.loss.toFixed(3)}` : ''}`);
    if (s?.speedup !== undefined) parts.push(`speedup ${s.speedup.toFixed(2)}x`);
    if (p?.etaMs !== undefined) parts.push(`ETA ${clock(p.etaMs)}`);
    const line = parts.join(' | ');
    process.stderr.write(this.tty ? `\r${line.padEnd(100)}` : `${line}\n`);
  }

  end(): void {
    if (this.tty) process.stderr.write('\n');
  }
}

/** The run's plan as the daemon trained it (its run folder's plan.json), or undefined when it cannot be read. */
function trainedPlan(info: JobInfo): Plan | undefined {
  try {
    return JSON.parse(readFileSync(join(info.runDir, 'plan.json'), 'utf8')) as Plan;
  } catch {
    return undefined;
  }
}

/** `--json`: the job record with the plan trained and its estimated and measured speedups beside each other. */
function jsonSummary(info: JobInfo): object {
  const plan = trainedPlan(info);
  return { ...info, runner: info.subject?.runner ?? 'engine', plan: plan ?? null, estimatedSpeedup: info.summary?.estimatedSpeedup ?? plan?.estimate?.speedup ?? null, measuredSpeedup: info.summary?.speedup ?? null };
}

function formatSummary(info: JobInfo, s: RunSummary): string {
  const pct = (v?: number) => (v === undefined ? '-' : `${(v * 100).toFixed(2)}%`);
  const n = (v?: number, d = 3) => (v === undefined ? '-' : v.toFixed(d));
  const rows: [string, string, string][] = [
    ['', 'Pixelfly', 'dense'],
    ['parameters', String(s.pixelfly.params), s.dense ? String(s.dense.params) : '-'],
    ['final train loss', n(s.pixelfly.finalLoss), n(s.dense?.finalLoss)],
    ['median step (ms)', n(s.pixelfly.medianStepMs, 2), n(s.dense?.medianStepMs, 2)],
    ['tokens/s', n(s.pixelfly.tokensPerSec, 0), n(s.dense?.tokensPerSec, 0)],
    ['eval accuracy', pct(s.pixelfly.eval?.accuracy), pct(s.dense?.eval?.accuracy)],
  ];
  if (s.pixelfly.eval?.perplexity !== undefined) rows.push(['eval perplexity', n(s.pixelfly.eval.perplexity), n(s.dense?.eval?.perplexity)]);
  // Where a step goes: forward + backward median per part of the model.
  for (const [part, ms] of Object.entries(s.pixelfly.partsMs ?? {})) rows.push([`  ${part} (ms)`, n(ms, 2), n(s.dense?.partsMs?.[part], 2)]);
  const w = [Math.max(...rows.map((r) => r[0].length)), Math.max(...rows.map((r) => r[1].length)), Math.max(...rows.map((r) => r[2].length))];
  const table = rows.map((r) => `  ${r[0].padEnd(w[0])}  ${r[1].padStart(w[1])}  ${r[2].padStart(w[2])}`).join('\n');
  const ds = info.dataset;
  const subject = info.subject;
  return [
    `run ${info.jobId}: ${info.state} after ${s.steps} steps (${s.epochsDone.toFixed(2)} epochs, ${clock(s.wallMs)})`,
    ds ? `dataset: ${ds.name}${ds.synthetic ? ' (synthetic task)' : ''}${ds.note ? ` — ${ds.note}` : ''}` : '',
    // What was trained, in the words of the metrics panel, the runs view and the report.
    subject ? `model: ${subject.model}${subject.file ? ` in ${subject.file}` : ''} — ${describeRunner(subject)}; ${describeShape(subject)}` : '',
    subject?.runner === 'torch'
      ? `Pixelfly layers: ${info.kernels ?? '?'}${info.precisionNote ? `; ${info.precisionNote}` : ''}`
      : info.backend
        ? `engine: ${info.backend}${info.precision ? `, ${info.precision} products` : ''}${info.kernels ? ` (${info.kernels})` : ''}`
        : '',
    info.estimatedMemoryBytes !== undefined && info.peakMemoryBytes !== undefined
      ? `memory: estimated ${(info.estimatedMemoryBytes / 2 ** 20).toFixed(0)} MiB, measured peak ${(info.peakMemoryBytes / 2 ** 20).toFixed(0)} MiB`
      : '',
    table,
    s.speedup !== undefined
      ? `speedup (median dense step / median Pixelfly step, alternating steps): ${s.speedup.toFixed(2)}x` +
        (s.estimatedSpeedup !== undefined ? ` (the plan estimated ${s.estimatedSpeedup.toFixed(2)}x)` : '')
      : info.compare
        ? `no speedup: the run ${info.state === 'completed' ? 'ended' : info.state} before both models had trained a step`
        : 'no dense comparison (--no-compare)',
    `report: ${s.reportPath ?? info.runDir}`,
    `run folder: ${info.runDir}`,
  ]
    .filter((l) => l !== '')
    .join('\n');
}

/**
 * Follows a job to its end, reconnecting (and resubscribing from the last seen seq) when the
 * connection drops, e.g. when the daemon drops a slow reader. A daemon that went away is not
 * restarted behind the user's back: the run is interrupted and can be resumed.
 */
async function follow(home: string, jobId: string, fromSeq: number, onEvent: (e: JobEvent) => void): Promise<JobInfo> {
  let lastSeq = fromSeq;
  let interrupted = false;
  for (let attempt = 0; attempt < 10; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * attempt));
    const found = discover(home);
    if (!found) break;
    let client: DaemonClient;
    try {
      client = await connectDaemon(found);
      client.onProtocolError((m) => process.stderr.write(`\ndaemon protocol error (ignored): ${m}\n`));
    } catch {
      continue;
    }
    const outcome = await new Promise<'done' | 'dropped'>((resolve) => {
      client.onEvent((e) => {
        if (e.jobId !== jobId || e.seq <= lastSeq) return;
        lastSeq = e.seq;
        onEvent(e);
        interrupted = e.type === 'status' && e.state === 'interrupted';
        if (e.type === 'completed' || interrupted) resolve('done');
      });
      client.onClose(() => resolve('dropped'));
      client.request('job.subscribe', { jobId, fromSeq: lastSeq }).then(
        (r) => {
          // Already over before we (re)subscribed, and we have seen all of it.
          if ((r.state === 'interrupted' || TERMINAL_STATES.includes(r.state)) && r.lastSeq <= lastSeq) resolve('done');
        },
        () => resolve('dropped'),
      );
    });
    if (outcome === 'done') {
      const info = await client.request('job.get', { jobId }).catch(() => undefined);
      client.close();
      if (info) return info;
    }
  }
  const what = interrupted ? 'was interrupted: the daemon stopped' : 'could not be followed: the daemon went away';
  throw new CliError(`run ${jobId} ${what}; 'pixelfly train --resume ${jobId}' continues it from its last checkpoint`, 1);
}

function datasetOption(raw: string): SubmitParams['dataset'] {
  try {
    return parseDataset(raw);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

type Values = ReturnType<typeof parse<typeof options>>['values'];

/**
 * `--runner torch`: the file is analysed (as `pixelfly analyze` does, with the same --model, --set
 * and --path) for its plan, and the daemon's PyTorch runner trains the model itself from the file.
 * Naming the file on the command line is the user's trust in it.
 */
async function torchSubmitParams(values: Values, file: string | undefined): Promise<SubmitParams> {
  if (file === undefined || extname(file) !== '.py') throw new CliError('--runner torch trains a PyTorch model file: pixelfly train model.py --runner torch [--model NAME] [--set NAME=VALUE]…');
  const pins = pinsOption(values);
  const python = values.python ?? (process.platform === 'linux' ? '/usr/bin/python3' : 'python3');
  const paths = (values.path ?? []).map((p) => resolve(p));
  let analysis;
  try {
    analysis = analyze(new ParseCache(await pythonParser()), {
      file: resolve(file),
      model: values.model,
      pins,
      extraPaths: paths,
      sitePackages: await sitePackages(python),
      target: values.speedup !== undefined ? { speedup: numberOption(values, 'speedup') as number } : { budget: numberOption(values, 'budget') ?? 0.25 },
    });
  } catch (err) {
    if (err instanceof AnalysisInputError) throw new CliError(`${file}: ${err.message}`, 1);
    throw err;
  }
  const name = values.model ?? analysis.model?.name;
  if (!name) throw new CliError(`${file}: no model class or factory found; name one with --model`, 1);
  const plan = analysisPlan(analysis);
  process.stderr.write(`${file}: ${name} — ${analysis.plan?.summary ?? `${plan.layers.filter((l) => l.sparsify).length} layers planned Pixelfly`}\n`);
  return {
    runner: 'torch',
    model: {
      file: resolve(file),
      name,
      // Every pin the analysis built the model with, the file's own `# pixelfly:` ones too (as the editor's lens).
      settings: analysisSettings(analysis),
      python,
      paths,
      trusted: true,
      stepTimeoutS: numberOption(values, 'step-timeout'),
    },
    plan: plan as SubmitParams['plan'],
    dataset: values.dataset !== undefined ? datasetOption(values.dataset) : { kind: 'synthetic' },
    compare: values['no-compare'] !== true,
    hyper: {
      epochs: numberOption(values, 'epochs') ?? 1,
      batchSize: intOption(values, 'batch-size', 8),
      lr: numberOption(values, 'lr') ?? 3e-4,
      maxSteps: intOption(values, values.steps !== undefined ? 'steps' : 'max-steps', 0),
      evalEvery: intOption(values, 'eval-every', 0),
      threads: intOption(values, 'threads', 0),
      memoryLimitBytes: sizeOption(values, 'memory-limit') ?? 0,
      seed: intOption(values, 'seed', 0),
    },
  };
}

/** The request parsed with the daemon's own schema: everything the user typed is checked before a daemon is started for it. */
function checkSubmit(submit: SubmitParams) {
  const checked = methods['job.submit'].params.safeParse(submit);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    const option = OPTION_OF[issue.path.join('.')];
    throw new CliError(option ? `${option}: ${issue.message}` : describeZodError(checked.error, 'job'));
  }
  return checked.data;
}

/**
 * The job.submit request for the given options (the built-in demo when no spec is given). What it
 * has to say (the demo's description, a model file's analysis and plan) goes to `notes`, printed
 * once the request is final: it is made again after the device is measured.
 */
async function submitParams(values: Values, specFile: string | undefined, notes: string[]): Promise<SubmitParams> {
  const demo = specFile === undefined ? defaultDemo() : undefined;
  const python = extname(specFile ?? '') === '.py';
  if (values.model !== undefined && !python) throw new CliError('--model only applies to a .py model file');
  if (values.set !== undefined && !python) throw new CliError('--set only applies to a .py model file');
  if (values.steps !== undefined && values['max-steps'] !== undefined) throw new CliError('give --steps or --max-steps (the same option), not both');
  const budget = numberOption(values, 'budget');
  const speedup = numberOption(values, 'speedup');
  if (budget !== undefined && speedup !== undefined) throw new CliError('give --budget or --speedup, not both');
  const target: PlanTarget = speedup !== undefined ? { speedup } : budget !== undefined ? { budget } : DEFAULT_TARGET;
  const base = demo?.hyper ?? { epochs: 1, batchSize: 64, lr: 1e-3 };
  const batchSize = intOption(values, 'batch-size', base.batchSize);
  // A Python model comes with its plan (the analysis's); a spec file is planned by the daemon.
  const precision = choiceOption(values, 'precision', PRECISION_CHOICES) ?? 'auto';
  const job = python ? await jobFromPython(specFile as string, { model: values.model, pins: pinsOption(values), target, batchSize, precision }, notes) : undefined;
  const spec = demo ? demo.spec : (job?.spec ?? readSpec(specFile as string));
  const dataset = values.dataset !== undefined ? datasetOption(values.dataset) : (demo?.dataset ?? { kind: 'synthetic' as const });
  if (demo) notes.push(demo.description);
  return {
    spec,
    ...(job ? { plan: job.plan } : {}),
    dataset,
    target,
    compare: values['no-compare'] !== true,
    hyper: {
      ...base,
      epochs: numberOption(values, 'epochs') ?? base.epochs,
      batchSize,
      lr: numberOption(values, 'lr') ?? base.lr,
      maxSteps: intOption(values, values.steps !== undefined ? 'steps' : 'max-steps', base.maxSteps ?? 0),
      evalEvery: intOption(values, 'eval-every', base.evalEvery ?? 0),
      threads: intOption(values, 'threads', 0),
      memoryLimitBytes: sizeOption(values, 'memory-limit') ?? 0,
      seed: intOption(values, 'seed', 0),
      backend: choiceOption(values, 'backend', BACKEND_CHOICES) ?? 'auto',
      precision,
    },
  };
}

export const trainCommand: Command = {
  summary: 'train a model dense vs Pixelfly on the local daemon, with live progress and an HTML report',
  usage:
    '[spec.json | model.py [--model NAME]] [--runner engine|torch] [--set NAME=VALUE]… [--dataset KIND[:PATH]] [--epochs N] [--batch-size N] [--lr X] [--steps N] [--eval-every N]\n' +
    '               [--threads N] [--seed N] [--backend auto|cpu|cuda] [--precision auto|fp32|bf16|fp16] [--memory-limit SIZE]\n' +
    '               [--budget F | --speedup X] [--no-compare] [--no-measure] [--resume JOB] [--json]\n\n' +
    '  spec.json        a JSON model spec (default: the built-in demo, an MLP-Mixer on Fashion-MNIST,\n' +
    '                   or on the synthetic task when the dataset is not installed)\n' +
    '  model.py         a PyTorch model, analysed like the editor and `pixelfly analyze` do (--model picks the class or\n' +
    '                   factory, --set pins a value): trained with exactly the plan `pixelfly analyze` prints\n' +
    '  --runner         engine (default): the native engine trains a stand-in built from the analysis;\n' +
    '                   torch: the daemon\'s PyTorch runner imports model.py and trains the model itself,\n' +
    '                   dense vs a pixelfly_torch.sparsify copy ([--set NAME=VALUE]… its constructor or config\n' +
    '                   settings, [--path DIR]… import folders, [--python PATH] the interpreter, [--step-timeout S])\n' +
    '  --steps N        stop after N steps (the same as --max-steps)\n' +
    '  --dataset        synthetic | fashion-mnist[:DIR] | text:FILE | npy:DIR\n' +
    '  --backend        auto (default: CUDA when a GPU is usable) | cpu (forces the CPU) | cuda\n' +
    '  --precision      products\' inputs: auto (default: bf16 on CUDA and on CPUs with bf16 instructions, else fp32) | fp32 | bf16 | fp16\n' +
    '  --memory-limit   at most this much memory for the job (8G, 512MB, 1.5GiB; default: what the machine has free): a job\n' +
    '                   estimated above it is refused with a batch size that fits; one that grows past it is stopped\n' +
    `  --budget F       plan the Pixelfly model for a fraction F of the dense FLOPs (default ${'budget' in DEFAULT_TARGET ? DEFAULT_TARGET.budget : '-'})\n` +
    '  --speedup X      ...or for an estimated whole-step speedup X\n' +
    '  --no-compare     train the Pixelfly model alone (no dense run, no speedup)\n' +
    '  --no-measure     on a device with no measured profile, plan with the default prior instead of first timing\n' +
    '                   the model\'s products on this machine (once, seconds; the profile is kept for later plans)\n' +
    '  --resume JOB     resume an interrupted run from its last checkpoint\n' +
    '  --json           print the final job record as JSON instead of the summary (with runner, plan, estimatedSpeedup,\n' +
    '                   measuredSpeedup, estimatedMemoryBytes and peakMemoryBytes)',
  async run(argv) {
    const { values, positionals } = parse(argv, options, true);
    if (positionals.length > 1) throw new CliError(`expected at most one model spec, got ${positionals.length}`);
    const home = pixelflyHome();
    const runner = choiceOption(values, 'runner', RUNNER_CHOICES) ?? 'engine';
    if (runner === 'engine' && values.python !== undefined) throw new CliError('--python applies to --runner torch');
    const notes: string[] = [];
    const params = () => {
      notes.length = 0;
      return runner === 'torch' ? torchSubmitParams(values, positionals[0]) : submitParams(values, positionals[0], notes);
    };
    let submit = values.resume === undefined ? await params() : undefined;
    const checked = submit ? checkSubmit(submit) : undefined;
    const daemon = await ensureDaemon(home);
    const { port, started } = daemon;
    if (started) {
      process.stderr.write(
        `started the daemon on 127.0.0.1:${port}; it stays up for later runs and the editor (\`node dist/pixelfly.js daemon stop\` stops it)\n`,
      );
    }
    const client = await connectDaemon(daemon);
    let job: JobInfo;
    try {
      // The engine's products are what the plan costs: measured once per device, then planned again.
      const precision = checked?.hyper.precision;
      if (checked?.spec && runner === 'engine' && !values['no-measure'] && !hasMeasuredProfile(home, precision) && trainsOnCpu((await client.request('hello', {})).backends, checked.hyper.backend)) {
        await measureDevice(client, checked.spec, checked.hyper.batchSize, checked.hyper.threads, precision);
        submit = await params();
      }
      for (const note of notes) process.stderr.write(`${note}\n`);
      job = submit ? await client.request('job.submit', submit) : await client.request('job.resume', { jobId: values.resume as string });
    } catch (err) {
      if (err instanceof DaemonRpcError) throw new CliError(err.message, 1);
      throw err;
    } finally {
      client.close();
    }
    process.stderr.write(`job ${job.jobId} ${submit ? 'submitted' : 'resumed'} (${job.runDir})\n`);

    const line = new ProgressLine();
    let cancelling = false;
    const onSigint = async () => {
      if (cancelling) process.exit(130);
      cancelling = true;
      process.stderr.write('\ncancelling (Ctrl-C again to leave it running)...\n');
      const c = await connectDaemon(daemon);
      await c.request('job.cancel', { jobId: job.jobId }).catch(() => undefined);
      c.close();
    };
    process.on('SIGINT', onSigint);
    // A resumed run's history is already known: follow what comes after the resume.
    const final = await follow(home, job.jobId, submit ? 0 : job.lastSeq, (e) => {
      line.update(e);
      if (e.type === 'error') process.stderr.write(`\nerror: ${e.message}\n`);
      if (e.type === 'status' && e.message && e.state === 'running') process.stderr.write(`${e.message}\n`);
    });
    process.off('SIGINT', onSigint);
    line.end();
    if (values.json) process.stdout.write(JSON.stringify(jsonSummary(final), null, 2) + '\n');
    else if (final.summary) process.stdout.write(formatSummary(final, final.summary) + '\n');
    else process.stdout.write(`run ${final.jobId}: ${final.state}${(final.endReason ?? final.error) ? `: ${final.endReason ?? final.error}` : ''}\n`);
    if (final.state === 'interrupted') process.stdout.write(`'pixelfly train --resume ${final.jobId}' continues it from its last checkpoint\n`);
    return final.state === 'completed' ? 0 : 1;
  },
};
