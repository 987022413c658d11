// Tasks that run in a helper process (daemon/workers.ts runTask): pure computations on data the
// daemon passes in, answered with one message.
import type { DeviceProfile } from '../core/costModel';
import type { PlanTarget } from '../core/planner';
import type { MethodParams } from '../protocol/daemon';
import { plan } from './planning';
import { finishRun, type FinishRunInput } from './jobs/finishRun';
import { RejectedError, type Plan, type TrainingRequest } from './jobs/trainer';
import { RunDir } from './jobs/runStore';
import { admitEngineJob } from './engineServices';
import { benchLayers } from './bench';
import { checkRequest } from './requestCheck';

const tasks = {
  plan: (input: { inventory: unknown; target: PlanTarget; profile: DeviceProfile; fromSpec?: boolean; batchSize?: number }): Plan =>
    plan(input.inventory, input.target, input.profile, input.fromSpec, input.batchSize),
  finishRun: (input: FinishRunInput) => finishRun(input),
  admit: (input: { request: TrainingRequest; runsRoot: string; runDir?: string }) => admitEngineJob(input.request, input.runsRoot, input.runDir !== undefined ? new RunDir(input.runDir) : undefined),
  benchLayers: (input: { params: MethodParams<'bench.layers'>; profilesDir: string; threads: number }) => benchLayers(input.params, input.profilesDir, input.threads),
  checkRequest: (input: { text: string }) => checkRequest(input.text),
};

export type TaskName = keyof typeof tasks;
export type TaskInput<K extends TaskName> = Parameters<(typeof tasks)[K]>[0];
export type TaskOutput<K extends TaskName> = Awaited<ReturnType<(typeof tasks)[K]>>;
export type TaskReply = { ok: true; result: unknown } | { ok: false; rejected: boolean; message: string; data?: unknown };

export async function runTaskHere(name: TaskName, input: unknown): Promise<TaskReply> {
  try {
    return { ok: true, result: await tasks[name](input as never) };
  } catch (err) {
    const data = err instanceof RejectedError ? err.data : undefined;
    return { ok: false, rejected: err instanceof RejectedError, message: (err as Error)?.message ?? String(err), ...(data !== undefined ? { data } : {}) };
  }
}
