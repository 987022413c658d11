// The CPU backend's layer operations (everything but the products and memory, in backend_cpu.cc):
// OpenMP over samples, rows or fixed chunks, the vector work in pointwise.h. Every split depends only
// on sizes and the thread count, so results are deterministic for a given thread count.
#include "backend_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>


#include "kernels/attention.h"
#include "performer.h"
#include "pointwise.h"

namespace pixelfly {

namespace pw = pointwise;

namespace {
// Work per thread chunk: elementwise loops by elements, per-row loops by rows.
constexpr int64_t kGrainElems = 16384;
constexpr int64_t kGrainRows = 32;
}  // namespace

// ---------------------------------------------------------------- elementwise

void CpuBackend::geluForward(const float* x, float* y, int64_t n) {
  pw::parallelRanges(n, kGrainElems, [&](int64_t i0, int64_t i1) { pw::geluForward(x + i0, y + i0, i1 - i0); });
}

void CpuBackend::geluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  pw::parallelRanges(n, kGrainElems, [&](int64_t i0, int64_t i1) { pw::geluBackward(x + i0, dy + i0, dx + i0, i1 - i0); });
}

void CpuBackend::add(const float* a, const float* b, float* y, int64_t n) {
  pw::parallelRanges(n, kGrainElems, [&](int64_t i0, int64_t i1) { pw::add(a + i0, b + i0, y + i0, i1 - i0); });
}

void CpuBackend::addTo(float* y, const float* a, int64_t n) {
  pw::parallelRanges(n, kGrainElems, [&](int64_t i0, int64_t i1) { pw::addTo(y + i0, a + i0, i1 - i0); });
}

// ---------------------------------------------------------------- LayerNorm

void CpuBackend::layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean, float* rstd) {
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    pw::layerNormForward(x, D, g, b, y, mean, rstd, static_cast<int>(m0), static_cast<int>(m1));
  });
}

void CpuBackend::layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean, const float* rstd,
                       float* dx, float* dg, float* db) {
  pw::parallelRanges(D, 64, [&](int64_t c0, int64_t c1) {
    pw::layerNormParamGrads(x, dy, M, D, mean, rstd, dg, db, static_cast<int>(c0), static_cast<int>(c1));
  });
  if (!dx) return;
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    pw::layerNormBackwardData(x, dy, D, g, mean, rstd, dx, static_cast<int>(m0), static_cast<int>(m1));
  });
}

// ---------------------------------------------------------------- data movement

void CpuBackend::transpose(int B, int T, int D, const float* x, float* y) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float* xb = x + static_cast<size_t>(b) * T * D;
    float* yb = y + static_cast<size_t>(b) * T * D;
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) yb[static_cast<size_t>(d) * T + t] = xb[static_cast<size_t>(t) * D + d];
  }
}

void CpuBackend::patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward) {
  const int gw = W / p, np = (H / p) * gw, pd = C * p * p;
  const size_t img = static_cast<size_t>(C) * H * W;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < np; t++) {
      const int py = t / gw, px = t % gw;
      for (int ch = 0; ch < C; ch++)
        for (int i = 0; i < p; i++)
          for (int j = 0; j < p; j++) {
            const size_t at = static_cast<size_t>(b) * img + (static_cast<size_t>(ch) * H + py * p + i) * W + px * p + j;
            const size_t pat = (static_cast<size_t>(b) * np + t) * pd + (ch * p + i) * p + j;
            if (backward) dst[at] = src[pat];
            else dst[pat] = src[at];
          }
    }
  }
}

void CpuBackend::poolForward(int B, int T, int D, bool first, const float* x, float* y) {
  for (int b = 0; b < B; b++) {
    float* yb = y + static_cast<size_t>(b) * D;
    const float* xb = x + static_cast<size_t>(b) * T * D;
    if (first) {
      std::memcpy(yb, xb, sizeof(float) * D);
      continue;
    }
    for (int d = 0; d < D; d++) yb[d] = 0.0f;
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) yb[d] += xb[static_cast<size_t>(t) * D + d];
    for (int d = 0; d < D; d++) yb[d] /= static_cast<float>(T);
  }
}

void CpuBackend::poolBackward(int B, int T, int D, bool first, const float* dy, float* dx) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) {
        const float g = dy[static_cast<size_t>(b) * D + d];
        dx[(static_cast<size_t>(b) * T + t) * D + d] = first ? (t == 0 ? g : 0.0f) : g / static_cast<float>(T);
      }
}

// ---------------------------------------------------------------- embeddings

void CpuBackend::tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe, float* y) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const int id = static_cast<int>(ids[static_cast<size_t>(b) * T + t]);
      float* yr = y + (static_cast<size_t>(b) * T + t) * D;
      for (int d = 0; d < D; d++) yr[d] = wte[static_cast<size_t>(id) * D + d] + wpe[static_cast<size_t>(t) * D + d];
    }
}

