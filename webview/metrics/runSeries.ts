/**
 * The page's copy of one run's metrics, kept as columns ready for uPlot, keyed by step through a
 * sorted step axis: a replay after a reconnect or a resumed run may resend steps, which then
 * overwrite their earlier values instead of duplicating them.
 */
import type { Arm, EvalPoint, StepPoint } from '../../protocol/webview';
// The daemon's own median per part (no Node imports), so the page and the run summary agree.
import { medianOfEach } from '../../core/stats';

export interface ArmColumns {
  loss: (number | null)[];
  stepMs: (number | null)[];
  tokensPerSec: (number | null)[];
}

const ARMS: readonly Arm[] = ['dense', 'pixelfly'];
/** Steps whose per-part times feed the "where a step goes" bars. */
const PARTS_WINDOW = 50;

export class RunSeries {
  /** Sorted unique steps: the shared x axis of the per-step charts. */
  readonly steps: number[] = [];
  readonly arms: Record<Arm, ArmColumns> = { dense: emptyArm(), pixelfly: emptyArm() };
  readonly speedup: (number | null)[] = [];
  readonly evals: Record<Arm, { step: number[]; value: number[]; metric: string[] }> = {
    dense: { step: [], value: [], metric: [] },
    pixelfly: { step: [], value: [], metric: [] },
  };
  /** Per-part times of each arm's most recent steps (newest last). */
  readonly recentParts: Record<Arm, Record<string, number>[]> = { dense: [], pixelfly: [] };
  /** Step messages received. */
  points = 0;

  add(points: readonly StepPoint[]): void {
    for (const p of points) {
      const i = this.indexFor(p.step);
      for (const arm of ARMS) {
        const v = p[arm];
        const a = this.arms[arm];
        a.loss[i] = v?.loss ?? null;
        a.stepMs[i] = v?.stepMs ?? null;
        a.tokensPerSec[i] = v?.tokensPerSec ?? null;
        if (v?.partsMs) {
          const recent = this.recentParts[arm];
          recent.push(v.partsMs);
          if (recent.length > PARTS_WINDOW) recent.shift();
        }
      }
      this.speedup[i] = p.speedup ?? null;
      this.points++;
    }
  }

  addEvals(points: readonly EvalPoint[]): void {
    for (const p of points) {
      const e = this.evals[p.arm];
      e.step.push(p.step);
      e.value.push(p.value);
      e.metric.push(p.metric);
    }
  }

  /** Each arm's cumulative training time (s) at the end of every step: the x of "loss vs time". */
  trainingTime(arm: Arm): (number | null)[] {
    let t = 0;
    return this.arms[arm].stepMs.map((ms) => (ms == null ? null : (t += ms / 1000)));
  }

  /** Median ms of each part over an arm's recent steps, in model order; null before any arrive. */
  partsMedian(arm: Arm): Record<string, number> | null {
    return medianOfEach(this.recentParts[arm]) ?? null;
  }

  /** Latest non-null value of a column. */
  latest(col: (number | null)[]): number | null {
    for (let i = col.length - 1; i >= 0; i--) if (col[i] != null) return col[i];
    return null;
  }

  private indexFor(step: number): number {
    const s = this.steps;
    const cols = [...ARMS.flatMap((a) => Object.values(this.arms[a])), this.speedup];
    if (s.length === 0 || step > s[s.length - 1]) {
      s.push(step);
      for (const c of cols) c.push(null);
      return s.length - 1;
    }
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid] < step) lo = mid + 1;
      else hi = mid;
    }
    if (s[lo] !== step) {
      s.splice(lo, 0, step);
      for (const c of cols) c.splice(lo, 0, null);
    }
    return lo;
  }
}

function emptyArm(): ArmColumns {
  return { loss: [], stepMs: [], tokensPerSec: [] };
}

/**
 * Loss against each arm's own training time: one merged, sorted time axis with nulls where the
 * other arm has no point (uPlot needs a shared x; spanGaps joins each arm's line across them).
 */
export function lossVsTime(series: RunSeries, keep: readonly number[]): [number[], (number | null)[], (number | null)[]] {
  const pts: [number, number, Arm][] = [];
  for (const arm of ARMS) {
    const time = series.trainingTime(arm);
    const loss = series.arms[arm].loss;
    for (const i of keep) {
      const t = time[i];
      const l = loss[i];
      if (t != null && l != null) pts.push([t, l, arm]);
    }
  }
  pts.sort((x, y) => x[0] - y[0]);
  return [pts.map((p) => p[0]), pts.map((p) => (p[2] === 'dense' ? p[1] : null)), pts.map((p) => (p[2] === 'pixelfly' ? p[1] : null))];
}
