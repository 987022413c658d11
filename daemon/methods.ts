// The JSON-RPC method handlers, one per entry of protocol/daemon.ts `methods`. Params arrive
// already validated by the protocol's schemas; handlers only do the work or refuse it with a
// typed error. Nothing here executes anything a client sent: specs, plans and paths are data.
import { ErrorCode, type MethodName, type MethodParams, type MethodResult, type RpcError } from '../protocol/daemon';
import type { Connection } from './connection';
import { JobError, type JobManager } from './jobs/jobManager';
import { JobIoError, RejectedError, type TrainingRequest } from './jobs/trainer';

/** An error with a JSON-RPC code, sent to the client as is. */
export class RpcFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** What the handlers need from the rest of the daemon. */
export interface MethodContext {
  connection: Connection;
  jobs: JobManager;
  hello(): MethodResult<'hello'>;
  /** Plans off the event loop (a helper process), with a time limit. */
  suggestPlan(params: MethodParams<'plan.suggest'>): Promise<MethodResult<'plan.suggest'>>;
  /** Checks the spec and resolves the plan (asking the planner when none is given); throws RejectedError. */
  trainingRequest(params: MethodParams<'job.submit'>): Promise<TrainingRequest>;
  benchLayers(params: MethodParams<'bench.layers'>): Promise<MethodResult<'bench.layers'>>;
  stats(): MethodResult<'daemon.stats'>;
  shutdown(): void;
  log(line: string): void;
}

type Handlers = { [M in MethodName]: (params: MethodParams<M>, ctx: MethodContext) => Promise<MethodResult<M>> };

export const handlers: Handlers = {
  hello: async (_p, ctx) => ctx.hello(),
  'plan.suggest': async (p, ctx) => ctx.suggestPlan(p),
  'bench.layers': async (p, ctx) => ctx.benchLayers(p),
  'job.submit': async (p, ctx) => {
    const request = await ctx.trainingRequest(p);
    const name = p.name ?? (typeof p.spec?.name === 'string' ? p.spec.name : (p.model?.name ?? 'model'));
    return ctx.jobs.submit(name, request).info();
  },
  'job.cancel': async (p, ctx) => (await ctx.jobs.cancel(p.jobId)).info(),
  'job.resume': async (p, ctx) => ctx.jobs.resume(p.jobId).info(),
  'job.list': async (_p, ctx) => ({ jobs: ctx.jobs.list().map((j) => j.info()) }),
  'job.get': async (p, ctx) => ctx.jobs.get(p.jobId).info(),
  'job.subscribe': async (p, ctx) => {
    const job = ctx.jobs.get(p.jobId);
    ctx.connection.subscribe(job, p.fromSeq);
    return { jobId: job.id, state: job.state.state, lastSeq: job.log.lastSeq };
  },
  'job.unsubscribe': async (p, ctx) => {
    ctx.connection.unsubscribe(p.jobId);
    return { jobId: p.jobId, subscribed: false as const };
  },
  'daemon.stats': async (_p, ctx) => ctx.stats(),
  'daemon.shutdown': async (_p, ctx) => {
    // After the answer is on its way.
    setImmediate(() => ctx.shutdown());
    return { stopping: true as const };
  },
};

/** Maps an error to what the client sees; unexpected ones are logged with their stack. */
export function toRpcError(err: unknown, log: (line: string) => void): RpcError {
  if (err instanceof RpcFailure) return { code: err.code, message: err.message };
  if (err instanceof JobError) {
    return { code: err.kind === 'not_found' ? ErrorCode.JOB_NOT_FOUND : ErrorCode.INVALID_STATE, message: err.message };
  }
  if (err instanceof RejectedError) return { code: ErrorCode.REJECTED, message: err.message, ...(err.data !== undefined ? { data: err.data } : {}) };
  // The job could not be set up on this machine now (a full disk, no file descriptor left): the reason, not a bug.
  if (err instanceof JobIoError) return { code: ErrorCode.REJECTED, message: err.message };
  log(`internal error: ${(err as Error)?.stack ?? String(err)}`);
  return { code: ErrorCode.INTERNAL_ERROR, message: `internal error: ${(err as Error)?.message ?? String(err)}` };
}
