// Device kernels of Pixelfly attention's low-rank term (engine/backend.h LowRankTerm; the method:
// kernels/ATTENTION.md (A4), (A5)), engine/performer.cc's math step for step: Performer features
// of every query and key (each query's largest log-feature and each item's largest key
// log-feature factored out), each key block's sums φ(K_J)ᵀ·V_J and φ(K_J)ᵀ·1, each query block's sums
// over the key blocks its layout row drops, and the mix of (A4) with the sparse part's output and
// lse; the backward the same in reverse. An item is one head of one sample (b·H + h).
//
// One row group (kLanes threads) per token row (features, mix, the two per-token gradients) or per
// score block row (the block sums): lanes stride the features or the head dimension, every sum
// runs in an order fixed by the shape (a loop over tokens, features, or blocks in ascending order),
// so results are deterministic. Not tiled: sized for correctness on any T, block, head dimension up
// to kMaxHeadDim and up to kMaxFeatures features; the speed on a GPU is unmeasured.
// Included by layers.cu after attention_kernels.cuh (kLanes, kMaxHeadDim, stageRow).
#pragma once

namespace pixelfly {
namespace cuda {
namespace dev {

constexpr int kMaxFeatures = 1024;  // core/attention.ts MAX_ATTENTION_FEATURES

struct PerformerArgs {
  const float* w;          // [m/2][hd]: the projection rows ω_r
  const uint8_t* dropped;  // [n][n]
  int B, T, D, H, m, hd, bs, n;
  float rootScale;  // scale^½, scale = 1/√hd: x′ = x·scale^½
  float halfLogM;   // log(m)/2
};

// Where token t of item `item` has its q (which 0), k (1) or v (2) in qkv, and its row of ctx.
__device__ __forceinline__ int64_t pfQkv(const PerformerArgs& a, int64_t item, int t, int which) {
  return ((item / a.H) * a.T + t) * 3 * a.D + which * a.D + (item % a.H) * a.hd;
}
__device__ __forceinline__ int64_t pfCtx(const PerformerArgs& a, int64_t item, int t) {
  return ((item / a.H) * a.T + t) * a.D + (item % a.H) * a.hd;
}
// Row `row` of the [items × T] token grid: its item, token and score block (the block's row of
// the per-block arrays).
struct TokenRow {
  int64_t item, blk;
  int t;
  __device__ TokenRow(int64_t row, const PerformerArgs& a)
      : item(row / a.T), blk(row / a.T * a.n + row % a.T / a.bs), t(static_cast<int>(row % a.T)) {}
  __device__ int64_t qkv(const PerformerArgs& a, int which) const { return pfQkv(a, item, t, which); }
  __device__ int64_t ctx(const PerformerArgs& a) const { return pfCtx(a, item, t); }
};

// The tokens of score block J: [J·bs, min(T, J·bs + bs)).
__device__ __forceinline__ int pfEnd(const PerformerArgs& a, int J) { return imin(a.T, J * a.bs + a.bs); }

// log φ (A5) of the query (which 0) or key (1) rows: [ω_r·x′, −ω_r·x′] − |x′|²/2 − log(m)/2. With
// `shift` (queries), each row's largest value is factored out: φ′ = e^{log φ − shift} and the shift
// is kept; without, the log-features are written as they are (the keys' shift is the item's max).
__global__ void performerFeaturesKernel(PerformerArgs a, const float* __restrict__ qkv, int which, float* __restrict__ phi,
                                        float* __restrict__ shift) {
  __shared__ float x[kMaxHeadDim];
  __shared__ float f[kMaxFeatures];
  const int l = threadIdx.x, half = a.m / 2;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const TokenRow tr(row, a);
    stageRow(x, qkv + tr.qkv(a, which), a.hd);
    __syncthreads();
    float sq = 0.0f;
    for (int c = 0; c < a.hd; c++) sq += x[c] * x[c];
    const float diag = 0.5f * a.rootScale * a.rootScale * sq + a.halfLogM;
    for (int r = l; r < half; r += kLanes) {
      const float d = a.rootScale * dotRow(x, a.w + static_cast<int64_t>(r) * a.hd, a.hd);
      f[r] = d - diag;
      f[r + half] = -d - diag;
    }
    __syncthreads();
    float* out = phi + row * a.m;
    if (shift) {
      float top = -INFINITY;
      for (int r = 0; r < a.m; r++) top = fmaxf(top, f[r]);
      for (int r = l; r < a.m; r += kLanes) out[r] = expf(f[r] - top);
      if (l == 0) shift[row] = top;
    } else {
      for (int r = l; r < a.m; r += kLanes) out[r] = f[r];
    }
    __syncthreads();  // x and f are read before the next row writes them
  }
}

// The keys' shift of each item: the largest of its T·m log-features (a maximum: any order gives it).
__global__ void performerKeyShiftKernel(PerformerArgs a, const float* __restrict__ logPhiK, float* __restrict__ shiftK) {
  __shared__ float part[kLanes];
  const int l = threadIdx.x;
  const int64_t items = int64_t(a.B) * a.H, per = int64_t(a.T) * a.m;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    float top = -INFINITY;
    for (int64_t e = l; e < per; e += kLanes) top = fmaxf(top, logPhiK[item * per + e]);
    part[l] = top;
    __syncthreads();
    if (l == 0) {
      for (int s = 1; s < kLanes; s++) top = fmaxf(top, part[s]);
      shiftK[item] = top;
    }
    __syncthreads();
  }
}

// φ′(k) = e^{log φ(k) − shiftK[item]}, in place over the items' T·m values each.
__global__ void performerExpKeysKernel(PerformerArgs a, float* __restrict__ phiK, const float* __restrict__ shiftK) {
  const int64_t per = int64_t(a.T) * a.m, n = int64_t(a.B) * a.H * per;
  for (int64_t i = firstIndex(); i < n; i += gridStride()) phiK[i] = expf(phiK[i] - shiftK[i / per]);
}

// Per score block X of each item, over its tokens in order: S_X = φ_Xᵀ·R_X (m × hd) and
// s_X = φ_Xᵀ·w_X (m). The key blocks' kv and ks (φ(K), R = V, w = 1) and, in the backward, the query
// blocks' dkvC and dkC (φ(Q), R = du, w = dz). R is qkv's v rows (`which` 2) or an
// [items·T·hd] array (`which` −1); w null stands for ones.
__global__ void performerBlockSumsKernel(PerformerArgs a, const float* __restrict__ phi, const float* __restrict__ R, int which,
                                         const float* __restrict__ w, float* __restrict__ S, float* __restrict__ s) {
  const int l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.n, width = int64_t(a.m) * a.hd;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t item = row / a.n;
    const int X = static_cast<int>(row % a.n), t1 = pfEnd(a, X);
    for (int64_t e = l; e < width; e += kLanes) {
      const int r = static_cast<int>(e / a.hd), c = static_cast<int>(e % a.hd);
      float acc = 0.0f;
      for (int t = X * a.bs; t < t1; t++) {
        const int64_t at = which >= 0 ? pfQkv(a, item, t, which) : (item * a.T + t) * a.hd;
        acc += phi[(item * a.T + t) * a.m + r] * R[at + c];
      }
      S[row * width + e] = acc;
    }
    for (int r = l; r < a.m; r += kLanes) {
      float acc = 0.0f;
      for (int t = X * a.bs; t < t1; t++) acc += phi[(item * a.T + t) * a.m + r] * (w ? w[item * a.T + t] : 1.0f);
      s[row * a.m + r] = acc;
    }
  }
}

