// The GPU half of `npm run bench:kernels` (called from bench/kernels.ts when a CUDA device is
// usable): the same shapes and layouts, each Pixelfly layer's fwd / dX / dW on the device against
// cuBLAS dense products of the same layer, timed with CUDA events on device-resident data (medians
// of `reps`), in fp32 and in bf16 on tensor cores (cuBLAS then runs bf16 GemmEx too: like for like).
// Rows share bench/kernels.ts's JSON schema, with `device`, `precision` and the cuBLAS columns.
import type { BlockLayout } from '../core/layout';
import { buildBlockIndex } from '../core/blockIndex';
import { cudaInfo, nativeCuda, nativeLayoutOf, type CudaPrecision } from '../native/cuda';

export interface GpuBenchOptions {
  m: number;
  block: number;
  reps: number;
  shapes: Array<[number, number]>;
  /** The CPU benchmark's choice of layout for a density, so both halves time the same masks. */
  layoutNear(out: number, inF: number, block: number, density: number): BlockLayout;
}

/** One row per (precision, shape, density); empty (with a printed reason) when no GPU is usable. */
export async function gpuKernelRows(opts: GpuBenchOptions): Promise<Record<string, unknown>[]> {
  const info = cudaInfo();
  if (!info?.available) {
    console.log(`\nGPU: not measured (${info?.reason ?? 'native addon not loaded'})`);
    return [];
  }
  const dev = info.devices[0];
  console.log(`\nGPU: ${dev.name}, ${(dev.memoryBytes / 2 ** 30).toFixed(0)} GiB, compute capability ${dev.computeCapability}; ` +
    `dense = ${info.cublas ? `cuBLAS (${info.cublas})` : `our fallback kernel (cuBLAS missing: ${info.cublasError})`}`);
  const header = 'prec in    out   density | cuBLAS dense | pixelfly fwd     dX     dW  total | ideal | vs cuBLAS (target)';
  console.log(header);
  console.log('-'.repeat(header.length));
  const rows: Record<string, unknown>[] = [];
  for (const precision of ['bf16', 'fp32'] as CudaPrecision[]) {
    for (const [inF, out] of opts.shapes) {
      for (const density of [1 / 8, 1 / 4, 1 / 2]) {
        const l = opts.layoutNear(out, inF, opts.block, density);
        const r = await nativeCuda().benchLayer({
          layout: nativeLayoutOf(buildBlockIndex(l)), out, in: inF, m: opts.m, precision, repeats: opts.reps,
        });
        const pf = r.pixelfly.fwd + r.pixelfly.dx + r.pixelfly.dw;
        const dense = r.dense.fwd + r.dense.dx + r.dense.dw;
        const speedup = dense / pf;
        const target = 0.7 / l.density;
        rows.push({
          m: opts.m, in: inF, out, block: opts.block, density: +l.density.toFixed(4),
          butterfly_size: l.params.butterflySize, n_factors: l.params.nFactors,
          threads: null, device: `cuda:${dev.name}`, precision, dense_library: r.cublas ? 'cublas' : 'fallback',
          openblas_fwd_bwd_ms: null,
          dense_fwd_ms: +r.dense.fwd.toFixed(4), dense_dx_ms: +r.dense.dx.toFixed(4), dense_dw_ms: +r.dense.dw.toFixed(4),
          dense_fwd_bwd_ms: +dense.toFixed(4),
          pixelfly_fwd_ms: +r.pixelfly.fwd.toFixed(4), pixelfly_dx_ms: +r.pixelfly.dx.toFixed(4), pixelfly_dw_ms: +r.pixelfly.dw.toFixed(4),
          pixelfly_fwd_bwd_ms: +pf.toFixed(4),
          fraction_of_ideal: +(speedup * l.density).toFixed(3),
          speedup_vs_dense: +speedup.toFixed(3),
          target_vs_dense: +target.toFixed(3),
          reps: opts.reps,
        });
        const f = (n: number) => n.toFixed(3);
        console.log(
          `${precision.padEnd(5)}${String(inF).padEnd(6)}${String(out).padEnd(6)}${l.density.toFixed(3).padEnd(8)}| ${f(dense).padStart(12)} | ` +
            `${f(r.pixelfly.fwd).padStart(12)} ${f(r.pixelfly.dx).padStart(6)} ${f(r.pixelfly.dw).padStart(6)} ${f(pf).padStart(6)} | ` +
            `${(speedup * l.density * 100).toFixed(0).padStart(4)}% | ${speedup.toFixed(2).padStart(8)}× (${target.toFixed(1)}×` +
            `${l.density <= 0.25 ? (speedup >= target ? ' met' : ' MISSED') : ''})`,
        );
      }
    }
  }
  return rows;
}
