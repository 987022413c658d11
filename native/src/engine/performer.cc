#include "performer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "fastmath.h"
#include "pointwise.h"

namespace pixelfly {

namespace {

// One work item: a head of one sequence. Token t's q, k and v are at q/k/v + t·stride (slices of
// the qkv rows), its output (and output gradient) at o + t·oStride.
struct Item {
  const float *q, *k, *v;
  int64_t stride;
  int64_t oStride;
};

struct Sizes {
  int T, m, hd, bs, n;
  float rootScale;  // scale^½: x′ = x·scale^½ in (A5)
  float halfLogM;   // log(m)/2
};

Sizes sizesOf(int T, int m, int hd, int bs, int n) {
  return {T, m, hd, bs, n, std::sqrt(1.0f / std::sqrt(static_cast<float>(hd))), 0.5f * std::log(static_cast<float>(m))};
}

// Items per parallel chunk: one chunk per thread, so each thread makes its scratch once a call.
int64_t itemsPerThread(size_t items) {
  const int64_t threads = std::max(1, omp_get_max_threads());
  return std::max<int64_t>(1, (static_cast<int64_t>(items) + threads - 1) / threads);
}

// log φ of tokens [0, T) (A5) into out (T × m): [ω·x′, −ω·x′] − |x′|²/2 − log(m)/2 with x′ = x·scale^½.
// The dot products of every token with the m/2 projections are one product, x (T × hd) times
// wT = scale^½·ωᵀ (hd × m/2), in out's first halves.
inline __attribute__((always_inline)) void logFeatureRows(const float* wT, const Sizes& s, const float* x, int64_t stride, float* out) {
  const int m = s.m, half = m / 2, hd = s.hd;
  for (int t = 0; t < s.T; t++) std::fill(out + static_cast<size_t>(t) * m, out + static_cast<size_t>(t) * m + half, 0.0f);
  pointwise::addRankRowRange(out, m, x, stride, wT, half, hd, half, 0, s.T);
  for (int t = 0; t < s.T; t++) {
    const float* xt = x + t * stride;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int c = 0; c < hd; c++) sq += xt[c] * xt[c];
    const float diag = 0.5f * s.rootScale * s.rootScale * sq + s.halfLogM;
    float* o = out + static_cast<size_t>(t) * m;
#pragma omp simd
    for (int r = 0; r < half; r++) {
      const float d = o[r];
      o[r + half] = -d - diag;
      o[r] = d - diag;
    }
  }
}

// φ′ = e^{log φ − shift} over n values (shift ≥ every value: the arguments are ≤ 0).
inline __attribute__((always_inline)) void expShifted(float* x, int64_t n, float shift) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) x[i] = expNonPositive(x[i] - shift);
}

// dst (cols × rows) = srcᵀ, src rows × cols with row stride ld.
inline __attribute__((always_inline)) void transpose(const float* src, size_t ld, int rows, int cols, float* dst) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) dst[static_cast<size_t>(j) * rows + i] = src[i * ld + j];
}

// Sums of n blocks of `width` floats over the dropped (query block I, key block J) pairs: per query
// block the sum of its dropped key blocks' (forward), or per key block the sum of the query blocks
// that drop it (`toKeys`: the backward's transpose). dst is overwritten.
inline __attribute__((always_inline)) void sumOverDropped(const char* dropped, int n, size_t width, const float* src, float* dst, bool toKeys) {
  std::fill(dst, dst + static_cast<size_t>(n) * width, 0.0f);
  for (int I = 0; I < n; I++)
    for (int J = 0; J < n; J++) {
      if (!dropped[static_cast<size_t>(I) * n + J]) continue;
      float* d = dst + static_cast<size_t>(toKeys ? J : I) * width;
      const float* a = src + static_cast<size_t>(toKeys ? I : J) * width;
#pragma omp simd
      for (size_t e = 0; e < width; e++) d[e] += a[e];
    }
}

