// What the machine can give a job, and what a job may take: the daemon's side of "admission
// before allocation". The estimate itself is core/memoryEstimate.ts (pure arithmetic over a spec);
// this file adds the machine (free memory from /proc/meminfo and the cgroup limit), the dataset's
// cost (file sizes, synthetic sizes), the job process's fixed cost, and the refusal a client sees
// (REJECTED with the numbers and a size that fits).
import { readFileSync, statSync } from 'node:fs';
import { totalmem, freemem } from 'node:os';
import { join } from 'node:path';
import { estimateTorchMemory, estimateTrainingMemory, suggestFit, suggestTorchFit, type DatasetMemory, type MemoryEstimate, type TorchMemoryInput, type TrainingMemoryInput } from '../core/memoryEstimate';
import type { ModelInputs } from '../protocol/daemon';
import { classifierFeatures, type ModelSpec } from '../core/modelSpec';
import type { PixelflyConfig } from '../core/pixelflyLayer';
import { formatBytes } from '../io/userFile';
import { RejectedError, type DatasetRequest, type TrainingRequest } from './jobs/trainer';

/** A job process before it loads anything: Node, the engine's modules and the native addon (measured: 45-60 MB). */
export const JOB_PROCESS_BYTES = 64 * 1024 ** 2;
/** Synthetic task sizes (native/datasets.ts defaults). */
const SYNTHETIC_SAMPLES = 4096 + 1024;
const SYNTHETIC_TOKENS = 65536 + 8192;
/** Fashion-MNIST: 70,000 images of 28×28 bytes. */
const FASHION_MNIST_SAMPLES = 70000;

export interface MachineMemory {
  totalBytes: number;
  /** What can be allocated without swapping or evicting: MemAvailable, or less under a cgroup limit. */
  availableBytes: number;
}

function meminfo(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const line of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
      const m = /^(\w+):\s+(\d+) kB/.exec(line);
      if (m) out.set(m[1], Number(m[2]) * 1024);
    }
  } catch {
    // Not Linux: os.freemem() below.
  }
  return out;
}

/** The memory limit of this process's cgroup (v2, or v1's memory controller) and its usage, when one is set. */
function cgroupLimit(): { limit: number; usage: number } | undefined {
  const read = (file: string) => readFileSync(file, 'utf8').trim();
  try {
    const groups = readFileSync('/proc/self/cgroup', 'utf8');
    const v1 = /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/m.exec(groups)?.[1];
    const [limitText, usageText] =
      v1 !== undefined
        ? [read(join('/sys/fs/cgroup/memory', v1, 'memory.limit_in_bytes')), read(join('/sys/fs/cgroup/memory', v1, 'memory.usage_in_bytes'))]
        : [read(join('/sys/fs/cgroup', /^0::(.*)$/m.exec(groups)?.[1] ?? '/', 'memory.max')), read(join('/sys/fs/cgroup', /^0::(.*)$/m.exec(groups)?.[1] ?? '/', 'memory.current'))];
    const limit = Number(limitText);
    // "max" (v2) or a page-rounded 2^63 (v1): no limit.
    if (!Number.isFinite(limit) || limit >= 2 ** 60) return undefined;
    return { limit, usage: Number(usageText) };
  } catch {
    return undefined;
  }
}

export function machineMemory(): MachineMemory {
  const info = meminfo();
  const totalBytes = info.get('MemTotal') ?? totalmem();
  let availableBytes = info.get('MemAvailable') ?? freemem();
  const cg = cgroupLimit();
  if (cg) availableBytes = Math.min(availableBytes, Math.max(0, cg.limit - cg.usage));
  return { totalBytes: Math.min(totalBytes, cg?.limit ?? Infinity), availableBytes };
}

/** Memory kept free for everything else on the machine (the editor, the desktop): 5% of it, at least 512 MB. */
export function reserveBytes(m: MachineMemory): number {
  return Math.max(512 * 1024 ** 2, 0.05 * m.totalBytes);
}

/** A resident size a running job is stopped above, and what sets it (for the stop message). */
export interface MemoryLimit {
  bytes: number;
  why: string;
}

/**
 * A job's own memory limit is a hard stop while it runs, and the estimate it is admitted with is
 * measured within a few percent of the peak but promised only within 25%: admission keeps this
 * share of the limit for the estimate's error, so that a job admitted near it is not stopped.
 */
const LIMIT_HEADROOM = 0.15;

/**
 * What a job may be given: the machine's free memory less the reserve, and at most its own limit
 * (hyper.memoryLimitBytes; 0: none) less the headroom. `why` says which bound it is, for refusals.
 */
