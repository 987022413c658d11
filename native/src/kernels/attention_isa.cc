// The attention kernels' loops, compiled once per instruction set (PIXELFLY_ISA = 0 portable, 1 AVX2,
// 2 AVX-512; binding.gyp's kernels_* libraries), with GCC vector extensions as in isa_kernels.cc.
//
// Flash-attention style on the CPU, over the kept score blocks only:
//  - operands are first packed per (batch, head) into contiguous, zero-padded panels: q pre-scaled,
//    kᵀ (and vᵀ for the backward) one key block at a time, v and k as rows; the head dimension is
//    padded to whole vectors, so every product below is a register-blocked tile over contiguous rows;
//  - forward, one work item per (batch, head, query block): for each kept key block, the block×block
//    scores S = Q·Kᵀ, causal / padding masks (−∞), the online softmax (running row max m and sum l,
//    the output block rescaled by e^(m_old − m_new)), then O += P·V; at the end o = O / l and
//    lse = m + log l. No T×T array exists anywhere;
//  - backward, one work item per (batch, head), walking key blocks (the layout's transposed view) so
//    dK and dV of a key block are finished before the next: P = e^(S − lse) is recomputed, and
//    dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − rowsum(dO∘O)), dQ += dS·K (a per-head accumulator),
//    dK += dSᵀ·Q. Five block products per kept block, as FlashAttention-2.
// Work items never share an output, so results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "attention_table.h"
#include "host_memory.h"

#if PIXELFLY_ISA == 2
#define ATT_TABLE kAvx512Attention
#define ATT_NS att_avx512
#elif PIXELFLY_ISA == 1
#define ATT_TABLE kAvx2Attention
#define ATT_NS att_avx2
#else
#define ATT_TABLE kPortableAttention
#define ATT_NS att_portable
#endif