void CpuBackend::tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte, float* dwpe) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const int id = static_cast<int>(ids[static_cast<size_t>(b) * T + t]);
      const float* g = dy + (static_cast<size_t>(b) * T + t) * D;
      for (int d = 0; d < D; d++) {
        dwte[static_cast<size_t>(id) * D + d] += g[d];
        dwpe[static_cast<size_t>(t) * D + d] += g[d];
      }
    }
}

void CpuBackend::clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y) {
  const size_t n = static_cast<size_t>(T) * D;
  for (int b = 0; b < B; b++) {
    std::memcpy(y + b * (n + D), cls, sizeof(float) * D);
    std::memcpy(y + b * (n + D) + D, x + b * n, sizeof(float) * n);
  }
}

void CpuBackend::clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx) {
  const size_t n = static_cast<size_t>(T) * D;
  for (int b = 0; b < B; b++) {
    for (int d = 0; d < D; d++) dcls[d] += dy[b * (n + D) + d];
    if (dx) std::memcpy(dx + b * n, dy + b * (n + D) + D, sizeof(float) * n);
  }
}

void CpuBackend::posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y) {
  for (int b = 0; b < B; b++)
    for (int64_t i = 0; i < n; i++) y[b * n + i] = x[b * n + i] + pos[i];
}

void CpuBackend::posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx) {
  for (int b = 0; b < B; b++)
    for (int64_t i = 0; i < n; i++) {
      dpos[i] += dy[b * n + i];
      if (dx) dx[b * n + i] = dy[b * n + i];
    }
}

// ---------------------------------------------------------------- attention

namespace {

// The kernels' view of an attention core: q, k and v are slices of the qkv rows, ctx rows are D wide.
struct AttentionViews {
  kernels::BsrLayout layout;
  kernels::AttentionShape shape;
  int64_t qkvBatch, ctxBatch;
  int hd, D;
  AttentionViews(const AttentionCore& a) : hd(a.D / a.H), D(a.D) {
    const BsrIndex& ix = *a.layout;
    layout = {ix.block, ix.blockRows, ix.blockCols, ix.nnz, ix.rowPtr.data(), ix.colIdx.data(), ix.colPtr.data(),
              ix.rowIdx.data(), ix.tBlock.data()};
    shape = {a.B, a.H, a.T, hd, a.causal, 1.0f / std::sqrt(static_cast<float>(hd))};
    qkvBatch = static_cast<int64_t>(a.T) * 3 * a.D;
    ctxBatch = static_cast<int64_t>(a.T) * a.D;
  }
  template <class F>
  kernels::HeadsView<F> qkv(F* base, int which) const { return {base + which * D, qkvBatch, hd, 3 * D}; }
  template <class F>
  kernels::HeadsView<F> ctx(F* base) const { return {base, ctxBatch, hd, D}; }
};

}  // namespace

void CpuBackend::attentionForward(const AttentionCore& core, const float* qkv, float* ctx, float* lse) {
  const AttentionViews a(core);
  kernels::attentionForward(a.layout, a.shape, a.qkv(qkv, 0), a.qkv(qkv, 1), a.qkv(qkv, 2), a.ctx(ctx), lse);
}

void CpuBackend::attentionBackward(const AttentionCore& core, const float* qkv, const float* ctx, const float* lse,
                                   const float* dctx, float* dqkv, const float* dlse) {
  const AttentionViews a(core);
  kernels::attentionBackward(a.layout, a.shape, a.qkv(qkv, 0), a.qkv(qkv, 1), a.qkv(qkv, 2), a.ctx(ctx), lse,
                             a.ctx(dctx), a.qkv(dqkv, 0), a.qkv(dqkv, 1), a.qkv(dqkv, 2), 0, dlse);
}

std::unique_ptr<LowRankTerm> CpuBackend::lowRankTerm(std::vector<float> projection, int features, int headDim, const BsrIndex& layout,
                                                     bool causal) {
  return std::make_unique<PerformerTerm>(std::move(projection), features, headDim, layout, causal);
}

// ---------------------------------------------------------------- Pixelfly gate and mix

void CpuBackend::pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank, float* gate,
                  float* hs, float* xs) {
  const float bias = *gb;
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    pw::pixelflyGate(x, in, gw, bias, h, rank, gate, hs, xs, static_cast<int>(m0), static_cast<int>(m1));
  });
}

void CpuBackend::pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs, const float* Ut,
                      int rank) {
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    pw::pixelflyLerpRows(y, out, gate, bias, hs, Ut, rank, static_cast<int>(m0), static_cast<int>(m1));
  });
}

