// The daemon <-> job process boundary. Every training job runs in its own child process (the
// daemon forks `worker.js engine-job`), which loads the data and builds and trains the models; the
// daemon drives it with these messages over Node's IPC channel. A process per job means a job's
// memory goes back to the system when it ends, a native crash or the kernel's OOM killer ends the
// job and not the daemon, and a job can be stopped at any moment. The PyTorch runner (a Python
// process, pytorch/pixelfly_torch/runner.py, over the same channel as line-delimited JSON) speaks
// the same messages, plus `inspect`.
import type { z } from 'zod';
import type { ModelSpec } from '../core/modelSpec';
import type { DatasetInfoSchema, DatasetSchema, Hyperparameters, ModelInputs, PlanSchema, Runner, TorchModel } from './daemon';

/**
 * What a job trains (the job.submit params after the daemon resolved the plan). The spec is parsed
 * (core's parseModelSpec) where it enters: job.submit, a run folder's job.json, the job process's
 * prepare; everything between passes it on typed.
 */
export interface TrainingRequest {
  /** Absent: 'engine'. */
  runner?: Runner;
  /** The engine's model spec (engine runner). */
  spec?: ModelSpec;
  /** The user's PyTorch model (torch runner). */
  model?: TorchModel;
  plan: z.infer<typeof PlanSchema>;
  dataset: z.infer<typeof DatasetSchema>;
  hyper: Hyperparameters;
  compare: boolean;
  /** The model file and model the spec stands in for, when the client said (for the run's record only). */
  source?: { file: string; model: string };
}

export type Variant = 'pixelfly' | 'dense';

/** Daemon -> job process. Requests are answered in order, one at a time. */
export type JobRequest =
  /** PyTorch runner only, first: size the model on torch's meta device without allocating it, answer a SizeReply. */
  | { id: number; op: 'size'; request: TrainingRequest }
  /** PyTorch runner only, before prepare: import and build the model, answer an InspectReply. */
  | { id: number; op: 'inspect'; request: TrainingRequest }
  | { id: number; op: 'prepare'; request: TrainingRequest; maxDataBytes: number }
  | { id: number; op: 'step'; variant: Variant }
  | { id: number; op: 'evaluate'; variant: Variant }
  /** Saves weights, optimizer state and data position to `file` (written whole, then renamed into place). */
  | { id: number; op: 'save'; variant: Variant; file: string }
  | { id: number; op: 'load'; variant: Variant; file: string };

export interface PreparedJob {
  dataset: z.infer<typeof DatasetInfoSchema>;
  stepsPerEpoch: number;
  tokensPerStep: number;
  params: { pixelfly: number; dense?: number };
  backend?: string;
  precision?: string;
  /** Why that precision (the PyTorch runner's 'auto'). */
  precisionNote?: string;
  /** How the products ran (the CPU kernels' instruction set and bf16 path, or 'cuda'). */
  kernels?: string;
}

/** What the memory estimate of a PyTorch runner job needs from its model. */
export interface ModelFacts {
  params: { pixelfly: number; dense?: number };
  inputs: ModelInputs;
  /** Bytes one sample's forward keeps for the backward (autograd's saved tensors, the output and its gradient), per variant. */
  activationBytesPerSample: { pixelfly: number; dense: number };
  /** The worker's resident memory with Python and PyTorch loaded, before the model's file was imported. */
  baseBytes: number;
}

/**
 * The model's facts read on torch's meta device (built and run with sizes and no data), before
 * anything is allocated; or why its code could not run there (it is then admitted once built).
 */
export type SizeReply = ({ sized: true } & ModelFacts) | { sized: false; reason: string };

/** What the PyTorch runner learnt by building the user's model: what the memory estimate needs, and more. */
export interface InspectReply extends ModelFacts {
  /** Layers the plan made Pixelfly. */
  replaced: number;
  /** 'PyTorch 1.13.1, Python 3.11.2' */
  runtime: string;
  /** pixelfly_torch.backend(): how its layers compute. */
  kernels: string;
}

export interface StepReply {
  loss: number;
  ms: number;
  lr?: number;
  partsMs?: Record<string, number>;
}

export interface EvalReply {
  loss: number;
  accuracy?: number;
  perplexity?: number;
}

/**
 * Why a request failed, so the daemon can say it well: `rejected` (the spec, plan or data cannot
 * be used: the message says why), `checkpoint` (a checkpoint file is corrupt or foreign), `io` (a
 * file operation failed: `code` is the errno name, e.g. ENOSPC or EMFILE), `diverged` (a loss
 * became NaN or infinite), `model` (the user's PyTorch code raised: the message carries its
 * Python traceback), `internal` (anything else).
 */
export interface JobFailure {
  kind: 'rejected' | 'checkpoint' | 'io' | 'diverged' | 'model' | 'internal';
  message: string;
  code?: string;
}

export type JobOutcome = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: JobFailure };
/** Job process -> daemon: one reply per request, with the process's memory as it answers. */
export type JobReply = JobOutcome & { rssBytes: number; peakRssBytes: number };

/** First argument of the worker script that makes it a job process. */
export const ENGINE_JOB_ROLE = 'engine-job';
/** The PyTorch runner's module (`python -m pixelfly_torch.runner`). */
export const TORCH_RUNNER_MODULE = 'pixelfly_torch.runner';
