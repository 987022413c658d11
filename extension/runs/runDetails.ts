/**
 * What a run trains and why it stopped, in the words the runs view and the metrics page show: the
 * model and its file, the runner, the dataset, both variants' parameter counts, batch and context,
 * memory (estimated before it started, measured peak), the reason a run did not complete, and its
 * HTML report. No VS Code imports: unit-tested.
 */
import { basename } from 'node:path';
import { describeRunner, describeShape, type JobInfo } from '../../protocol/daemon';
import type { RunDetails } from '../../protocol/webview';
import { formatBytes } from '../../io/userFile';

const count = (n: number) => n.toLocaleString('en-US');
/** The page's schema bounds every string: a long path is cut rather than the whole message refused. */
const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** Why a run that did not complete stopped (failed, cancelled, interrupted); undefined otherwise. */
export function endReasonOf(info: JobInfo): string | undefined {
  if (info.state === 'completed' || info.state === 'running' || info.state === 'queued') return undefined;
  return info.endReason ?? (info.state === 'failed' ? info.error : undefined);
}

/** The run's HTML report, once the daemon has written one. */
export function runReportPath(info: JobInfo | undefined): string | undefined {
  return info?.summary?.reportPath;
}

/** The latest figures: the summary's at the end, the job's while it runs. */
function memoryOf(info: JobInfo): { estimated?: number; peak?: number } {
  return { estimated: info.summary?.estimatedMemoryBytes ?? info.estimatedMemoryBytes, peak: info.summary?.peakMemoryBytes ?? info.peakMemoryBytes };
}

/** Both variants' parameter counts: the run's record once the models are built, else the summary's. */
function paramsOf(info: JobInfo): { pixelfly: number; dense?: number } | undefined {
  if (info.subject?.params) return info.subject.params;
  const s = info.summary;
  return s && s.pixelfly.params > 0 ? { pixelfly: s.pixelfly.params, dense: s.dense?.params } : undefined;
}

/** The metrics page's view of what the run trains (undefined for runs recorded before the daemon said). */
export function runDetailsView(info: JobInfo): RunDetails | undefined {
  const subject = info.subject;
  if (!subject) return undefined;
  const memory = memoryOf(info);
  const params = paramsOf(info);
  // Once started, the daemon says what the data turned out to be (a missing Fashion-MNIST becomes the synthetic task).
  const ds = info.dataset;
  const dataset = ds ? `${ds.name}${ds.synthetic && !/synthetic/i.test(ds.name) ? ' (synthetic task)' : ''}, ${count(ds.trainSize)} train / ${count(ds.testSize)} test` : subject.dataset;
  return {
    model: clip(subject.model, 512),
    ...(subject.file ? { file: clip(subject.file, 4096) } : {}),
    runner: describeRunner(subject),
    dataset: clip(dataset, 4096),
    ...(params ? { params } : {}),
    batchSize: subject.batchSize,
    ...(subject.context !== undefined ? { context: subject.context } : {}),
    ...(subject.image ? { image: subject.image } : {}),
    ...(memory.estimated !== undefined ? { estimatedMemoryBytes: memory.estimated } : {}),
    ...(memory.peak !== undefined ? { peakMemoryBytes: memory.peak } : {}),
    report: runReportPath(info) !== undefined,
  };
}


/** Lines for the runs view's tooltip: every field the page shows, plus the reason and the folders. */
export function runDetailLines(info: JobInfo): string[] {
  const lines: string[] = [];
  const d = runDetailsView(info);
  if (d) {
    lines.push(`${d.model}${d.file ? ` in ${basename(d.file)} (${d.file})` : ''}`);
    lines.push(`runner: ${d.runner}`);
    lines.push(`dataset: ${d.dataset}`);
    if (d.params) {
      const share = d.params.dense ? ` (${((100 * d.params.pixelfly) / d.params.dense).toFixed(0)}% of dense)` : '';
      lines.push(`parameters: ${d.params.dense !== undefined ? `dense ${count(d.params.dense)}, ` : ''}Pixelfly ${count(d.params.pixelfly)}${share}`);
    }
    lines.push(describeShape(d));
  }
  if (info.precisionNote) lines.push(info.precisionNote);
  const memory = memoryOf(info);
  if (memory.estimated !== undefined || memory.peak !== undefined) {
    lines.push(`memory: ${[memory.estimated !== undefined ? `estimated ${formatBytes(memory.estimated)}` : '', memory.peak !== undefined ? `measured peak ${formatBytes(memory.peak)}` : ''].filter(Boolean).join(', ')}`);
  }
  const why = endReasonOf(info);
  if (why) lines.push(`${info.state}: ${why}`);
  const report = runReportPath(info);
  if (report) lines.push(`report: ${report}`);
  return lines;
}

/** The runs view's one-line description: state, speedup, progress, and model and runner. */
export function runDescription(info: JobInfo): string {
  const speed = info.summary?.speedup;
  const subject = info.subject ? ` · ${info.subject.runner === 'torch' ? 'PyTorch' : 'engine'}${info.subject.file ? ` · ${basename(info.subject.file)}` : ''}` : '';
  return `${info.state}${speed !== undefined ? ` · ${speed.toFixed(2)}×` : ''} · step ${info.step}/${info.totalSteps}${subject}`;
}
