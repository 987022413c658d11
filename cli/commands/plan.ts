// `pixelfly plan <inventory.json> --budget F | --speedup X`: per-layer Pixelfly decisions.
import { parseInventory } from '../../core/inventory';
import { planModel, type Plan, type PlanTarget } from '../../core/planner';
import { parseDeviceProfile } from '../../core/costModel';
import { PixelflyConfigError } from '../../core/errors';
import { cliPlanOptions } from './analyze';
import { CliError, intOption, numberOption, parse, readJsonFile, type Command } from './command';

const options = {
  budget: { type: 'string' },
  speedup: { type: 'string' },
  block: { type: 'string' },
  profile: { type: 'string' },
  json: { type: 'boolean' },
} as const;

function gflops(x: number): string {
  return (x / 1e9).toFixed(2);
}

export function formatPlan(plan: Plan): string {
  const header = ['layer', 'role', 'in→out', 'count', 'FLOP share', 'decision', 'est. speedup'];
  const rows = plan.layers.map((l) => [
    l.name,
    l.role,
    `${l.in}→${l.out}`,
    String(l.count),
    plan.denseFlops ? `${((100 * l.denseFlops) / plan.denseFlops).toFixed(1)}%` : '-',
    l.sparsify && l.config
      ? `pixelfly b${l.config.block} S${l.config.butterflySize} F${l.config.nFactors} r${l.config.rank} (${(100 * (l.density ?? 0)).toFixed(1)}%)`
      : 'dense',
    l.sparsify ? `${l.estSpeedup.toFixed(2)}×` : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const out = [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line), ''];
  for (const l of plan.layers) out.push(`${l.name}: ${l.reason}`);
  out.push(
    '',
    `dense: ${gflops(plan.denseFlops)} GFLOP/sample (fwd+bwd), ${(plan.denseParams / 1e6).toFixed(2)}M params; ` +
      `plan: ${gflops(plan.planFlops)} GFLOP/sample, ${(plan.planParams / 1e6).toFixed(2)}M params`,
    plan.summary,
  );
  return out.join('\n') + '\n';
}

export const planCommand: Command = {
  summary: 'plan which layers of a model inventory to sparsify, and how',
  usage: '<inventory.json> (--budget FRACTION | --speedup X) [--block 16|32|64[,…]] [--profile profile.json] [--json]',
  async run(argv) {
    const { values, positionals } = parse(argv, options, true);
    if (positionals.length !== 1) throw new CliError('expected exactly one inventory file');
    const budget = numberOption(values, 'budget');
    const speedup = numberOption(values, 'speedup');
    if ((budget === undefined) === (speedup === undefined)) throw new CliError('give exactly one of --budget or --speedup');
    const target: PlanTarget = budget !== undefined ? { budget } : { speedup: speedup as number };
    let inventory;
    try {
      inventory = parseInventory(readJsonFile(positionals[0], 'inventory'));
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(`${positionals[0]}: ${(err as Error).message}`, 1);
    }
    const blockSizes = values.block?.split(',').map((b) => intOption({ block: b }, 'block'));
    let plan;
    try {
      // Without --profile, the profile the daemon measured on this machine, as every other planner caller.
      const profile = values.profile ? parseDeviceProfile(readJsonFile(values.profile, 'device profile')) : cliPlanOptions().profile;
      plan = planModel(inventory, target, { blockSizes, profile });
    } catch (err) {
      if (err instanceof PixelflyConfigError) throw new CliError(err.message);
      if (err instanceof CliError) throw err;
      throw new CliError((err as Error).message, 1);
    }
    process.stdout.write(values.json ? JSON.stringify(plan, null, 2) + '\n' : formatPlan(plan));
    return 0;
  },
};