namespace pixelfly {
namespace kernels {
namespace ATT_NS {
namespace {

#if PIXELFLY_ISA == 2
constexpr int VL = 16;   // floats per zmm
constexpr int NVMAX = 4; // tile 6×64: 24 accumulators + 4 b vectors + a broadcast of 32 zmm
#else
constexpr int VL = PIXELFLY_ISA == 1 ? 8 : 4;
constexpr int NVMAX = 2; // tile 6×(2 vectors): 12 accumulators of 16 ymm / xmm
#endif
constexpr int MR = 6;

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline vf loadu(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeu(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf bcast(float x) { return x - vf{}; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline float hmax(vf v) {
  float m = v[0];
  for (int i = 1; i < VL; i++) m = std::max(m, v[i]);
  return m;
}
inline float hsum(vf v) {
  float s = 0.f;
  for (int i = 0; i < VL; i++) s += v[i];
  return s;
}

// e^x for x ≤ 0 (and −∞ → 0): the Cephes expf polynomial of engine/fastmath.h on whole vectors;
// below −87 the result is exactly 0 (masked scores, the first block's rescale from m = −∞).
inline vf vexp(vf x) {
  const vf lo = bcast(-87.0f);
  const vi dead = x < lo;
  x = dead ? lo : x;
  const vf t = x * 1.44269504088896341f;
  const vi fi = __builtin_convertvector(t - 0.5f, vi);  // round to nearest for t ≤ 0
  const vf fn = __builtin_convertvector(fi, vf);
  const vf r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
  vf p = bcast(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vi bits = (fi + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return dead ? vf{} : p * scale;
}

// ---------------------------------------------------------------------------------------------
// Scratch: per-thread buffers that only grow (host_memory.h).
// ---------------------------------------------------------------------------------------------
thread_local GrowingBuffer tlsHead;   // a backward item's transposed blocks, dQ and row terms
thread_local GrowingBuffer tlsBlock;  // a work item's score and output tiles
thread_local GrowingBuffer tlsShared; // the forward's packed operands of every head (the calling thread's)

// ---------------------------------------------------------------------------------------------
// Tiles: C[rows × NV·VL] (=|+=) Σ_k A(i, k)·B[k][0 : NV·VL], with A(i, k) = a[i·ars + k·aks] broadcast
// (so Aᵀ costs nothing: swap the strides) and B rows ldb apart.
// ---------------------------------------------------------------------------------------------
template <int R, int NV>
inline void tile(int K, const float* a, long ars, long aks, const float* b, long ldb, float* c, long ldc, bool accumulate) {
  vf s[R][NV];
#pragma GCC unroll 8
  for (int i = 0; i < R; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) s[i][v] = vf{};
  for (int k = 0; k < K; k++) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) bv[v] = loadu(b + k * ldb + v * VL);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
      const vf ai = bcast(a[i * ars + k * aks]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) s[i][v] += ai * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      float* p = c + i * ldc + v * VL;
      storeu(p, accumulate ? loadu(p) + s[i][v] : s[i][v]);
    }
}

template <int NV>
inline void tileRows(int rows, int K, const float* a, long ars, long aks, const float* b, long ldb, float* c, long ldc,
                     bool acc) {
  switch (rows) {
    case 6: return tile<6, NV>(K, a, ars, aks, b, ldb, c, ldc, acc);
    case 5: return tile<5, NV>(K, a, ars, aks, b, ldb, c, ldc, acc);
    case 4: return tile<4, NV>(K, a, ars, aks, b, ldb, c, ldc, acc);
    case 3: return tile<3, NV>(K, a, ars, aks, b, ldb, c, ldc, acc);
    case 2: return tile<2, NV>(K, a, ars, aks, b, ldb, c, ldc, acc);
    default: return tile<1, NV>(K, a, ars, aks, b, ldb, c, ldc, acc);
  }
}

// C[M×N] (=|+=) A[M×K]·B[K×N] for N a multiple of VL (block sizes and padded head dimensions are).
inline void product(int M, int N, int K, const float* a, long ars, long aks, const float* b, long ldb, float* c, long ldc,
                    bool acc) {
  for (int n0 = 0; n0 < N; n0 += NVMAX * VL) {
    const int nv = std::min(NVMAX, (N - n0) / VL);
    for (int m0 = 0; m0 < M; m0 += MR) {
      const int rows = std::min(MR, M - m0);
      const float* ap = a + m0 * ars;
      float* cp = c + m0 * ldc + n0;
      switch (nv) {
#if PIXELFLY_ISA == 2
        case 4: tileRows<4>(rows, K, ap, ars, aks, b + n0, ldb, cp, ldc, acc); break;
        case 3: tileRows<3>(rows, K, ap, ars, aks, b + n0, ldb, cp, ldc, acc); break;
#endif
        case 2: tileRows<2>(rows, K, ap, ars, aks, b + n0, ldb, cp, ldc, acc); break;
        default: tileRows<1>(rows, K, ap, ars, aks, b + n0, ldb, cp, ldc, acc); break;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Packing (zero padding past T rows and past headDim features).
// ---------------------------------------------------------------------------------------------
struct Geometry {
  int T, d, dp, block, nb, Tp;
  explicit Geometry(const AttentionProblem& p)
      : T(p.shape.T), d(p.shape.headDim), dp((p.shape.headDim + VL - 1) / VL * VL), block(p.layout.block),
        nb(p.layout.blockRows), Tp(p.layout.blockRows * p.layout.block) {}
};

// dst[t][e] = scale·src(t, e): rows t0 .. t0+rows of a head.
inline void packRows(float* dst, const Heads& src, int b, int h, int t0, int rows, const Geometry& g, float scale) {
  for (int t = 0; t < rows; t++) {
    float* d = dst + (long)t * g.dp;
    if (t0 + t < g.T) {
      const float* s = src.row(b, h, t0 + t);
      for (int e = 0; e < g.d; e++) d[e] = scale * s[e];
      for (int e = g.d; e < g.dp; e++) d[e] = 0.f;
    } else {
      std::memset(d, 0, g.dp * sizeof(float));
    }
  }
}

// A head's rows as a product operand: the caller's rows in place when the head dimension is whole
// vectors (tiles then never read past a row's features, and the products stop at T), else a
// zero-padded copy.
struct Rows {
  const float* p;
  long ld;
  const float* row(int t) const { return p + t * ld; }
};
inline Rows rowsOf(const Heads& src, int b, int h, const Geometry& g, GrowingBuffer& copy) {
  if (g.d == g.dp) return {src.row(b, h, 0), (long)src.rowStride};
  float* dst = copy.get((size_t)g.Tp * g.dp);
  packRows(dst, src, b, h, 0, g.Tp, g, 1.f);
  return {dst, (long)g.dp};
}

// In-register transpose of VL×VL floats: at each step, swap the off-diagonal s×s sub-blocks of every
// 2s×2s tile (the shuffle masks fold to constants).
template <int S>
inline void transposeStep(vf (&v)[VL]) {
  vi lo, hi;  // lane l of the new first / second row (indices >= VL pick from the second operand)
  for (int l = 0; l < VL; l++) {
    lo[l] = (l & S) ? VL + l - S : l;
    hi[l] = (l & S) ? VL + l : l + S;
  }
  for (int i = 0; i < VL; i++) {
    if (i & S) continue;
    const vf a = v[i], c = v[i + S];
    v[i] = __builtin_shuffle(a, c, lo);
    v[i + S] = __builtin_shuffle(a, c, hi);
  }
}

inline void transposeTile(vf (&v)[VL]) {
  if (VL > 8) transposeStep<VL / 2 >= 8 ? 8 : 1>(v);
  if (VL > 4) transposeStep<VL / 2 >= 4 ? 4 : 1>(v);
  transposeStep<2>(v);
  transposeStep<1>(v);
}

// dst[c][e][j] = scale·src(c·block + j, e) for every key block c: the operand of S = Q·Kᵀ (and
// dP = dO·Vᵀ). VL×VL tiles transposed in registers; tiles that reach past T or headDim go through a
// zero-padded copy.
inline void packTransposedBlocks(float* dst, const Heads& src, int b, int h, const Geometry& g, float scale) {
  const vf sv = bcast(scale);
  const long per = (long)g.dp * g.block;
  for (int t0 = 0; t0 < g.Tp; t0 += VL) {
    float* d = dst + (t0 / g.block) * per + t0 % g.block;
    for (int e0 = 0; e0 < g.dp; e0 += VL) {
      vf v[VL];
      const bool full = t0 + VL <= g.T && e0 + VL <= g.d;
      for (int i = 0; i < VL; i++) {
        if (full) {
          v[i] = loadu(src.row(b, h, t0 + i) + e0);
        } else {
          float row[VL] = {};
          if (t0 + i < g.T)
            for (int e = e0; e < std::min(g.d, e0 + VL); e++) row[e - e0] = src.row(b, h, t0 + i)[e];
          v[i] = loadu(row);
        }
      }
      transposeTile(v);
      for (int e = 0; e < VL; e++) storeu(d + (long)(e0 + e) * g.block, v[e] * sv);
    }
  }
}

// −∞ at the scores a query must not see: keys past T (the last block's padding) and, in a causal
// diagonal block, keys after the query. S has `rows` valid rows of `block` scores.
inline void maskScores(float* S, int rows, int r, int c, const Geometry& g, bool causal) {
  const int validCols = std::min(g.block, g.T - c * g.block);
  const bool diag = causal && r == c;
  if (validCols == g.block && !diag) return;
  for (int i = 0; i < rows; i++) {
    const int from = diag ? std::min(i + 1, validCols) : validCols;
    float* row = S + (long)i * g.block;
    for (int j = from; j < g.block; j++) row[j] = kNegInf;
  }
}

inline int validIn(int blockIndex, const Geometry& g) { return std::min(g.block, g.T - blockIndex * g.block); }

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------
void forward(const AttentionProblem& p, int threads) {
  const Geometry g(p);
  const AttentionShape& s = p.shape;
  const BsrLayout& L = p.layout;
  const int heads = s.batch * s.heads;
  const long headFloats = (long)g.Tp * g.dp;
  const bool copyRows = g.d != g.dp;
  // Every head's kᵀ blocks (pre-scaled), and v rows when they need padding, shared by the items.
  float* kv = tlsShared.get((size_t)heads * headFloats * (copyRows ? 2 : 1));
  const long items = (long)heads * g.nb;
#pragma omp parallel num_threads(std::max(1, (int)std::min<long>(threads, items)))
  {
#pragma omp for schedule(static)
    for (int bh = 0; bh < heads; bh++) {
      const int b = bh / s.heads, h = bh % s.heads;
      packTransposedBlocks(kv + bh * headFloats, p.k, b, h, g, s.scale);
      if (copyRows) packRows(kv + (heads + bh) * headFloats, p.v, b, h, 0, g.Tp, g, 1.f);
    }
    const int B = g.block, dp = g.dp;
    float* Qc = tlsBlock.get((size_t)B * dp * 2 + (size_t)B * B + 2 * B);
    float* O = Qc + (long)B * dp;
    float* S = O + (long)B * dp;
    float* m = S + (long)B * B;
    float* l = m + B;
    // Later query blocks of a causal layout keep more blocks: hand out the items largest first.
#pragma omp for schedule(dynamic, 1)
    for (long item = 0; item < items; item++) {
      const int bh = (int)(item % heads), r = g.nb - 1 - (int)(item / heads);
      const int b = bh / s.heads, h = bh % s.heads, rows = validIn(r, g);
      const float* Kt = kv + bh * headFloats;
      const Rows V = copyRows ? Rows{kv + (heads + bh) * headFloats, dp} : Rows{p.v.row(b, h, 0), (long)p.v.rowStride};
      Rows Q{p.q.row(b, h, r * B), (long)p.q.rowStride};
      if (copyRows) {
        packRows(Qc, p.q, b, h, r * B, rows, g, 1.f);
        Q = {Qc, dp};
      }
      std::memset(O, 0, (size_t)B * dp * sizeof(float));
      for (int i = 0; i < rows; i++) m[i] = kNegInf, l[i] = 0.f;
      for (int kb = L.rowPtr[r]; kb < L.rowPtr[r + 1]; kb++) {
        const int c = L.colIdx[kb];
        product(rows, B, dp, Q.p, Q.ld, 1, Kt + (long)c * dp * B, B, S, B, false);
        maskScores(S, rows, r, c, g, s.causal);
        for (int i = 0; i < rows; i++) {
          float* row = S + (long)i * B;
          vf mx = bcast(kNegInf);
          for (int j = 0; j < B; j += VL) mx = vmax(mx, loadu(row + j));
          const float mNew = std::max(m[i], hmax(mx));
          const vf mv = bcast(mNew);
          vf sum = vf{};
          for (int j = 0; j < B; j += VL) {
            const vf e = vexp(loadu(row + j) - mv);
            storeu(row + j, e);
            sum += e;
          }
          const float alpha = m[i] == mNew ? 1.f : m[i] == kNegInf ? 0.f : std::exp(m[i] - mNew);
          l[i] = l[i] * alpha + hsum(sum);
          m[i] = mNew;
          if (alpha != 1.f) {
            float* o = O + (long)i * dp;
            const vf av = bcast(alpha);
            for (int e = 0; e < dp; e += VL) storeu(o + e, loadu(o + e) * av);
          }
        }
        product(rows, dp, validIn(c, g), S, B, 1, V.row(c * B), V.ld, O, dp, true);
      }
      float* lse = p.lseOut + (long)bh * g.T;
      for (int i = 0; i < rows; i++) {
        const int t = r * B + i;
        float* o = p.oOut.row(b, h, t);
        const float inv = 1.f / l[i];
        for (int e = 0; e < g.d; e++) o[e] = O[(long)i * dp + e] * inv;
        lse[t] = m[i] + std::log(l[i]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------
thread_local GrowingBuffer tlsQ, tlsDO, tlsK;  // padded row copies (head dimensions that are not whole vectors)

void backward(const AttentionProblem& p, int threads) {
  const Geometry g(p);
  const AttentionShape& s = p.shape;
  const BsrLayout& L = p.layout;
  const int heads = s.batch * s.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, std::min(threads, heads)))
  for (int bh = 0; bh < heads; bh++) {
    const int b = bh / s.heads, h = bh % s.heads;
    const int B = g.block, dp = g.dp;
    const long hf = (long)g.Tp * dp;
    float* Kt = tlsHead.get((size_t)hf * 3 + 2 * (size_t)g.Tp);
    float* Vt = Kt + hf;
    float* dQ = Vt + hf;
    float* lse = dQ + hf;
    float* rowDot = lse + g.Tp;
    const Rows Q = rowsOf(p.q, b, h, g, tlsQ), dO = rowsOf(p.dO, b, h, g, tlsDO), K = rowsOf(p.k, b, h, g, tlsK);
    packTransposedBlocks(Kt, p.k, b, h, g, s.scale);
    packTransposedBlocks(Vt, p.v, b, h, g, 1.f);
    std::memset(dQ, 0, hf * sizeof(float));
    const float* lseIn = p.lse + (long)bh * g.T;
    for (int t = 0; t < g.T; t++) {
      const float* o = p.o.row(b, h, t);
      const float* d = p.dO.row(b, h, t);
      vf acc = vf{};
      int e = 0;
      for (; e + VL <= g.d; e += VL) acc += loadu(o + e) * loadu(d + e);
      float tail = 0.f;
      for (; e < g.d; e++) tail += o[e] * d[e];
      rowDot[t] = hsum(acc) + tail - (p.dlse ? p.dlse[(long)bh * g.T + t] : 0.f);
      lse[t] = lseIn[t];
    }
    float* P = tlsBlock.get((size_t)B * B * 2 + (size_t)B * dp * 2);
    float* dS = P + (long)B * B;
    float* dK = dS + (long)B * B;
    float* dV = dK + (long)B * dp;
    for (int c = 0; c < g.nb; c++) {
      std::memset(dK, 0, (size_t)B * dp * 2 * sizeof(float));
      const float* Ktc = Kt + (long)c * dp * B;
      const float* Vtc = Vt + (long)c * dp * B;
      const int cols = validIn(c, g);
      for (int t = L.colPtr[c]; t < L.colPtr[c + 1]; t++) {
        const int r = L.rowIdx[t], rows = validIn(r, g);
        const float* Qr = Q.row(r * B);
        const float* dOr = dO.row(r * B);
        product(rows, B, dp, Qr, Q.ld, 1, Ktc, B, P, B, false);
        maskScores(P, rows, r, c, g, s.causal);
        for (int i = 0; i < rows; i++) {
          float* row = P + (long)i * B;
          const vf lv = bcast(lse[r * B + i]);
          for (int j = 0; j < B; j += VL) storeu(row + j, vexp(loadu(row + j) - lv));
        }
        product(cols, dp, rows, P, 1, B, dOr, dO.ld, dV, dp, true);  // dV += Pᵀ·dO
        product(rows, B, dp, dOr, dO.ld, 1, Vtc, B, dS, B, false);   // dP = dO·Vᵀ
        for (int i = 0; i < rows; i++) {
          float* ds = dS + (long)i * B;
          const float* pr = P + (long)i * B;
          const vf dv = bcast(rowDot[r * B + i]);
          for (int j = 0; j < B; j += VL) storeu(ds + j, loadu(pr + j) * (loadu(ds + j) - dv));
        }
        product(rows, dp, cols, dS, B, 1, K.row(c * B), K.ld, dQ + (long)r * B * dp, dp, true);  // dQ += dS·K
        product(cols, dp, rows, dS, 1, B, Qr, Q.ld, dK, dp, true);                                // dK += dSᵀ·Q
      }
      for (int j = 0; j < cols; j++) {
        float* dk = p.dk.row(b, h, c * B + j);
        float* dv = p.dv.row(b, h, c * B + j);
        for (int e = 0; e < g.d; e++) dk[e] = dK[(long)j * dp + e] * s.scale;
        std::memcpy(dv, dV + (long)j * dp, g.d * sizeof(float));
      }
    }
    for (int t = 0; t < g.T; t++) {
      float* dq = p.dq.row(b, h, t);
      for (int e = 0; e < g.d; e++) dq[e] = dQ[(long)t * dp + e] * s.scale;
    }
  }
}

}  // namespace
}  // namespace ATT_NS

const AttentionTable ATT_TABLE = {ATT_NS::forward, ATT_NS::backward};

}  // namespace kernels
}  // namespace pixelfly
