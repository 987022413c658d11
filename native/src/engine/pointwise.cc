#include "pointwise.h"

#include <algorithm>
#include <cmath>

#include "fastmath.h"

// PIXELFLY_CLONES (pointwise.h): one clone per x86-64 level; the v4 clone (AVX-512) is what these machines run.

namespace pixelfly {
namespace pointwise {

PIXELFLY_CLONES void geluForward(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + erfWithExp(v * 0.70710678118654752f, expNonPositive(-0.5f * v * v)));
  }
}

PIXELFLY_CLONES void geluBackward(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    // d/dx [x·Φ(x)] = Φ(x) + x·φ(x); both use e^(-x²/2).
    const float v = x[i];
    const float e = expNonPositive(-0.5f * v * v);
    const float cdf = 0.5f * (1.0f + erfWithExp(v * 0.70710678118654752f, e));
    dx[i] = dy[i] * (cdf + v * 0.3989422804014327f * e);
  }
}

PIXELFLY_CLONES void add(const float* a, const float* b, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

PIXELFLY_CLONES void addTo(float* y, const float* a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) y[i] += a[i];
}

PIXELFLY_CLONES void addRowSums(const float* a, int rows, int cols, float* out) {
  for (int r = 0; r < rows; r++) {
    const float* ar = a + static_cast<size_t>(r) * cols;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < cols; c++) s += ar[c];
    out[r] += s;
  }
}

PIXELFLY_CLONES void layerNormForward(const float* x, int D, const float* g, const float* b, float* y, float* mean,
                                      float* rstd, int r0, int r1) {
  // Two passes (mean, then centred variance) in float: vectorised, and accurate for any D we build.
  for (int m = r0; m < r1; m++) {
    const float* xm = x + static_cast<size_t>(m) * D;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < D; i++) s += xm[i];
    const float mu = s / D;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int i = 0; i < D; i++) v += (xm[i] - mu) * (xm[i] - mu);
    const float rs = 1.0f / std::sqrt(v / D + 1e-5f);
    mean[m] = mu;
    rstd[m] = rs;
    float* ym = y + static_cast<size_t>(m) * D;
#pragma omp simd
    for (int i = 0; i < D; i++) ym[i] = (xm[i] - mu) * rs * g[i] + b[i];
  }
}

PIXELFLY_CLONES void layerNormBackwardData(const float* x, const float* dy, int D, const float* g, const float* mean,
                                            const float* rstd, float* dx, int r0, int r1) {
  for (int m = r0; m < r1; m++) {
    const float* xm = x + static_cast<size_t>(m) * D;
    const float* dym = dy + static_cast<size_t>(m) * D;
    const float mu = mean[m], rs = rstd[m];
    float sdy = 0.0f, sdyx = 0.0f;
#pragma omp simd reduction(+ : sdy, sdyx)
    for (int i = 0; i < D; i++) {
      const float dxhat = dym[i] * g[i];
      sdy += dxhat;
      sdyx += dxhat * (xm[i] - mu) * rs;
    }
    const float a = sdy / D, bb = sdyx / D;
    float* dxm = dx + static_cast<size_t>(m) * D;
#pragma omp simd
    for (int i = 0; i < D; i++) dxm[i] = rs * (dym[i] * g[i] - a - (xm[i] - mu) * rs * bb);
  }
}

PIXELFLY_CLONES void layerNormParamGrads(const float* x, const float* dy, int rows, int D, const float* mean,
                                         const float* rstd, float* dg, float* db, int c0, int c1) {
  for (int m = 0; m < rows; m++) {
    const float* xm = x + static_cast<size_t>(m) * D;
    const float* dym = dy + static_cast<size_t>(m) * D;
    const float mu = mean[m], rs = rstd[m];
#pragma omp simd
    for (int i = c0; i < c1; i++) {
      dg[i] += dym[i] * (xm[i] - mu) * rs;
      db[i] += dym[i];
    }
  }
}

PIXELFLY_CLONES void pixelflyGate(const float* x, int in, const float* gw, float gb, const float* h, int rank,
                                  float* gate, float* hs, float* xs, int r0, int r1) {
  for (int m = r0; m < r1; m++) {
    const float* xm = x + static_cast<size_t>(m) * in;
    float z = gb;
#pragma omp simd reduction(+ : z)
    for (int i = 0; i < in; i++) z += xm[i] * gw[i];
    const float g = 1.0f / (1.0f + std::exp(-z));
    gate[m] = g;
    for (int k = 0; k < rank; k++) hs[static_cast<size_t>(m) * rank + k] = g * h[static_cast<size_t>(m) * rank + k];
    if (xs) {
      float* xsm = xs + static_cast<size_t>(m) * in;
#pragma omp simd
      for (int i = 0; i < in; i++) xsm[i] = (1.0f - g) * xm[i];
    }
  }
}

