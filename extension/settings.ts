/**
 * The extension's settings (`pixelfly.*`, declared in package.json `contributes.configuration`),
 * read in one place and checked: a bad value is reported by name and replaced by its default,
 * never passed on to the daemon. Takes a getter (main.ts passes VS Code's configuration), so the
 * checks and defaults are unit-tested against package.json without VS Code.
 */
import { BACKEND_CHOICES, PRECISION_CHOICES } from '../protocol/daemon';
import { DEFAULT_BUDGET, KERNEL_BLOCK_SIZES } from '../core/planner';

/** Who trains a Python model: 'auto' (the engine when the model maps to an engine family, else your PyTorch model), or always one of them. */
export const TRAIN_RUNNER_CHOICES = ['auto', 'engine', 'torch'] as const;

export interface Settings {
  daemonPort: number;
  daemonAutostart: boolean;
  /** Planner target: fraction of the dense model's matmul FLOPs to keep (0 < b ≤ 1). */
  budget: number;
  blockSize: number;
  /** `synthetic | fashion-mnist[:DIR] | text:FILE | npy:DIR`, as `pixelfly train --dataset` takes it. */
  dataset: string;
  /** Folders searched for a relative dataset path (then the workspace folders). */
  datasetFolders: string[];
  /** Tokens per sample when the model itself does not say; null: the analysis's own default. */
  tokensPerSample: number | null;
  /** Folders the analysis imports library code from; the PyTorch runner imports from them too. */
  extraPaths: string[];
  epochs: number;
  batchSize: number;
  lr: number;
  /** Cap on training steps (0: no cap), for quick comparisons. */
  maxSteps: number;
  /** Evaluate every N steps (0: at each epoch's end). */
  evalEvery: number;
  /** Where the daemon trains: 'auto' (CUDA when a GPU is usable), 'cpu' (forces the CPU) or 'cuda'. */
  backend: (typeof BACKEND_CHOICES)[number];
  /** The products' input precision: 'auto' (bf16 on CUDA and on CPUs with bf16 instructions, else fp32), 'fp32', 'bf16' or 'fp16'. */
  precision: (typeof PRECISION_CHOICES)[number];
  /** At most this many GB (10⁹ bytes) for a run's process (0: what the machine has free, less its reserve). */
  memoryLimitGB: number;
  /** Who trains a Python model: 'auto', 'engine' (a stand-in on the native engine) or 'torch' (the model itself, in the daemon's PyTorch runner). */
  runner: (typeof TRAIN_RUNNER_CHOICES)[number];
  /** Before an engine run on a device with no measured profile, time the model's products once (bench.layers) and train the plan re-costed with them. */
  measureDevice: boolean;
}

export const DEFAULTS: Settings = {
  daemonPort: 0,
  daemonAutostart: true,
  budget: DEFAULT_BUDGET,
  blockSize: 32,
  dataset: 'fashion-mnist',
  datasetFolders: [],
  tokensPerSample: null,
  extraPaths: [],
  epochs: 1,
  batchSize: 64,
  lr: 0.001,
  maxSteps: 0,
  evalEvery: 0,
  backend: 'auto',
  precision: 'auto',
  memoryLimitGB: 0,
  runner: 'auto',
  measureDevice: true,
};

const oneOf = <T extends string>(choices: readonly T[]): Check<T> => (v): v is T => choices.includes(v as T);

type Check<T> = (v: unknown) => v is T;
const int = (min: number, max: number): Check<number> => (v): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const folders: Check<string[]> = (v): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string' && s.length > 0);

/** Reads and validates; `problems` lists each rejected setting with what was wrong. */
export function readSettings(read: (key: string) => unknown): { settings: Settings; problems: string[] } {
  const problems: string[] = [];
  function get<T>(key: string, check: Check<T>, fallback: T, what: string): T {
    const v = read(key);
    if (v === undefined) return fallback;
    if (check(v)) return v;
    problems.push(`pixelfly.${key}: ${what}, got ${JSON.stringify(v)}; using ${JSON.stringify(fallback)}`);
    return fallback;
  }
  const settings: Settings = {
    daemonPort: get('daemon.port', int(0, 65535), DEFAULTS.daemonPort, 'must be an integer port 0-65535 (0 = any free port)'),
    daemonAutostart: get('daemon.autostart', (v): v is boolean => typeof v === 'boolean', DEFAULTS.daemonAutostart, 'must be true or false'),
    budget: get('plan.budget', (v): v is number => typeof v === 'number' && v > 0 && v <= 1, DEFAULTS.budget, 'must be a number in (0, 1]'),
    blockSize: get('plan.blockSize', (v): v is number => KERNEL_BLOCK_SIZES.includes(v as number), DEFAULTS.blockSize, `must be one of ${KERNEL_BLOCK_SIZES.join(', ')} (the block sizes the kernels implement)`),
    dataset: get('training.dataset', (v): v is string => typeof v === 'string' && /^(synthetic|fashion-mnist|text|npy)(:.+)?$/.test(v), DEFAULTS.dataset, "must be 'synthetic', 'fashion-mnist[:DIR]', 'text:FILE' or 'npy:DIR'"),
    datasetFolders: get('training.datasetFolders', folders, DEFAULTS.datasetFolders, 'must be a list of folder paths'),
    tokensPerSample: get('analysis.tokensPerSample', (v): v is number | null => v === null || int(1, 1 << 20)(v), DEFAULTS.tokensPerSample, 'must be a positive integer, or null'),
    extraPaths: get('analysis.extraPaths', folders, DEFAULTS.extraPaths, 'must be a list of folder paths'),
    epochs: get('training.epochs', (v): v is number => typeof v === 'number' && v > 0 && v <= 1000, DEFAULTS.epochs, 'must be a number in (0, 1000]'),
    batchSize: get('training.batchSize', int(1, 65536), DEFAULTS.batchSize, 'must be an integer 1-65536'),
    lr: get('training.learningRate', (v): v is number => typeof v === 'number' && v > 0 && v < 10, DEFAULTS.lr, 'must be a number in (0, 10)'),
    maxSteps: get('training.maxSteps', int(0, 1 << 30), DEFAULTS.maxSteps, 'must be an integer ≥ 0'),
    evalEvery: get('training.evalEvery', int(0, 1 << 30), DEFAULTS.evalEvery, 'must be an integer ≥ 0'),
    backend: get('training.backend', oneOf(BACKEND_CHOICES), DEFAULTS.backend, "must be 'auto', 'cpu' or 'cuda'"),
    precision: get('training.precision', oneOf(PRECISION_CHOICES), DEFAULTS.precision, "must be 'auto', 'fp32', 'bf16' or 'fp16'"),
    memoryLimitGB: get('training.memoryLimitGB', (v): v is number => typeof v === 'number' && v >= 0 && v <= 1e6, DEFAULTS.memoryLimitGB, 'must be a number of GB ≥ 0 (0: no limit)'),
    runner: get('training.runner', oneOf(TRAIN_RUNNER_CHOICES), DEFAULTS.runner, "must be 'auto', 'engine' or 'torch'"),
    measureDevice: get('training.measureDevice', (v): v is boolean => typeof v === 'boolean', DEFAULTS.measureDevice, 'must be true or false'),
  };
  return { settings, problems };
}
