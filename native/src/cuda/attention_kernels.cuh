// Device kernels of the attention core over a block-sparse score layout (engine/backend.h's
// attentionForward / attentionBackward; the method: kernels/ATTENTION.md), the CPU kernels' math:
// scores only at the kept blocks (and keys j ≤ i when causal), an online softmax (running max and
// sum, the output rescaled), no T×T array in memory; the backward recomputes the probabilities
// from each query's log-sum-exp.
//
// One thread block of kLanes threads (a row group, one warp) per query row (forward, dQ) or key row
// (dK, dV), so each block walks its own list of kept key (query) blocks with as many barriers as it
// needs. The row's keys (queries) go 32 at a time, one per lane: the lane's score is a dot product
// over the head dimension, published in shared memory; every lane then reads the chunk's 32 values
// and reduces them itself in lane order (a chunk's max and sum, the output features it owns), so
// each chunk costs one or two barriers (shared arrays alternate between chunks) and every sum runs
// in an order fixed by the shape: results are deterministic.
//
// Not tiled through shared memory or tensor cores: each lane reads its own k (q) row from global
// memory. Correct on any block size, head dimension up to kMaxHeadDim and T; the speed on a GPU is
// unmeasured (README.md, Limits).
// Included by layers.cu after layer_kernels.cuh (kLanes, the launch constants).
#pragma once

