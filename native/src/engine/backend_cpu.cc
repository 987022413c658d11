// The CPU backend's memory and products: the kernels of issue 3 (their own threads, runtime ISA
// dispatch). Its other layer operations are in cpu_layers.cc.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "backend_cpu.h"
#include "kernels/host_memory.h"
#include "kernels/kernels.h"

namespace pixelfly {

namespace {

namespace k = kernels;

k::BsrWeight bsrWeight(const BsrShape& s, const float* blocks, k::Precision p) {
  const BsrIndex& ix = *s.index;
  k::BsrWeight w;
  w.layout.block = ix.block;
  w.layout.blockRows = ix.blockRows;
  w.layout.blockCols = ix.blockCols;
  w.layout.nnz = ix.nnz;
  w.layout.rowPtr = ix.rowPtr.data();
  w.layout.colIdx = ix.colIdx.data();
  w.layout.colPtr = ix.colPtr.data();
  w.layout.rowIdx = ix.rowIdx.data();
  w.layout.tBlock = ix.tBlock.data();
  w.out = s.out;
  w.in = s.in;
  w.blocks = blocks;
  w.precision = p;
  return w;
}

}  // namespace

// The kernels' own memory (kernels/host_memory.h): 64-byte aligned, huge pages from 2 MB.
void* CpuBackend::allocBytes(size_t bytes) { return kernels::allocHost(bytes); }
void CpuBackend::freeBytes(void* p) { std::free(p); }
void CpuBackend::toDevice(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::toHost(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }

void CpuBackend::denseForward(int M, int K, int N, const float* X, const float* W, const float* bias, float* Y,
                              bool accumulate) {
  k::denseForward(M, K, N, X, K, W, bias, Y, N, accumulate, precision_);
}
void CpuBackend::denseBackwardData(int M, int K, int N, const float* dY, const float* W, float* dX, bool accumulate) {
  k::denseBackwardData(M, K, N, dY, N, W, dX, K, accumulate, precision_);
}
void CpuBackend::denseBackwardWeight(int M, int K, int N, const float* dY, const float* X, float* dW, bool accumulate) {
  k::denseBackwardWeight(M, K, N, dY, N, X, K, dW, accumulate, precision_);
}
void CpuBackend::biasGrad(int M, int N, const float* dY, float* db, bool accumulate) {
  k::biasGrad(M, N, dY, N, db, accumulate);
}
void CpuBackend::bsrForward(const BsrShape& s, int M, const float* X, const float* Wp, const float* bias, float* Y,
                            bool accumulate) {
  k::bsrForward(bsrWeight(s, Wp, precision_), M, X, s.in, bias, Y, s.out, accumulate);
}
void CpuBackend::bsrBackwardData(const BsrShape& s, int M, const float* dY, const float* Wp, float* dX, bool accumulate) {
  k::bsrBackwardData(bsrWeight(s, Wp, precision_), M, dY, s.out, dX, s.in, accumulate);
}
void CpuBackend::bsrBackwardWeight(const BsrShape& s, int M, const float* dY, const float* X, float* dWp,
                                   bool accumulate, float* dBias) {
  k::bsrBackwardWeight(bsrWeight(s, nullptr, precision_), M, dY, s.out, X, s.in, dWp, accumulate, dBias);
}
std::string CpuBackend::validate(const BsrShape& s) {
  const k::BsrWeight w = bsrWeight(s, nullptr, precision_);
  std::string err = k::validateLayout(w.layout);
  if (err.empty()) err = k::validateWeightShape(w.layout, s.out, s.in);
  return err;
}

std::shared_ptr<Backend> cpuBackend(const std::string& precision) {
  static const std::shared_ptr<Backend> fp32 = std::make_shared<CpuBackend>(k::Precision::F32);
  static const std::shared_ptr<Backend> bf16 = std::make_shared<CpuBackend>(k::Precision::BF16);
  if (precision == "fp32") return fp32;
  if (precision == "bf16") return bf16;
  throw std::invalid_argument("precision: the cpu backend computes 'fp32' or 'bf16' products, not '" + precision + "'");
}

}  // namespace pixelfly
