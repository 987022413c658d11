/** CSV of a run's metrics: one row per step (both arms side by side), eval results in their own columns. */
import type { RunRecord } from './runStore';

const HEADER = [
  'step',
  'pixelfly_loss',
  'pixelfly_step_ms',
  'pixelfly_tokens_per_s',
  'dense_loss',
  'dense_step_ms',
  'dense_tokens_per_s',
  'running_speedup',
  'eval_arm',
  'eval_metric',
  'eval_value',
];

const num = (v: number | undefined) => (v === undefined ? '' : String(v));

export function runCsv(r: RunRecord): string {
  const evalsByStep = new Map<number, RunRecord['evals']>();
  for (const e of r.evals) evalsByStep.set(e.step, [...(evalsByStep.get(e.step) ?? []), e]);
  const lines = [HEADER.join(',')];
  for (const p of r.steps) {
    const base = [p.step, p.pixelfly.loss, p.pixelfly.stepMs, p.pixelfly.tokensPerSec, p.dense?.loss, p.dense?.stepMs, p.dense?.tokensPerSec, p.speedup].map((v) =>
      num(v as number | undefined),
    );
    const evals = evalsByStep.get(p.step);
    evalsByStep.delete(p.step);
    if (!evals) lines.push([...base, '', '', ''].join(','));
    else for (const e of evals) lines.push([...base, e.arm, e.metric, String(e.value)].join(','));
  }
  // Evals at steps with no step point (e.g. the initial eval at step 0).
  for (const [step, evals] of [...evalsByStep].sort((a, b) => a[0] - b[0])) {
    for (const e of evals) lines.push([String(step), '', '', '', '', '', '', '', e.arm, e.metric, String(e.value)].join(','));
  }
  return lines.join('\n') + '\n';
}