namespace pixelfly {
namespace cuda {
namespace dev {

using sched::imin;
__device__ __forceinline__ int imax(int x, int y) { return x > y ? x : y; }

constexpr int kMaxHeadDim = 256;
constexpr int kFeaturesPerLane = kMaxHeadDim / kLanes;

// The layout and sizes every attention kernel reads (device pointers into a DeviceLayout).
struct AttentionArgs {
  const int32_t* rowPtr;
  const int32_t* colIdx;
  const int32_t* colPtr;
  const int32_t* rowIdx;
  int block, B, T, D, H;
  bool causal;
  float scale;
};

// Row r of the [B × H × T] grid: sample b, head h, token t, and where its q, k, v and ctx rows start.
struct HeadRow {
  int64_t b;
  int h, t;
  __device__ HeadRow(int64_t r, const AttentionArgs& a)
      : b(r / a.T / a.H), h(static_cast<int>(r / a.T % a.H)), t(static_cast<int>(r % a.T)) {}
  __device__ int64_t qkv(const AttentionArgs& a, int token, int which) const {  // which: 0 q, 1 k, 2 v
    return (b * a.T + token) * 3 * a.D + which * a.D + h * (a.D / a.H);
  }
  __device__ int64_t ctx(const AttentionArgs& a, int token) const { return (b * a.T + token) * a.D + h * (a.D / a.H); }
};

__device__ __forceinline__ float dotRow(const float* __restrict__ s, const float* __restrict__ g, int hd) {
  float acc = 0.0f;
  for (int e = 0; e < hd; e++) acc += s[e] * g[e];
  return acc;
}

// Copies hd floats of a global row into shared memory (lanes stride the features).
__device__ __forceinline__ void stageRow(float* s, const float* __restrict__ g, int hd) {
  for (int e = threadIdx.x; e < hd; e += kLanes) s[e] = g[e];
}

__global__ void attentionForwardKernel(AttentionArgs a, const float* __restrict__ qkv, float* __restrict__ ctx,
                                       float* __restrict__ lse) {
  __shared__ float q[kMaxHeadDim];
  __shared__ float sc[2][kLanes], pr[2][kLanes];  // the chunk's scores and probabilities, by chunk parity
  const int hd = a.D / a.H, l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const HeadRow hr(row, a);
    const int i = hr.t, r = i / a.block;
    stageRow(q, qkv + hr.qkv(a, i, 0), hd);
    __syncthreads();
    float acc[kFeaturesPerLane] = {};
    float m = -INFINITY, sum = 0.0f;
    int parity = 0;
    for (int kb = a.rowPtr[r]; kb < a.rowPtr[r + 1]; kb++) {
      const int j0 = a.colIdx[kb] * a.block;
      const int j1 = imin(a.T, a.causal ? imin(j0 + a.block, i + 1) : j0 + a.block);
      for (int jc = j0; jc < j1; jc += kLanes, parity ^= 1) {
        const int n = imin(kLanes, j1 - jc);
        const float s = l < n ? a.scale * dotRow(q, qkv + hr.qkv(a, jc + l, 1), hd) : -INFINITY;
        sc[parity][l] = s;
        __syncthreads();
        float cmax = -INFINITY;
        for (int t = 0; t < n; t++) cmax = fmaxf(cmax, sc[parity][t]);
        const float mNew = fmaxf(m, cmax);
        const float alpha = m == -INFINITY ? 0.0f : expf(m - mNew);
        pr[parity][l] = l < n ? expf(s - mNew) : 0.0f;
        __syncthreads();
        float csum = 0.0f;
        for (int t = 0; t < n; t++) csum += pr[parity][t];
        sum = sum * alpha + csum;
        m = mNew;
        for (int u = 0; u < kFeaturesPerLane; u++) {
          const int f = l + u * kLanes;
          if (f >= hd) break;
          float o = acc[u] * alpha;
          for (int t = 0; t < n; t++) o += pr[parity][t] * qkv[hr.qkv(a, jc + t, 2) + f];
          acc[u] = o;
        }
      }
    }
    for (int u = 0; u < kFeaturesPerLane; u++) {
      const int f = l + u * kLanes;
      if (f < hd) ctx[hr.ctx(a, i) + f] = acc[u] / sum;
    }
    if (l == 0) lse[row] = m + logf(sum);
    __syncthreads();  // q and the last chunk's arrays are read before the next row writes them
  }
}

// Δ_i = dO_i·O_i − dlse_i per query row (rows of the [B × H × T] grid): the softmax backward's row
// term, with the gradient the low-rank term's mix gives lse (dlse null: none).
__global__ void attentionRowDotKernel(AttentionArgs a, const float* __restrict__ ctx, const float* __restrict__ dctx,
                                      const float* __restrict__ dlse, float* __restrict__ delta) {
  __shared__ float part[kLanes];
  const int hd = a.D / a.H, l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const HeadRow hr(row, a);
    float s = 0.0f;
    for (int f = l; f < hd; f += kLanes) s += ctx[hr.ctx(a, hr.t) + f] * dctx[hr.ctx(a, hr.t) + f];
    part[l] = s;
    __syncthreads();
    if (l == 0) {
      float total = 0.0f;
      for (int t = 0; t < kLanes; t++) total += part[t];
      delta[row] = dlse ? total - dlse[row] : total;
    }
    __syncthreads();
  }
}

// The gradient of score s_ij from recomputed probabilities: dS = P (dO_i·v_j − Δ_i), P = e^(s − lse_i).
__device__ __forceinline__ void scoreGrad(const AttentionArgs& a, const float* qi, const float* kj, const float* doi,
                                          const float* vj, float lse, float delta, int hd, float* p, float* ds) {
  *p = expf(a.scale * dotRow(qi, kj, hd) - lse);
  *ds = *p * (dotRow(doi, vj, hd) - delta);
}

// dq_i = scale Σ_j dS_ij k_j, one block per query row, keys 32 at a time.
__global__ void attentionBackwardQueryKernel(AttentionArgs a, const float* __restrict__ qkv, const float* __restrict__ lse,
                                             const float* __restrict__ delta, const float* __restrict__ dctx,
                                             float* __restrict__ dqkv) {
  __shared__ float q[kMaxHeadDim], dO[kMaxHeadDim];
  __shared__ float ds[2][kLanes];  // by chunk parity
  const int hd = a.D / a.H, l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const HeadRow hr(row, a);
    const int i = hr.t, r = i / a.block;
    stageRow(q, qkv + hr.qkv(a, i, 0), hd);
    stageRow(dO, dctx + hr.ctx(a, i), hd);
    __syncthreads();
    float acc[kFeaturesPerLane] = {};
    int parity = 0;
    for (int kb = a.rowPtr[r]; kb < a.rowPtr[r + 1]; kb++) {
      const int j0 = a.colIdx[kb] * a.block;
      const int j1 = imin(a.T, a.causal ? imin(j0 + a.block, i + 1) : j0 + a.block);
      for (int jc = j0; jc < j1; jc += kLanes, parity ^= 1) {
        const int n = imin(kLanes, j1 - jc);
        float p = 0.0f, g = 0.0f;
        if (l < n) scoreGrad(a, q, qkv + hr.qkv(a, jc + l, 1), dO, qkv + hr.qkv(a, jc + l, 2), lse[row], delta[row], hd, &p, &g);
        ds[parity][l] = g;
        __syncthreads();
        for (int u = 0; u < kFeaturesPerLane; u++) {
          const int f = l + u * kLanes;
          if (f >= hd) break;
          for (int t = 0; t < n; t++) acc[u] += ds[parity][t] * qkv[hr.qkv(a, jc + t, 1) + f];
        }
      }
    }
    for (int u = 0; u < kFeaturesPerLane; u++) {
      const int f = l + u * kLanes;
      if (f < hd) dqkv[hr.qkv(a, i, 0) + f] = a.scale * acc[u];
    }
    __syncthreads();  // q, dO and the chunk arrays are read before the next row writes them
  }
}

