// Public kernel API: argument checks, ISA selection and thread count; the work itself is in the
// per-ISA tables (isa_kernels.cc). bf16 products go to the table's bf16 entries where the ISA has
// bf16 instructions, else to its fp32 entries on bf16-rounded fp32 copies of the inputs; bf16
// outputs are computed in fp32 and rounded once, here.
#include <cpuid.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "host_memory.h"
#include "isa_table.h"

namespace pixelfly {
namespace kernels {
namespace {

bool cpuHasAvx512() {
  // The AVX-512 unit also uses AVX2/FMA encodings for its scalar edges.
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool cpuHasAvx512Bf16() { return cpuHasAvx512() && __builtin_cpu_supports("avx512bf16"); }

// AMX needs the instructions (cpuid), the OS's tile state in XCR0, and (Linux 5.16+) the process's
// request for the tile data state before the first tile instruction, which would otherwise fault.
// Asked once; "" when usable.
std::string probeAmx() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 22)))
    return "this CPU has no AMX tiles with bf16 (cpuid amx_tile, amx_bf16)";
  if (!cpuHasAvx512Bf16()) return "this CPU has AMX but no avx512_bf16, which the AMX kernels' packing uses";
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return "the OS has not enabled XSAVE (no OSXSAVE)";
  unsigned lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return "the OS does not enable the AMX tile state (XCR0 bits 17-18)";
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
    return std::string("the kernel refused the AMX tile state (arch_prctl(ARCH_REQ_XCOMP_PERM): ") + std::strerror(errno) + ")";
  return "";
}

const std::string& amxReason() {
  static const std::string reason = probeAmx();
  return reason;
}

bool cpuHas(Isa isa) {
  switch (isa) {
    case Isa::Portable:
      return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      return cpuHasAvx512();
    case Isa::Avx512Bf16:
      return cpuHasAvx512Bf16();
    case Isa::Amx:
      return amxReason().empty();
  }
  return false;
}

Isa detectBest() {
  for (Isa isa : {Isa::Amx, Isa::Avx512Bf16, Isa::Avx512, Isa::Avx2})
    if (cpuHas(isa)) return isa;
  return Isa::Portable;
}

int hardwareThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : (int)n;
}

// The kernels' thread count until setThreads: OMP_NUM_THREADS when it is set, as every OpenMP
// program honours it (test runners and batch schedulers bound a process's threads with it), else
// one per hardware thread.
int defaultThreads() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (env == nullptr) return hardwareThreads();
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);  // "4" or a nested list "4,2": the outer level counts
  return end != env && n >= 1 && n <= 1024 ? (int)n : hardwareThreads();
}

std::atomic<int> gIsa{(int)detectBest()};
std::atomic<int> gThreads{defaultThreads()};