namespace {

// f(m0, m1, part) over fixed chunks of M rows (at least 512 each, at most maxChunks), in parallel,
// each chunk with its own zeroed array of partSize floats for its partial sums; returns the arrays,
// chunk after chunk. The chunks depend only on M, so sums added in chunk order are the same for any
// thread count (the PyTorch operators promise results independent of torch.get_num_threads()).
template <class F>
std::vector<float> rowChunkPartials(int M, size_t partSize, int64_t maxChunks, F f) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(maxChunks, (static_cast<int64_t>(M) + 511) / 512));
  const int64_t rowsPer = (static_cast<int64_t>(M) + chunks - 1) / chunks;
  std::vector<float> parts(static_cast<size_t>(chunks) * partSize, 0.0f);
  pw::parallelRanges(chunks, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; q++) {
      const int64_t m0 = q * rowsPer, m1 = std::min<int64_t>(M, m0 + rowsPer);
      if (m0 < m1) f(static_cast<int>(m0), static_cast<int>(m1), &parts[static_cast<size_t>(q) * partSize]);
    }
  });
  return parts;
}

}  // namespace

void CpuBackend::pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h, int rank,
                         const float* gate, float* dx, float* dh, float* dz, float* dgw) {
  // The gate weight's gradient as partial sums over row chunks, added in chunk order.
  const std::vector<float> parts = rowChunkPartials(M, in, 64, [&](int m0, int m1, float* part) {
    pw::pixelflyMixBackward(x, in, gw, V, h, rank, gate, dx, dh, dz, part, m0, m1);
  });
  for (size_t q = 0; q < parts.size(); q += in) pw::addTo(dgw, &parts[q], in);
}

void CpuBackend::lowRankBackward(int M, int rank, int out, const float* dY, const float* U, const float* hs, float* dh,
                                 float* dU) {
  // U padded to whole register widths, and dU as partial sums over row chunks added in chunk order
  // (at most 64 MB of them). Exact fp32 whatever the backend's precision: these products are bound
  // by reading dY, which bf16 inputs would not shorten.
  const int RP = (rank + pw::kLowRankWidth - 1) / pw::kLowRankWidth * pw::kLowRankWidth;
  const size_t tile = static_cast<size_t>(out) * RP;
  std::vector<float> Up(tile, 0.0f);
  for (int j = 0; j < out; j++)
    std::copy(U + static_cast<size_t>(j) * rank, U + static_cast<size_t>(j + 1) * rank, &Up[static_cast<size_t>(j) * RP]);
  const int64_t byMemory = std::max<int64_t>(1, (int64_t{16} << 20) / static_cast<int64_t>(tile));
  std::vector<float> parts = rowChunkPartials(M, tile, std::min<int64_t>(64, byMemory), [&](int m0, int m1, float* part) {
    pw::lowRankBackward(dY, out, Up.data(), RP, hs, rank, dh, part, m0, m1);
  });
  for (size_t q = tile; q < parts.size(); q += tile) pw::addTo(parts.data(), &parts[q], static_cast<int64_t>(tile));
  for (int j = 0; j < out; j++) pw::addTo(dU + static_cast<size_t>(j) * rank, &parts[static_cast<size_t>(j) * RP], rank);
}

void CpuBackend::scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst) {
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    pw::scaleRowsOneMinus(a, n, gate, dst, static_cast<int>(m0), static_cast<int>(m1));
  });
}

// ---------------------------------------------------------------- loss and optimizer

double CpuBackend::softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets, float* dlogits,
                           int64_t* correct) {
  double loss = 0.0;
  int64_t right = 0;
  for (int r = 0; r < rows; r++) {
    const float* z = logits + static_cast<size_t>(r) * classes;
    int arg = 0;
    float mx = z[0];
    for (int k = 1; k < classes; k++)
      if (z[k] > mx) mx = z[k], arg = k;
    double sum = 0.0;
    for (int k = 0; k < classes; k++) sum += std::exp(static_cast<double>(z[k] - mx));
    const int t = targets[r];
    loss += std::log(sum) - (z[t] - mx);
    if (arg == t) right++;
    if (dlogits) {
      float* g = dlogits + static_cast<size_t>(r) * classes;
      for (int k = 0; k < classes; k++)
        g[k] = static_cast<float>(std::exp(static_cast<double>(z[k] - mx)) / sum / rows) - (k == t ? 1.0f / rows : 0.0f);
    }
  }
  if (correct) *correct = right;
  return loss / rows;
}

double CpuBackend::sumOfSquares(const float* x, int64_t n) {
  // Fixed chunks summed in order: the same result for any thread count.
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < chunks; ch++) {
    double s = 0.0;
    for (int64_t i = ch * kChunk; i < std::min(n, (ch + 1) * kChunk); i++) s += static_cast<double>(x[i]) * x[i];
    partial[ch] = s;
  }
  double sq = 0.0;
  for (double s : partial) sq += s;
  return sq;
}

void CpuBackend::adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i] * s.clip;
    m[i] = s.b1 * m[i] + (1.0f - s.b1) * gi;
    v[i] = s.b2 * v[i] + (1.0f - s.b2) * gi * gi;
    p[i] = p[i] * s.decay - s.lr * (m[i] / s.c1) / (std::sqrt(v[i] / s.c2) + s.eps);
  }
}

}  // namespace pixelfly
