// Device kernels for every Backend operation besides the products (engine/backend.h) and attention
// (attention_kernels.cuh): GELU, adds, LayerNorm, data movement, embeddings, Pixelfly's gate and mix, softmax cross-entropy,
// Σx² and AdamW. The math is the CPU loops' (engine/pointwise.cc and the layers), written so the
// same inputs give bitwise the same outputs on every run and every device:
//  - no atomics; every sum runs in a fixed order that depends on the shape only, never on the grid;
//  - per-row work (LayerNorm, softmax cross-entropy, the Pixelfly gate and mix backward)
//    runs on a row group: kLanes threads of one block per row, striding the row's columns (so a
//    warp's loads are consecutive, i.e. coalesced), each lane summing its columns in order, then a
//    shared-memory tree of fixed shape over the lanes (groupSum). Groups of a warp's width, through
//    shared memory rather than shuffles, because the host emulation has no shuffles;
//  - sums down columns (LayerNorm's dg/db, the gate weight's gradient, the gradients of what is
//    broadcast over the batch: position embeddings, the class token) take fixed chunks of
//    kChunkRows rows (one thread per chunk and column, coalesced across columns), then add the
//    chunks' partials in chunk order (reduceColumnChunksKernel), as context.cu's dW does;
//  - Σx² is fixed-size chunks reduced by a shared-memory tree, whose partials the host adds in order.
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
constexpr int kLanes = 32;           // threads of a row group (a warp's width: one warp per row)
constexpr int kGroups = 4;           // row groups per block (blocks of kLanes × kGroups threads)
constexpr int kChunkRows = 64;       // rows per partial of a column sum
constexpr unsigned kMaxGridYZ = 65535;  // the largest grid.y / grid.z a device accepts

// grid.y (or z) for n independent slices, which the kernel walks with a gridDim.y stride when n
// is larger than a launch may be.
inline unsigned gridYZ(int64_t n) { return static_cast<unsigned>(n < 1 ? 1 : n < kMaxGridYZ ? n : kMaxGridYZ); }

__device__ __forceinline__ int64_t firstIndex() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t gridStride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Row groups (blockDim = kLanes × kGroups): group threadIdx.y of block blockIdx.x takes row
// firstGroupRow() + threadIdx.y, then every groupRowStride()-th. Kernels loop over the block's
// first row, a bound the whole block shares (every thread must reach each __syncthreads), and
// groups past the last row run the loop idle.
__device__ __forceinline__ int64_t firstGroupRow() { return static_cast<int64_t>(blockIdx.x) * kGroups; }
__device__ __forceinline__ int64_t groupRowStride() { return static_cast<int64_t>(gridDim.x) * kGroups; }

// v[k] = Σ over the lanes of this row group of v[k], for K sums at once; every lane gets the totals.
// A tree of fixed shape (halves of kLanes), so the result depends on the row alone. Every thread of
// the block must call it (it synchronizes the block).
template <int K, class T>
__device__ void groupSum(T (&v)[K]) {
  __shared__ T s[K][kGroups][kLanes];
  const int g = threadIdx.y, l = threadIdx.x;
  for (int k = 0; k < K; k++) s[k][g][l] = v[k];
  __syncthreads();
  for (int half = kLanes / 2; half > 0; half >>= 1) {
    if (l < half)
      for (int k = 0; k < K; k++) s[k][g][l] += s[k][g][l + half];
    __syncthreads();
  }
  for (int k = 0; k < K; k++) v[k] = s[k][g][0];
  __syncthreads();  // every lane has read the totals before s is written again
}

// The row group's largest v and its lowest index among equals (the first argmax, as the CPU's scan
// with `>`); idx < 0 marks a lane that saw no column and loses to any other. Same tree as groupSum.
__device__ void groupArgMax(float& v, int& idx) {
  __shared__ float sv[kGroups][kLanes];
  __shared__ int si[kGroups][kLanes];
  const int g = threadIdx.y, l = threadIdx.x;
  sv[g][l] = v;
  si[g][l] = idx;
  __syncthreads();
  for (int half = kLanes / 2; half > 0; half >>= 1) {
    if (l < half) {
      const float ov = sv[g][l + half];
      const int oi = si[g][l + half];
      if (oi >= 0 && (si[g][l] < 0 || ov > sv[g][l] || (ov == sv[g][l] && oi < si[g][l]))) sv[g][l] = ov, si[g][l] = oi;
    }
    __syncthreads();
  }
  v = sv[g][0];
  idx = si[g][0];
  __syncthreads();
}

