/**
 * Every run the extension knows (from job.list and from events), with its metrics translated once
 * from daemon events into the metrics page's shapes. Events are applied in seq order and
 * duplicates (a replay after resubscribing) are dropped, so the store is exactly the job's log.
 * No VS Code imports: unit-tested directly.
 */
import type { JobEvent, JobInfo, JobState } from '../../protocol/daemon';
import type { EvalPoint, Progress, RunInfo, RunState, StepPoint } from '../../protocol/webview';
import { endReasonOf, runDetailsView } from './runDetails';

export interface RunRecord {
  info: JobInfo;
  steps: StepPoint[];
  evals: EvalPoint[];
  progress: Progress;
  /** Highest event seq applied. */
  lastSeq: number;
}

export type RunListener = (jobId: string, what: 'info' | 'metrics') => void;

const STATE: Record<JobState, RunState> = {
  queued: 'queued',
  running: 'running',
  completed: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
  interrupted: 'interrupted',
};

export class RunStore {
  private readonly runs = new Map<string, RunRecord>();
  private readonly listeners = new Set<RunListener>();

  listen(l: RunListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  get(jobId: string): RunRecord | undefined {
    return this.runs.get(jobId);
  }

  /** Newest first. */
  list(): RunRecord[] {
    return [...this.runs.values()].sort((a, b) => b.info.createdAt.localeCompare(a.info.createdAt));
  }

  /** Adds or refreshes a job's info (from job.submit/get/list) without touching its metrics. */
  upsert(info: JobInfo): RunRecord {
    let r = this.runs.get(info.jobId);
    if (!r) {
      r = { info, steps: [], evals: [], progress: { step: info.step, totalSteps: info.totalSteps, etaS: null }, lastSeq: 0 };
      this.runs.set(info.jobId, r);
    } else {
      // Our event-derived state is at least as fresh as a snapshot taken before those events.
      r.info = { ...info, lastSeq: Math.max(info.lastSeq, r.lastSeq) };
      if (!isActive(r)) r.progress = { ...r.progress, etaS: null };
    }
    this.emit(info.jobId, 'info');
    return r;
  }

  apply(e: JobEvent): void {
    const r = this.runs.get(e.jobId);
    if (!r || e.seq <= r.lastSeq) return;
    r.lastSeq = e.seq;
    let what: 'info' | 'metrics' = 'info';
    switch (e.type) {
      case 'status': {
        const ended = e.state === 'failed' || e.state === 'cancelled' || e.state === 'interrupted';
        r.info = {
          ...r.info,
          state: e.state,
          error: e.state === 'failed' ? (e.message ?? r.info.error) : r.info.error,
          // Why it stopped, as the daemon said it; a run queued again (resumed) has no reason any more.
          endReason: ended ? (e.message ?? r.info.endReason) : e.state === 'queued' || e.state === 'running' ? undefined : r.info.endReason,
        };
        // A run that stopped has no time left to estimate: no stale ETA.
        if (ended) r.progress = { ...r.progress, etaS: null };
        if (e.resumedFromStep !== undefined) {
          // A resumed run re-trains the steps after its checkpoint: drop their old points.
          r.steps = r.steps.filter((p) => p.step <= (e.resumedFromStep as number));
          r.evals = r.evals.filter((p) => p.step <= (e.resumedFromStep as number));
          what = 'metrics';
        }
        break;
      }
      case 'step':
        r.steps.push({ step: e.step, pixelfly: e.pixelfly, dense: e.dense, speedup: e.speedup });
        r.info = { ...r.info, step: Math.max(r.info.step, e.step), peakMemoryBytes: e.peakMemoryBytes ?? r.info.peakMemoryBytes };
        what = 'metrics';
        break;
      case 'eval':
        for (const arm of ['pixelfly', 'dense'] as const) {
          const v = e[arm];
          if (!v) continue;
          const [metric, value] = v.accuracy !== undefined ? (['accuracy', v.accuracy] as const) : v.perplexity !== undefined ? (['perplexity', v.perplexity] as const) : (['loss', v.loss] as const);
          r.evals.push({ arm, step: e.step, metric, value });
        }
        what = 'metrics';
        break;
      case 'progress':
        // A progress event replayed after the run stopped does not bring its ETA back.
        r.progress = { step: e.step, totalSteps: e.totalSteps, etaS: e.etaMs !== undefined && isActive(r) ? e.etaMs / 1000 : null };
        r.info = { ...r.info, step: e.step, totalSteps: e.totalSteps };
        break;
      case 'completed':
        r.info = { ...r.info, state: e.state, summary: e.summary };
        r.progress = e.state === 'completed' ? { ...r.progress, step: r.progress.totalSteps, etaS: 0 } : { ...r.progress, etaS: null };
        break;
      case 'error':
        if (e.fatal) r.info = { ...r.info, error: e.message };
        break;
      case 'checkpoint':
        r.info = { ...r.info, lastCheckpointStep: e.step };
        break;
    }
    r.info = { ...r.info, lastSeq: r.lastSeq };
    this.emit(e.jobId, what);
  }

  private emit(jobId: string, what: 'info' | 'metrics'): void {
    for (const l of this.listeners) l(jobId, what);
  }
}

/** The metrics page's view of a run's header. */
export function runInfoView(r: RunRecord): RunInfo {
  const engine = engineOf(r.info);
  return {
    id: r.info.jobId,
    title: `${r.info.name}${r.info.compare ? ' — dense vs Pixelfly' : ''}${engine ? ` · ${engine}` : ''}`,
    state: STATE[r.info.state],
    totalSteps: r.info.totalSteps,
    startedAt: Date.parse(r.info.startedAt ?? r.info.createdAt) || 0,
    error: r.info.error?.slice(0, 4000),
    reason: endReasonOf(r.info)?.slice(0, 4000),
    details: runDetailsView(r.info),
  };
}

/** Where a run computed, e.g. "cuda, bf16" ("" until the job has started). */
export function engineOf(info: RunRecord['info']): string {
  return info.backend ? `${info.backend}${info.precision ? `, ${info.precision}` : ''}` : '';
}

export function isActive(r: RunRecord): boolean {
  return r.info.state === 'running' || r.info.state === 'queued';
}
