// Internal: the per-instruction-set kernel entry points. isa_kernels.cc is compiled once per ISA
// (binding.gyp: kernels_portable / kernels_avx2 / kernels_avx512), each defining one table; the
// public functions in dispatch.cc check arguments and call the active table.
#pragma once

#include "kernels.h"

namespace pixelfly {
namespace kernels {

struct KernelTable {
  void (*bsrForward)(const BsrWeight& w, int M, const float* X, int ldx, const float* bias, float* Y, int ldy,
                     bool accumulate, int threads);
  void (*bsrBackwardData)(const BsrWeight& w, int M, const float* dY, int lddy, float* dX, int lddx,
                          bool accumulate, int threads);
  void (*bsrBackwardWeight)(const BsrWeight& w, int M, const float* dY, int lddy, const float* X, int ldx, float* dW,
                            bool accumulate, int threads);
  // beta is 0 (overwrite) or 1 (add); dispatch.cc pre-scales C for other values.
  void (*gemm)(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               bool accumulate, float* C, int ldc, int threads);
};

extern const KernelTable kPortableKernels;
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;

}  // namespace kernels
}  // namespace pixelfly