// Scratch of one thread: a block's worth of rows (bs tokens) of each kind the products need.
struct Scratch {
  std::vector<float> kv, ks;      // n × m × hd, n × m: per key block sums (forward), or their gradients (backward)
  std::vector<float> kvQ, ksQ;    // the same sizes: the backward's gradients of each query block's sums
  std::vector<float> phiT;        // m × bs: a block's features, transposed
  std::vector<float> sumsT;       // hd × m: a block's kv sums (or their gradient), transposed
  std::vector<float> du, dphi, dd, dz;  // bs × hd, bs × m, bs × m/2, bs
  Scratch(const Sizes& s, bool backward)
      : kv(static_cast<size_t>(s.n) * s.m * s.hd), ks(static_cast<size_t>(s.n) * s.m), kvQ(backward ? kv.size() : 0),
        ksQ(backward ? ks.size() : 0), phiT(static_cast<size_t>(s.m) * s.bs), sumsT(static_cast<size_t>(s.hd) * s.m),
        du(backward ? static_cast<size_t>(s.bs) * s.hd : 0), dphi(backward ? static_cast<size_t>(s.bs) * s.m : 0),
        dd(backward ? static_cast<size_t>(s.bs) * (s.m / 2) : 0), dz(backward ? s.bs : 0) {}
};

// The forward of one item: features (pq, pk: T × m, shifted), the per-query-block sums over dropped
// key blocks (kvc: n × m × hd, kc: n × m), u (T × hd), the weights ws, wl (T); o (the sparse output on
// entry) becomes (A4)'s.
PIXELFLY_CLONES void forwardItem(const float* wT, const Sizes& s, const Item& it, const float* lse, const char* dropped, float* o, float* pq,
                                 float* pk, float* sq, float* kvc, float* kc, float* u, float* ws, float* wl, Scratch& sc) {
  const int T = s.T, m = s.m, hd = s.hd, n = s.n, bs = s.bs;
  logFeatureRows(wT, s, it.q, it.stride, pq);
  logFeatureRows(wT, s, it.k, it.stride, pk);
  for (int t = 0; t < T; t++) {
    float* fq = pq + static_cast<size_t>(t) * m;
    sq[t] = *std::max_element(fq, fq + m);
    expShifted(fq, m, sq[t]);
  }
  const float shiftK = *std::max_element(pk, pk + static_cast<size_t>(T) * m);
  expShifted(pk, static_cast<int64_t>(T) * m, shiftK);
  // Per key block J: kv_J = φ(K_J)ᵀ·V_J (m × hd) and ks_J = φ(K_J)ᵀ·1.
  float* kv = sc.kv.data();
  float* ks = sc.ks.data();
  for (int J = 0; J < n; J++) {
    const int t0 = J * bs, tn = std::max(0, std::min(bs, T - t0));
    float* kvJ = kv + static_cast<size_t>(J) * m * hd;
    float* ksJ = ks + static_cast<size_t>(J) * m;
    transpose(pk + static_cast<size_t>(t0) * m, m, tn, m, sc.phiT.data());
    std::fill(kvJ, kvJ + static_cast<size_t>(m) * hd, 0.0f);
    pointwise::addRankRowRange(kvJ, hd, sc.phiT.data(), tn, it.v + t0 * it.stride, it.stride, tn, hd, 0, m);
    for (int r = 0; r < m; r++) {
      const float* row = sc.phiT.data() + static_cast<size_t>(r) * tn;
      float a = 0.0f;
#pragma omp simd reduction(+ : a)
      for (int t = 0; t < tn; t++) a += row[t];
      ksJ[r] = a;
    }
  }
  sumOverDropped(dropped, n, static_cast<size_t>(m) * hd, kv, kvc, false);
  sumOverDropped(dropped, n, m, ks, kc, false);
  // u_t = φ(q_t)·kvc_I for the query block I of t: per block, (bs × m)·(m × hd).
  std::fill(u, u + static_cast<size_t>(T) * hd, 0.0f);
  for (int I = 0; I < n; I++) {
    const int t0 = I * bs, tn = std::max(0, std::min(bs, T - t0));
    pointwise::addRankRowRange(u + static_cast<size_t>(t0) * hd, hd, pq + static_cast<size_t>(t0) * m, m, kvc + static_cast<size_t>(I) * m * hd, hd, m,
                               hd, 0, tn);
  }
  for (int t = 0; t < T; t++) {
    const int I = t / bs;
    const float* fq = pq + static_cast<size_t>(t) * m;
    const float* kcI = kc + static_cast<size_t>(I) * m;
    const float* ut = u + static_cast<size_t>(t) * hd;
    float z = 0.0f;
#pragma omp simd reduction(+ : z)
    for (int r = 0; r < m; r++) z += fq[r] * kcI[r];
    // A query block that drops no key block (or whose estimates all underflow) keeps the sparse part.
    float a = 1.0f, b = 0.0f;
    if (z > 0.0f) {
      const float l = lse[t], logN = std::log(z) + sq[t] + shiftK;
      const float hi = std::max(l, logN);
      const float logZ = hi + std::log(std::exp(l - hi) + std::exp(logN - hi));
      a = std::exp(l - logZ);
      b = std::exp(sq[t] + shiftK - logZ);
    }
    ws[t] = a, wl[t] = b;
    float* ot = o + t * it.oStride;
#pragma omp simd
    for (int c = 0; c < hd; c++) ot[c] = a * ot[c] + b * ut[c];
  }
}