const KernelTable& table() {
  switch ((Isa)gIsa.load(std::memory_order_relaxed)) {
    case Isa::Amx:
      return kAmxKernels;
    case Isa::Avx512Bf16:
      return kAvx512Bf16Kernels;
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

void requirePrecision(Precision p) {
  if (p != Precision::F32 && p != Precision::BF16) fail("precision: must be F32 or BF16, got " + std::to_string((int)p));
}

void requireWeight(const BsrWeight& w, bool needBlocks) {
  const std::string err = validateWeightShape(w.layout, w.out, w.in);
  if (!err.empty()) fail(err);
  requirePrecision(w.precision);
  if (needBlocks && w.layout.nnz > 0 && w.blocks.data == nullptr) fail("blocks: null weight data");
}

// A bf16 product: asked for, or any input stored as bf16.
bool bf16Product(Precision p, std::initializer_list<Src> inputs) {
  if (p == Precision::BF16) return true;
  for (const Src& s : inputs)
    if (s.type == DType::BF16) return true;
  return false;
}

// ---- fp32 copies: inputs of a bf16 product where the ISA has no bf16 instructions, and fp32
// results of products whose output is bf16. Per-thread buffers that only grow (host_memory.h;
// 64-byte aligned, so large fp32 outputs are written with streaming stores).
thread_local GrowingBuffer tlsInA, tlsInB, tlsOut;

// rows × cols of `s` (ld apart) as contiguous fp32 holding bf16 values: fp32 rounded, bf16 widened.
const float* roundedCopy(const Src& s, long rows, long cols, long ld, GrowingBuffer& buf) {
  float* d = buf.get((size_t)(rows * cols));
  const KernelTable& t = table();
#pragma omp parallel for num_threads(std::max(1, std::min(threads(), (int)(rows * cols >> 16)))) schedule(static)
  for (long r = 0; r < rows; r++) {
    float* dr = d + r * cols;
    if (s.type == DType::BF16) {
      t.toF32(s.b16() + r * ld, dr, (size_t)cols);
    } else {
      const float* f = s.f32() + r * ld;
      for (long c = 0; c < cols; c++) dr[c] = bf16ToFloat(roundToBf16(f[c]));
    }
  }
  return d;
}

// Where a product writes its fp32 result: the output itself, or (bf16 output) an fp32 scratch,
// holding the widened output when the product accumulates, rounded into the output by finish().
class F32Output {
 public:
  F32Output(const Dst& out, long rows, long cols, long ld, bool accumulate) : out_(out), rows_(rows), cols_(cols), ld_(ld) {
    if (out.type == DType::F32) {
      p = out.f32();
      ldF = ld;
      return;
    }
    p = tlsOut.get((size_t)(rows * cols));
    ldF = cols;
    if (accumulate)
      for (long r = 0; r < rows; r++) table().toF32(out.b16() + r * ld, p + r * cols, (size_t)cols);
  }
  void finish() {
    if (out_.type == DType::F32) return;
    for (long r = 0; r < rows_; r++) table().toBf16(p + r * cols_, out_.b16() + r * ld_, (size_t)cols_);
  }
  float* p;
  long ldF;

 private:
  Dst out_;
  long rows_, cols_, ld_;
};

}  // namespace

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Amx:
      return "amx";
    case Isa::Avx512Bf16:
      return "avx512bf16";
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "portable";
  }
}