export function jobBudget(m: MachineMemory, limitBytes = 0): { budgetBytes: number; why: string } {
  const machineBytes = Math.max(0, m.availableBytes - reserveBytes(m));
  const machineWhy = `${formatBytes(m.availableBytes)} free, ${formatBytes(reserveBytes(m))} kept for the rest of the machine`;
  const limitBudget = Math.floor((1 - LIMIT_HEADROOM) * limitBytes);
  if (limitBytes > 0 && limitBudget < machineBytes) {
    return { budgetBytes: limitBudget, why: `the job's memory limit of ${formatBytes(limitBytes)}, less ${100 * LIMIT_HEADROOM}% for the estimate's error; the machine could give ${formatBytes(machineBytes)}` };
  }
  return { budgetBytes: machineBytes, why: machineWhy };
}

/** Below this much free memory a running job is stopped, before the kernel's OOM killer picks something. */
export function floorBytes(m: MachineMemory): number {
  return Math.max(128 * 1024 ** 2, 0.01 * m.totalBytes);
}

/** A process's resident and peak resident memory (VmRSS, VmHWM), or undefined when it is gone. */
export function processMemory(pid: number | 'self' = 'self'): { rssBytes: number; peakRssBytes: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    const peak = kb('VmHWM');
    if (Number.isNaN(rss)) return undefined;
    return { rssBytes: rss, peakRssBytes: Number.isNaN(peak) ? rss : peak };
  } catch {
    return pid === 'self' ? { rssBytes: process.memoryUsage().rss, peakRssBytes: process.memoryUsage().rss } : undefined;
  }
}

function fileBytes(path: string): number {
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : 0;
  } catch {
    return 0;
  }
}

/**
 * What the job's dataset will cost, from what can be known without reading it: the synthetic
 * task's fixed sizes, Fashion-MNIST's, and for files their sizes on disk (a gzip file is counted
 * at its compressed size: the loader's cap, `maxDataBytes`, bounds what it may inflate to).
 * Loaders keep each decoded array twice (the JavaScript array and the engine's copy).
 */
export function datasetMemory(spec: ModelSpec, req: DatasetRequest): DatasetMemory {
  // Values per sample: a classifier's inputs, a language model's context window.
  const features = spec.kind === 'gpt' ? spec.context : (classifierFeatures(spec) ?? 1);
  const classification = (samples: number, bytesPerValue: number): DatasetMemory => {
    const decoded = samples * (features * bytesPerValue + 4);
    return { residentBytes: 2 * decoded, loadPeakBytes: 3 * decoded, trainSamples: Math.ceil(0.9 * samples) };
  };
  const synthetic = (): DatasetMemory => {
    if (spec.kind === 'gpt') {
      const bytes = 4 * SYNTHETIC_TOKENS;
      return { residentBytes: 2 * bytes, loadPeakBytes: 2 * bytes, trainSamples: 0 };
    }
    return { ...classification(SYNTHETIC_SAMPLES, 4), trainSamples: 4096 };
  };
  switch (req.kind) {
    case 'synthetic':
      return synthetic();
    case 'fashion-mnist': {
      // Installed or not (then the synthetic task stands in): the larger of the two.
      const fm = { ...classification(FASHION_MNIST_SAMPLES, 1), trainSamples: 60000 };
      const s = synthetic();
      return fm.residentBytes >= s.residentBytes ? fm : s;
    }
    case 'text': {
      // A byte becomes at most one character: a 4-byte token, twice; decoding holds the bytes, the
      // string (up to 2 bytes a character) and the token array with its two splits.
      const n = fileBytes(req.path as string);
      return { residentBytes: 8 * n, loadPeakBytes: 15 * n, trainSamples: 0 };
    }
    case 'npy': {
      const dir = req.path as string;
      const bytes = ['x.npy', 'y.npy', 'x_test.npy', 'y_test.npy'].reduce((a, f) => a + fileBytes(join(dir, f)), 0);
      // uint8 stays bytes, float32 stays 4 bytes, float64 and int64 shrink to 4: the file's size,
      // twice. (int8 and int16 arrays grow to 4 bytes a value and are counted low here; the job
      // process's own memory is watched while it runs.)
      return { residentBytes: 2 * bytes, loadPeakBytes: 3 * bytes, trainSamples: Math.ceil((0.9 * fileBytes(join(dir, 'x.npy'))) / Math.max(1, features)) };
    }
  }
}

/**
 * Samples (or context windows, for a language model) one evaluation covers: the test split, capped
 * by evalSamples. Only its size relative to the evaluation batch matters, so upper bounds do.
 */
