/**
 * Loads the native addon (native/build/Release/pixelfly.node) once and types its areas.
 * Each area (kernels, openblas, engine, ...) registers its own exports in C++; the engine's typed
 * wrapper extends `NativeAddon` with its area the same way `kernels` is typed here.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Instruction-set paths: the fp32 products run portable, AVX2 or AVX-512 code ('avx512bf16' and 'amx' use AVX-512's); bf16 products run on AMX tiles ('amx'), vdpbf16ps ('avx512bf16'), or else converted to fp32. */
export type Isa = 'portable' | 'avx2' | 'avx512' | 'avx512bf16' | 'amx';

/** How the active path computes bf16 products. */
export type Bf16Path = 'amx' | 'avx512bf16' | 'fp32-fallback';

export interface KernelInfo {
  /** Instruction-set path the kernels use now. */
  isa: Isa;
  /** Best path this CPU supports (chosen at load). */
  bestIsa: Isa;
  supportedIsas: Isa[];
  /** How bf16 products run on the active path. */
  bf16: Bf16Path;
  /** Why AMX is not used on this machine (absent when it is usable). */
  amxUnavailable?: string;
  threads: number;
  maxThreads: number;
  blocks: number[];
}

/** The index arrays of core's BlockIndex, as the addon reads them. */
export interface NativeLayout {
  block: number;
  blockRows: number;
  blockCols: number;
  nnz: number;
  rowPtr: Int32Array;
  colIdx: Int32Array;
  colPtr: Int32Array;
  rowIdx: Int32Array;
  tBlock: Int32Array;
}

/** A matrix the kernels read or write: fp32 values, or bf16 values as their 16 bits (the upper half of an fp32). */
export type KernelArray = Float32Array | Uint16Array;
export type KernelPrecision = 'fp32' | 'bf16';

export interface NativeGemmArgs {
  transA?: boolean;
  transB?: boolean;
  m: number;
  n: number;
  k: number;
  alpha?: number;
  beta?: number;
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  /** Leading dimensions (default: the operand's column count), for slices of wider rows. */
  lda?: number;
  ldb?: number;
  ldc?: number;
}

/** The Pixelfly kernels' gemm: operands of either element type, and a product precision. */
export interface NativeTypedGemmArgs extends Omit<NativeGemmArgs, 'a' | 'b' | 'c'> {
  a: KernelArray;
  b: KernelArray;
  c: KernelArray;
  /** 'bf16': inputs rounded to bf16, fp32 accumulation (any Uint16Array input implies it). */
  precision?: KernelPrecision;
}

interface NativeWeightArgs {
  layout: NativeLayout;
  out: number;
  in: number;
  m: number;
  accumulate?: boolean;
  precision?: KernelPrecision;
}

export interface NativeKernels {
  info(): KernelInfo;
  setThreads(n: number): void;
  forceIsa(isa: Isa): void;
  /** '' when valid, else what is wrong. */
  validateLayout(layout: NativeLayout): string;
  bsrForward(a: NativeWeightArgs & { weights: KernelArray; x: KernelArray; y: KernelArray; bias?: Float32Array }): Promise<void>;
  bsrBackwardData(a: NativeWeightArgs & { weights: KernelArray; dy: KernelArray; dx: KernelArray }): Promise<void>;
  bsrBackwardWeight(a: NativeWeightArgs & { dy: KernelArray; x: KernelArray; dw: KernelArray; db?: Float32Array }): Promise<void>;
  biasGrad(a: { m: number; n: number; dy: KernelArray; db: KernelArray; accumulate?: boolean }): Promise<void>;
  gemm(a: NativeTypedGemmArgs): Promise<void>;
  /** A zero-filled Float32Array whose data is 64-byte aligned (Node's are 16-byte aligned). */
  alignedFloat32Array(length: number): Float32Array;
  /** fp32 → bf16 bits, round to nearest even (NaN stays NaN, denormals flush to ±0). */
  toBf16(a: Float32Array): Uint16Array;
  /** bf16 bits → fp32 (exact). */
  toF32(a: Uint16Array): Float32Array;
}

export interface OpenBlasInfo {
  available: boolean;
  library?: string;
  coreName?: string;
  config?: string;
  error?: string;
}

/** OpenBLAS loaded at run time (dlopen), only as the benchmark's dense baseline. */
export interface NativeOpenBlas {
  info(): OpenBlasInfo;
  setThreads(n: number): void;
  gemm(a: NativeGemmArgs): Promise<void>;
}

/** One attention call's operands: tensors [batch][T][heads][headDim], lse [batch][heads][T]. */
interface NativeAttentionArgs {
  layout: NativeLayout;
  batch: number;
  heads: number;
  T: number;
  headDim: number;
  causal: boolean;
  scale?: number;
  /** Run the plain reference instead of the kernels. */
  reference?: boolean;
  threads?: number;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

export interface NativeAttention {
  forward(a: NativeAttentionArgs & { o: Float32Array; lse: Float32Array }): Promise<void>;
  backward(
    a: NativeAttentionArgs & { o?: Float32Array; lse?: Float32Array; dO: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array },
  ): Promise<void>;
  /** Score block sizes the kernels implement. */
  blocks: number[];
}

export interface NativeAddon {
  areas: string[];
  kernels: NativeKernels;
  openblas: NativeOpenBlas;
  attention: NativeAttention;
}

export class NativeAddonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NativeAddonError';
  }
}

const ADDON_FILE = join('native', 'build', 'Release', 'pixelfly.node');
const FIX = 'run `npm run build` in the Pixelfly checkout (it needs g++, make and python3: `apt-get install build-essential python3`)';

/** Where the addon may be, nearest first: $PIXELFLY_NATIVE, then the checkout above this file (out/native/, dist/ or native/). */
export function addonCandidates(): string[] {
  const fromEnv = process.env.PIXELFLY_NATIVE ? [resolve(process.env.PIXELFLY_NATIVE)] : [];
  const roots = [join(__dirname, '..', '..'), join(__dirname, '..'), __dirname, process.cwd()];
  return [...fromEnv, ...roots.map((r) => join(r, ADDON_FILE))].filter((p, i, all) => all.indexOf(p) === i);
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const candidates = addonCandidates();
  const file = candidates.find((p) => existsSync(p));
  if (!file) {
    throw new NativeAddonError(`the native addon is not built (looked for ${candidates.join(', ')}): ${FIX}`);
  }
  cached = loadAddonFile(file);
  return cached;
}

/** Loads one addon file; a missing or broken file throws NativeAddonError saying how to rebuild it. */
export function loadAddonFile(file: string): NativeAddon {
  const mod = { exports: {} as Record<string, unknown> };
  try {
    // process.dlopen instead of require: bundlers leave it alone and the path stays ours.
    process.dlopen(mod, file);
  } catch (err) {
    throw new NativeAddonError(`the native addon at ${file} failed to load (${(err as Error).message}): ${FIX}`);
  }
  return mod.exports as unknown as NativeAddon;
}
