// The narrow interface the job runner trains through. The product implementation is
// engineTrainer.ts (the native engine); tests may plug in a double to inject faults.
import type { Hyperparameters } from '../../protocol/daemon';
import type { z } from 'zod';
import type { DatasetInfoSchema, DatasetSchema, PlanSchema } from '../../protocol/daemon';

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
  load(file: string): Promise<void>;
  dispose(): void;
}

export interface TrainingRequest {
  spec: Record<string, unknown>;
  plan: Plan;
  dataset: DatasetRequest;
  hyper: Hyperparameters;
  compare: boolean;
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
  kernels?: string;
}

export interface TrainingBackend {
  /** Validates the spec, plan and dataset (throwing a RejectedError with a clear message) and builds the models. */
  prepare(request: TrainingRequest): Promise<TrainingSetup>;
}

/** Input the engine refused: reported to the client as REJECTED with this message. */
export class RejectedError extends Error {}