// dk_j = scale Σ_i dS_ij q_i and dv_j = Σ_i P_ij dO_i, one block per key row: the queries of the
// kept blocks in its block-column (the layout's transposed view), 32 at a time.
__global__ void attentionBackwardKeyKernel(AttentionArgs a, const float* __restrict__ qkv, const float* __restrict__ lse,
                                           const float* __restrict__ delta, const float* __restrict__ dctx,
                                           float* __restrict__ dqkv) {
  __shared__ float k[kMaxHeadDim], v[kMaxHeadDim];
  __shared__ float ps[2][kLanes], ds[2][kLanes];  // by chunk parity
  const int hd = a.D / a.H, l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const HeadRow hr(row, a);
    const int j = hr.t, c = j / a.block;
    const int64_t headRow0 = row - j;  // row of token 0 of this (sample, head)
    stageRow(k, qkv + hr.qkv(a, j, 1), hd);
    stageRow(v, qkv + hr.qkv(a, j, 2), hd);
    __syncthreads();
    float dk[kFeaturesPerLane] = {}, dv[kFeaturesPerLane] = {};
    int parity = 0;
    for (int t = a.colPtr[c]; t < a.colPtr[c + 1]; t++) {
      const int i0 = imax(a.rowIdx[t] * a.block, a.causal ? j : 0);
      const int i1 = imin(a.T, a.rowIdx[t] * a.block + a.block);
      for (int ic = i0; ic < i1; ic += kLanes, parity ^= 1) {
        const int n = imin(kLanes, i1 - ic);
        float p = 0.0f, g = 0.0f;
        if (l < n) {
          const int i = ic + l;
          scoreGrad(a, qkv + hr.qkv(a, i, 0), k, dctx + hr.ctx(a, i), v, lse[headRow0 + i], delta[headRow0 + i], hd, &p, &g);
        }
        ps[parity][l] = p;
        ds[parity][l] = g;
        __syncthreads();
        for (int u = 0; u < kFeaturesPerLane; u++) {
          const int f = l + u * kLanes;
          if (f >= hd) break;
          for (int s = 0; s < n; s++) {
            dk[u] += ds[parity][s] * qkv[hr.qkv(a, ic + s, 0) + f];
            dv[u] += ps[parity][s] * dctx[hr.ctx(a, ic + s) + f];
          }
        }
      }
    }
    for (int u = 0; u < kFeaturesPerLane; u++) {
      const int f = l + u * kLanes;
      if (f >= hd) break;
      dqkv[hr.qkv(a, j, 1) + f] = a.scale * dk[u];
      dqkv[hr.qkv(a, j, 2) + f] = dv[u];
    }
    __syncthreads();  // k, v and the chunk arrays are read before the next row writes them
  }
}

}  // namespace dev
}  // namespace cuda
}  // namespace pixelfly