export function evalCount(spec: ModelSpec, req: DatasetRequest, evalSamples: number): number {
  if (spec.kind === 'gpt') {
    const testTokens = req.kind === 'text' ? Math.ceil(0.1 * fileBytes(req.path as string)) : 8192;
    const windows = Math.floor((testTokens - 1) / spec.context);
    return evalSamples > 0 ? Math.min(windows, Math.max(1, Math.floor(evalSamples / spec.context))) : windows;
  }
  const testSamples = req.kind === 'npy' ? Infinity : req.kind === 'fashion-mnist' ? 10000 : 1024;
  return evalSamples > 0 ? Math.min(testSamples, evalSamples) : testSamples;
}

/** The estimator's input for a job (the plan's sparsified layers, the dataset's cost, the job process). */
export function memoryInput(spec: ModelSpec, request: TrainingRequest, threads: number, resuming: boolean): TrainingMemoryInput {
  const pixelfly = request.plan.layers
    .filter((l): l is typeof l & { config: PixelflyConfig } => l.sparsify && l.config !== undefined)
    .map((l) => ({ name: l.name, config: l.config }));
  return {
    spec,
    pixelfly,
    batch: request.hyper.batchSize,
    evalCount: evalCount(spec, request.dataset, request.hyper.evalSamples),
    resuming,
    compare: request.compare,
    threads,
    dataset: datasetMemory(spec, request.dataset),
    overheadBytes: JOB_PROCESS_BYTES,
  };
}

export interface Admission {
  estimate: MemoryEstimate;
  machine: MachineMemory;
  budgetBytes: number;
  /** What a dataset file may inflate to: the budget left after everything else. */
  maxDataBytes: number;
}

/** What a REJECTED refusal carries in its JSON-RPC `data`, for clients that show it. */
export interface MemoryRefusal {
  reason: 'memory';
  neededBytes: number;
  availableBytes: number;
  budgetBytes: number;
  parts: MemoryEstimate['parts'];
  fits?: ReturnType<typeof suggestFit>;
}

const describeParts = (p: MemoryEstimate['parts']) =>
  [
    `parameters ${formatBytes(p.parameters)}`,
    `gradients ${formatBytes(p.gradients)}`,
    `AdamW state ${formatBytes(p.optimizer)}`,
    `activations ${formatBytes(p.activations)}`,
    `dataset ${formatBytes(p.dataset)}`,
    `checkpoint copy ${formatBytes(p.checkpoint)}`,
  ].join(', ');

function describeFit(fit: ReturnType<typeof suggestFit>, batch: number): string {
  if (!fit) return 'no batch size or single width fits: reduce the model, or use a smaller dataset';
  if ('field' in fit) return `a size that fits: ${fit.field} ${fit.value}${fit.batchSize !== batch ? ` with batchSize ${fit.batchSize}` : ''}`;
  return `a size that fits: batchSize ${fit.batchSize}`;
}

/**
 * Checks a job against the machine before anything is allocated; throws REJECTED with the
 * estimate, what is free, and a size that fits.
 */
export function admit(input: TrainingMemoryInput, kind: DatasetRequest['kind'], limitBytes = 0, machine = machineMemory()): Admission {
  const estimate = estimateTrainingMemory(input);
  const { budgetBytes, why } = jobBudget(machine, limitBytes);
  if (estimate.totalBytes > budgetBytes) {
    const fits = suggestFit(input, budgetBytes);
    const data: MemoryRefusal = { reason: 'memory', neededBytes: estimate.totalBytes, availableBytes: machine.availableBytes, budgetBytes, parts: estimate.parts, fits };
    throw new RejectedError(
      `this job needs about ${formatBytes(estimate.totalBytes)} of memory (${describeParts(estimate.parts)}; peak while ${estimate.peakPhase === 'train' ? 'training' : `${estimate.peakPhase === 'build' ? 'building the models' : estimate.peakPhase === 'load' ? 'loading the dataset' : 'resuming from a checkpoint'}`}), ` +
        `but only ${formatBytes(budgetBytes)} can be given to it (${why}); ${describeFit(fits, input.batch)}`,
      data,
    );
  }
  // A data file may inflate to what is left once everything but the dataset is counted, divided by
  // what its kind costs per file byte (a text byte becomes a 4-byte token, twice, plus decoding).
  const dataset = Math.max(input.dataset.residentBytes, input.dataset.loadPeakBytes);
  const spare = budgetBytes - (estimate.totalBytes - dataset);
  const perByte = kind === 'text' ? 15 : 3;
  return { estimate, machine, budgetBytes, maxDataBytes: Math.max(64 * 1024 ** 2, Math.floor(spare / perByte)) };
}

