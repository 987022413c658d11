/**
 * What the metrics page still needs to see of the run it shows. The host keeps every point; the
 * page may be hidden (VS Code drops messages to it and may discard it) or reloaded. So the feed
 * only remembers how much the page has acknowledged seeing, sends nothing while hidden, and on
 * `ready` (a fresh page) starts again from zero: a reset followed by the whole history in chunks.
 * Pure (no VS Code), unit-tested.
 */
import { MAX_POINTS_PER_MESSAGE, type HostToMetrics } from '../../protocol/webview';
import { runInfoView, type RunRecord } from '../runs/runStore';

export class MetricsFeed {
  private runId: string | null = null;
  private sentSteps = 0;
  private sentEvals = 0;
  private needsReset = true;
  private pageReady = false;

  constructor(private readonly chunk = MAX_POINTS_PER_MESSAGE) {}

  get shownRun(): string | null {
    return this.runId;
  }

  /** Switch the page to another run (sent from scratch). */
  show(runId: string): void {
    if (runId !== this.runId) {
      this.runId = runId;
      this.needsReset = true;
    }
  }

  /** A new page instance asked for data: it has seen nothing. */
  pageLoaded(): void {
    this.pageReady = true;
    this.needsReset = true;
  }

  /** The page was disposed (panel closed): nothing is delivered until a new one says ready. */
  pageGone(): void {
    this.pageReady = false;
  }

  /**
   * Messages that bring a visible, ready page up to date with `run`, or [] when hidden. A run
   * whose points shrank (resumed from a checkpoint) is re-sent from scratch.
   */
  pending(run: RunRecord | undefined, visible: boolean): HostToMetrics[] {
    if (!visible || !this.pageReady || !run || run.info.jobId !== this.runId) return [];
    const out: HostToMetrics[] = [];
    if (this.needsReset || run.steps.length < this.sentSteps || run.evals.length < this.sentEvals) {
      out.push({ type: 'metrics.reset', run: runInfoView(run), progress: run.progress });
      this.sentSteps = 0;
      this.sentEvals = 0;
      this.needsReset = false;
    } else {
      out.push({ type: 'metrics.status', run: runInfoView(run), progress: run.progress });
    }
    while (this.sentSteps < run.steps.length || this.sentEvals < run.evals.length) {
      const steps = run.steps.slice(this.sentSteps, this.sentSteps + this.chunk);
      const evals = run.evals.slice(this.sentEvals, this.sentEvals + this.chunk);
      this.sentSteps += steps.length;
      this.sentEvals += evals.length;
      out.push({ type: 'metrics.append', runId: run.info.jobId, steps, evals });
    }
    return out;
  }
}
