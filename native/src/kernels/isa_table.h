// Internal: the per-instruction-set kernel entry points. isa_kernels.cc is compiled once per ISA
// (binding.gyp: kernels_portable / _avx2 / _avx512 / _avx512bf16 / _amx), each defining one table;
// the public functions in dispatch.cc check arguments and call the active table.
#pragma once

#include <cstddef>

#include "kernels.h"

namespace pixelfly {
namespace kernels {

struct KernelTable {
  // fp32 products (w.blocks is fp32).
  void (*bsrForward)(const BsrWeight& w, int M, const float* X, int ldx, const float* bias, float* Y, int ldy,
                     bool accumulate, int threads);
  void (*bsrBackwardData)(const BsrWeight& w, int M, const float* dY, int lddy, float* dX, int lddx,
                          bool accumulate, int threads);
  // dBias (may be null): also the column sums of dY, when every block-row holds a kept block.
  void (*bsrBackwardWeight)(const BsrWeight& w, int M, const float* dY, int lddy, const float* X, int ldx, float* dW,
                            float* dBias, bool accumulate, int threads);
  // beta is 0 (overwrite) or 1 (add); dispatch.cc pre-scales C for other values.
  void (*gemm)(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               bool accumulate, float* C, int ldc, int threads);
  // bf16 products on this ISA's bf16 instructions; inputs fp32 (rounded while packed) or bf16;
  // outputs fp32, or bf16 for the forward and dX. Null where the ISA has none: dispatch.cc then
  // converts and runs the fp32 entries.
  void (*bsrForwardBf16)(const BsrWeight& w, int M, Src X, int ldx, const float* bias, Dst Y, int ldy,
                         bool accumulate, int threads);
  void (*bsrBackwardDataBf16)(const BsrWeight& w, int M, Src dY, int lddy, Dst dX, int lddx, bool accumulate,
                              int threads);
  void (*bsrBackwardWeightBf16)(const BsrWeight& w, int M, Src dY, int lddy, Src X, int ldx, float* dW,
                                float* dBias, bool accumulate, int threads);
  // M, N >= 2: single-row / single-column products are memory-bound and take the fallback.
  void (*gemmBf16)(Trans ta, Trans tb, int M, int N, int K, float alpha, Src A, int lda, Src B, int ldb,
                   bool accumulate, float* C, int ldc, int threads);
  // Conversions of one range, on the calling thread.
  void (*toBf16)(const float* src, bf16* dst, size_t n);
  void (*toF32)(const bf16* src, float* dst, size_t n);
};

extern const KernelTable kPortableKernels;
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
extern const KernelTable kAvx512Bf16Kernels;
extern const KernelTable kAmxKernels;

}  // namespace kernels
}  // namespace pixelfly