// Through d(log φ) to x, for tn tokens (x rows `stride` apart, phi and dphi rows m apart):
// dd_r = dlog_r − dlog_{r+m/2}; dx += scale^½·Σ_r dd_r ω_r − scale·(Σ dlog)·x, the first sum as one
// product (tn × m/2)·(m/2 × hd) over the block.
inline __attribute__((always_inline)) void featuresBackward(const float* w, const Sizes& s, int tn, const float* x, int64_t stride, const float* phi,
                                                            const float* dphi, float* dd, float* dx) {
  const int m = s.m, half = m / 2, hd = s.hd;
  for (int t = 0; t < tn; t++) {
    const float* ph = phi + static_cast<size_t>(t) * m;
    const float* dp = dphi + static_cast<size_t>(t) * m;
    float* ddt = dd + static_cast<size_t>(t) * half;
    float total = 0.0f;
#pragma omp simd reduction(+ : total)
    for (int r = 0; r < m; r++) total += dp[r] * ph[r];
#pragma omp simd
    for (int r = 0; r < half; r++) ddt[r] = s.rootScale * (dp[r] * ph[r] - dp[r + half] * ph[r + half]);
    const float k = s.rootScale * s.rootScale * total;
    const float* xt = x + t * stride;
    float* dxt = dx + t * stride;
#pragma omp simd
    for (int c = 0; c < hd; c++) dxt[c] -= k * xt[c];
  }
  pointwise::addRankRowRange(dx, stride, dd, half, w, hd, half, hd, 0, tn);
}

