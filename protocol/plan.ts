// The Plan: which layers of a model are Pixelfly and how, with the whole-step estimate it was
// chosen with. One type from the editor to the kernel: the language server produces it (for the
// CodeLens, the quick fixes and `pixelfly analyze --json`), the extension and the CLI carry it
// unchanged in `job.submit`, the daemon hands it to the job process, and the run folder keeps it.
// The daemon plans only for a job that arrives without one. Free of Node and VS Code imports.
import { z } from 'zod';
import type { Plan as CorePlan, PlanTarget } from '../core/planner';
import type { PixelflyConfig } from '../core/pixelflyLayer';

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const positiveInt = z.number().int().positive();

/** A Pixelfly layer configuration (core/pixelflyLayer.ts PixelflyConfig; `satisfies` keeps the two in step). */
export const PixelflyConfigSchema = z.object({
  block: positiveInt,
  butterflySize: positiveInt,
  nFactors: positiveInt,
  rank: z.number().int().nonnegative(),
  globalSize: z.number().int().nonnegative().optional(),
  shuffle: z.boolean().optional(),
}) satisfies z.ZodType<PixelflyConfig>;

/** What the planner aims for (core/planner.ts PlanTarget): a fraction of dense FLOPs, or an estimated speedup. */
export const PlanTargetSchema = z.union([
  z.strictObject({ budget: finite.refine((v) => v > 0 && v <= 1, 'budget must be in (0, 1]') }),
  z.strictObject({ speedup: finite.refine((v) => v >= 1 && v <= 1000, 'speedup must be in [1, 1000]') }),
]) satisfies z.ZodType<PlanTarget>;

const PartSchema = z.object({ denseMs: finite, planMs: finite });

/** core/stepCost.ts StepEstimate: one training step, dense and planned. */
export const StepEstimateSchema = z.looseObject({
  batchSize: positiveInt,
  denseMs: finite,
  planMs: finite,
  speedup: finite,
  productsSpeedup: finite.optional(),
  parts: z.record(z.string().max(32), PartSchema).optional(),
  denseShare: finite.optional(),
  bound: finite.nullable().optional(),
});

/** The device profile a plan was costed with (core/planner.ts PlanDevice). */
export const PlanDeviceSchema = z.object({
  name: z.string().max(256),
  source: z.enum(['default', 'measured']),
  measuredAt: z.string().max(64).optional(),
});

/**
 * A plan as core/planner.ts produces it (Plan, LayerDecision). The fields the daemon, the engine
 * and the views rely on are pinned; a client may send only `layers` (the rest is the planner's
 * account of itself), and other fields pass through untouched, so the planner can grow freely.
 */
export const PlanSchema = z.looseObject({
  target: PlanTargetSchema.optional(),
  device: PlanDeviceSchema.optional(),
  layers: z
    .array(
      z.looseObject({
        name: z.string().min(1).max(256),
        sparsify: z.boolean(),
        config: PixelflyConfigSchema.optional(),
        estSpeedup: finite.optional(),
        reason: z.string().optional(),
      }),
    )
    .max(4096),
  /** The whole training step's estimated speedup (estimate.speedup). */
  estSpeedup: finite.optional(),
  estimate: StepEstimateSchema.optional(),
  summary: z.string().optional(),
});
export type Plan = z.infer<typeof PlanSchema>;

// The core planner's output is a Plan as this schema reads it (checked when compiling).
export const corePlanIsWirePlan = (p: CorePlan): z.input<typeof PlanSchema> => p;

/** The plan's layers by name, for a view that shows a layer's decision. */
export function planLayer(plan: Plan, name: string): Plan['layers'][number] | undefined {
  return plan.layers.find((l) => l.name === name);
}
