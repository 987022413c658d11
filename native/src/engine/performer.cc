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

// log φ(x) of one token (A5): [ω·x′, −ω·x′] − |x′|²/2 − log(m)/2.
inline __attribute__((always_inline)) void logFeatures(const float* w, const Sizes& s, const float* x, float* out) {
  const int half = s.m / 2, hd = s.hd;
  float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
  for (int c = 0; c < hd; c++) sq += x[c] * x[c];
  const float diag = 0.5f * s.rootScale * s.rootScale * sq + s.halfLogM;
  for (int r = 0; r < half; r++) {
    const float* wr = w + static_cast<size_t>(r) * hd;
    float d = 0.0f;
#pragma omp simd reduction(+ : d)
    for (int c = 0; c < hd; c++) d += wr[c] * x[c];
    d *= s.rootScale;
    out[r] = d - diag;
    out[r + half] = -d - diag;
  }
}

// φ′ = e^{log φ − shift} over n values (shift ≥ every value: the arguments are ≤ 0).
inline __attribute__((always_inline)) void expShifted(float* x, int64_t n, float shift) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) x[i] = expNonPositive(x[i] - shift);
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

// The forward of one item: features (pq, pk: T × m, shifted), the per-query-block sums over dropped
// key blocks (kvc: n × m × hd, kc: n × m), u (T × hd), the weights ws, wl (T); o (the sparse output on
// entry) becomes (A4)'s. kv, ks: scratch of n × m × hd and n × m.
PIXELFLY_CLONES void forwardItem(const float* w, const Sizes& s, const Item& it, const float* lse, const char* dropped, float* o, float* pq,
                                 float* pk, float* sq, float* kvc, float* kc, float* u, float* ws, float* wl, float* kv, float* ks) {
  const int T = s.T, m = s.m, hd = s.hd, n = s.n;
  float shiftK = -std::numeric_limits<float>::infinity();
  for (int t = 0; t < T; t++) {
    float* fq = pq + static_cast<size_t>(t) * m;
    logFeatures(w, s, it.q + t * it.stride, fq);
    sq[t] = *std::max_element(fq, fq + m);
    expShifted(fq, m, sq[t]);
    float* fk = pk + static_cast<size_t>(t) * m;
    logFeatures(w, s, it.k + t * it.stride, fk);
    shiftK = std::max(shiftK, *std::max_element(fk, fk + m));
  }
  expShifted(pk, static_cast<int64_t>(T) * m, shiftK);
  std::fill(kv, kv + static_cast<size_t>(n) * m * hd, 0.0f);
  std::fill(ks, ks + static_cast<size_t>(n) * m, 0.0f);
  for (int t = 0; t < T; t++) {
    const int J = t / s.bs;
    const float* fk = pk + static_cast<size_t>(t) * m;
    const float* v = it.v + t * it.stride;
    float* kvJ = kv + static_cast<size_t>(J) * m * hd;
    float* ksJ = ks + static_cast<size_t>(J) * m;
#pragma omp simd
    for (int r = 0; r < m; r++) ksJ[r] += fk[r];
    for (int r = 0; r < m; r++) {
      const float f = fk[r];
      float* kvr = kvJ + static_cast<size_t>(r) * hd;
#pragma omp simd
      for (int c = 0; c < hd; c++) kvr[c] += f * v[c];
    }
  }
  sumOverDropped(dropped, n, static_cast<size_t>(m) * hd, kv, kvc, false);
  sumOverDropped(dropped, n, m, ks, kc, false);
  const float shift = shiftK;
  for (int t = 0; t < T; t++) {
    const int I = t / s.bs;
    const float* fq = pq + static_cast<size_t>(t) * m;
    const float* kcI = kc + static_cast<size_t>(I) * m;
    float* ut = u + static_cast<size_t>(t) * hd;
    std::fill(ut, ut + hd, 0.0f);
    pointwise::addRankRows<1>(ut, 0, fq, kvc + static_cast<size_t>(I) * m * hd, m, hd);
    float z = 0.0f;
#pragma omp simd reduction(+ : z)
    for (int r = 0; r < m; r++) z += fq[r] * kcI[r];
    // A query block that drops no key block (or whose estimates all underflow) keeps the sparse part.
    float a = 1.0f, b = 0.0f;
    if (z > 0.0f) {
      const float l = lse[t], logN = std::log(z) + sq[t] + shift;
      const float hi = std::max(l, logN);
      const float logZ = hi + std::log(std::exp(l - hi) + std::exp(logN - hi));
      a = std::exp(l - logZ);
      b = std::exp(sq[t] + shift - logZ);
    }
    ws[t] = a, wl[t] = b;
    float* ot = o + t * it.oStride;
#pragma omp simd
    for (int c = 0; c < hd; c++) ot[c] = a * ot[c] + b * ut[c];
  }
}

