// The narrow interface the job runner trains through. The product implementation runs each job in
// its own process (engineProcess.ts, which drives engineTrainer.ts there); tests may plug in a
// double to inject faults.
import type { z } from 'zod';
import type { DatasetInfoSchema, DatasetSchema, ModelInputs, PlanSchema } from '../../protocol/daemon';
import type { TrainingRequest } from '../../protocol/engineJob';
import type { ModelSpec } from '../../core/modelSpec';

export type { TrainingRequest } from '../../protocol/engineJob';
export type DatasetInfo = z.infer<typeof DatasetInfoSchema>;
export type DatasetRequest = z.infer<typeof DatasetSchema>;
export type Plan = z.infer<typeof PlanSchema>;

export interface EvalResult {
  loss: number;
  accuracy?: number;
  perplexity?: number;
}

/** One model (dense or Pixelfly) with its optimizer and its own pass over the data. */
export interface ModelTrainer {
  readonly params: number;
  /**
   * One optimizer step on the next batch; `ms` is the engine's own timing of forward+backward+update,
   * `partsMs` its forward+backward time per part of the model when the engine reports it.
   */
  step(): Promise<{ loss: number; ms: number; lr?: number; partsMs?: Record<string, number> }>;
  evaluate(): Promise<EvalResult>;
  /** Saves weights, optimizer state and data position, so a load continues exactly where this left off. */
  save(file: string): Promise<void>;
  /** Throws CheckpointError when the file is corrupt or written for another model (the model is unchanged then). */
  load(file: string): Promise<void>;
}

export interface TrainingSetup {
  dataset: DatasetInfo;
  stepsPerEpoch: number;
  /** Tokens (rows through the matmuls) per step, for tokens/s. */
  tokensPerStep: number;
  pixelfly: ModelTrainer;
  /** Present when the request asked to compare with dense. */
  dense?: ModelTrainer;
  /** Where the models compute ('cpu' or 'cuda'), the products' input precision there, and how they run (e.g. 'avx512bf16 kernels, bf16 on avx512bf16'). */
  backend?: string;
  precision?: string;
  /** Why that precision, where the runner decided it ('auto' in the PyTorch runner). */
  precisionNote?: string;
  kernels?: string;
  /** Frees the models and the data (a job process exits); safe to call twice. */
  close(): Promise<void>;
  /** Peak resident memory of the job so far, in bytes, when the runner can measure it. */
  peakMemoryBytes?(): number | undefined;
  /** The runner's own estimate of the job's peak memory, when it makes one once the model is built (the PyTorch runner). */
  estimatedMemoryBytes?: number;
  /** What trains the model (the PyTorch runner: 'PyTorch 1.13.1, Python 3.11.2'). */
  runtime?: string;
  /** What the model eats (the PyTorch runner: read off the built model). */
  inputs?: ModelInputs;
}

export interface PrepareOptions {
  /** What a dataset file may decompress or grow to. */
  maxDataBytes: number;
  /**
   * Aborting ends the job's work at once, even in the middle of loading data or of a step: pending
   * and later calls fail with a RunnerStoppedError carrying the abort reason.
   */
  signal?: AbortSignal;
  /** The job continues from a checkpoint (reading one costs memory of its own). */
  resuming?: boolean;
}

export interface TrainingBackend {
  /** Validates the spec, plan and dataset (throwing a RejectedError with a clear message) and builds the models. */
  prepare(request: TrainingRequest, options: PrepareOptions): Promise<TrainingSetup>;
}

/** Input the engine or the machine refused: reported to the client as REJECTED with this message (and `data`). */
export class RejectedError extends Error {
  constructor(
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

/** A checkpoint that cannot be loaded (corrupt, truncated, or for another model). */
export class CheckpointError extends Error {}

/** A file operation failed: `code` is the errno name (ENOSPC, EMFILE, EACCES, ...). */
export class JobIoError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The job's runner stopped for a reason the job should end with (out of memory, crashed, killed, hung). */
export class RunnerStoppedError extends Error {}

/** The user's own model code raised (PyTorch runner): the message carries the Python error and its traceback. */
export class ModelError extends Error {}

/** An errno code of a Node error, if it has one. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) ? code : undefined;
}

/** Words for the errno codes a run can meet on a busy or full machine. */
export function describeIoError(code: string, what: string): string {
  switch (code) {
    case 'ENOSPC':
      return `no space left on device while ${what}`;
    case 'EDQUOT':
      return `disk quota exceeded while ${what}`;
    case 'EMFILE':
      return `too many open files in the daemon (EMFILE) while ${what}`;
    case 'ENFILE':
      return `too many open files on this machine (ENFILE) while ${what}`;
    case 'EROFS':
      return `the file system is read-only while ${what}`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied while ${what}`;
    case 'EIO':
      return `an I/O error from the disk while ${what}`;
    default:
      return `${code} while ${what}`;
  }
}

/** The engine's model spec of a request (parsed where the request entered); a request without one is not an engine job. */
export function engineSpec(request: TrainingRequest): ModelSpec {
  if (!request.spec) throw new RejectedError('an engine job needs a model spec (job.submit `spec`)');
  return request.spec;
}
