// Public kernel API: argument checks, ISA selection and thread count; the work itself is in the
// per-ISA tables (isa_kernels.cc).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "isa_table.h"

namespace pixelfly {
namespace kernels {
namespace {

bool cpuHas(Isa isa) {
  switch (isa) {
    case Isa::Portable:
      return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      // The AVX-512 unit also uses AVX2/FMA encodings for its scalar edges.
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return false;
}

Isa detectBest() {
  if (cpuHas(Isa::Avx512)) return Isa::Avx512;
  if (cpuHas(Isa::Avx2)) return Isa::Avx2;
  return Isa::Portable;
}

int hardwareThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : (int)n;
}

std::atomic<int> gIsa{(int)detectBest()};
std::atomic<int> gThreads{hardwareThreads()};

const KernelTable& table() {
  switch ((Isa)gIsa.load(std::memory_order_relaxed)) {
    case Isa::Avx512:
      return kAvx512Kernels;
    case Isa::Avx2:
      return kAvx2Kernels;
    default:
      return kPortableKernels;
  }
}

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

void requireMatrix(const char* name, const void* p, long rows, long cols, long ld) {
  if (rows < 0 || cols < 0) fail(std::string(name) + ": negative size " + std::to_string(rows) + "x" + std::to_string(cols));
  if (ld < std::max(cols, 1L))
    fail(std::string(name) + ": leading dimension " + std::to_string(ld) + " is smaller than its " + std::to_string(cols) +
         " columns");
  if (rows > 0 && cols > 0 && p == nullptr) fail(std::string(name) + ": null data for a non-empty matrix");
}

void requireWeight(const BsrWeight& w, bool needBlocks) {
  const std::string err = validateWeightShape(w.layout, w.out, w.in);
  if (!err.empty()) fail(err);
  if (w.precision != Precision::F32) fail("precision: only F32 is implemented");
  if (needBlocks && w.layout.nnz > 0 && w.blocks == nullptr) fail("blocks: null weight data");
}

}  // namespace

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "portable";
  }
}

bool parseIsa(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    if (name == isaName(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

bool isaSupported(Isa isa) { return cpuHas(isa); }
Isa bestIsa() { return detectBest(); }
Isa activeIsa() { return (Isa)gIsa.load(); }

void forceIsa(Isa isa) {
  if (!cpuHas(isa)) fail(std::string("isa: this CPU does not support ") + isaName(isa));
  gIsa.store((int)isa);
}

void setThreads(int n) {
  if (n < 1) fail("threads: must be >= 1, got " + std::to_string(n));
  gThreads.store(n);
}
int threads() { return gThreads.load(); }
int maxThreads() { return hardwareThreads(); }

void bsrForward(const BsrWeight& w, int M, const float* X, int ldx, const float* bias, float* Y, int ldy,
                bool accumulate) {
  requireWeight(w, true);
  requireMatrix("X", X, M, w.in, ldx);
  requireMatrix("Y", Y, M, w.out, ldy);
  if (M == 0) return;
  table().bsrForward(w, M, X, ldx, bias, Y, ldy, accumulate, threads());
}

void bsrBackwardData(const BsrWeight& w, int M, const float* dY, int lddy, float* dX, int lddx, bool accumulate) {
  requireWeight(w, true);
  requireMatrix("dY", dY, M, w.out, lddy);
  requireMatrix("dX", dX, M, w.in, lddx);
  if (M == 0) return;
  table().bsrBackwardData(w, M, dY, lddy, dX, lddx, accumulate, threads());
}

void bsrBackwardWeight(const BsrWeight& w, int M, const float* dY, int lddy, const float* X, int ldx, float* dW,
                       bool accumulate) {
  requireWeight(w, false);
  requireMatrix("dY", dY, M, w.out, lddy);
  requireMatrix("X", X, M, w.in, ldx);
  if (w.layout.nnz > 0 && dW == nullptr) fail("dW: null output");
  table().bsrBackwardWeight(w, M, dY, lddy, X, ldx, dW, accumulate, threads());
}

void gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc, Precision precision) {
  if (precision != Precision::F32) fail("precision: only F32 is implemented");
  if (M < 0 || N < 0 || K < 0) fail("gemm: negative size");
  requireMatrix("A", A, ta == Trans::No ? M : K, ta == Trans::No ? K : M, lda);
  requireMatrix("B", B, tb == Trans::No ? K : N, tb == Trans::No ? N : K, ldb);
  requireMatrix("C", C, M, N, ldc);
  if (M == 0 || N == 0) return;
  // The tables implement beta ∈ {0, 1}; other values scale C first.
  if (beta != 0.f && beta != 1.f)
    for (long i = 0; i < M; i++)
      for (long j = 0; j < N; j++) C[i * ldc + j] *= beta;
  table().gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta != 0.f, C, ldc, threads());
}

void denseForward(int M, int in, int out, const float* X, int ldx, const float* W, const float* bias, float* Y,
                  int ldy, bool accumulate, Precision precision) {
  gemm(Trans::No, Trans::Yes, M, out, in, 1.f, X, ldx, W, in, accumulate ? 1.f : 0.f, Y, ldy, precision);
  if (bias)
    for (long i = 0; i < M; i++)
      for (int j = 0; j < out; j++) Y[i * ldy + j] += bias[j];
}

void denseBackwardData(int M, int in, int out, const float* dY, int lddy, const float* W, float* dX, int lddx,
                       bool accumulate, Precision precision) {
  gemm(Trans::No, Trans::No, M, in, out, 1.f, dY, lddy, W, in, accumulate ? 1.f : 0.f, dX, lddx, precision);
}

void denseBackwardWeight(int M, int in, int out, const float* dY, int lddy, const float* X, int ldx, float* dW,
                         bool accumulate, Precision precision) {
  gemm(Trans::Yes, Trans::No, out, in, M, 1.f, dY, lddy, X, ldx, accumulate ? 1.f : 0.f, dW, in, precision);
}

void biasGrad(int M, int N, const float* dY, int lddy, float* db, bool accumulate) {
  requireMatrix("dY", dY, M, N, lddy);
  if (N > 0 && db == nullptr) fail("db: null output");
  if (N == 0) return;
  // Rows in chunks, each summed into its own partial row, then the partials added in chunk order:
  // parallel even for the token-mixing layers' N = 49 or the gate's N = 1 over 65536 rows (split by
  // columns, those ran on one thread). The chunks depend only on M, so the result is the same for
  // any thread count.
  const long chunks = std::max(1L, std::min(64L, ((long)M + 511) / 512));
  const long rowsPer = ((long)M + chunks - 1) / chunks;
  std::vector<float> part((size_t)(chunks * N));
  const int nt = (int)std::max(1L, std::min((long)threads(), chunks));
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (long q = 0; q < chunks; q++) {
      float* s = part.data() + q * N;
      const long i1 = std::min((long)M, (q + 1) * rowsPer);
      for (long i = q * rowsPer; i < i1; i++) {
        const float* row = dY + i * lddy;
        for (int j = 0; j < N; j++) s[j] += row[j];
      }
    }
#pragma omp for schedule(static)
    for (int j = 0; j < N; j++) {
      float t = part[j];
      for (long q = 1; q < chunks; q++) t += part[q * N + j];
      db[j] = (accumulate ? db[j] : 0.f) + t;
    }
  }
}

}  // namespace kernels
}  // namespace pixelfly