// Sums of `width` values a block over the dropped (query block I, key block J) pairs: per query
// block I the sum over the key blocks it drops (`toKeys` false), or per key block J the sum over
// the query blocks that drop it (the backward's transpose); blocks taken in ascending order.
__global__ void performerDroppedSumsKernel(PerformerArgs a, int64_t width, const float* __restrict__ src, float* __restrict__ dst,
                                           bool toKeys) {
  const int l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.n;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t item = row / a.n;
    const int X = static_cast<int>(row % a.n);
    for (int64_t e = l; e < width; e += kLanes) {
      float s = 0.0f;
      for (int Y = 0; Y < a.n; Y++) {
        const bool drop = toKeys ? a.dropped[Y * a.n + X] : a.dropped[X * a.n + Y];
        if (drop) s += src[(item * a.n + Y) * width + e];
      }
      dst[row * width + e] = s;
    }
  }
}

// Per query (A4): u = φ(q)·kvC_I, N = φ(q)·kC_I, the weights ws = e^{lse − log Z} and
// wl = e^{c − log Z} with c the two shifts and log Z = logaddexp(lse, log N + c), and o = ws·o^s + wl·u
// in place in ctx. A query block that drops no key block (N = 0) keeps the sparse output.
__global__ void performerMixKernel(PerformerArgs a, const float* __restrict__ phiQ, const float* __restrict__ shiftQ,
                                   const float* __restrict__ shiftK, const float* __restrict__ kvC, const float* __restrict__ kC,
                                   const float* __restrict__ lse, float* __restrict__ u, float* __restrict__ ws,
                                   float* __restrict__ wl, float* __restrict__ ctx) {
  __shared__ float f[kMaxFeatures];
  const int l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const TokenRow tr(row, a);
    stageRow(f, phiQ + row * a.m, a.m);
    __syncthreads();
    const float z = dotRow(f, kC + tr.blk * a.m, a.m);
    float wsT = 1.0f, wlT = 0.0f;
    if (z > 0.0f) {
      const float c = shiftQ[row] + shiftK[tr.item];
      const float logN = logf(z) + c, hi = fmaxf(lse[row], logN);
      const float logZ = hi + logf(expf(lse[row] - hi) + expf(logN - hi));
      wsT = expf(lse[row] - logZ);
      wlT = expf(c - logZ);
    }
    for (int col = l; col < a.hd; col += kLanes) {
      float uc = 0.0f;
      for (int r = 0; r < a.m; r++) uc += f[r] * kvC[(tr.blk * a.m + r) * a.hd + col];
      u[row * a.hd + col] = uc;
      float* o = ctx + tr.ctx(a) + col;
      *o = wsT * *o + wlT * uc;
    }
    if (l == 0) ws[row] = wsT, wl[row] = wlT;
    __syncthreads();  // f is read before the next row writes it
  }
}

