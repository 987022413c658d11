// `pixelfly analyze <file.py>`: the language server's analysis on the command line — the model's
// matmul layers (sizes, counts, roles, FLOP shares) and the core planner's decisions.
import { resolve } from 'node:path';
import { pythonParser, type Node } from '../../server/analysis/parser';
import { analyze, AnalysisInputError, type Analysis } from '../../server/analysis/analyze';
import { analysisJson } from '../../server/analysis/analysisJson';
import { ParseCache, sitePackages } from '../../server/analysis/modules';
import { parsePin } from '../../server/analysis/pragmas';
import type { Value } from '../../server/analysis/values';
import { DEFAULT_TARGET, type PlanOptions, type PlanTarget } from '../../core/planner';
import { DEFAULT_BATCH_SIZE } from '../../core/stepCost';
import { loadProfile } from '../../daemon/planning';
import { homePaths } from '../../io/home';
import type { ProfilePrecision } from '../../io/deviceProfile';
import { choiceOption, CliError, intOption, numberOption, parse, type Command } from './command';
import { PRECISION_CHOICES } from '../../protocol/daemon';

const options = {
  model: { type: 'string' },
  set: { type: 'string', multiple: true },
  tokens: { type: 'string' },
  'default-tokens': { type: 'string' },
  path: { type: 'string', multiple: true },
  python: { type: 'string' },
  budget: { type: 'string' },
  speedup: { type: 'string' },
  'batch-size': { type: 'string' },
  precision: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** `--set NAME=VALUE`… as pins (what `# pixelfly: NAME=VALUE` comments give), for analyze and train alike. */
export function pinsOption(values: { set?: string[] }): Map<string, Value> {
  const pins = new Map<string, Value>();
  for (const s of values.set ?? []) {
    try {
      const [k, v] = parsePin(s);
      pins.set(k, v);
    } catch (e) {
      throw new CliError(`--set ${s}: ${(e as Error).message}`);
    }
  }
  return pins;
}

/**
 * The planner's options on the command line, as the editor's: the device profile the daemon
 * measured on this machine at the products' precision (else core's prior), and the batch a step's
 * estimate assumes.
 * `pixelfly analyze` and `pixelfly train` both plan with these, so train trains what analyze printed.
 */
export function cliPlanOptions(batchSize = DEFAULT_BATCH_SIZE, precision: ProfilePrecision = 'auto'): PlanOptions {
  return { profile: loadProfile(homePaths().profiles, (l) => process.stderr.write(`pixelfly: ${l}\n`), precision), batchSize };
}

function pct(x: number | null): string {
  return x === null ? '-' : `${(100 * x).toFixed(1)}%`;
}

export function formatAnalysis(a: Analysis): string {
  const header = ['line', 'layer', 'class', 'in→out', 'count', 'role', 'FLOPs', 'decision'];
  const rows = a.layers.map((l) => [
    String(l.line),
    l.name,
    l.class,
    `${l.in}→${l.out}`,
    String(l.count),
    l.role,
    pct(l.flops_share),
    l.decision?.sparsify && l.decision.config
      ? `pixelfly b${l.decision.config.block} S${l.decision.config.butterflySize} F${l.decision.config.nFactors} r${l.decision.config.rank}, ${l.decision.estSpeedup.toFixed(2)}×`
      : l.decision
        ? 'dense'
        : '?',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  // Other models of the file (its own ones, not their parts): what --model can choose instead.
  const others = a.models.filter((m) => m.top && m.name !== a.model?.name).map((m) => `${m.name}${m.name === a.defaultModel ? ' (default)' : ''}`);
  const out = [
    `${a.file}: ${a.model ? `${a.model.kind} ${a.model.name} (line ${a.model.line})` : 'no model class or function found'}`,
    ...(others.length ? [`other models in this file (--model NAME): ${others.join(', ')}`] : []),
    `tokens per sample: ${a.tokensPerSample} — ${a.tokensSource}`,
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
  ];
  for (const l of a.layers) if (l.count !== 0) out.push(`${l.name}: ${l.decision?.reason ?? l.note ?? ''}`);
  if (a.plan) out.push('', a.plan.summary);
  if ('plan' in a.engine) {
    const e = a.engine.plan.estimate;
    out.push('', `\`pixelfly train\` trains the engine's ${a.engine.spec.kind} with this plan: a step (batch ${e.batchSize}) est. ${e.denseMs.toFixed(1)} → ${e.planMs.toFixed(1)} ms, ${e.speedup.toFixed(2)}× faster.`);
  } else if (a.plan) out.push('', `not trainable on the engine: ${a.engine.error}`);
  if (a.unresolved.length) out.push('', `unresolved: ${a.unresolved.join(', ')} — pin with --set NAME=VALUE or '# pixelfly: NAME=VALUE'`);
  for (const n of a.notes) out.push(`note: ${n}`);
  for (const e of a.pragmaErrors) out.push(`${e.file}:${e.line + 1}: ${e.message}`);
  return out.join('\n') + '\n';
}

export const analyzeCommand: Command = {
  summary: 'list a PyTorch model file\'s matmul layers and plan which to sparsify',
  usage:
    '<file.py> [--model NAME] [--set NAME=VALUE]… [--tokens N | --default-tokens N] [--path DIR]… [--python PATH] [--budget F | --speedup X] [--batch-size N] [--precision P] [--json]\n\n' +
    '  --model    class or factory function to build (default: the file\'s outermost model)\n' +
    '  --set      pin a value, as a `# pixelfly: NAME=VALUE` comment does\n' +
    '  --tokens   tokens per sample, overriding what the model says\n' +
    '  --default-tokens  tokens per sample when the model does not say (default 1024)\n' +
    '  --path     extra directory to import library code from (repeatable)\n' +
    '  --python   interpreter whose site-packages are searched for imports\n' +
    `  --budget   FLOP budget as a fraction of dense (default ${'budget' in DEFAULT_TARGET ? DEFAULT_TARGET.budget : '-'}), or --speedup X (a whole training step's)\n` +
    `  --batch-size  samples per step the step estimate assumes (default ${DEFAULT_BATCH_SIZE}, as \`pixelfly train\`)\n` +
    '  --precision  auto | fp32 | bf16 | fp16: cost the plan with the device profile measured at the products\' precision\n' +
    '             (default auto, as `pixelfly train`)\n' +
    '  --json     the layers, the plan, `estimate` (the whole step) and `engine` (the spec and plan `pixelfly train` trains)',
  async run(argv) {
    const { values, positionals } = parse(argv, options, true);
    if (positionals.length !== 1) throw new CliError('expected exactly one Python file');
    const pins = pinsOption(values);
    const tokens = values.tokens === undefined ? undefined : intOption(values, 'tokens');
    if (tokens !== undefined && tokens < 1) throw new CliError(`--tokens must be ≥ 1, got ${tokens}`);
    const defaultTokens = values['default-tokens'] === undefined ? undefined : intOption(values, 'default-tokens');
    if (defaultTokens !== undefined && defaultTokens < 1) throw new CliError(`--default-tokens must be ≥ 1, got ${defaultTokens}`);
    if (tokens !== undefined && defaultTokens !== undefined) throw new CliError('give at most one of --tokens and --default-tokens');
    const budget = numberOption(values, 'budget');
    const speedup = numberOption(values, 'speedup');
    if (budget !== undefined && speedup !== undefined) throw new CliError('give at most one of --budget and --speedup');
    if (budget !== undefined && !(budget > 0 && budget <= 1)) throw new CliError(`--budget must be a fraction of dense FLOPs in (0, 1], got ${budget}`);
    if (speedup !== undefined && !(speedup >= 1)) throw new CliError(`--speedup must be ≥ 1, got ${speedup}`);
    const target: PlanTarget | undefined = budget !== undefined ? { budget } : speedup !== undefined ? { speedup } : undefined;
    const batchSize = intOption(values, 'batch-size', DEFAULT_BATCH_SIZE);
    if (batchSize < 1) throw new CliError(`--batch-size must be ≥ 1, got ${batchSize}`);
    const precision = choiceOption(values, 'precision', PRECISION_CHOICES) ?? 'auto';
    const site = values.python ? await sitePackages(values.python) : [];
    if (values.python && site.length === 0) process.stderr.write(`pixelfly: warning: no site-packages found for --python ${values.python}\n`);
    let result: Analysis;
    const cache = new ParseCache(await pythonParser());
    try {
      result = analyze(cache, {
        file: positionals[0],
        model: values.model,
        pins,
        tokens,
        defaultTokens,
        target,
        planOptions: cliPlanOptions(batchSize, precision),
        extraPaths: values.path,
        sitePackages: site,
      });
    } catch (e) {
      if (e instanceof AnalysisInputError) throw new CliError(e.message, 1);
      throw e;
    }
    process.stdout.write(values.json ? JSON.stringify(analysisJson(result), null, 2) + '\n' : formatAnalysis(result));
    // The analysis reads what it can of a broken file (the editor shows hints while one types), but
    // a command line run on it is an error: say where, and exit non-zero.
    const tree = cache.peek(resolve(positionals[0]))?.tree;
    const errors = tree ? syntaxErrors(tree.rootNode) : [];
    for (const e of errors.slice(0, 5)) process.stderr.write(`${positionals[0]}:${e.row + 1}:${e.column + 1}: ${e.message}\n`);
    if (errors.length > 0) {
      process.stderr.write(`pixelfly: ${positionals[0]} has ${errors.length} syntax error${errors.length > 1 ? 's' : ''}; the analysis above covers only what parsed\n`);
      return 1;
    }
    return 0;
  },
};

/** Where tree-sitter found the source not to be Python: ERROR nodes and missing tokens, in order. */
function syntaxErrors(root: Node): Array<{ row: number; column: number; message: string }> {
  const out: Array<{ row: number; column: number; message: string }> = [];
  if (!root.hasError) return out;
  const visit = (n: Node) => {
    if (n.type === 'ERROR') out.push({ ...n.startPosition, message: 'syntax error' });
    else if (n.isMissing) out.push({ ...n.startPosition, message: `syntax error: missing ${n.type}` });
    else if (n.hasError) for (const c of n.children) if (c) visit(c);
  };
  visit(root);
  return out;
}
