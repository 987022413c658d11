// Device kernels for every Backend operation besides the products (engine/backend.h): GELU, adds,
// LayerNorm, data movement, embeddings, attention, Pixelfly's gate and mix, softmax cross-entropy,
// Σx² and AdamW. The math is the CPU loops' (engine/pointwise.cc and the layers), written so the
// same inputs give bitwise the same outputs on every run and every device:
//  - no atomics; every sum runs in a fixed order. Sums along a row or a column are one thread's
//    loop in index order (usually the CPU's order too); Σx² is fixed-size chunks reduced by a
//    shared-memory tree, whose partials the host adds in chunk order;
//  - per-row work (LayerNorm, attention, softmax, the gate) is one thread per row, so it needs no
//    block reductions. Simple and deterministic, but its loads are not coalesced: block-per-row
//    versions are the next step once a GPU can measure them (none was available).
// Included by layers.cu only.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/device_runtime.h"
#include "engine/backend.h"

namespace pixelfly {
namespace cuda {
namespace dev {

constexpr int kThreads = 128;        // threads per block of every kernel here but Σx²
constexpr int kSumThreads = 256;     // Σx²: threads per chunk (a power of two, for the tree)
constexpr int64_t kSumChunk = 1 << 16;  // Σx²: values per chunk, fixed so the sum's order is too
constexpr unsigned kMaxBlocks = 1u << 16;  // grid-stride loops need no more blocks than this

__device__ __forceinline__ int64_t firstIndex() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t gridStride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ------------------------------------------------------------------ elementwise

__global__ void geluForwardKernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = firstIndex(); i < n; i += gridStride()) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  }
}

__global__ void geluBackwardKernel(const float* __restrict__ x, const float* __restrict__ dy, float* dx, int64_t n) {
  for (int64_t i = firstIndex(); i < n; i += gridStride()) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
    dx[i] = dy[i] * (cdf + v * 0.3989422804014327f * expf(-0.5f * v * v));  // dx may alias dy
  }
}

__global__ void addKernel(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = firstIndex(); i < n; i += gridStride()) y[i] = a[i] + b[i];
}

__global__ void addToKernel(float* y, const float* a, int64_t n) {
  for (int64_t i = firstIndex(); i < n; i += gridStride()) y[i] += a[i];
}

// dst_m = (1 − gate[m])·a_m over M rows of n.
__global__ void scaleRowsOneMinusKernel(int M, const float* a, int n, const float* __restrict__ gate, float* dst) {
  const int64_t total = static_cast<int64_t>(M) * n;
  for (int64_t e = firstIndex(); e < total; e += gridStride()) dst[e] = (1.0f - gate[e / n]) * a[e];
}

