// The plain reference of the attention cores (attention.h): for each query row, the kept keys, their
// scores and probabilities in double, written as directly as the definition. Checked itself against
// a dense masked softmax and finite differences (test/native/attention.test.ts); the kernels are
// checked against it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention.h"

namespace pixelfly {
namespace kernels {
namespace {

// Keys query i sees: the kept blocks of its block-row, clipped to T, and to j ≤ i when causal.
std::vector<int> keysOf(const BsrLayout& L, int T, bool causal, int i) {
  std::vector<int> keys;
  const int r = i / L.block;
  for (int k = L.rowPtr[r]; k < L.rowPtr[r + 1]; k++) {
    const int j0 = L.colIdx[k] * L.block;
    const int j1 = std::min(T, j0 + L.block);
    for (int j = j0; j < j1; j++)
      if (!causal || j <= i) keys.push_back(j);
  }
  return keys;
}

double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int e = 0; e < n; e++) s += static_cast<double>(a[e]) * b[e];
  return s;
}

// Probabilities of row i over `keys` (softmax of the scaled scores), and the row's log-sum-exp.
std::vector<double> probabilities(const AttentionShape& s, const float* qi, const Heads& k, int b, int h,
                                  const std::vector<int>& keys, double* lse) {
  std::vector<double> p(keys.size());
  double mx = -INFINITY;
  for (size_t n = 0; n < keys.size(); n++) {
    p[n] = s.scale * dot(qi, k.row(b, h, keys[n]), s.headDim);
    mx = std::max(mx, p[n]);
  }
  double sum = 0;
  for (double& x : p) sum += (x = std::exp(x - mx));
  for (double& x : p) x /= sum;
  *lse = mx + std::log(sum);
  return p;
}

}  // namespace

void attentionForwardReference(const BsrLayout& L, const AttentionShape& s, Heads q, Heads k, Heads v, HeadsOut o,
                               float* lse) {
  const int d = s.headDim;
  std::vector<double> acc(d);
  for (int b = 0; b < s.batch; b++)
    for (int h = 0; h < s.heads; h++)
      for (int i = 0; i < s.T; i++) {
        const std::vector<int> keys = keysOf(L, s.T, s.causal, i);
        double l = 0;
        const std::vector<double> p = probabilities(s, q.row(b, h, i), k, b, h, keys, &l);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (size_t n = 0; n < keys.size(); n++) {
          const float* vj = v.row(b, h, keys[n]);
          for (int e = 0; e < d; e++) acc[e] += p[n] * vj[e];
        }
        float* oi = o.row(b, h, i);
        for (int e = 0; e < d; e++) oi[e] = static_cast<float>(acc[e]);
        lse[(static_cast<int64_t>(b) * s.heads + h) * s.T + i] = static_cast<float>(l);
      }
}

// dP_ij = dO_i·v_j, dS_ij = P_ij (dP_ij − Σ_j' P_ij' dP_ij' + dlse_i), then dq_i = scale Σ_j dS_ij k_j,
// dk_j = scale Σ_i dS_ij q_i, dv_j = Σ_i P_ij dO_i.
void attentionBackwardReference(const BsrLayout& L, const AttentionShape& s, Heads q, Heads k, Heads v, Heads dO,
                                HeadsOut dq, HeadsOut dk, HeadsOut dv, const float* dlse) {
  const int d = s.headDim, T = s.T;
  std::vector<double> gq(static_cast<size_t>(T) * d), gk(gq.size()), gv(gq.size());
  for (int b = 0; b < s.batch; b++)
    for (int h = 0; h < s.heads; h++) {
      std::fill(gq.begin(), gq.end(), 0.0);
      std::fill(gk.begin(), gk.end(), 0.0);
      std::fill(gv.begin(), gv.end(), 0.0);
      for (int i = 0; i < T; i++) {
        const std::vector<int> keys = keysOf(L, T, s.causal, i);
        const float* qi = q.row(b, h, i);
        const float* doi = dO.row(b, h, i);
        double lse = 0;
        const std::vector<double> p = probabilities(s, qi, k, b, h, keys, &lse);
        std::vector<double> dp(keys.size());
        double rowDot = 0;
        for (size_t n = 0; n < keys.size(); n++) {
          dp[n] = dot(doi, v.row(b, h, keys[n]), d);
          rowDot += p[n] * dp[n];
        }
        if (dlse) rowDot -= dlse[(static_cast<int64_t>(b) * s.heads + h) * T + i];
        for (size_t n = 0; n < keys.size(); n++) {
          const int j = keys[n];
          const double ds = p[n] * (dp[n] - rowDot) * s.scale;
          const float* kj = k.row(b, h, j);
          for (int e = 0; e < d; e++) {
            gq[static_cast<size_t>(i) * d + e] += ds * kj[e];
            gk[static_cast<size_t>(j) * d + e] += ds * qi[e];
            gv[static_cast<size_t>(j) * d + e] += p[n] * doi[e];
          }
        }
      }
      for (int t = 0; t < T; t++)
        for (int e = 0; e < d; e++) {
          const size_t at = static_cast<size_t>(t) * d + e;
          dq.row(b, h, t)[e] = static_cast<float>(gq[at]);
          dk.row(b, h, t)[e] = static_cast<float>(gk[at]);
          dv.row(b, h, t)[e] = static_cast<float>(gv[at]);
        }
    }
}

}  // namespace kernels
}  // namespace pixelfly