bool parseIsa(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16, Isa::Amx}) {
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

const char* bf16Path() {
  switch (activeIsa()) {
    case Isa::Amx:
      return "amx";
    case Isa::Avx512Bf16:
      return "avx512bf16";
    default:
      return "fp32-fallback";
  }
}

std::string amxUnavailableReason() { return amxReason(); }

void setThreads(int n) {
  if (n < 1) fail("threads: must be >= 1, got " + std::to_string(n));
  gThreads.store(n);
}
int threads() { return gThreads.load(); }
int maxThreads() { return hardwareThreads(); }

namespace {
// Splits a conversion of n values over the threads when it is long enough to pay.
template <class From, class To>
void convert(const From* src, To* dst, size_t n, void (*range)(const From*, To*, size_t)) {
  constexpr size_t kGrain = 1 << 16;
  const long chunks = (long)((n + kGrain - 1) / kGrain);
  const int nt = (int)std::max(1L, std::min((long)threads(), chunks));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (long c = 0; c < chunks; c++) {
    const size_t i0 = (size_t)c * kGrain;
    range(src + i0, dst + i0, std::min(kGrain, n - i0));
  }
}
}  // namespace

void toBf16(const float* src, bf16* dst, size_t n) { convert(src, dst, n, table().toBf16); }
void toF32(const bf16* src, float* dst, size_t n) { convert(src, dst, n, table().toF32); }

void bsrForward(const BsrWeight& w, int M, Src X, int ldx, const float* bias, Dst Y, int ldy, bool accumulate) {
  requireWeight(w, true);
  requireMatrix("X", X.data, M, w.in, ldx);
  requireMatrix("Y", Y.data, M, w.out, ldy);
  if (M == 0) return;
  const KernelTable& t = table();
  const bool bf16 = bf16Product(w.precision, {X, w.blocks});
  if (bf16 && t.bsrForwardBf16) {  // fp32 or bf16 output, written by the kernel itself
    t.bsrForwardBf16(w, M, X, ldx, bias, Y, ldy, accumulate, threads());
    return;
  }
  F32Output y(Y, M, w.out, ldy, accumulate);
  if (!bf16) {
    t.bsrForward(w, M, X.f32(), ldx, bias, y.p, (int)y.ldF, accumulate, threads());
  } else {
    const long bb = (long)w.layout.block * w.layout.block;
    BsrWeight wf = w;
    wf.blocks = roundedCopy(w.blocks, 1, w.layout.nnz * bb, w.layout.nnz * bb, tlsInB);
    t.bsrForward(wf, M, roundedCopy(X, M, w.in, ldx, tlsInA), w.in, bias, y.p, (int)y.ldF, accumulate, threads());
  }
  y.finish();
}

void bsrBackwardData(const BsrWeight& w, int M, Src dY, int lddy, Dst dX, int lddx, bool accumulate) {
  requireWeight(w, true);
  requireMatrix("dY", dY.data, M, w.out, lddy);
  requireMatrix("dX", dX.data, M, w.in, lddx);
  if (M == 0) return;
  const KernelTable& t = table();
  const bool bf16 = bf16Product(w.precision, {dY, w.blocks});
  if (bf16 && t.bsrBackwardDataBf16) {
    t.bsrBackwardDataBf16(w, M, dY, lddy, dX, lddx, accumulate, threads());
    return;
  }
  F32Output dx(dX, M, w.in, lddx, accumulate);
  if (!bf16) {
    t.bsrBackwardData(w, M, dY.f32(), lddy, dx.p, (int)dx.ldF, accumulate, threads());
  } else {
    const long bb = (long)w.layout.block * w.layout.block;
    BsrWeight wf = w;
    wf.blocks = roundedCopy(w.blocks, 1, w.layout.nnz * bb, w.layout.nnz * bb, tlsInB);
    t.bsrBackwardData(wf, M, roundedCopy(dY, M, w.out, lddy, tlsInA), w.out, dx.p, (int)dx.ldF, accumulate, threads());
  }
  dx.finish();
}

namespace {
// The dW kernels sum dY's columns strip by strip as they read them, which covers every column only
// when every block-row holds a kept block (a flat block butterfly always does: its diagonal).
bool everyBlockRowKept(const BsrLayout& L) {
  for (int r = 0; r < L.blockRows; r++)
    if (L.rowPtr[r + 1] == L.rowPtr[r]) return false;
  return L.blockRows > 0;
}
}  // namespace

void bsrBackwardWeight(const BsrWeight& w, int M, Src dY, int lddy, Src X, int ldx, Dst dW, bool accumulate,
                       float* dBias) {
  requireWeight(w, false);
  requireMatrix("dY", dY.data, M, w.out, lddy);
  requireMatrix("X", X.data, M, w.in, ldx);
  if (w.layout.nnz > 0 && dW.data == nullptr) fail("dW: null output");
  const KernelTable& t = table();
  const long n = (long)w.layout.nnz * w.layout.block * w.layout.block;
  const bool bf16 = bf16Product(w.precision, {dY, X});
  const bool bf16Converted = bf16 && !t.bsrBackwardWeightBf16;  // the kernels would see a rounded copy of dY
  float* fusedBias = dBias;
  if (dBias && (w.layout.nnz == 0 || bf16Converted || !everyBlockRowKept(w.layout))) {
    biasGrad(M, w.out, dY, lddy, dBias, accumulate);
    fusedBias = nullptr;
  }
  F32Output dw(dW, 1, n, n, accumulate);
  if (!bf16) {
    t.bsrBackwardWeight(w, M, dY.f32(), lddy, X.f32(), ldx, dw.p, fusedBias, accumulate, threads());
  } else if (!bf16Converted) {
    t.bsrBackwardWeightBf16(w, M, dY, lddy, X, ldx, dw.p, fusedBias, accumulate, threads());
  } else {
    t.bsrBackwardWeight(w, M, roundedCopy(dY, M, w.out, lddy, tlsInA), w.out, roundedCopy(X, M, w.in, ldx, tlsInB), w.in,
                        dw.p, nullptr, accumulate, threads());
  }
  dw.finish();
}

void gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, Src A, int lda, Src B, int ldb, float beta, Dst C,
          int ldc, Precision precision) {
  requirePrecision(precision);
  if (M < 0 || N < 0 || K < 0) fail("gemm: negative size");
  const long aRows = ta == Trans::No ? M : K, aCols = ta == Trans::No ? K : M;
  const long bRows = tb == Trans::No ? K : N, bCols = tb == Trans::No ? N : K;
  requireMatrix("A", A.data, aRows, aCols, lda);
  requireMatrix("B", B.data, bRows, bCols, ldb);
  requireMatrix("C", C.data, M, N, ldc);
  if (M == 0 || N == 0) return;
  const bool accumulate = beta != 0.f;
  F32Output c(C, M, N, ldc, accumulate);
  // The tables implement beta ∈ {0, 1}; other values scale C first.
  if (accumulate && beta != 1.f)
    for (long i = 0; i < M; i++)
      for (long j = 0; j < N; j++) c.p[i * c.ldF + j] *= beta;
  const KernelTable& t = table();
  if (!bf16Product(precision, {A, B})) {
    t.gemm(ta, tb, M, N, K, alpha, A.f32(), lda, B.f32(), ldb, accumulate, c.p, (int)c.ldF, threads());
  } else if (t.gemmBf16 && M > 1 && N > 1) {
    t.gemmBf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, accumulate, c.p, (int)c.ldF, threads());
  } else {  // no bf16 instructions, or a single row / column (memory-bound: rounded copies cost no more)
    const float* a = roundedCopy(A, aRows, aCols, lda, tlsInA);
    const float* b = roundedCopy(B, bRows, bCols, ldb, tlsInB);
    t.gemm(ta, tb, M, N, K, alpha, a, (int)aCols, b, (int)bCols, accumulate, c.p, (int)c.ldF, threads());
  }
  c.finish();
}