// p = p·decay − lr·(m / c1) / (sqrt(v / c2) + eps) after the moment updates, as the CPU optimizer.
__global__ void adamwKernel(int64_t n, float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, AdamStep s) {
  for (int64_t i = firstIndex(); i < n; i += gridStride()) {
    const float gi = g[i] * s.clip;
    const float mi = s.b1 * m[i] + (1.0f - s.b1) * gi;
    const float vi = s.b2 * v[i] + (1.0f - s.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * s.decay - s.lr * (mi / s.c1) / (sqrtf(vi / s.c2) + s.eps);
  }
}

// ------------------------------------------------------------------ LayerNorm (thread per row / column)

__global__ void layerNormForwardKernel(int M, int D, const float* __restrict__ x, const float* __restrict__ g,
                                       const float* __restrict__ b, float* __restrict__ y, float* __restrict__ mean,
                                       float* __restrict__ rstd) {
  for (int64_t m = firstIndex(); m < M; m += gridStride()) {
    const float* xm = x + m * D;
    float s = 0.0f;
    for (int i = 0; i < D; i++) s += xm[i];
    const float mu = s / D;
    float var = 0.0f;
    for (int i = 0; i < D; i++) var += (xm[i] - mu) * (xm[i] - mu);
    const float rs = 1.0f / sqrtf(var / D + 1e-5f);
    mean[m] = mu;
    rstd[m] = rs;
    float* ym = y + m * D;
    for (int i = 0; i < D; i++) ym[i] = (xm[i] - mu) * rs * g[i] + b[i];
  }
}

__global__ void layerNormBackwardInputKernel(int M, int D, const float* __restrict__ x, const float* __restrict__ dy,
                                             const float* __restrict__ g, const float* __restrict__ mean,
                                             const float* __restrict__ rstd, float* __restrict__ dx) {
  for (int64_t m = firstIndex(); m < M; m += gridStride()) {
    const float* xm = x + m * D;
    const float* dym = dy + m * D;
    const float mu = mean[m], rs = rstd[m];
    float sdy = 0.0f, sdyx = 0.0f;
    for (int i = 0; i < D; i++) {
      const float dxhat = dym[i] * g[i];
      sdy += dxhat;
      sdyx += dxhat * (xm[i] - mu) * rs;
    }
    const float a = sdy / D, bb = sdyx / D;
    float* dxm = dx + m * D;
    for (int i = 0; i < D; i++) dxm[i] = rs * (dym[i] * g[i] - a - (xm[i] - mu) * rs * bb);
  }
}

// dg, db += over the M rows, one thread per feature, rows in order.
__global__ void layerNormParamGradsKernel(int M, int D, const float* __restrict__ x, const float* __restrict__ dy,
                                          const float* __restrict__ mean, const float* __restrict__ rstd,
                                          float* __restrict__ dg, float* __restrict__ db) {
  for (int64_t i = firstIndex(); i < D; i += gridStride()) {
    float sg = dg[i], sb = db[i];
    for (int m = 0; m < M; m++) {
      const float d = dy[static_cast<int64_t>(m) * D + i];
      sg += d * (x[static_cast<int64_t>(m) * D + i] - mean[m]) * rstd[m];
      sb += d;
    }
    dg[i] = sg;
    db[i] = sb;
  }
}

// ------------------------------------------------------------------ data movement

// y[b][d][t] = x[b][t][d]: 32×32 tiles through shared memory so reads and writes are both
// coalesced. Grid: x = tiles of one matrix (d-tiles × t-tiles), y = the matrix b; threads 32×8.
constexpr int kTile = 32;
__global__ void transposeKernel(int T, int D, const float* __restrict__ x, float* __restrict__ y) {
  __shared__ float tile[kTile][kTile + 1];
  const int tilesD = (D + kTile - 1) / kTile;
  const int d0 = (blockIdx.x % tilesD) * kTile, t0 = (blockIdx.x / tilesD) * kTile;
  const int64_t off = static_cast<int64_t>(blockIdx.y) * T * D;
  for (int r = threadIdx.y; r < kTile; r += blockDim.y) {
    const int t = t0 + r, d = d0 + threadIdx.x;
    if (t < T && d < D) tile[r][threadIdx.x] = x[off + static_cast<int64_t>(t) * D + d];
  }
  __syncthreads();
  for (int r = threadIdx.y; r < kTile; r += blockDim.y) {
    const int d = d0 + r, t = t0 + threadIdx.x;
    if (t < T && d < D) y[off + static_cast<int64_t>(d) * T + t] = tile[threadIdx.x][r];
  }
}

// Forward: one thread per patch value, gathering from the image. Backward: one thread per image
// value, gathering from the patches (pixels no patch covers, when H or W is not a multiple of p,
// get 0), so neither direction scatters.
__global__ void patchifyKernel(int B, int C, int H, int W, int p, const float* __restrict__ src, float* __restrict__ dst,
                               bool backward) {
  const int gh = H / p, gw = W / p, np = gh * gw, pd = C * p * p;
  const int64_t image = static_cast<int64_t>(C) * H * W;
  const int64_t total = backward ? B * image : static_cast<int64_t>(B) * np * pd;
  for (int64_t e = firstIndex(); e < total; e += gridStride()) {
    if (!backward) {
      const int64_t b = e / (static_cast<int64_t>(np) * pd);
      const int t = static_cast<int>(e / pd % np), q = static_cast<int>(e % pd);
      const int ch = q / (p * p), i = q / p % p, j = q % p;
      dst[e] = src[b * image + (static_cast<int64_t>(ch) * H + (t / gw) * p + i) * W + (t % gw) * p + j];
    } else {
      const int64_t b = e / image;
      const int r = static_cast<int>(e % image);
      const int ch = r / (H * W), yy = r / W % H, xx = r % W;
      const int py = yy / p, px = xx / p;
      dst[e] = (py < gh && px < gw)
                   ? src[(b * np + py * gw + px) * pd + (ch * p + yy % p) * p + xx % p]
                   : 0.0f;
    }
  }
}

// y[b][d] = x[b][0][d] (first) or the mean over t, summed in t order then divided, as the CPU.
__global__ void poolForwardKernel(int B, int T, int D, bool first, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t e = firstIndex(); e < static_cast<int64_t>(B) * D; e += gridStride()) {
    const float* xb = x + (e / D) * T * D + e % D;
    if (first) {
      y[e] = xb[0];
      continue;
    }
    float s = 0.0f;
    for (int t = 0; t < T; t++) s += xb[static_cast<int64_t>(t) * D];
    y[e] = s / static_cast<float>(T);
  }
}