// dst[i] += Σ_c part[c·stride + i] for i < n, chunks c in order: the second stage of every column sum.
__global__ void reduceColumnChunksKernel(int chunks, int64_t n, int64_t stride, const float* __restrict__ part,
                                         float* __restrict__ dst) {
  for (int64_t i = firstIndex(); i < n; i += gridStride()) {
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += part[c * stride + i];
    dst[i] += s;
  }
}

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

// ------------------------------------------------------------------ LayerNorm (row groups, column chunks)

__global__ void layerNormForwardKernel(int M, int D, const float* __restrict__ x, const float* __restrict__ g,
                                       const float* __restrict__ b, float* __restrict__ y, float* __restrict__ mean,
                                       float* __restrict__ rstd) {
  const int l = threadIdx.x;
  for (int64_t m0 = firstGroupRow(); m0 < M; m0 += groupRowStride()) {
    const int64_t m = m0 + threadIdx.y;
    const bool live = m < M;
    const float* xm = x + m * D;
    float s[1] = {0.0f};
    if (live)
      for (int i = l; i < D; i += kLanes) s[0] += xm[i];
    groupSum(s);
    const float mu = s[0] / D;
    float var[1] = {0.0f};
    if (live)
      for (int i = l; i < D; i += kLanes) var[0] += (xm[i] - mu) * (xm[i] - mu);
    groupSum(var);
    if (!live) continue;
    const float rs = 1.0f / sqrtf(var[0] / D + 1e-5f);
    if (l == 0) mean[m] = mu, rstd[m] = rs;
    float* ym = y + m * D;
    for (int i = l; i < D; i += kLanes) ym[i] = (xm[i] - mu) * rs * g[i] + b[i];
  }
}

__global__ void layerNormBackwardDataKernel(int M, int D, const float* __restrict__ x, const float* __restrict__ dy,
                                             const float* __restrict__ g, const float* __restrict__ mean,
                                             const float* __restrict__ rstd, float* __restrict__ dx) {
  const int l = threadIdx.x;
  for (int64_t m0 = firstGroupRow(); m0 < M; m0 += groupRowStride()) {
    const int64_t m = m0 + threadIdx.y;
    const bool live = m < M;
    const float* xm = x + m * D;
    const float* dym = dy + m * D;
    const float mu = live ? mean[m] : 0.0f, rs = live ? rstd[m] : 0.0f;
    float sums[2] = {0.0f, 0.0f};  // Σ dy·g, Σ dy·g·x̂
    if (live)
      for (int i = l; i < D; i += kLanes) {
        const float dxhat = dym[i] * g[i];
        sums[0] += dxhat;
        sums[1] += dxhat * (xm[i] - mu) * rs;
      }
    groupSum(sums);
    if (!live) continue;
    const float a = sums[0] / D, bb = sums[1] / D;
    float* dxm = dx + m * D;
    for (int i = l; i < D; i += kLanes) dxm[i] = rs * (dym[i] * g[i] - a - (xm[i] - mu) * rs * bb);
  }
}

// part[c][0][i] = Σ dy·x̂ and part[c][1][i] = Σ dy over the rows of chunk c (kChunkRows, in order):
// one thread per (chunk, feature), consecutive threads on consecutive features.
__global__ void layerNormParamPartialsKernel(int M, int D, const float* __restrict__ x, const float* __restrict__ dy,
                                             const float* __restrict__ mean, const float* __restrict__ rstd,
                                             float* __restrict__ part) {
  const int chunks = (M + kChunkRows - 1) / kChunkRows;
  for (int64_t e = firstIndex(); e < static_cast<int64_t>(chunks) * D; e += gridStride()) {
    const int c = static_cast<int>(e / D), i = static_cast<int>(e % D);
    const int m1 = (c + 1) * kChunkRows < M ? (c + 1) * kChunkRows : M;
    float sg = 0.0f, sb = 0.0f;
    for (int m = c * kChunkRows; m < m1; m++) {
      const float d = dy[static_cast<int64_t>(m) * D + i];
      sg += d * (x[static_cast<int64_t>(m) * D + i] - mean[m]) * rstd[m];
      sb += d;
    }
    part[(2 * static_cast<int64_t>(c)) * D + i] = sg;
    part[(2 * static_cast<int64_t>(c) + 1) * D + i] = sb;
  }
}

// ------------------------------------------------------------------ data movement