void denseForward(int M, int in, int out, Src X, int ldx, Src W, const float* bias, Dst Y, int ldy, bool accumulate,
                  Precision precision) {
  gemm(Trans::No, Trans::Yes, M, out, in, 1.f, X, ldx, W, in, accumulate ? 1.f : 0.f, Y, ldy, precision);
  if (!bias) return;
  for (long i = 0; i < M; i++) {
    if (Y.type == DType::F32) {
      float* y = Y.f32() + i * ldy;
      for (int j = 0; j < out; j++) y[j] += bias[j];
    } else {
      bf16* y = Y.b16() + i * ldy;
      for (int j = 0; j < out; j++) y[j] = roundToBf16(bf16ToFloat(y[j]) + bias[j]);
    }
  }
}

void denseBackwardData(int M, int in, int out, Src dY, int lddy, Src W, Dst dX, int lddx, bool accumulate,
                       Precision precision) {
  gemm(Trans::No, Trans::No, M, in, out, 1.f, dY, lddy, W, in, accumulate ? 1.f : 0.f, dX, lddx, precision);
}

void denseBackwardWeight(int M, int in, int out, Src dY, int lddy, Src X, int ldx, Dst dW, bool accumulate,
                         Precision precision) {
  gemm(Trans::Yes, Trans::No, out, in, M, 1.f, dY, lddy, X, ldx, accumulate ? 1.f : 0.f, dW, in, precision);
}

namespace {
inline float valueOf(float x) { return x; }
inline float valueOf(bf16 x) { return bf16ToFloat(x); }

// Rows in chunks, each summed into its own partial row, then the partials added in chunk order:
// parallel even for the token-mixing layers' N = 49 or the gate's N = 1 over 65536 rows (split by
// columns, those ran on one thread). The chunks depend only on M, so the result is the same for
// any thread count.
template <class T>
void columnSums(int M, int N, const T* dY, int lddy, float* sums) {
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
        const T* row = dY + i * lddy;
        for (int j = 0; j < N; j++) s[j] += valueOf(row[j]);
      }
    }
#pragma omp for schedule(static)
    for (int j = 0; j < N; j++) {
      float t = part[j];
      for (long q = 1; q < chunks; q++) t += part[q * N + j];
      sums[j] = t;
    }
  }
}
}  // namespace

void biasGrad(int M, int N, Src dY, int lddy, Dst db, bool accumulate) {
  requireMatrix("dY", dY.data, M, N, lddy);
  if (N > 0 && db.data == nullptr) fail("db: null output");
  if (N == 0) return;
  std::vector<float> sums((size_t)N);
  if (dY.type == DType::BF16) columnSums(M, N, dY.b16(), lddy, sums.data());
  else columnSums(M, N, dY.f32(), lddy, sums.data());
  for (int j = 0; j < N; j++) {
    if (db.type == DType::F32) db.f32()[j] = (accumulate ? db.f32()[j] : 0.f) + sums[j];
    else db.b16()[j] = roundToBf16((accumulate ? bf16ToFloat(db.b16()[j]) : 0.f) + sums[j]);
  }
}

}  // namespace kernels
}  // namespace pixelfly