__global__ void poolBackwardKernel(int B, int T, int D, bool first, const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t e = firstIndex(); e < static_cast<int64_t>(B) * T * D; e += gridStride()) {
    const int64_t b = e / (static_cast<int64_t>(T) * D);
    const int t = static_cast<int>(e / D % T), d = static_cast<int>(e % D);
    const float g = dy[b * D + d];
    dx[e] = first ? (t == 0 ? g : 0.0f) : g / static_cast<float>(T);
  }
}

// ------------------------------------------------------------------ embeddings

__global__ void tokenPosForwardKernel(int B, int T, int D, const float* __restrict__ ids, const float* __restrict__ wte,
                                      const float* __restrict__ wpe, float* __restrict__ y) {
  for (int64_t e = firstIndex(); e < static_cast<int64_t>(B) * T * D; e += gridStride()) {
    const int64_t row = e / D;
    const int d = static_cast<int>(e % D), t = static_cast<int>(row % T);
    const int id = static_cast<int>(ids[row]);
    y[e] = wte[static_cast<int64_t>(id) * D + d] + wpe[static_cast<int64_t>(t) * D + d];
  }
}

// dwte[id][d] += dy[b][t][d] for every position holding `id`, positions in order (the CPU's order).
// Token rows are split by id modulo gridDim.y: thread (d, part) walks all positions and owns the
// ids of its part, so no two threads ever write one value.
__global__ void tokenEmbeddingBackwardKernel(int rows, int D, const float* __restrict__ ids, const float* __restrict__ dy,
                                             float* __restrict__ dwte) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  const int part = blockIdx.y, parts = gridDim.y;
  if (d >= D) return;
  for (int r = 0; r < rows; r++) {
    const int id = static_cast<int>(ids[r]);
    if (id % parts == part) dwte[static_cast<int64_t>(id) * D + d] += dy[static_cast<int64_t>(r) * D + d];
  }
}

// dst[i] += Σ_b src[b·stride + i] for i < n, b in order: the gradient of anything broadcast over the
// batch (position embeddings, the class token).
__global__ void sumOverBatchKernel(int B, int64_t n, int64_t stride, const float* __restrict__ src, float* __restrict__ dst) {
  for (int64_t i = firstIndex(); i < n; i += gridStride()) {
    float s = dst[i];
    for (int b = 0; b < B; b++) s += src[b * stride + i];
    dst[i] = s;
  }
}

// y[b] = [cls; x[b]] for B slices of T×D.
__global__ void clsForwardKernel(int B, int T, int D, const float* __restrict__ cls, const float* __restrict__ x,
                                 float* __restrict__ y) {
  const int64_t slice = static_cast<int64_t>(T + 1) * D;
  for (int64_t e = firstIndex(); e < B * slice; e += gridStride()) {
    const int64_t b = e / slice, r = e % slice;
    y[e] = r < D ? cls[r] : x[b * T * D + r - D];
  }
}

