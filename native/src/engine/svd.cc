#include "svd.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace pixelfly {

namespace {

// out[m×k] = a[m×n]·b[n×k]
void mul(const float* a, const float* b, float* out, int m, int n, int k) {
  std::fill(out, out + static_cast<size_t>(m) * k, 0.0f);
  for (int i = 0; i < m; i++)
    for (int p = 0; p < n; p++) {
      const float av = a[static_cast<size_t>(i) * n + p];
      const float* br = b + static_cast<size_t>(p) * k;
      float* o = out + static_cast<size_t>(i) * k;
      for (int j = 0; j < k; j++) o[j] += av * br[j];
    }
}

// out[n×k] = a[m×n]ᵀ·b[m×k]
void mulT(const float* a, const float* b, float* out, int m, int n, int k) {
  std::fill(out, out + static_cast<size_t>(n) * k, 0.0f);
  for (int i = 0; i < m; i++)
    for (int p = 0; p < n; p++) {
      const float av = a[static_cast<size_t>(i) * n + p];
      const float* br = b + static_cast<size_t>(i) * k;
      float* o = out + static_cast<size_t>(p) * k;
      for (int j = 0; j < k; j++) o[j] += av * br[j];
    }
}

// Orthonormalises the k columns of y [m×k] in place (modified Gram-Schmidt, twice for stability).
void orthonormalize(float* y, int m, int k) {
  for (int pass = 0; pass < 2; pass++)
    for (int j = 0; j < k; j++) {
      for (int p = 0; p < j; p++) {
        double d = 0.0;
        for (int i = 0; i < m; i++) d += static_cast<double>(y[static_cast<size_t>(i) * k + j]) * y[static_cast<size_t>(i) * k + p];
        for (int i = 0; i < m; i++) y[static_cast<size_t>(i) * k + j] -= static_cast<float>(d) * y[static_cast<size_t>(i) * k + p];
      }
      double nrm = 0.0;
      for (int i = 0; i < m; i++) nrm += static_cast<double>(y[static_cast<size_t>(i) * k + j]) * y[static_cast<size_t>(i) * k + j];
      const float inv = nrm > 0.0 ? static_cast<float>(1.0 / std::sqrt(nrm)) : 0.0f;
      for (int i = 0; i < m; i++) y[static_cast<size_t>(i) * k + j] *= inv;
    }
}

// Cyclic Jacobi eigen-decomposition of a symmetric k×k matrix: eigenvalues into w, eigenvectors
// as the columns of v.
void jacobiEigen(std::vector<double>& a, int k, std::vector<double>& w, std::vector<double>& v) {
  v.assign(static_cast<size_t>(k) * k, 0.0);
  for (int i = 0; i < k; i++) v[static_cast<size_t>(i) * k + i] = 1.0;
  for (int sweep = 0; sweep < 60; sweep++) {
    double off = 0.0;
    for (int p = 0; p < k; p++)
      for (int q = p + 1; q < k; q++) off += a[p * k + q] * a[p * k + q];
    if (off < 1e-22) break;
    for (int p = 0; p < k; p++)
      for (int q = p + 1; q < k; q++) {
        const double apq = a[p * k + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (a[q * k + q] - a[p * k + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int r = 0; r < k; r++) {  // A ← A·J
          const double arp = a[r * k + p], arq = a[r * k + q];
          a[r * k + p] = c * arp - s * arq;
          a[r * k + q] = s * arp + c * arq;
        }
        for (int r = 0; r < k; r++) {  // A ← Jᵀ·A
          const double apr = a[p * k + r], aqr = a[q * k + r];
          a[p * k + r] = c * apr - s * aqr;
          a[q * k + r] = s * apr + c * aqr;
        }
        for (int r = 0; r < k; r++) {
          const double vrp = v[r * k + p], vrq = v[r * k + q];
          v[r * k + p] = c * vrp - s * vrq;
          v[r * k + q] = s * vrp + c * vrq;
        }
      }
  }
  w.resize(k);
  for (int i = 0; i < k; i++) w[i] = a[static_cast<size_t>(i) * k + i];
}

}  // namespace

void truncatedSvdFactors(const float* a, int rows, int cols, int rank, Rng& rng, float* u, float* vt) {
  const int m = rows, n = cols;
  const int k = std::min(rank + 8, std::min(m, n));
  std::vector<float> omega(static_cast<size_t>(n) * k), y(static_cast<size_t>(m) * k), z(static_cast<size_t>(n) * k);
  for (auto& x : omega) x = rng.normal();
  mul(a, omega.data(), y.data(), m, n, k);
  orthonormalize(y.data(), m, k);
  for (int it = 0; it < 3; it++) {
    mulT(a, y.data(), z.data(), m, n, k);
    orthonormalize(z.data(), n, k);
    mul(a, z.data(), y.data(), m, n, k);
    orthonormalize(y.data(), m, k);
  }
  // B = Yᵀ·A (k×n), stored transposed as z = Aᵀ·Y (n×k).
  mulT(a, y.data(), z.data(), m, n, k);
  std::vector<double> c(static_cast<size_t>(k) * k, 0.0);
  for (int p = 0; p < n; p++)
    for (int i = 0; i < k; i++)
      for (int j = 0; j < k; j++) c[i * k + j] += static_cast<double>(z[static_cast<size_t>(p) * k + i]) * z[static_cast<size_t>(p) * k + j];
  std::vector<double> w, ev;
  jacobiEigen(c, k, w, ev);
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y2) { return w[x] > w[y2]; });
  for (int r = 0; r < rank; r++) {
    if (r >= k) {  // rank above min(rows, cols): the extra factors carry nothing
      for (int i = 0; i < m; i++) u[static_cast<size_t>(i) * rank + r] = 0.0f;
      for (int p = 0; p < n; p++) vt[static_cast<size_t>(r) * n + p] = 0.0f;
      continue;
    }
    const int e = order[r];
    const double sigma = std::sqrt(std::max(w[e], 0.0));
    const double root = std::sqrt(sigma);
    // Left singular vector: Y·w_e; right: Bᵀ·w_e / σ.
    for (int i = 0; i < m; i++) {
      double s = 0.0;
      for (int j = 0; j < k; j++) s += static_cast<double>(y[static_cast<size_t>(i) * k + j]) * ev[static_cast<size_t>(j) * k + e];
      u[static_cast<size_t>(i) * rank + r] = static_cast<float>(s * root);
    }
    for (int p = 0; p < n; p++) {
      double s = 0.0;
      for (int j = 0; j < k; j++) s += static_cast<double>(z[static_cast<size_t>(p) * k + j]) * ev[static_cast<size_t>(j) * k + e];
      vt[static_cast<size_t>(r) * n + p] = sigma > 0.0 ? static_cast<float>(s / sigma * root) : 0.0f;
    }
  }
}

}  // namespace pixelfly
