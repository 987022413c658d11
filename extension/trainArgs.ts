/**
 * The `pixelfly.train` argument the language server's CodeLens passes ({uri, name, spec?,
 * specError?}, protocol/lsp.ts) or the palette assembles. No VS Code imports (unit-tested).
 */
import { fileURLToPath } from 'node:url';
import { ErrorCode, refusalBatch, type JobInfo } from '../protocol/daemon';
import type { TrainLensArgs } from '../protocol/lsp';

export type TrainArgs = Omit<Partial<TrainLensArgs>, 'plan'> & { plan?: unknown };

/** A lens-shaped argument (not a Uri, not nothing). */
export function isTrainArgs(arg: unknown): arg is TrainArgs {
  if (typeof arg !== 'object' || arg === null) return false;
  const a = arg as Record<string, unknown>;
  return 'spec' in a || 'specError' in a || (typeof a.uri === 'string' && typeof a.name === 'string');
}

/**
 * The engine spec the lens carries. Without one the language server said why (specError: e.g. the
 * model maps onto no engine family): that reason is the error the user sees, not a generic one.
 */
export function specFromTrainArgs(a: TrainArgs): { spec: Record<string, unknown>; name: string; plan?: unknown; source?: { file: string; model: string } } {
  const name = typeof a.name === 'string' && a.name !== '' ? a.name : undefined;
  if (a.spec && typeof a.spec === 'object' && !Array.isArray(a.spec)) {
    // The model file and model the spec stands in for: the run's record names them.
    const source = name && typeof a.uri === 'string' && a.uri.startsWith('file:') ? { file: fileURLToPath(a.uri), model: name } : undefined;
    return { spec: a.spec, name: name ?? String(a.spec.name ?? 'model'), plan: a.plan, ...(source ? { source } : {}) };
  }
  const why = typeof a.specError === 'string' && a.specError !== '' ? a.specError : 'the language server gave no engine spec and no reason';
  throw new Error(`${name ?? 'this model'} cannot be trained by the engine: ${why}`);
}

/**
 * Whether "Train dense vs Pixelfly" trains the user's own PyTorch model (the daemon's PyTorch
 * runner) rather than an engine stand-in: always with runner 'torch'; with 'auto', when the
 * model maps onto no engine family (the lens has no spec) but is a Python file.
 */
export function trainsTorch(a: TrainArgs, runner: 'auto' | 'engine' | 'torch'): boolean {
  if (runner === 'engine' || typeof a.uri !== 'string' || !a.uri.endsWith('.py')) return false;
  return runner === 'torch' || !(a.spec && typeof a.spec === 'object');
}

/** What a lens plan says of its costing: the device profile it was costed with and its whole-step estimate. */
export function planCosting(plan: unknown): { measured: boolean; speedup?: number } {
  const p = (typeof plan === 'object' && plan !== null ? plan : {}) as { device?: { source?: unknown }; estimate?: { speedup?: unknown } };
  const speedup = p.estimate?.speedup;
  return { measured: p.device?.source === 'measured', ...(typeof speedup === 'number' && Number.isFinite(speedup) ? { speedup } : {}) };
}

/** Among a document's CodeLens commands, the "Train dense vs Pixelfly" argument of the model `name`. */
export function trainLensFor(commands: ReadonlyArray<{ command: string; arguments?: unknown[] } | undefined>, name: string): TrainArgs | undefined {
  for (const c of commands) {
    const a = c?.command === 'pixelfly.train' ? c.arguments?.[0] : undefined;
    if (isTrainArgs(a) && a.name === name) return a;
  }
  return undefined;
}

/**
 * The batch size a job refused for memory fits with, when the daemon's refusal offers one for the
 * same model (daemon/memory.ts MemoryRefusal `fits`: a batch alone, not a smaller width), and it is
 * smaller than the batch asked for; else undefined.
 */
export function fittingBatch(err: unknown, asked: number): number | undefined {
  const e = err as { code?: unknown; data?: unknown } | null;
  const b = e?.code === ErrorCode.REJECTED ? refusalBatch(e.data) : undefined;
  return b !== undefined && b < asked ? b : undefined;
}

/** The same for a run that failed for memory after it was submitted (a PyTorch runner job is admitted by its worker). */
export function fittingBatchOfRun(info: Pick<JobInfo, 'state' | 'fits'>, asked: number): number | undefined {
  const b = info.state === 'failed' ? info.fits?.batchSize : undefined;
  return b !== undefined && b < asked ? b : undefined;
}