// dx[b] = dy[b] without its first token.
__global__ void clsBackwardInputKernel(int B, int T, int D, const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t n = static_cast<int64_t>(T) * D;
  for (int64_t e = firstIndex(); e < B * n; e += gridStride()) dx[e] = dy[(e / n) * (n + D) + D + e % n];
}

__global__ void posForwardKernel(int B, int64_t n, const float* __restrict__ x, const float* __restrict__ pos, float* __restrict__ y) {
  for (int64_t e = firstIndex(); e < B * n; e += gridStride()) y[e] = x[e] + pos[e % n];
}

// ------------------------------------------------------------------ attention (thread per query row)
// qkv [B × T × 3D]: q | k | v, heads contiguous in each; att [B × H × T × T].

__global__ void attentionForwardKernel(int B, int T, int D, int H, bool causal, const float* __restrict__ qkv,
                                       float* __restrict__ att, float* __restrict__ ctx) {
  const int hd = D / H;
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  for (int64_t row = firstIndex(); row < static_cast<int64_t>(B) * H * T; row += gridStride()) {
    const int i = static_cast<int>(row % T);
    const int64_t bh = row / T;
    const int64_t b = bh / H;
    const int h = static_cast<int>(bh % H);
    const float* base = qkv + b * T * 3 * D;
    float* a = att + row * T;
    const float* qi = base + static_cast<int64_t>(i) * 3 * D + h * hd;
    const int jEnd = causal ? i + 1 : T;
    float mx = -INFINITY;
    for (int j = 0; j < jEnd; j++) {
      const float* kj = base + static_cast<int64_t>(j) * 3 * D + D + h * hd;
      float s = 0.0f;
      for (int e = 0; e < hd; e++) s += qi[e] * kj[e];
      s *= scale;
      a[j] = s;
      mx = fmaxf(mx, s);
    }
    float sum = 0.0f;
    for (int j = 0; j < jEnd; j++) {
      const float e = expf(a[j] - mx);
      a[j] = e;
      sum += e;
    }
    for (int j = 0; j < T; j++) a[j] = j < jEnd ? a[j] / sum : 0.0f;
    float* ci = ctx + (b * T + i) * D + h * hd;
    for (int e = 0; e < hd; e++) {
      float c = 0.0f;
      for (int j = 0; j < jEnd; j++) c += a[j] * base[static_cast<int64_t>(j) * 3 * D + 2 * D + h * hd + e];
      ci[e] = c;
    }
  }
}

// Backward, part 1 (thread per query row i): dP_ij = dctx_i·v_j, dS_ij = P_ij (dP_ij − Σ_j dP_ij P_ij)·scale
// into ds [B × H × T × T], and dq_i = Σ_j dS_ij k_j.
__global__ void attentionBackwardRowsKernel(int B, int T, int D, int H, bool causal, const float* __restrict__ qkv,
                                            const float* __restrict__ att, const float* __restrict__ dctx,
                                            float* __restrict__ ds, float* __restrict__ dqkv) {
  const int hd = D / H;
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  for (int64_t row = firstIndex(); row < static_cast<int64_t>(B) * H * T; row += gridStride()) {
    const int i = static_cast<int>(row % T);
    const int64_t bh = row / T;
    const int64_t b = bh / H;
    const int h = static_cast<int>(bh % H);
    const float* base = qkv + b * T * 3 * D;
    const float* a = att + row * T;
    float* dsi = ds + row * T;
    const float* dci = dctx + (b * T + i) * D + h * hd;
    const int jEnd = causal ? i + 1 : T;
    float dot = 0.0f;
    for (int j = 0; j < jEnd; j++) {
      const float* vj = base + static_cast<int64_t>(j) * 3 * D + 2 * D + h * hd;
      float s = 0.0f;
      for (int e = 0; e < hd; e++) s += dci[e] * vj[e];
      dsi[j] = s;
      dot += s * a[j];
    }
    for (int j = 0; j < jEnd; j++) dsi[j] = a[j] * (dsi[j] - dot) * scale;
    float* dqi = dqkv + (b * T + i) * 3 * D + h * hd;
    for (int e = 0; e < hd; e++) {
      float s = 0.0f;
      for (int j = 0; j < jEnd; j++) s += dsi[j] * base[static_cast<int64_t>(j) * 3 * D + D + h * hd + e];
      dqi[e] = s;
    }
  }
}

