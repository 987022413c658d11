// The end of a run, computed from its whole event log: the summary (runner.ts summarize) and the
// self-contained HTML report. A long run's log is megabytes of JSON, so the daemon has this done
// in a helper process (daemon/tasks.ts): its event loop stays free, and its heap does not grow
// to hold every event of every run it finishes.
import { writeFileSync } from 'node:fs';
import type { JobInfo, RunSummary } from '../../protocol/daemon';
import { renderReport } from '../report';
import { readEventsFile } from './eventLog';
import { summarize } from './runner';

export interface FinishRunInput {
  metricsFile: string;
  reportFile: string;
  params: { pixelfly: number; dense?: number };
  stepsPerEpoch: number;
  /** The job as it ends (state, error, dataset…); its summary is what this computes. */
  info: JobInfo;
}

/** The run's summary; the report is written to `reportFile` (a failure to write it is returned, not thrown). */
export function finishRun(input: FinishRunInput): { summary: RunSummary; reportError?: string } {
  const summary: RunSummary = { ...summarize(readEventsFile(input.metricsFile), input.params, input.stepsPerEpoch), ...memoryFigures(input.info), reportPath: input.reportFile };
  try {
    writeFileSync(input.reportFile, renderReport({ ...input.info, summary }, readEventsFile(input.metricsFile)));
    return { summary };
  } catch (err) {
    return { summary, reportError: (err as Error).message };
  }
}

/** The memory figures a run's summary carries: the admission's estimate and the job process's measured peak. */
export function memoryFigures(info: Pick<JobInfo, 'estimatedMemoryBytes' | 'peakMemoryBytes'>): Pick<RunSummary, 'estimatedMemoryBytes' | 'peakMemoryBytes'> {
  return {
    ...(info.estimatedMemoryBytes !== undefined ? { estimatedMemoryBytes: info.estimatedMemoryBytes } : {}),
    ...(info.peakMemoryBytes !== undefined ? { peakMemoryBytes: info.peakMemoryBytes } : {}),
  };
}
