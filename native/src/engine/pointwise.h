// The engine's elementwise and per-row loops (GELU, LayerNorm, residual adds, the Pixelfly gate and
// lerp), each compiled for AVX-512, AVX2+FMA and baseline x86-64 (GCC target_clones; the dynamic
// loader picks one per CPU). Built only for baseline x86-64 these loops ran on SSE and cost more
// than the Mixer's matmuls: GELU alone was a fifth of a Pixelfly step.
//
// Every function works on a range and is single-threaded; callers split the work with
// parallelRanges() below. The vector code must stay outside OpenMP regions, whose outlined bodies
// target_clones would not clone. Splits depend only on sizes and the thread count, so results are
// deterministic for a given thread count.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

// A function compiled for AVX-512, AVX2+FMA and baseline x86-64, one picked per CPU at load.
#define PIXELFLY_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

namespace pixelfly {
namespace pointwise {

// f(begin, end) over [0, n) in chunks of `grain`, on the engine's OpenMP threads.
template <class F>
void parallelRanges(int64_t n, int64_t grain, F f) {
  const int64_t chunks = (n + grain - 1) / grain;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; c++) f(c * grain, std::min(n, (c + 1) * grain));
}

// Exact (erf) GELU as torch.nn.GELU(): y = x·Φ(x); dx = dy·(Φ(x) + x·φ(x)).
void geluForward(const float* x, float* y, int64_t n);
void geluBackward(const float* x, const float* dy, float* dx, int64_t n);

// y = a + b; y += a.
void add(const float* a, const float* b, float* y, int64_t n);
void addTo(float* y, const float* a, int64_t n);

// out[r] += Σ_c a[r][c] for rows r of a [rows × cols] matrix (bias gradients along rows).
void addRowSums(const float* a, int rows, int cols, float* out);

// LayerNorm over rows [r0, r1) of D features (eps 1e-5, as torch): y = (x − μ)·rstd·g + b; keeps μ, rstd.
void layerNormForward(const float* x, int D, const float* g, const float* b, float* y, float* mean, float* rstd,
                      int r0, int r1);
// dx for rows [r0, r1).
void layerNormBackwardData(const float* x, const float* dy, int D, const float* g, const float* mean,
                            const float* rstd, float* dx, int r0, int r1);
// dg, db (+=) over all `rows` rows, for feature columns [c0, c1): columns split across threads keep
// the row order of the sums fixed.
void layerNormParamGrads(const float* x, const float* dy, int rows, int D, const float* mean, const float* rstd,
                         float* dg, float* db, int c0, int c1);

// Pixelfly gate, rows [r0, r1) (see PixelflyLinear in modules.cc):
//   gate[m] = sigmoid(x_m·gw + gb),  hs_m = gate[m]·h_m,  and when xs is not null xs_m = (1 − gate[m])·x_m
void pixelflyGate(const float* x, int in, const float* gw, float gb, const float* h, int rank, float* gate, float* hs,
                  float* xs, int r0, int r1);

// y_m = (1 − gate[m])·y_m + bias + hs_m·Ut, rows [r0, r1) of `out` columns: y holds the sparse
// output on entry, hs = g∘h and Ut = Uᵀ (rank × out), so this finishes the lerp in one pass.
// bias may be null.
void pixelflyLerpRows(float* y, int out, const float* gate, const float* bias, const float* hs, const float* Ut,
                      int rank, int r0, int r1);

// Pixelfly mix, backward, rows [r0, r1). On entry dx holds dy·W (the sparse branch's input
// gradient, unscaled) and dh holds dy·U. With s = x·Wᵀ and l = h·Uᵀ, dy·s = x·(dy·W) and
// dy·l = (dy·U)·h, so the gate's gradient needs neither s nor l stored:
//   dz[m] = g(1 − g)·(dh_m·h_m − x_m·dx_m)
//   dh_m  = g·dh_m
//   dx_m  = (1 − g)·dx_m + dz[m]·gw + dh_m·V      (V is the low-rank factor, rank × in)
//   dgw  += dz[m]·x_m                             (dgw: this thread's partial sum)
void pixelflyMixBackward(const float* x, int in, const float* gw, const float* V, const float* h, int rank,
                         const float* gate, float* dx, float* dh, float* dz, float* dgw, int r0, int r1);

// The low-rank factor U's two backward products in one pass over the M×out gradient, rows [r0, r1):
//   dh_m  = dy_m·U                    (overwritten; dh is M × rank)
//   dUp  += Σ_m dy_mᵀ ⊗ hs_m           (dUp: this chunk's partial sum)
// U and dUp are out × RP, RP = kLowRankWidth·⌈rank / kLowRankWidth⌉, zero beyond `rank` (U padded by
// the caller); hs is M × rank. Computed as two GEMMs they read dy twice and ran at a fifth of the
// FLOP rate of wide products (skinny: one side is `rank` wide); here each dy value, loaded once,
// feeds both, with four rows' dh and one row of dUp per rank slice held in registers.
constexpr int kLowRankWidth = 16;
void lowRankBackward(const float* dy, int out, const float* Up, int RP, const float* hs, int rank, float* dh,
                     float* dUp, int r0, int r1);

// Inline vector helpers for the cloned loops (here and in performer.cc): each clone compiles them
// for its own instruction set.

// kLowRankWidth floats: one AVX-512 register, two AVX2 ones or four SSE ones in the clones.
typedef float LowRankVec __attribute__((vector_size(kLowRankWidth * sizeof(float))));

// By reference, not by value: a 64-byte vector return would change the ABI of the non-AVX-512 clones.
inline __attribute__((always_inline)) void loadVec(LowRankVec& v, const float* p) { __builtin_memcpy(&v, p, sizeof v); }
inline __attribute__((always_inline)) void storeVec(float* p, const LowRankVec& v) { __builtin_memcpy(p, &v, sizeof v); }

// Rows r = 0 .. MB−1 of dst (ld apart) += Σ_k c[r·ldc + k]·B[k·ldb + 0..n): a rank-r product added
// in place, each slice of B read once for MB rows (row by row, B's rank × n floats came from L2 for
// every row). Each element still adds its terms in k order.
template <int MB>
inline __attribute__((always_inline)) void addRankRows(float* dst, size_t ld, const float* c, size_t ldc, const float* B, size_t ldb,
                                                       int rank, int n) {
  int j = 0;
  for (; j + kLowRankWidth <= n; j += kLowRankWidth) {
    LowRankVec acc[MB];
    for (int r = 0; r < MB; r++) loadVec(acc[r], dst + r * ld + j);
    for (int k = 0; k < rank; k++) {
      LowRankVec b;
      loadVec(b, B + k * ldb + j);
      for (int r = 0; r < MB; r++) acc[r] += c[r * ldc + k] * b;
    }
    for (int r = 0; r < MB; r++) storeVec(dst + r * ld + j, acc[r]);
  }
  for (; j < n; j++)
    for (int r = 0; r < MB; r++) {
      float a = dst[r * ld + j];
      for (int k = 0; k < rank; k++) a += c[r * ldc + k] * B[k * ldb + j];
      dst[r * ld + j] = a;
    }
}

// addRankRows over rows [r0, r1) of dst and c, four at a time: dst (rows × n) += c (rows × rank)·B
// (rank × n), every matrix row-major with its own row stride.
inline __attribute__((always_inline)) void addRankRowRange(float* dst, size_t ld, const float* c, size_t ldc, const float* B,
                                                           size_t ldb, int rank, int n, int r0, int r1) {
  int m = r0;
  for (; m + 4 <= r1; m += 4) addRankRows<4>(dst + m * ld, ld, c + m * ldc, ldc, B, ldb, rank, n);
  for (; m < r1; m++) addRankRows<1>(dst + m * ld, ld, c + m * ldc, ldc, B, ldb, rank, n);
}

// dst_m = (1 − gate[m])·a_m for rows [r0, r1) of n columns.
void scaleRowsOneMinus(const float* a, int n, const float* gate, float* dst, int r0, int r1);

}  // namespace pointwise
}  // namespace pixelfly
