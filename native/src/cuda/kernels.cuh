// Device kernels of the CUDA backend (included by kernels.cu only). Every block-sparse kernel takes
// its tile from bsr_schedule.h, so the host reference (reference.h) walks the same decomposition.
//
// Two paths per product:
//  - fp32: shared-memory tiles and fp32 FMAs (exact-precision path, and the check for the other);
//  - tensor cores: inputs converted to bf16 or fp16 while they are staged in shared memory, 16×16×16
//    wmma products (mma.sync underneath) with fp32 accumulators. Weights stay fp32 in memory (the
//    optimizer's master copy), as on the CPU, so callers only choose a Precision.
#pragma once
#include <type_traits>

#include "cuda/bsr_schedule.h"
#include "cuda/device_runtime.h"

namespace pixelfly {
namespace cuda {
namespace dev {

using namespace sched;
namespace wmma = nvcuda::wmma;

constexpr int kThreadsF32 = 256;
constexpr int kWarpsTC = 4;
constexpr int kThreadsTC = kWarpsTC * 32;

template <class T>
__device__ __forceinline__ T toT(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 toT<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ half toT<half>(float x) {
  return __float2half_rn(x);
}

// ------------------------------------------------------------------ forward and dX (row tiles)
// Fwd: tile = (block-row, M tile), C = Y, A = X, walks the block-row, C[m][j] += A[m][kk]·W[j][kk].
// dX:  tile = (block-column, M tile), C = dX, A = dY, walks the transposed view, C[m][j] += A[m][kk]·W[kk][j].

template <int B, bool Fwd>
__global__ void __launch_bounds__(kThreadsF32) bsrRowsF32(BsrView v, int M, const float* __restrict__ A,
                                                          const float* __restrict__ Wp, const float* __restrict__ bias,
                                                          float* __restrict__ C, bool accumulate) {
  __shared__ float As[kTileM][B + 1];
  __shared__ float Ws[B][B + 1];  // Ws[kk][j]: what multiplies A[m][kk] into C[m][j]
  constexpr int kPer = kTileM * B / kThreadsF32;
  constexpr int kRowStride = kThreadsF32 / B;
  const Tile t = decodeTile(blockIdx.x, M, kTileM);
  const int nC = Fwd ? realOut(v, t.major) : realIn(v, t.major);
  const int lda = Fwd ? v.in : v.out, ldc = Fwd ? v.out : v.in;
  const int j = threadIdx.x % B, i0 = threadIdx.x / B;
  float acc[kPer];
#pragma unroll
  for (int p = 0; p < kPer; p++) acc[p] = 0.f;
  const int steps = Fwd ? forwardSteps(v, t.major) : backwardDataSteps(v, t.major);
  for (int s = 0; s < steps; s++) {
    const Step st = Fwd ? forwardStep(v, t.major, s) : backwardDataStep(v, t.major, s);
    const int nK = Fwd ? realIn(v, st.other) : realOut(v, st.other);
    for (int e = threadIdx.x; e < kTileM * B; e += kThreadsF32) {
      const int m = e / B, kk = e % B;
      // Padding reads as zero, so whatever the padded weights hold never reaches C.
      As[m][kk] = (m < t.rows && kk < nK) ? A[static_cast<size_t>(t.m0 + m) * lda + st.other * B + kk] : 0.f;
    }
    const float* w = Wp + static_cast<size_t>(st.k) * B * B;
    for (int e = threadIdx.x; e < B * B; e += kThreadsF32) {
      const int a = e / B, b = e % B;
      if (Fwd) Ws[b][a] = w[e];
      else Ws[a][b] = w[e];
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < B; kk++) {
      const float wv = Ws[kk][j];
#pragma unroll
      for (int p = 0; p < kPer; p++) acc[p] += As[i0 + p * kRowStride][kk] * wv;
    }
    __syncthreads();
  }
  if (j >= nC) return;
  const float b0 = (Fwd && bias) ? bias[t.major * B + j] : 0.f;
#pragma unroll
  for (int p = 0; p < kPer; p++) {
    const int m = i0 + p * kRowStride;
    if (m >= t.rows) continue;
    float* c = C + static_cast<size_t>(t.m0 + m) * ldc + t.major * B + j;
    const float val = acc[p] + b0;
    *c = accumulate ? *c + val : val;
  }
}

template <int B, bool Fwd, class T>
__global__ void __launch_bounds__(kThreadsTC) bsrRowsTC(BsrView v, int M, const float* __restrict__ A,
                                                        const float* __restrict__ Wp, const float* __restrict__ bias,
                                                        float* __restrict__ C, bool accumulate) {
  constexpr int kLd = B + 8;   // 16-bit elements; +8 staggers banks, keeps ldm a multiple of 8
  constexpr int kLdC = B + 4;  // fp32 staging; ldm a multiple of 4
  constexpr int kFragCols = B / 16;
  constexpr int kPerWarp = (kTileM / 16) * kFragCols / kWarpsTC;
  __shared__ __align__(32) T As[kTileM * kLd];
  __shared__ __align__(32) T Ws[B * kLd];
  __shared__ __align__(32) float Cs[kTileM * kLdC];
  using BLayout = typename std::conditional<Fwd, wmma::col_major, wmma::row_major>::type;

  const Tile t = decodeTile(blockIdx.x, M, kTileM);
  const int nC = Fwd ? realOut(v, t.major) : realIn(v, t.major);
  const int lda = Fwd ? v.in : v.out, ldc = Fwd ? v.out : v.in;
  const int warp = threadIdx.x / 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kPerWarp];
#pragma unroll
  for (int f = 0; f < kPerWarp; f++) wmma::fill_fragment(acc[f], 0.f);

  const int steps = Fwd ? forwardSteps(v, t.major) : backwardDataSteps(v, t.major);
  for (int s = 0; s < steps; s++) {
    const Step st = Fwd ? forwardStep(v, t.major, s) : backwardDataStep(v, t.major, s);
    const int nK = Fwd ? realIn(v, st.other) : realOut(v, st.other);
    for (int e = threadIdx.x; e < kTileM * B; e += kThreadsTC) {
      const int m = e / B, kk = e % B;
      const float x = (m < t.rows && kk < nK) ? A[static_cast<size_t>(t.m0 + m) * lda + st.other * B + kk] : 0.f;
      As[m * kLd + kk] = toT<T>(x);
    }
    // W block copied as stored ([a][b] = W[a][b]); forward reads it as a column-major Wᵀ operand,
    // dX as a row-major W operand, so no transposition is ever materialised.
    const float* w = Wp + static_cast<size_t>(st.k) * B * B;
    for (int e = threadIdx.x; e < B * B; e += kThreadsTC) Ws[(e / B) * kLd + e % B] = toT<T>(w[e]);
    __syncthreads();
#pragma unroll
    for (int f = 0; f < kPerWarp; f++) {
      const int id = warp * kPerWarp + f, fi = id / kFragCols, fj = id % kFragCols;
#pragma unroll
      for (int kk = 0; kk < B; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, BLayout> b;
        wmma::load_matrix_sync(a, As + fi * 16 * kLd + kk, kLd);
        wmma::load_matrix_sync(b, Fwd ? Ws + fj * 16 * kLd + kk : Ws + kk * kLd + fj * 16, kLd);
        wmma::mma_sync(acc[f], a, b, acc[f]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int f = 0; f < kPerWarp; f++) {
    const int id = warp * kPerWarp + f, fi = id / kFragCols, fj = id % kFragCols;
    wmma::store_matrix_sync(Cs + fi * 16 * kLdC + fj * 16, acc[f], kLdC, wmma::mem_row_major);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kTileM * B; e += kThreadsTC) {
    const int m = e / B, j = e % B;
    if (m >= t.rows || j >= nC) continue;
    float* c = C + static_cast<size_t>(t.m0 + m) * ldc + t.major * B + j;
    const float val = Cs[m * kLdC + j] + ((Fwd && bias) ? bias[t.major * B + j] : 0.f);
    *c = accumulate ? *c + val : val;
  }
}

// ------------------------------------------------------------------ dW at kept blocks
// Tile = (kept block k, M chunk). `direct` (one chunk): writes dW (=|+=); else writes the chunk's
// partial into the workspace [chunks][nnz][B][B] for reduceChunks.

template <int B>
__global__ void __launch_bounds__(kThreadsF32) bsrWeightF32(BsrView v, int M, int chunkRows, const float* __restrict__ dY,
                                                            const float* __restrict__ X, float* __restrict__ out,
                                                            bool direct, bool accumulate) {
  __shared__ float Ds[kStepM][B + 1];
  __shared__ float Xs[kStepM][B + 1];
  constexpr int kPer = B * B / kThreadsF32 > 0 ? B * B / kThreadsF32 : 1;
  constexpr int kRowStride = kThreadsF32 / B;
  const Tile t = backwardWeightTile(blockIdx.x, M, chunkRows);
  const int k = t.major, chunk = t.m0 / chunkRows;
  const int r = blockRowOf(v, k), c = v.colIdx[k];
  const int nOut = realOut(v, r), nIn = realIn(v, c);
  const int j = threadIdx.x % B, i0 = threadIdx.x / B;
  float acc[kPer];
#pragma unroll
  for (int p = 0; p < kPer; p++) acc[p] = 0.f;
  for (int m0 = t.m0; m0 < t.m0 + t.rows; m0 += kStepM) {
    const int rows = imin(kStepM, t.m0 + t.rows - m0);
    for (int e = threadIdx.x; e < kStepM * B; e += kThreadsF32) {
      const int m = e / B, q = e % B;
      Ds[m][q] = (m < rows && q < nOut) ? dY[static_cast<size_t>(m0 + m) * v.out + r * B + q] : 0.f;
      Xs[m][q] = (m < rows && q < nIn) ? X[static_cast<size_t>(m0 + m) * v.in + c * B + q] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int m = 0; m < kStepM; m++) {
      const float xv = Xs[m][j];
#pragma unroll
      for (int p = 0; p < kPer; p++) acc[p] += Ds[m][i0 + p * kRowStride] * xv;
    }
    __syncthreads();
  }
  float* dst = out + (direct ? static_cast<size_t>(k) : static_cast<size_t>(chunk) * v.nnz + k) * B * B;
#pragma unroll
  for (int p = 0; p < kPer; p++) {
    const int i = i0 + p * kRowStride;
    if (i >= B) continue;
    float* d = dst + i * B + j;
    *d = (direct && accumulate) ? *d + acc[p] : acc[p];
  }
}

template <int B, class T>
__global__ void __launch_bounds__(kThreadsTC) bsrWeightTC(BsrView v, int M, int chunkRows, const float* __restrict__ dY,
                                                          const float* __restrict__ X, float* __restrict__ out,
                                                          bool direct, bool accumulate) {
  constexpr int kLd = B + 8, kLdC = B + 4;
  constexpr int kFragCols = B / 16;
  constexpr int kFrags = kFragCols * kFragCols;
  constexpr int kPerWarp = kFrags >= kWarpsTC ? kFrags / kWarpsTC : 1;
  __shared__ __align__(32) T Ds[kStepM * kLd];  // [m][i] = dY: read as the column-major dYᵀ operand
  __shared__ __align__(32) T Xs[kStepM * kLd];  // [m][j] = X: the row-major operand
  __shared__ __align__(32) float Cs[B * kLdC];
  const Tile t = backwardWeightTile(blockIdx.x, M, chunkRows);
  const int k = t.major, chunk = t.m0 / chunkRows;
  const int r = blockRowOf(v, k), c = v.colIdx[k];
  const int nOut = realOut(v, r), nIn = realIn(v, c);
  const int warp = threadIdx.x / 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kPerWarp];
#pragma unroll
  for (int f = 0; f < kPerWarp; f++) wmma::fill_fragment(acc[f], 0.f);
  for (int m0 = t.m0; m0 < t.m0 + t.rows; m0 += kStepM) {
    const int rows = imin(kStepM, t.m0 + t.rows - m0);
    for (int e = threadIdx.x; e < kStepM * B; e += kThreadsTC) {
      const int m = e / B, q = e % B;
      Ds[m * kLd + q] = toT<T>((m < rows && q < nOut) ? dY[static_cast<size_t>(m0 + m) * v.out + r * B + q] : 0.f);
      Xs[m * kLd + q] = toT<T>((m < rows && q < nIn) ? X[static_cast<size_t>(m0 + m) * v.in + c * B + q] : 0.f);
    }
    __syncthreads();
#pragma unroll
    for (int f = 0; f < kPerWarp; f++) {
      const int id = warp * kPerWarp + f;
      if (id >= kFrags) break;  // block 16 has a single fragment: one warp computes it
      const int fi = id / kFragCols, fj = id % kFragCols;
#pragma unroll
      for (int mm = 0; mm < kStepM; mm += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
        wmma::load_matrix_sync(a, Ds + mm * kLd + fi * 16, kLd);
        wmma::load_matrix_sync(b, Xs + mm * kLd + fj * 16, kLd);
        wmma::mma_sync(acc[f], a, b, acc[f]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int f = 0; f < kPerWarp; f++) {
    const int id = warp * kPerWarp + f;
    if (id >= kFrags) break;
    const int fi = id / kFragCols, fj = id % kFragCols;
    wmma::store_matrix_sync(Cs + fi * 16 * kLdC + fj * 16, acc[f], kLdC, wmma::mem_row_major);
  }
  __syncthreads();
  float* dst = out + (direct ? static_cast<size_t>(k) : static_cast<size_t>(chunk) * v.nnz + k) * B * B;
  for (int e = threadIdx.x; e < B * B; e += kThreadsTC) {
    const float val = Cs[(e / B) * kLdC + e % B];
    dst[e] = (direct && accumulate) ? dst[e] + val : val;
  }
}

// dW[e] (=|+=) Σ_chunk part[chunk][e], chunks in order (deterministic).
__global__ void reduceChunks(const float* __restrict__ part, int chunks, size_t n, float* __restrict__ dW,
                             bool accumulate) {
  const size_t e = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n) return;
  float s = 0.f;
  for (int ch = 0; ch < chunks; ch++) s += part[static_cast<size_t>(ch) * n + e];
  dW[e] = accumulate ? dW[e] + s : s;
}

// ------------------------------------------------------------------ dense helpers

__global__ void addBiasKernel(int M, int N, const float* __restrict__ bias, float* __restrict__ Y) {
  const size_t e = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < static_cast<size_t>(M) * N) Y[e] += bias[e % N];
}

// Row-major C = alpha·op(A)·op(B) + beta·C in fp32 with 16×16 shared tiles: the dense path when
// cuBLAS is not installed (correct, not fast). Row tiles past grid.y's 65535 are taken in a loop.
__global__ void gemmFallback(bool ta, bool tb, int M, int N, int K, float alpha, const float* __restrict__ A, int lda,
                             const float* __restrict__ Bm, int ldb, float beta, float* __restrict__ C, int ldc) {
  __shared__ float As[16][17], Bs[16][17];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int col = blockIdx.x * 16 + tx;
  for (int tile = blockIdx.y; tile * 16 < M; tile += gridDim.y) {  // uniform across the block: barriers stay legal
    const int row = tile * 16 + ty;
    float sum = 0.f;
    for (int k0 = 0; k0 < K; k0 += 16) {
      const int ka = k0 + tx, kb = k0 + ty;
      As[ty][tx] = (row < M && ka < K) ? (ta ? A[static_cast<size_t>(ka) * lda + row] : A[static_cast<size_t>(row) * lda + ka]) : 0.f;
      Bs[ty][tx] = (col < N && kb < K) ? (tb ? Bm[static_cast<size_t>(col) * ldb + kb] : Bm[static_cast<size_t>(kb) * ldb + col]) : 0.f;
      __syncthreads();
#pragma unroll
      for (int q = 0; q < 16; q++) sum += As[ty][q] * Bs[q][tx];
      __syncthreads();
    }
    if (row < M && col < N) {
      float* c = C + static_cast<size_t>(row) * ldc + col;
      *c = alpha * sum + (beta == 0.f ? 0.f : beta * *c);  // beta == 0 never reads C (it may hold NaNs)
    }
  }
}

template <class T>
__global__ void convertKernel(const float* __restrict__ src, T* __restrict__ dst, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = toT<T>(src[i]);
}

}  // namespace dev
}  // namespace cuda
}  // namespace pixelfly