// Part 2 (thread per key row j): dk_j = Σ_i dS_ij q_i and dv_j = Σ_i P_ij dctx_i, i in order.
__global__ void attentionBackwardColumnsKernel(int B, int T, int D, int H, bool causal, const float* __restrict__ qkv,
                                               const float* __restrict__ att, const float* __restrict__ dctx,
                                               const float* __restrict__ ds, float* __restrict__ dqkv) {
  const int hd = D / H;
  for (int64_t col = firstIndex(); col < static_cast<int64_t>(B) * H * T; col += gridStride()) {
    const int j = static_cast<int>(col % T);
    const int64_t bh = col / T;
    const int64_t b = bh / H;
    const int h = static_cast<int>(bh % H);
    const float* base = qkv + b * T * 3 * D;
    const int64_t ij0 = bh * T * T + j;  // (i, j) of this head is at ij0 + i·T
    float* dkj = dqkv + (b * T + j) * 3 * D + D + h * hd;
    float* dvj = dkj + D;
    for (int e = 0; e < hd; e++) {
      float sk = 0.0f, sv = 0.0f;
      for (int i = causal ? j : 0; i < T; i++) {
        sk += ds[ij0 + static_cast<int64_t>(i) * T] * base[static_cast<int64_t>(i) * 3 * D + h * hd + e];
        sv += att[ij0 + static_cast<int64_t>(i) * T] * dctx[(b * T + i) * D + h * hd + e];
      }
      dkj[e] = sk;
      dvj[e] = sv;
    }
  }
}

// ------------------------------------------------------------------ Pixelfly gate and mix

// gate[m] = sigmoid(x_m·gw + gb), hs_m = gate[m]·h_m, xs_m = (1 − gate[m])·x_m when xs is not null.
__global__ void pixelflyGateKernel(int M, const float* __restrict__ x, int in, const float* __restrict__ gw,
                                   const float* __restrict__ gb, const float* __restrict__ h, int rank,
                                   float* __restrict__ gate, float* __restrict__ hs, float* __restrict__ xs) {
  for (int64_t m = firstIndex(); m < M; m += gridStride()) {
    const float* xm = x + m * in;
    float z = gb[0];
    for (int i = 0; i < in; i++) z += xm[i] * gw[i];
    const float g = 1.0f / (1.0f + expf(-z));
    gate[m] = g;
    for (int k = 0; k < rank; k++) hs[m * rank + k] = g * h[m * rank + k];
    if (xs)
      for (int i = 0; i < in; i++) xs[m * in + i] = (1.0f - g) * xm[i];
  }
}

// y_m = (1 − gate[m])·y_m + bias + hs_m·Ut, one thread per value, rank terms in order.
__global__ void pixelflyLerpKernel(int M, float* __restrict__ y, int out, const float* __restrict__ gate,
                                   const float* __restrict__ bias, const float* __restrict__ hs, const float* __restrict__ Ut,
                                   int rank) {
  for (int64_t e = firstIndex(); e < static_cast<int64_t>(M) * out; e += gridStride()) {
    const int64_t m = e / out;
    const int j = static_cast<int>(e % out);
    float acc = (1.0f - gate[m]) * y[e] + bias[j];
    for (int k = 0; k < rank; k++) acc += hs[m * rank + k] * Ut[static_cast<int64_t>(k) * out + j];
    y[e] = acc;
  }
}