// Through d(log φ) to x: dd_r = dlog_r − dlog_{r+m/2}; dx += scale^½·Σ_r dd_r ω_r − scale·(Σ dlog)·x.
inline __attribute__((always_inline)) void featuresBackward(const float* w, const Sizes& s, const float* x, const float* phi, const float* dphi,
                                                            float* dlog, float* dx) {
  const int m = s.m, half = m / 2, hd = s.hd;
  float total = 0.0f;
#pragma omp simd reduction(+ : total)
  for (int r = 0; r < m; r++) {
    dlog[r] = dphi[r] * phi[r];
    total += dlog[r];
  }
  const float k = s.rootScale * s.rootScale * total;
#pragma omp simd
  for (int c = 0; c < hd; c++) dx[c] -= k * x[c];
  // dd goes in dlog's first half (each entry read once, before it is overwritten).
  for (int r = 0; r < half; r++) dlog[r] = s.rootScale * (dlog[r] - dlog[r + half]);
  pointwise::addRankRows<1>(dx, 0, dlog, w, half, hd);
}

// The backward of one item, from dO (the output's gradient rows): dS (the sparse output's), dlse,
// and the low-rank term's q, k, v gradients added at dq/dk/dv + t·stride. dkvc, dkc, dkv, dks: scratch
// of the sums' sizes; dphi, dlog: m each.
PIXELFLY_CLONES void backwardItem(const float* w, const Sizes& s, const Item& it, const float* dO, const float* os, const char* dropped,
                                  const float* pq, const float* pk, const float* kvc, const float* kc, const float* u, const float* ws,
                                  const float* wl, float* dS, float* dlse, float* dq, float* dk, float* dv, float* dkvc, float* dkc,
                                  float* dkv, float* dks, float* dphi, float* dlog) {
  const int T = s.T, m = s.m, hd = s.hd, n = s.n;
  std::fill(dkvc, dkvc + static_cast<size_t>(n) * m * hd, 0.0f);
  std::fill(dkc, dkc + static_cast<size_t>(n) * m, 0.0f);
  // The mix: o = ws·o^s + wl·u, ws = e^{lse − L}, wl = e^{c − L}, L = logaddexp(lse, log z + c).
  for (int t = 0; t < T; t++) {
    const int I = t / s.bs;
    const float* g = dO + t * it.oStride;
    const float* ost = os + t * it.oStride;
    const float* ut = u + static_cast<size_t>(t) * hd;
    const float a = ws[t], b = wl[t];
    float* dst = dS + t * it.oStride;
    float dws = 0.0f, dwl = 0.0f;
#pragma omp simd reduction(+ : dws, dwl)
    for (int c = 0; c < hd; c++) {
      dst[c] = a * g[c];
      dws += g[c] * ost[c];
      dwl += g[c] * ut[c];
    }
    const float dL = -(dws * a + dwl * b);
    dlse[t] = a * (dws + dL);
    if (b == 0.0f) continue;
    const float dz = dL * b;
    const float* fq = pq + static_cast<size_t>(t) * m;
    const float* kvI = kvc + static_cast<size_t>(I) * m * hd;
    float* dkvI = dkvc + static_cast<size_t>(I) * m * hd;
    for (int r = 0; r < m; r++) {
      const float* kvr = kvI + static_cast<size_t>(r) * hd;
      float* dkvr = dkvI + static_cast<size_t>(r) * hd;
      const float f = fq[r];
      float d = 0.0f;
#pragma omp simd reduction(+ : d)
      for (int c = 0; c < hd; c++) {
        const float du = b * g[c];
        d += kvr[c] * du;
        dkvr[c] += f * du;
      }
      dphi[r] = d + dz * kc[static_cast<size_t>(I) * m + r];
      dkc[static_cast<size_t>(I) * m + r] += dz * f;
    }
    featuresBackward(w, s, it.q + t * it.stride, fq, dphi, dlog, dq + t * it.stride);
  }
  // Each dropped (I, J) pair passes query block I's sums back to key block J.
  sumOverDropped(dropped, n, static_cast<size_t>(m) * hd, dkvc, dkv, true);
  sumOverDropped(dropped, n, m, dkc, dks, true);
  for (int t = 0; t < T; t++) {
    const int J = t / s.bs;
    const float* fk = pk + static_cast<size_t>(t) * m;
    const float* v = it.v + t * it.stride;
    float* dvt = dv + t * it.stride;
    const float* dkvJ = dkv + static_cast<size_t>(J) * m * hd;
    for (int r = 0; r < m; r++) {
      const float* dkvr = dkvJ + static_cast<size_t>(r) * hd;
      float d = 0.0f;
#pragma omp simd reduction(+ : d)
      for (int c = 0; c < hd; c++) d += dkvr[c] * v[c];
      dphi[r] = d + dks[static_cast<size_t>(J) * m + r];
    }
    pointwise::addRankRows<1>(dvt, 0, fk, dkvJ, m, hd);
    featuresBackward(w, s, it.k + t * it.stride, fk, dphi, dlog, dk + t * it.stride);
  }
}

}  // namespace