PIXELFLY_CLONES void pixelflyLerpRows(float* y, int out, const float* gate, const float* bias, const float* hs,
                                      const float* Ut, int rank, int r0, int r1) {
  // Four rows at a time: gate and bias, then + (g∘h)·Uᵀ over the four while they are in L1.
  for (int q0 = r0; q0 < r1; q0 += 4) {
    const int q1 = std::min(r1, q0 + 4);
    for (int m = q0; m < q1; m++) {
      const float s = 1.0f - gate[m];
      float* ym = y + static_cast<size_t>(m) * out;
      if (bias) {
#pragma omp simd
        for (int j = 0; j < out; j++) ym[j] = s * ym[j] + bias[j];
      } else {
#pragma omp simd
        for (int j = 0; j < out; j++) ym[j] *= s;
      }
    }
    addRankRowRange(y, static_cast<size_t>(out), hs, rank, Ut, out, rank, out, q0, q1);
  }
}

PIXELFLY_CLONES void pixelflyMixBackward(const float* x, int in, const float* gw, const float* V, const float* h,
                                         int rank, const float* gate, float* dx, float* dh, float* dz, float* dgw, int r0,
                                         int r1) {
  // Four rows at a time: their row passes, then + dh·V over the four while their dx rows are in L1.
  for (int q0 = r0; q0 < r1; q0 += 4) {
    const int q1 = std::min(r1, q0 + 4);
    for (int m = q0; m < q1; m++) {
      const float g = gate[m];
      const float* xm = x + static_cast<size_t>(m) * in;
      float* dxm = dx + static_cast<size_t>(m) * in;
      float* dhm = dh + static_cast<size_t>(m) * rank;
      const float* hm = h + static_cast<size_t>(m) * rank;
      float dys = 0.0f, dyl = 0.0f;
#pragma omp simd reduction(+ : dys)
      for (int i = 0; i < in; i++) dys += xm[i] * dxm[i];
      for (int k = 0; k < rank; k++) dyl += dhm[k] * hm[k];
      const float d = g * (1.0f - g) * (dyl - dys);
      dz[m] = d;
      for (int k = 0; k < rank; k++) dhm[k] *= g;
#pragma omp simd
      for (int i = 0; i < in; i++) {
        dxm[i] = (1.0f - g) * dxm[i] + d * gw[i];
        dgw[i] += d * xm[i];
      }
    }
    addRankRowRange(dx, static_cast<size_t>(in), dh, rank, V, in, rank, in, q0, q1);
  }
}

namespace {

// Rows m .. m+MB−1, rank slice [k0, k0 + kLowRankWidth): the MB rows' dh slices and gated h slices
// stay in registers while j runs over the gradient's columns; each dUp row slice is read and
// written once per MB rows.
template <int MB>
inline __attribute__((always_inline)) void lowRankRows(const float* dy, int out, const float* Up, int RP,
                                                       const float* hs, int rank, float* dh, float* dUp, int m, int k0) {
  const int kw = std::min(kLowRankWidth, rank - k0);
  LowRankVec h[MB], acc[MB];
  const float* rows[MB];
  for (int i = 0; i < MB; i++) {
    float tmp[kLowRankWidth] = {};
    const float* src = hs + static_cast<size_t>(m + i) * rank + k0;
    for (int k = 0; k < kw; k++) tmp[k] = src[k];
    loadVec(h[i], tmp);
    acc[i] = LowRankVec{};
    rows[i] = dy + static_cast<size_t>(m + i) * out;
  }
  for (int j = 0; j < out; j++) {
    LowRankVec u, d;
    loadVec(u, Up + static_cast<size_t>(j) * RP + k0);
    float* dup = dUp + static_cast<size_t>(j) * RP + k0;
    loadVec(d, dup);
    for (int i = 0; i < MB; i++) {
      const float b = rows[i][j];
      acc[i] += b * u;
      d += b * h[i];
    }
    storeVec(dup, d);
  }
  for (int i = 0; i < MB; i++) {
    float tmp[kLowRankWidth];
    storeVec(tmp, acc[i]);
    float* dst = dh + static_cast<size_t>(m + i) * rank + k0;
    for (int k = 0; k < kw; k++) dst[k] = tmp[k];
  }
}

}  // namespace

PIXELFLY_CLONES void lowRankBackward(const float* dy, int out, const float* Up, int RP, const float* hs, int rank,
                                     float* dh, float* dUp, int r0, int r1) {
  for (int k0 = 0; k0 < rank; k0 += kLowRankWidth) {
    int m = r0;
    for (; m + 4 <= r1; m += 4) lowRankRows<4>(dy, out, Up, RP, hs, rank, dh, dUp, m, k0);
    for (; m < r1; m++) lowRankRows<1>(dy, out, Up, RP, hs, rank, dh, dUp, m, k0);
  }
}

PIXELFLY_CLONES void scaleRowsOneMinus(const float* a, int n, const float* gate, float* dst, int r0, int r1) {
  for (int m = r0; m < r1; m++) {
    const float s = 1.0f - gate[m];
    const float* am = a + static_cast<size_t>(m) * n;
    float* dm = dst + static_cast<size_t>(m) * n;
#pragma omp simd
    for (int i = 0; i < n; i++) dm[i] = s * am[i];
  }
}

}  // namespace pointwise
}  // namespace pixelfly
