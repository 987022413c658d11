// Tasks that run in a helper process (daemon/workers.ts runTask): pure computations on data the
// daemon passes in, answered with one message.
import type { DeviceProfile } from '../core/costModel';
import type { PlanTarget } from '../core/planner';
import { plan } from './planning';
import { finishRun, type FinishRunInput } from './jobs/finishRun';
import { RejectedError, type Plan } from './jobs/trainer';

const tasks = {
  plan: (input: { inventory: unknown; target: PlanTarget; profile: DeviceProfile; fromSpec?: boolean; batchSize?: number }): Plan =>
    plan(input.inventory, input.target, input.profile, input.fromSpec, input.batchSize),
  finishRun: (input: FinishRunInput) => finishRun(input),
};

export type TaskName = keyof typeof tasks;
export type TaskInput<K extends TaskName> = Parameters<(typeof tasks)[K]>[0];
export type TaskOutput<K extends TaskName> = ReturnType<(typeof tasks)[K]>;
export type TaskReply = { ok: true; result: unknown } | { ok: false; rejected: boolean; message: string };

export function runTaskHere(name: TaskName, input: unknown): TaskReply {
  try {
    return { ok: true, result: tasks[name](input as never) };
  } catch (err) {
    return { ok: false, rejected: err instanceof RejectedError, message: (err as Error)?.message ?? String(err) };
  }
}