PerformerTerm::PerformerTerm(std::vector<float> projection, int features, int headDim, const BsrIndex& layout, bool causal)
    : w_(std::move(projection)), m_(features), hd_(headDim), bs_(layout.block), n_(layout.blockRows) {
  if (m_ < 2 || m_ % 2 != 0) throw std::invalid_argument("attention.features: must be an even integer >= 2, got " + std::to_string(m_));
  if (w_.size() != static_cast<size_t>(m_ / 2) * hd_)
    throw std::invalid_argument("attention.projection: expected " + std::to_string(m_ / 2) + " x " + std::to_string(hd_) + " values, got " +
                                std::to_string(w_.size()));
  dropped_.assign(static_cast<size_t>(n_) * n_, 0);
  for (int I = 0; I < n_; I++)
    for (int J = 0; J < n_ && (!causal || J <= I); J++) dropped_[static_cast<size_t>(I) * n_ + J] = 1;
  for (int I = 0; I < n_; I++)
    for (int s = layout.rowPtr[I]; s < layout.rowPtr[I + 1]; s++) dropped_[static_cast<size_t>(I) * n_ + layout.colIdx[s]] = 0;
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
    std::vector<float> kv(static_cast<size_t>(n) * m * hd), ks(static_cast<size_t>(n) * m);
    for (int64_t item = i0; item < i1; item++) {
      const int b = static_cast<int>(item / H_), h = static_cast<int>(item % H_);
      const float* base = qkv + static_cast<size_t>(b) * T * 3 * D + h * hd;
      const Item it{base, base + D, base + 2 * D, 3 * D, D};
      forwardItem(w_.data(), s, it, lse + item * T, dropped_.data(), ctx + static_cast<size_t>(b) * T * D + h * hd, &phiQ_[item * T * m],
                  &phiK_[item * T * m], &shiftQ_[item * T], &kvC_[item * n * m * hd], &kC_[item * n * m], &u_[item * T * hd], &ws_[item * T],
                  &wl_[item * T], kv.data(), ks.data());
    }
  });
}

void PerformerTerm::backward(const AttentionCore& core, const float* qkv, const float* dctx, float* dSparse, float* dlse, float* dqkv) {
  if (core.B != B_ || core.T != T_ || core.H != H_) throw std::logic_error("PerformerTerm: backward without its forward");
  const int D = core.D, T = T_, m = m_, hd = hd_, n = n_;
  const Sizes s = sizesOf(T, m, hd, bs_, n);
  const size_t items = static_cast<size_t>(B_) * H_;
  pointwise::parallelRanges(static_cast<int64_t>(items), itemsPerThread(items), [&](int64_t i0, int64_t i1) {
    std::vector<float> dkvc(static_cast<size_t>(n) * m * hd), dkc(static_cast<size_t>(n) * m);
    std::vector<float> dkv(static_cast<size_t>(n) * m * hd), dks(static_cast<size_t>(n) * m), dphi(m), dlog(m);
    for (int64_t item = i0; item < i1; item++) {
      const int b = static_cast<int>(item / H_), h = static_cast<int>(item % H_);
      const size_t qkvAt = static_cast<size_t>(b) * T * 3 * D + h * hd, oAt = static_cast<size_t>(b) * T * D + h * hd;
      const Item it{qkv + qkvAt, qkv + qkvAt + D, qkv + qkvAt + 2 * D, 3 * D, D};
      backwardItem(w_.data(), s, it, dctx + oAt, &os_[oAt], dropped_.data(), &phiQ_[item * T * m], &phiK_[item * T * m], &kvC_[item * n * m * hd],
                   &kC_[item * n * m], &u_[item * T * hd], &ws_[item * T], &wl_[item * T], dSparse + oAt, dlse + item * T, dqkv + qkvAt,
                   dqkv + qkvAt + D, dqkv + qkvAt + 2 * D, dkvc.data(), dkc.data(), dkv.data(), dks.data(), dphi.data(), dlog.data());
    }
  });
}

}  // namespace pixelfly
