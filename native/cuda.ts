/**
 * Typed access to the CUDA area of the native addon (native/src/cuda): what the GPU backend can do
 * on this machine, single products on the device (GPU tests), the GPU schedule run on the host
 * (schedule tests, no GPU needed), and device-resident layer timings (bench:kernels).
 *
 * The area exists in every build: an addon built without nvcc reports `compiled: false`, one built
 * with it on a machine without a driver or GPU reports `available: false` with the runtime's reason.
 */
import type { BlockIndex } from '../core/blockIndex';
import { loadAddon, type NativeGemmArgs, type NativeLayout } from './addon';

export type CudaPrecision = 'fp32' | 'bf16' | 'fp16';

export interface CudaDevice {
  index: number;
  name: string;
  memoryBytes: number;
  /** e.g. "9.0" */
  computeCapability: string;
  multiprocessors: number;
}

export interface CudaInfo {
  /** The addon was built with nvcc (device code for `archs`). */
  compiled: boolean;
  /** A device can run the kernels now; else `reason` says why not. */
  available: boolean;
  reason?: string;
  runtimeVersion?: number;
  driverVersion?: number;
  /** SM versions with cubins in the addon, e.g. [80, 90]. */
  archs: number[];
  devices: CudaDevice[];
  /** cuBLAS library opened for dense products, or why none was (then dense runs on our own kernel). */
  cublas?: string;
  cublasError?: string;
}

interface ProductArgs {
  layout: NativeLayout;
  out: number;
  in: number;
  m: number;
  accumulate?: boolean;
  precision?: CudaPrecision;
}

export interface BenchLayerResult {
  pixelfly: { fwd: number; dx: number; dw: number };
  dense: { fwd: number; dx: number; dw: number };
  /** Dense products ran on cuBLAS (else our fallback kernel). */
  cublas: boolean;
}

interface NativeCuda {
  info(): CudaInfo;
  bsrForward(a: ProductArgs & { weights: Float32Array; x: Float32Array; y: Float32Array; bias?: Float32Array }): Promise<void>;
  bsrBackwardData(a: ProductArgs & { weights: Float32Array; dy: Float32Array; dx: Float32Array }): Promise<void>;
  bsrBackwardWeight(a: ProductArgs & { dy: Float32Array; x: Float32Array; dw: Float32Array }): Promise<void>;
  gemm(a: NativeGemmArgs & { precision?: CudaPrecision }): Promise<void>;
  benchLayer(a: { layout: NativeLayout; out: number; in: number; m: number; precision?: CudaPrecision; repeats?: number }): Promise<BenchLayerResult>;
  reference: {
    bsrForward(a: ProductArgs & { weights: Float32Array; x: Float32Array; y: Float32Array; bias?: Float32Array }): Promise<void>;
    bsrBackwardData(a: ProductArgs & { weights: Float32Array; dy: Float32Array; dx: Float32Array }): Promise<void>;
    bsrBackwardWeight(a: ProductArgs & { dy: Float32Array; x: Float32Array; dw: Float32Array; chunkRows?: number }): Promise<void>;
    backwardWeightChunkRows(nnz: number, m: number, targetTiles: number, minRows: number): number;
  };
}

/** The cuda area; throws NativeAddonError (with how to fix it) when the addon is not built. */
export function nativeCuda(): NativeCuda {
  const area = (loadAddon() as unknown as { cuda?: NativeCuda }).cuda;
  if (!area) throw new Error('the native addon has no CUDA area: rebuild it with `npm run build`');
  return area;
}

/** CUDA status, or undefined when the addon itself cannot load (never throws: used by `hello`). */
export function cudaInfo(): CudaInfo | undefined {
  try {
    return nativeCuda().info();
  } catch {
    return undefined;
  }
}

export function nativeLayoutOf(index: BlockIndex): NativeLayout {
  const { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock } = index;
  return { block, blockRows, blockCols, nnz, rowPtr, colIdx, colPtr, rowIdx, tBlock };
}