/**
 * What the PyTorch runner's dataset costs (pytorch/pixelfly_torch/runner.py load_data): token
 * streams are int64 tensors; decoding a text file holds its bytes, the text and a list of the
 * characters' ids beside the tensor; Fashion-MNIST stays 28×28 bytes (a batch is padded or resized
 * to the model's input when it is drawn); synthetic inputs are fp32 of the model's input shape.
 */
export function torchDatasetMemory(inputs: ModelInputs, req: DatasetRequest): DatasetMemory {
  const perSample = inputs.kind === 'images' ? inputs.channels * inputs.height * inputs.width : inputs.kind === 'features' ? inputs.features : 0;
  const samples = (n: number, trainShare: number): DatasetMemory => {
    const resident = n * (perSample * 4 + 8);
    return { residentBytes: resident, loadPeakBytes: 2 * resident, trainSamples: Math.ceil(trainShare * n) };
  };
  const tokens = (n: number, decodeBytesPerToken: number): DatasetMemory => ({ residentBytes: 8 * n, loadPeakBytes: (8 + decodeBytesPerToken) * n, trainSamples: 0 });
  const syntheticTokens = 65536 + 8192;
  switch (req.kind) {
    case 'synthetic':
      return inputs.kind === 'tokens' ? tokens(syntheticTokens, 8) : samples(SYNTHETIC_SAMPLES, 0.8);
    case 'fashion-mnist':
      // The gzip file and its inflated bytes twice (the tensor shares the last) while loading; bytes and int64 labels after.
      return inputs.kind === 'tokens' ? tokens(syntheticTokens, 8) : { residentBytes: FASHION_MNIST_SAMPLES * (28 * 28 + 8), loadPeakBytes: FASHION_MNIST_SAMPLES * (3 * 28 * 28 + 16), trainSamples: 60000 };
    case 'text':
      // bytes, a bytearray, the text (up to 4 bytes a character) and the id list (8 bytes a pointer).
      return tokens(fileBytes(req.path as string), 14);
    case 'npy': {
      const dir = req.path as string;
      const bytes = ['x.npy', 'y.npy', 'x_test.npy', 'y_test.npy'].reduce((a, f) => a + fileBytes(join(dir, f)), 0);
      if (inputs.kind === 'tokens') return { residentBytes: 8 * bytes, loadPeakBytes: 9 * bytes, trainSamples: 0 };
      const n = perSample > 0 ? Math.ceil(fileBytes(join(dir, 'x.npy')) / perSample) : 0;
      return { residentBytes: Math.max(bytes, n * (perSample * 4 + 8)), loadPeakBytes: bytes + 2 * n * (perSample * 4 + 8), trainSamples: n };
    }
  }
}

/**
 * Admission of a PyTorch runner job with its model's facts: sized on the meta device before the
 * worker builds it (`built` false), then built (before the optimizers, the data and any batch exist). The estimate
 * against what the machine can give; REJECTED with the numbers and a batch or context that fits.
 */
export function admitTorch(input: TorchMemoryInput, kind: DatasetRequest['kind'], built: boolean, limitBytes = 0, machine = machineMemory()): Admission {
  const estimate = estimateTorchMemory(input);
  const { budgetBytes, why } = jobBudget(machine, limitBytes);
  if (estimate.totalBytes > budgetBytes) {
    const fits = suggestTorchFit(input, budgetBytes);
    const data: MemoryRefusal = { reason: 'memory', neededBytes: estimate.totalBytes, availableBytes: machine.availableBytes, budgetBytes, parts: estimate.parts, fits };
    throw new RejectedError(
      `this job needs about ${formatBytes(estimate.totalBytes)} of memory (${describeParts(estimate.parts)}, PyTorch ${formatBytes(input.baseBytes)}; ` +
        `both models' parameters, gradients and AdamW state, one model's activations at batch ${input.batch}; ` +
        `${built ? 'measured on the built model' : 'read from the model sized on the meta device, before building it'}), ` +
        `but only ${formatBytes(budgetBytes)} can be given to it (${why}); ` +
        (fits ? `a size that fits: ${'field' in fits ? `${fits.field} ${fits.value} with batchSize ${fits.batchSize}` : `batchSize ${fits.batchSize}`}` : 'no batch size or context fits: reduce the model'),
      data,
    );
  }
  const dataset = Math.max(input.dataset.residentBytes, input.dataset.loadPeakBytes);
  const spare = budgetBytes - (estimate.totalBytes - dataset);
  return { estimate, machine, budgetBytes, maxDataBytes: Math.max(64 * 1024 ** 2, Math.floor(spare / (kind === 'text' ? 22 : 3))) };
}