// pointwise::pixelflyMixBackward for one row per thread, except dgw (pixelflyGateWeightGradKernel).
__global__ void pixelflyMixBackwardKernel(int M, const float* __restrict__ x, int in, const float* __restrict__ gw,
                                          const float* __restrict__ V, const float* __restrict__ h, int rank,
                                          const float* __restrict__ gate, float* __restrict__ dx, float* __restrict__ dh,
                                          float* __restrict__ dz) {
  for (int64_t m = firstIndex(); m < M; m += gridStride()) {
    const float g = gate[m];
    const float* xm = x + m * in;
    float* dxm = dx + m * in;
    float* dhm = dh + m * rank;
    const float* hm = h + m * rank;
    float dys = 0.0f, dyl = 0.0f;
    for (int i = 0; i < in; i++) dys += xm[i] * dxm[i];
    for (int k = 0; k < rank; k++) dyl += dhm[k] * hm[k];
    const float d = g * (1.0f - g) * (dyl - dys);
    dz[m] = d;
    for (int k = 0; k < rank; k++) dhm[k] *= g;
    for (int i = 0; i < in; i++) {
      float acc = (1.0f - g) * dxm[i] + d * gw[i];
      for (int k = 0; k < rank; k++) acc += dhm[k] * V[static_cast<int64_t>(k) * in + i];
      dxm[i] = acc;
    }
  }
}

// dgw[i] += Σ_m dz[m]·x[m][i], one thread per input feature, rows in order.
__global__ void pixelflyGateWeightGradKernel(int M, const float* __restrict__ x, int in, const float* __restrict__ dz,
                                             float* __restrict__ dgw) {
  for (int64_t i = firstIndex(); i < in; i += gridStride()) {
    float s = 0.0f;
    for (int m = 0; m < M; m++) s += dz[m] * x[static_cast<int64_t>(m) * in + i];
    dgw[i] += s;
  }
}

// ------------------------------------------------------------------ loss and Σx²

// One thread per row: stats[r] = the row's loss (log Σ e^(z − max) − (z_t − max), in double as the
// CPU), stats[rows + r] = 1 when the first argmax is the target, 0 when not, −1 when the target is
// out of range (the host reports it); dlogits (already divided by rows) when not null.
__global__ void softmaxCrossEntropyKernel(int rows, int classes, const float* __restrict__ logits,
                                          const int32_t* __restrict__ targets, float* __restrict__ dlogits,
                                          double* __restrict__ stats) {
  for (int64_t r = firstIndex(); r < rows; r += gridStride()) {
    const float* z = logits + r * classes;
    int arg = 0;
    float mx = z[0];
    for (int k = 1; k < classes; k++)
      if (z[k] > mx) mx = z[k], arg = k;
    double sum = 0.0;
    for (int k = 0; k < classes; k++) sum += exp(static_cast<double>(z[k] - mx));
    const int t = targets[r];
    const bool valid = t >= 0 && t < classes;
    stats[r] = valid ? log(sum) - (z[t] - mx) : 0.0;
    stats[rows + r] = valid ? (arg == t ? 1.0 : 0.0) : -1.0;
    if (dlogits) {
      float* g = dlogits + r * classes;
      for (int k = 0; k < classes; k++)
        g[k] = static_cast<float>(exp(static_cast<double>(z[k] - mx)) / sum / rows) - (k == t ? 1.0f / rows : 0.0f);
    }
  }
}

// partial[c] = Σ x² over chunk c (kSumChunk values): each thread sums its strided share in double,
// then a shared-memory tree of fixed shape adds the threads' sums.
__global__ void __launch_bounds__(kSumThreads) sumOfSquaresKernel(const float* __restrict__ x, int64_t n,
                                                                 double* __restrict__ partial) {
  __shared__ double s[kSumThreads];
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kSumChunk;
  const int64_t c1 = c0 + kSumChunk < n ? c0 + kSumChunk : n;
  double acc = 0.0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += kSumThreads) acc += static_cast<double>(x[i]) * x[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kSumThreads / 2; half > 0; half >>= 1) {
    if (static_cast<int>(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

}  // namespace dev
}  // namespace cuda
}  // namespace pixelfly