// Through d(log φ) to x (one token; every lane calls it): dd_r = scale^½·(dφ_r φ_r − dφ_{r+m/2} φ_{r+m/2}),
// dx += Σ_r dd_r ω_r − scale·(Σ_r dφ_r φ_r)·x. phi and dphi are shared; dd is shared scratch.
__device__ void performerFeaturesBackward(const PerformerArgs& a, const float* __restrict__ x, const float* phi, const float* dphi,
                                          float* dd, float* __restrict__ dx) {
  const int l = threadIdx.x, half = a.m / 2;
  float total = 0.0f;
  for (int r = 0; r < a.m; r++) total += dphi[r] * phi[r];
  for (int r = l; r < half; r += kLanes) dd[r] = a.rootScale * (dphi[r] * phi[r] - dphi[r + half] * phi[r + half]);
  __syncthreads();
  const float k = a.rootScale * a.rootScale * total;
  for (int c = l; c < a.hd; c += kLanes) {
    float g = -k * x[c];
    for (int r = 0; r < half; r++) g += dd[r] * a.w[static_cast<int64_t>(r) * a.hd + c];
    dx[c] += g;
  }
}

// Per query, from dO: dS = ws·dO (the sparse output's gradient), dlse = ws·(dO·o^s + dL) with
// dL = −(ws·dO·o^s + wl·dO·u), du = wl·dO and dz = wl·dL (kept for the query block sums), then
// dφ(q) = du·kvC_Iᵀ + dz·kC_I and through the features to dq (added to dqkv).
__global__ void performerQueryGradKernel(PerformerArgs a, const float* __restrict__ qkv, const float* __restrict__ dctx,
                                         const float* __restrict__ os, const float* __restrict__ phiQ, const float* __restrict__ kvC,
                                         const float* __restrict__ kC, const float* __restrict__ u, const float* __restrict__ ws,
                                         const float* __restrict__ wl, float* __restrict__ dS, float* __restrict__ dlse,
                                         float* __restrict__ du, float* __restrict__ dz, float* __restrict__ dqkv) {
  __shared__ float g[kMaxHeadDim], duS[kMaxHeadDim];
  __shared__ float f[kMaxFeatures], dphi[kMaxFeatures], dd[kMaxFeatures / 2];
  const int l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const TokenRow tr(row, a);
    const int64_t at = tr.ctx(a);
    stageRow(g, dctx + at, a.hd);
    stageRow(f, phiQ + row * a.m, a.m);
    __syncthreads();
    const float wsT = ws[row], wlT = wl[row];
    const float dws = dotRow(g, os + at, a.hd), dwl = dotRow(g, u + row * a.hd, a.hd);
    const float dL = -(dws * wsT + dwl * wlT), dzT = dL * wlT;
    for (int c = l; c < a.hd; c += kLanes) {
      dS[at + c] = wsT * g[c];
      duS[c] = wlT * g[c];
      du[row * a.hd + c] = wlT * g[c];
    }
    if (l == 0) dlse[row] = wsT * (dws + dL), dz[row] = dzT;
    __syncthreads();
    for (int r = l; r < a.m; r += kLanes) dphi[r] = dotRow(duS, kvC + (tr.blk * a.m + r) * a.hd, a.hd) + dzT * kC[tr.blk * a.m + r];
    __syncthreads();
    performerFeaturesBackward(a, qkv + tr.qkv(a, 0), f, dphi, dd, dqkv + tr.qkv(a, 0));
    __syncthreads();  // the shared rows are read before the next row writes them
  }
}