// The backward of one item, from dO (the output's gradient rows): dS (the sparse output's), dlse,
// and the low-rank term's q, k, v gradients added at dq/dk/dv + t·stride. Per query block, then per
// key block, each step one small product over the block's rows.
PIXELFLY_CLONES void backwardItem(const float* w, const Sizes& s, const Item& it, const float* dO, const float* os, const char* dropped,
                                  const float* pq, const float* pk, const float* kvc, const float* kc, const float* u, const float* ws,
                                  const float* wl, float* dS, float* dlse, float* dq, float* dk, float* dv, Scratch& sc) {
  const int T = s.T, m = s.m, hd = s.hd, n = s.n, bs = s.bs;
  float* dkvc = sc.kvQ.data();
  float* dkc = sc.ksQ.data();
  float *du = sc.du.data(), *dphi = sc.dphi.data(), *dz = sc.dz.data();
  for (int I = 0; I < n; I++) {
    const int t0 = I * bs, tn = std::max(0, std::min(bs, T - t0));
    const float* kvI = kvc + static_cast<size_t>(I) * m * hd;
    const float* kcI = kc + static_cast<size_t>(I) * m;
    const float* fq = pq + static_cast<size_t>(t0) * m;
    // The mix: o = ws·o^s + wl·u, ws = e^{lse − L}, wl = e^{c − L}, L = logaddexp(lse, log z + c);
    // du = wl·dO (u's gradient) and dz (z's) per token.
    for (int i = 0; i < tn; i++) {
      const int t = t0 + i;
      const float* g = dO + t * it.oStride;
      const float* ost = os + t * it.oStride;
      const float* ut = u + static_cast<size_t>(t) * hd;
      const float a = ws[t], b = wl[t];
      float* dst = dS + t * it.oStride;
      float* dut = du + static_cast<size_t>(i) * hd;
      float dws = 0.0f, dwl = 0.0f;
#pragma omp simd reduction(+ : dws, dwl)
      for (int c = 0; c < hd; c++) {
        dst[c] = a * g[c];
        dws += g[c] * ost[c];
        dwl += g[c] * ut[c];
        dut[c] = b * g[c];
      }
      const float dL = -(dws * a + dwl * b);
      dlse[t] = a * (dws + dL);
      dz[i] = dL * b;
    }
    // dφ(q_t) = du_t·kvc_Iᵀ + dz_t·kc_I; dkvc_I = φ(Q_I)ᵀ·du; dkc_I = φ(Q_I)ᵀ·dz.
    transpose(kvI, hd, m, hd, sc.sumsT.data());
    std::fill(dphi, dphi + static_cast<size_t>(tn) * m, 0.0f);
    pointwise::addRankRowRange(dphi, m, du, hd, sc.sumsT.data(), m, hd, m, 0, tn);
    for (int i = 0; i < tn; i++)
#pragma omp simd
      for (int r = 0; r < m; r++) dphi[static_cast<size_t>(i) * m + r] += dz[i] * kcI[r];
    transpose(fq, m, tn, m, sc.phiT.data());
    float* dkvI = dkvc + static_cast<size_t>(I) * m * hd;
    std::fill(dkvI, dkvI + static_cast<size_t>(m) * hd, 0.0f);
    pointwise::addRankRowRange(dkvI, hd, sc.phiT.data(), tn, du, hd, tn, hd, 0, m);
    for (int r = 0; r < m; r++) {
      const float* row = sc.phiT.data() + static_cast<size_t>(r) * tn;
      float a = 0.0f;
#pragma omp simd reduction(+ : a)
      for (int i = 0; i < tn; i++) a += row[i] * dz[i];
      dkc[static_cast<size_t>(I) * m + r] = a;
    }
    featuresBackward(w, s, tn, it.q + t0 * it.stride, it.stride, fq, dphi, sc.dd.data(), dq + t0 * it.stride);
  }
  // Each dropped (I, J) pair passes query block I's sums back to key block J.
  float* dkv = sc.kv.data();
  float* dks = sc.ks.data();
  sumOverDropped(dropped, n, static_cast<size_t>(m) * hd, dkvc, dkv, true);
  sumOverDropped(dropped, n, m, dkc, dks, true);
  for (int J = 0; J < n; J++) {
    const int t0 = J * bs, tn = std::max(0, std::min(bs, T - t0));
    const float* dkvJ = dkv + static_cast<size_t>(J) * m * hd;
    const float* dksJ = dks + static_cast<size_t>(J) * m;
    const float* fk = pk + static_cast<size_t>(t0) * m;
    // dφ(k_t) = v_t·dkv_Jᵀ + dks_J; dv_t += φ(k_t)·dkv_J.
    transpose(dkvJ, hd, m, hd, sc.sumsT.data());
    for (int i = 0; i < tn; i++) std::copy(dksJ, dksJ + m, dphi + static_cast<size_t>(i) * m);
    pointwise::addRankRowRange(dphi, m, it.v + t0 * it.stride, it.stride, sc.sumsT.data(), m, hd, m, 0, tn);
    pointwise::addRankRowRange(dv + t0 * it.stride, it.stride, fk, m, dkvJ, hd, m, hd, 0, tn);
    featuresBackward(w, s, tn, it.k + t0 * it.stride, it.stride, fk, dphi, sc.dd.data(), dk + t0 * it.stride);
  }
}

}  // namespace

std::vector<char> droppedScoreBlocks(const BsrIndex& layout, bool causal) {
  const int n = layout.blockRows;
  std::vector<char> dropped(static_cast<size_t>(n) * n, 0);
  for (int I = 0; I < n; I++)
    for (int J = 0; J < n && (!causal || J <= I); J++) dropped[static_cast<size_t>(I) * n + J] = 1;
  for (int I = 0; I < n; I++)
    for (int s = layout.rowPtr[I]; s < layout.rowPtr[I + 1]; s++) dropped[static_cast<size_t>(I) * n + layout.colIdx[s]] = 0;
  return dropped;
}

void checkLowRankShape(size_t projectionValues, int features, int headDim) {
  if (features < 2 || features % 2 != 0) throw std::invalid_argument("attention.features: must be an even integer >= 2, got " + std::to_string(features));
  if (projectionValues != static_cast<size_t>(features / 2) * headDim)
    throw std::invalid_argument("attention.projection: expected " + std::to_string(features / 2) + " x " + std::to_string(headDim) + " values, got " +
                                std::to_string(projectionValues));
}