// y[b][d][t] = x[b][t][d]: 32×32 tiles through shared memory so reads and writes are both
// coalesced. Grid: x = tiles of one matrix (d-tiles × t-tiles), y = matrices b, b + gridDim.y, …
// (grid.y is at most kMaxGridYZ, so any batch fits); threads 32×8.
constexpr int kTile = 32;
__global__ void transposeKernel(int B, int T, int D, const float* __restrict__ x, float* __restrict__ y) {
  __shared__ float tile[kTile][kTile + 1];
  const int tilesD = (D + kTile - 1) / kTile;
  const int d0 = (blockIdx.x % tilesD) * kTile, t0 = (blockIdx.x / tilesD) * kTile;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    const int64_t off = b * T * D;
    for (int r = threadIdx.y; r < kTile; r += blockDim.y) {
      const int t = t0 + r, d = d0 + threadIdx.x;
      if (t < T && d < D) tile[r][threadIdx.x] = x[off + static_cast<int64_t>(t) * D + d];
    }
    __syncthreads();
    for (int r = threadIdx.y; r < kTile; r += blockDim.y) {
      const int d = d0 + r, t = t0 + threadIdx.x;
      if (t < T && d < D) y[off + static_cast<int64_t>(d) * T + t] = tile[threadIdx.x][r];
    }
    __syncthreads();  // the tile is read before the next matrix overwrites it
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

// part[c][i] = Σ src[b·stride + i] over the batch entries b of chunk c (kChunkRows, in order), i < n:
// the first stage of the gradient of anything broadcast over the batch (position embeddings, the
// class token), one thread per (chunk, value).
__global__ void batchChunkPartialsKernel(int B, int64_t n, int64_t stride, const float* __restrict__ src,
                                         float* __restrict__ part) {
  const int chunks = (B + kChunkRows - 1) / kChunkRows;
  for (int64_t e = firstIndex(); e < chunks * n; e += gridStride()) {
    const int c = static_cast<int>(e / n);
    const int64_t i = e % n;
    const int b1 = (c + 1) * kChunkRows < B ? (c + 1) * kChunkRows : B;
    float s = 0.0f;
    for (int b = c * kChunkRows; b < b1; b++) s += src[b * stride + i];
    part[e] = s;
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
__global__ void clsBackwardDataKernel(int B, int T, int D, const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t n = static_cast<int64_t>(T) * D;
  for (int64_t e = firstIndex(); e < B * n; e += gridStride()) dx[e] = dy[(e / n) * (n + D) + D + e % n];
}

__global__ void posForwardKernel(int B, int64_t n, const float* __restrict__ x, const float* __restrict__ pos, float* __restrict__ y) {
  for (int64_t e = firstIndex(); e < B * n; e += gridStride()) y[e] = x[e] + pos[e % n];
}

// ------------------------------------------------------------------ Pixelfly gate and mix

// gate[m] = sigmoid(x_m·gw + gb), hs_m = gate[m]·h_m, xs_m = (1 − gate[m])·x_m when xs is not null.
// A row group per row.
__global__ void pixelflyGateKernel(int M, const float* __restrict__ x, int in, const float* __restrict__ gw,
                                   const float* __restrict__ gb, const float* __restrict__ h, int rank,
                                   float* __restrict__ gate, float* __restrict__ hs, float* __restrict__ xs) {
  const int l = threadIdx.x;
  for (int64_t m0 = firstGroupRow(); m0 < M; m0 += groupRowStride()) {
    const int64_t m = m0 + threadIdx.y;
    const bool live = m < M;
    const float* xm = x + m * in;
    float z[1] = {0.0f};
    if (live)
      for (int i = l; i < in; i += kLanes) z[0] += xm[i] * gw[i];
    groupSum(z);
    if (!live) continue;
    const float g = 1.0f / (1.0f + expf(-(gb[0] + z[0])));
    if (l == 0) gate[m] = g;
    for (int k = l; k < rank; k += kLanes) hs[m * rank + k] = g * h[m * rank + k];
    if (xs)
      for (int i = l; i < in; i += kLanes) xs[m * in + i] = (1.0f - g) * xm[i];
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

// pointwise::pixelflyMixBackward, a row group per row, except dgw (pixelflyGateWeightPartialsKernel).
__global__ void pixelflyMixBackwardKernel(int M, const float* __restrict__ x, int in, const float* __restrict__ gw,
                                          const float* __restrict__ V, const float* __restrict__ h, int rank,
                                          const float* __restrict__ gate, float* __restrict__ dx, float* __restrict__ dh,
                                          float* __restrict__ dz) {
  const int l = threadIdx.x;
  for (int64_t m0 = firstGroupRow(); m0 < M; m0 += groupRowStride()) {
    const int64_t m = m0 + threadIdx.y;
    const bool live = m < M;
    const float* xm = x + m * in;
    float* dxm = dx + m * in;
    float* dhm = dh + m * rank;
    const float* hm = h + m * rank;
    float sums[2] = {0.0f, 0.0f};  // Σ x·dx (the sparse branch's dy·ys), Σ dh·h (the low-rank one's)
    if (live) {
      for (int i = l; i < in; i += kLanes) sums[0] += xm[i] * dxm[i];
      for (int k = l; k < rank; k += kLanes) sums[1] += dhm[k] * hm[k];
    }
    groupSum(sums);  // also orders every lane's reads of dh before the writes below
    const float g = live ? gate[m] : 0.0f;
    const float d = g * (1.0f - g) * (sums[1] - sums[0]);
    if (live) {
      if (l == 0) dz[m] = d;
      for (int k = l; k < rank; k += kLanes) dhm[k] *= g;
    }
    __syncthreads();  // dh is scaled before any lane reads all of it
    if (!live) continue;
    for (int i = l; i < in; i += kLanes) {
      float acc = (1.0f - g) * dxm[i] + d * gw[i];
      for (int k = 0; k < rank; k++) acc += dhm[k] * V[static_cast<int64_t>(k) * in + i];
      dxm[i] = acc;
    }
  }
}

// part[c][i] = Σ dz[m]·x[m][i] over the rows of chunk c (kChunkRows, in order), one thread per
// (chunk, input feature): the first stage of dgw += Σ_m dz[m]·x_m.
__global__ void pixelflyGateWeightPartialsKernel(int M, const float* __restrict__ x, int in, const float* __restrict__ dz,
                                                 float* __restrict__ part) {
  const int chunks = (M + kChunkRows - 1) / kChunkRows;
  for (int64_t e = firstIndex(); e < static_cast<int64_t>(chunks) * in; e += gridStride()) {
    const int c = static_cast<int>(e / in), i = static_cast<int>(e % in);
    const int m1 = (c + 1) * kChunkRows < M ? (c + 1) * kChunkRows : M;
    float s = 0.0f;
    for (int m = c * kChunkRows; m < m1; m++) s += dz[m] * x[static_cast<int64_t>(m) * in + i];
    part[e] = s;
  }
}

// ------------------------------------------------------------------ loss and Σx²

// A row group per row: stats[r] = the row's loss (log Σ e^(z − max) − (z_t − max), in double as the
// CPU), stats[rows + r] = 1 when the first argmax is the target, 0 when not, −1 when the target is
// out of range (the host reports it); dlogits (already divided by rows) when not null.
__global__ void softmaxCrossEntropyKernel(int rows, int classes, const float* __restrict__ logits,
                                          const int32_t* __restrict__ targets, float* __restrict__ dlogits,
                                          double* __restrict__ stats) {
  const int l = threadIdx.x;
  for (int64_t r0 = firstGroupRow(); r0 < rows; r0 += groupRowStride()) {
    const int64_t r = r0 + threadIdx.y;
    const bool live = r < rows;
    const float* z = logits + r * classes;
    float mx = -INFINITY;
    int arg = -1;
    if (live)
      for (int k = l; k < classes; k += kLanes)
        if (arg < 0 || z[k] > mx) mx = z[k], arg = k;
    groupArgMax(mx, arg);
    double sum[1] = {0.0};
    if (live)
      for (int k = l; k < classes; k += kLanes) sum[0] += exp(static_cast<double>(z[k] - mx));
    groupSum(sum);
    if (!live) continue;
    const int t = targets[r];
    const bool valid = t >= 0 && t < classes;
    if (l == 0) {
      stats[r] = valid ? log(sum[0]) - (z[t] - mx) : 0.0;
      stats[rows + r] = valid ? (arg == t ? 1.0 : 0.0) : -1.0;
    }
    if (dlogits) {
      float* gr = dlogits + r * classes;
      for (int k = l; k < classes; k += kLanes)
        gr[k] = static_cast<float>(exp(static_cast<double>(z[k] - mx)) / sum[0] / rows) - (k == t ? 1.0f / rows : 0.0f);
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