// Per key, from its block J's gradients dkv_J, dks_J (the query blocks' passed back):
// dφ(k) = dks_J + v·dkv_Jᵀ, dv = φ(k)·dkv_J, and through the features to dk (both added to dqkv).
__global__ void performerKeyGradKernel(PerformerArgs a, const float* __restrict__ qkv, const float* __restrict__ phiK,
                                       const float* __restrict__ dkv, const float* __restrict__ dks, float* __restrict__ dqkv) {
  __shared__ float v[kMaxHeadDim];
  __shared__ float f[kMaxFeatures], dphi[kMaxFeatures], dd[kMaxFeatures / 2];
  const int l = threadIdx.x;
  const int64_t rows = int64_t(a.B) * a.H * a.T;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const TokenRow tr(row, a);
    stageRow(v, qkv + tr.qkv(a, 2), a.hd);
    stageRow(f, phiK + row * a.m, a.m);
    __syncthreads();
    for (int r = l; r < a.m; r += kLanes) dphi[r] = dks[tr.blk * a.m + r] + dotRow(v, dkv + (tr.blk * a.m + r) * a.hd, a.hd);
    float* dv = dqkv + tr.qkv(a, 2);
    for (int c = l; c < a.hd; c += kLanes) {
      float s = 0.0f;
      for (int r = 0; r < a.m; r++) s += f[r] * dkv[(tr.blk * a.m + r) * a.hd + c];
      dv[c] += s;
    }
    __syncthreads();
    performerFeaturesBackward(a, qkv + tr.qkv(a, 1), f, dphi, dd, dqkv + tr.qkv(a, 1));
    __syncthreads();  // the shared rows are read before the next row writes them
  }
}

}  // namespace dev
}  // namespace cuda
}  // namespace pixelfly