PerformerTerm::PerformerTerm(std::vector<float> projection, int features, int headDim, const BsrIndex& layout, bool causal)
    : w_(std::move(projection)), m_(features), hd_(headDim), bs_(layout.block), n_(layout.blockRows), dropped_(droppedScoreBlocks(layout, causal)) {
  checkLowRankShape(w_.size(), m_, hd_);
  // ωᵀ·scale^½ (hd × m/2): the right-hand side of the features' product.
  const int half = m_ / 2;
  const float rootScale = sizesOf(0, m_, hd_, bs_, n_).rootScale;
  wT_.resize(w_.size());
  for (int r = 0; r < half; r++)
    for (int c = 0; c < hd_; c++) wT_[static_cast<size_t>(c) * half + r] = rootScale * w_[static_cast<size_t>(r) * hd_ + c];
}

void PerformerTerm::forward(const AttentionCore& core, const float* qkv, const float* lse, float* ctx) {
  if (core.D / core.H != hd_) throw std::invalid_argument("attention.features: the projection is for head_dim " + std::to_string(hd_));
  B_ = core.B, T_ = core.T, H_ = core.H;
  const int D = core.D, T = T_, m = m_, hd = hd_, n = n_;
  const Sizes s = sizesOf(T, m, hd, bs_, n);
  const size_t items = static_cast<size_t>(B_) * H_;
  os_.assign(ctx, ctx + static_cast<size_t>(B_) * T * D);
  phiQ_.resize(items * T * m), phiK_.resize(items * T * m), shiftQ_.resize(items * T), u_.resize(items * T * hd);
  kvC_.resize(items * n * m * hd), kC_.resize(items * n * m);
  ws_.resize(items * T), wl_.resize(items * T);
  pointwise::parallelRanges(static_cast<int64_t>(items), itemsPerThread(items), [&](int64_t i0, int64_t i1) {
    Scratch scratch(s, false);
    for (int64_t item = i0; item < i1; item++) {
      const int b = static_cast<int>(item / H_), h = static_cast<int>(item % H_);
      const float* base = qkv + static_cast<size_t>(b) * T * 3 * D + h * hd;
      const Item it{base, base + D, base + 2 * D, 3 * D, D};
      forwardItem(wT_.data(), s, it, lse + item * T, dropped_.data(), ctx + static_cast<size_t>(b) * T * D + h * hd, &phiQ_[item * T * m],
                  &phiK_[item * T * m], &shiftQ_[item * T], &kvC_[item * n * m * hd], &kC_[item * n * m], &u_[item * T * hd], &ws_[item * T],
                  &wl_[item * T], scratch);
    }
  });
}

void PerformerTerm::backward(const AttentionCore& core, const float* qkv, const float* dctx, float* dSparse, float* dlse, float* dqkv) {
  if (core.B != B_ || core.T != T_ || core.H != H_) throw std::logic_error("PerformerTerm: backward without its forward");
  const int D = core.D, T = T_, m = m_, hd = hd_, n = n_;
  const Sizes s = sizesOf(T, m, hd, bs_, n);
  const size_t items = static_cast<size_t>(B_) * H_;
  pointwise::parallelRanges(static_cast<int64_t>(items), itemsPerThread(items), [&](int64_t i0, int64_t i1) {
    Scratch scratch(s, true);
    for (int64_t item = i0; item < i1; item++) {
      const int b = static_cast<int>(item / H_), h = static_cast<int>(item % H_);
      const size_t qkvAt = static_cast<size_t>(b) * T * 3 * D + h * hd, oAt = static_cast<size_t>(b) * T * D + h * hd;
      const Item it{qkv + qkvAt, qkv + qkvAt + D, qkv + qkvAt + 2 * D, 3 * D, D};
      backwardItem(w_.data(), s, it, dctx + oAt, &os_[oAt], dropped_.data(), &phiQ_[item * T * m], &phiK_[item * T * m], &kvC_[item * n * m * hd],
                   &kC_[item * n * m], &u_[item * T * hd], &ws_[item * T], &wl_[item * T], dSparse + oAt, dlse + item * T, dqkv + qkvAt,
                   dqkv + qkvAt + D, dqkv + qkvAt + 2 * D, scratch);
    }
  });
}

}  // namespace pixelfly
