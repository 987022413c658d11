// Host side of the layer operations (Context's part of engine/backend.h besides the products):
// grid sizes, launches on the Context's stream, and the two operations that return host values
// (softmax cross-entropy, Σx²), which download one scratch array and finish their sums on the host
// in a fixed order.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_api.h"
#include "cuda/layer_kernels.cuh"
#include "cuda/attention_kernels.cuh"
#include "cuda/performer_kernels.cuh"

namespace pixelfly {
namespace cuda {

#define STREAM static_cast<cudaStream_t>(stream_)

namespace {

// Blocks for a grid-stride loop over n items (at least one, so an empty launch is still checked).
unsigned blocksFor(int64_t n) {
  const int64_t b = (n + dev::kThreads - 1) / dev::kThreads;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, dev::kMaxBlocks));
}

// Blocks of row groups for M rows (dev::kGroups rows a block; the kernels stride past the cap).
unsigned groupBlocksFor(int64_t rows) {
  const int64_t b = (rows + dev::kGroups - 1) / dev::kGroups;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, dev::kMaxBlocks));
}

int chunksOf(int rows) { return (rows + dev::kChunkRows - 1) / dev::kChunkRows; }

}  // namespace

// Every kernel here loops over its items (or rows) with a grid stride, so two helpers launch them
// all: LAUNCH with a thread per item, LAUNCH_ROWS with a row group (dev::kLanes threads) per row.
#define LAUNCH(n, kernel, ...)                                                     \
  do {                                                                             \
    if ((n) > 0) {                                                                 \
      dev::launch(blocksFor(n), dev::kThreads, STREAM, kernel, __VA_ARGS__);       \
      checkLaunch(#kernel);                                                        \
    }                                                                              \
  } while (0)
#define LAUNCH_ROWS(rows, kernel, ...)                                                                      \
  do {                                                                                                      \
    if ((rows) > 0) {                                                                                       \
      dev::launch(groupBlocksFor(rows), dim3(dev::kLanes, dev::kGroups), STREAM, kernel, __VA_ARGS__);      \
      checkLaunch(#kernel);                                                                                 \
    }                                                                                                       \
  } while (0)

// dst[i] += Σ_b src[b·stride + i] for i < n: per-chunk partials of the batch in the workspace, added
// in chunk order. A macro, as it needs Context's workspace and stream (cuda_api.h declares no such
// member).
#define SUM_OVER_BATCH(B, n, stride, src, dst)                                          \
  do {                                                                                  \
    if (int64_t(B) * (n) > 0) {                                                         \
      const int chunks_ = chunksOf(B);                                                  \
      float* part_ = workspace(static_cast<size_t>(chunks_ * (n)));                     \
      LAUNCH(chunks_ * (n), dev::batchChunkPartialsKernel, B, n, stride, src, part_);   \
      LAUNCH(n, dev::reduceColumnChunksKernel, chunks_, n, n, part_, dst);              \
    }                                                                                   \
  } while (0)

// db (=|+=) column sums of dY[M×N]: row chunks summed in order, like every column sum here (a
// thread per column walking all M rows would leave most of the GPU idle at bias widths).
void Context::biasGrad(int M, int N, const float* dY, float* db, bool accumulate) {
  if (N == 0) return;
  if (!accumulate) zero(db, N);
  SUM_OVER_BATCH(M, int64_t(N), int64_t(N), dY, db);
}

void Context::geluForward(const float* x, float* y, int64_t n) { LAUNCH(n, dev::geluForwardKernel, x, y, n); }
void Context::geluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  LAUNCH(n, dev::geluBackwardKernel, x, dy, dx, n);
}
void Context::add(const float* a, const float* b, float* y, int64_t n) { LAUNCH(n, dev::addKernel, a, b, y, n); }
void Context::addTo(float* y, const float* a, int64_t n) { LAUNCH(n, dev::addToKernel, y, a, n); }

void Context::layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean,
                               float* rstd) {
  LAUNCH_ROWS(M, dev::layerNormForwardKernel, M, D, x, g, b, y, mean, rstd);
}

void Context::layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean,
                                const float* rstd, float* dx, float* dg, float* db) {
  if (int64_t(M) * D > 0) {
    // dg, db += column sums: per-chunk partials [chunk][dg | db][D], then added in chunk order.
    const int chunks = chunksOf(M);
    float* part = workspace(2 * static_cast<size_t>(chunks) * D);
    LAUNCH(int64_t(chunks) * D, dev::layerNormParamPartialsKernel, M, D, x, dy, mean, rstd, part);
    LAUNCH(D, dev::reduceColumnChunksKernel, chunks, D, 2 * int64_t(D), part, dg);
    LAUNCH(D, dev::reduceColumnChunksKernel, chunks, D, 2 * int64_t(D), part + D, db);
  }
  if (dx) LAUNCH_ROWS(M, dev::layerNormBackwardDataKernel, M, D, x, dy, g, mean, rstd, dx);
}

void Context::transpose(int B, int T, int D, const float* x, float* y) {
  if (int64_t(B) * T * D == 0) return;
  const unsigned tiles = static_cast<unsigned>(((D + dev::kTile - 1) / dev::kTile) * ((T + dev::kTile - 1) / dev::kTile));
  dev::launch(dim3(tiles, dev::gridYZ(B)), dim3(dev::kTile, 8), STREAM, dev::transposeKernel, B, T, D, x, y);
  checkLaunch("transposeKernel");
}

void Context::patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward) {
  if (p <= 0) throw std::invalid_argument("patchify: patch must be positive, got " + std::to_string(p));
  const int64_t n = backward ? int64_t(B) * C * H * W : int64_t(B) * (H / p) * (W / p) * C * p * p;
  LAUNCH(n, dev::patchifyKernel, B, C, H, W, p, src, dst, backward);
}

void Context::poolForward(int B, int T, int D, bool first, const float* x, float* y) {
  LAUNCH(int64_t(B) * D, dev::poolForwardKernel, B, T, D, first, x, y);
}
void Context::poolBackward(int B, int T, int D, bool first, const float* dy, float* dx) {
  LAUNCH(int64_t(B) * T * D, dev::poolBackwardKernel, B, T, D, first, dy, dx);
}

void Context::tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe,
                                       float* y) {
  LAUNCH(int64_t(B) * T * D, dev::tokenPosForwardKernel, B, T, D, ids, wte, wpe, y);
}

void Context::tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte,
                                        float* dwpe) {
  if (int64_t(B) * T * D == 0) return;
  // 16 parts of the vocabulary: 16 × D threads walk the positions (each owns the ids of its part).
  constexpr unsigned kParts = 16;
  dev::launch(dim3(static_cast<unsigned>((D + dev::kThreads - 1) / dev::kThreads), kParts), dev::kThreads, STREAM,
              dev::tokenEmbeddingBackwardKernel, B * T, D, ids, dy, dwte);
  checkLaunch("tokenEmbeddingBackwardKernel");
  SUM_OVER_BATCH(B, int64_t(T) * D, int64_t(T) * D, dy, dwpe);
}

void Context::clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y) {
  LAUNCH(int64_t(B) * (T + 1) * D, dev::clsForwardKernel, B, T, D, cls, x, y);
}

void Context::clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx) {
  SUM_OVER_BATCH(B, int64_t(D), int64_t(T + 1) * D, dy, dcls);
  if (dx) LAUNCH(int64_t(B) * T * D, dev::clsBackwardDataKernel, B, T, D, dy, dx);
}

void Context::posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y) {
  LAUNCH(B * n, dev::posForwardKernel, B, n, x, pos, y);
}

void Context::posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx) {
  SUM_OVER_BATCH(B, n, n, dy, dpos);
  if (dx && dx != dy && B * n > 0) copyOnDevice(dx, dy, static_cast<size_t>(B * n) * sizeof(float));
}

namespace {

dev::AttentionArgs attentionArgs(const DeviceLayout& L, int B, int T, int D, int H, bool causal) {
  if (H <= 0 || D % H != 0)
    throw std::invalid_argument("attention: heads (" + std::to_string(H) + ") must divide dim (" + std::to_string(D) + ")");
  if (D / H > dev::kMaxHeadDim)
    throw std::invalid_argument("attention: head dimension " + std::to_string(D / H) + " is above " + std::to_string(dev::kMaxHeadDim));
  const sched::BsrView& v = L.device();
  if (v.out != T || v.in != T) throw std::invalid_argument("attention: the score layout is not " + std::to_string(T) + "×" + std::to_string(T));
  return {v.rowPtr, v.colIdx, v.colPtr, v.rowIdx, v.block, B, T, D, H, causal, 1.0f / std::sqrt(static_cast<float>(D / H))};
}

}  // namespace

// One row group (a block of kLanes threads) per row of the [B × H × T] grid.
#define LAUNCH_HEAD_ROWS(rows, kernel, ...)                                                                       \
  do {                                                                                                            \
    if ((rows) > 0) {                                                                                             \
      dev::launch(static_cast<unsigned>(std::min<int64_t>(rows, dev::kMaxBlocks)), dim3(dev::kLanes), STREAM,     \
                  kernel, __VA_ARGS__);                                                                           \
      checkLaunch(#kernel);                                                                                       \
    }                                                                                                             \
  } while (0)

void Context::attentionForward(const DeviceLayout& L, int B, int T, int D, int H, bool causal, const float* qkv,
                               float* ctx, float* lse) {
  const dev::AttentionArgs a = attentionArgs(L, B, T, D, H, causal);
  LAUNCH_HEAD_ROWS(int64_t(B) * H * T, dev::attentionForwardKernel, a, qkv, ctx, lse);
}

void Context::attentionBackward(const DeviceLayout& L, int B, int T, int D, int H, bool causal, const float* qkv,
                                const float* ctx, const float* lse, const float* dctx, float* dqkv, const float* dlse) {
  const dev::AttentionArgs a = attentionArgs(L, B, T, D, H, causal);
  const int64_t rows = int64_t(B) * H * T;
  float* delta = workspace(static_cast<size_t>(std::max<int64_t>(1, rows)));
  LAUNCH_HEAD_ROWS(rows, dev::attentionRowDotKernel, a, ctx, dctx, dlse, delta);
  LAUNCH_HEAD_ROWS(rows, dev::attentionBackwardQueryKernel, a, qkv, lse, delta, dctx, dqkv);
  LAUNCH_HEAD_ROWS(rows, dev::attentionBackwardKeyKernel, a, qkv, lse, delta, dctx, dqkv);
}

namespace {

dev::PerformerArgs performerArgs(const PerformerState& s) {
  if (s.hd > dev::kMaxHeadDim) throw std::invalid_argument("attention.features: head dimension " + std::to_string(s.hd) + " is above " + std::to_string(dev::kMaxHeadDim));
  if (s.m > dev::kMaxFeatures) throw std::invalid_argument("attention.features: " + std::to_string(s.m) + " is above " + std::to_string(dev::kMaxFeatures));
  const float rootScale = std::sqrt(1.0f / std::sqrt(static_cast<float>(s.hd)));
  return {s.w, s.dropped, s.B, s.T, s.D, s.H, s.m, s.hd, s.bs, s.n, rootScale, 0.5f * std::log(static_cast<float>(s.m))};
}

}  // namespace

void Context::performerForward(const PerformerState& s, const float* qkv, const float* lse, float* ctx) {
  const dev::PerformerArgs a = performerArgs(s);
  const int64_t items = int64_t(s.B) * s.H, tokens = items * s.T, blocks = items * s.n;
  copyOnDevice(s.os, ctx, static_cast<size_t>(s.B) * s.T * s.D * sizeof(float));
  LAUNCH_HEAD_ROWS(tokens, dev::performerFeaturesKernel, a, qkv, 0, s.phiQ, s.shiftQ);
  LAUNCH_HEAD_ROWS(tokens, dev::performerFeaturesKernel, a, qkv, 1, s.phiK, static_cast<float*>(nullptr));
  LAUNCH_HEAD_ROWS(items, dev::performerKeyShiftKernel, a, s.phiK, s.shiftK);
  LAUNCH(tokens * s.m, dev::performerExpKeysKernel, a, s.phiK, s.shiftK);
  LAUNCH_HEAD_ROWS(blocks, dev::performerBlockSumsKernel, a, s.phiK, qkv, 2, static_cast<const float*>(nullptr), s.kv, s.ks);
  LAUNCH_HEAD_ROWS(blocks, dev::performerDroppedSumsKernel, a, int64_t(s.m) * s.hd, s.kv, s.kvC, false);
  LAUNCH_HEAD_ROWS(blocks, dev::performerDroppedSumsKernel, a, int64_t(s.m), s.ks, s.kC, false);
  LAUNCH_HEAD_ROWS(tokens, dev::performerMixKernel, a, s.phiQ, s.shiftQ, s.shiftK, s.kvC, s.kC, lse, s.u, s.ws, s.wl, ctx);
}

void Context::performerBackward(const PerformerState& s, const float* qkv, const float* dctx, float* dSparse, float* dlse,
                                float* dqkv) {
  const dev::PerformerArgs a = performerArgs(s);
  const int64_t items = int64_t(s.B) * s.H, tokens = items * s.T, blocks = items * s.n;
  LAUNCH_HEAD_ROWS(tokens, dev::performerQueryGradKernel, a, qkv, dctx, s.os, s.phiQ, s.kvC, s.kC, s.u, s.ws, s.wl, dSparse, dlse,
                   s.du, s.dz, dqkv);
  LAUNCH_HEAD_ROWS(blocks, dev::performerBlockSumsKernel, a, s.phiQ, static_cast<const float*>(s.du), -1, static_cast<const float*>(s.dz), s.dkvC, s.dkC);
  // Each dropped (I, J) pair passes query block I's sums back to key block J (into kv and ks).
  LAUNCH_HEAD_ROWS(blocks, dev::performerDroppedSumsKernel, a, int64_t(s.m) * s.hd, s.dkvC, s.kv, true);
  LAUNCH_HEAD_ROWS(blocks, dev::performerDroppedSumsKernel, a, int64_t(s.m), s.dkC, s.ks, true);
  LAUNCH_HEAD_ROWS(tokens, dev::performerKeyGradKernel, a, qkv, s.phiK, s.kv, s.ks, dqkv);
}

void Context::pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank,
                           float* gate, float* hs, float* xs) {
  LAUNCH_ROWS(M, dev::pixelflyGateKernel, M, x, in, gw, gb, h, rank, gate, hs, xs);
}

void Context::pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs,
                               const float* Ut, int rank) {
  LAUNCH(int64_t(M) * out, dev::pixelflyLerpKernel, M, y, out, gate, bias, hs, Ut, rank);
}

void Context::pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h,
                                  int rank, const float* gate, float* dx, float* dh, float* dz, float* dgw) {
  LAUNCH_ROWS(M, dev::pixelflyMixBackwardKernel, M, x, in, gw, V, h, rank, gate, dx, dh, dz);
  if (int64_t(M) * in > 0) {
    // dgw += Σ_m dz[m]·x_m: per-chunk partials, then added in chunk order.
    const int chunks = chunksOf(M);
    float* part = workspace(static_cast<size_t>(chunks) * in);
    LAUNCH(int64_t(chunks) * in, dev::pixelflyGateWeightPartialsKernel, M, x, in, dz, part);
    LAUNCH(in, dev::reduceColumnChunksKernel, chunks, in, int64_t(in), part, dgw);
  }
}

void Context::scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst) {
  LAUNCH(int64_t(M) * n, dev::scaleRowsOneMinusKernel, M, a, n, gate, dst);
}

double Context::softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets, float* dlogits,
                                    int64_t* correct) {
  if (classes <= 0) throw std::invalid_argument("softmaxCrossEntropy: classes must be positive, got " + std::to_string(classes));
  if (rows <= 0) {
    if (correct) *correct = 0;
    return 0.0;
  }
  // Per-row loss and hit in one scratch array of doubles, one download, summed here in row order.
  const size_t n = 2 * static_cast<size_t>(rows);
  double* stats = reinterpret_cast<double*>(workspace(2 * n));
  LAUNCH_ROWS(rows, dev::softmaxCrossEntropyKernel, rows, classes, logits, targets, dlogits, stats);
  std::vector<double> host(n);
  copyOut(host.data(), stats, n * sizeof(double));
  double loss = 0.0;
  int64_t right = 0;
  for (int r = 0; r < rows; r++) {
    if (host[rows + r] < 0)
      throw std::invalid_argument("softmaxCrossEntropy: targets[" + std::to_string(r) + "] is outside [0, " +
                                  std::to_string(classes) + ")");
    loss += host[r];
    right += host[rows + r] > 0 ? 1 : 0;
  }
  if (correct) *correct = right;
  return loss / rows;
}

double Context::sumOfSquares(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const int64_t chunks = (n + dev::kSumChunk - 1) / dev::kSumChunk;
  double* partial = reinterpret_cast<double*>(workspace(2 * static_cast<size_t>(chunks)));
  dev::launch(static_cast<unsigned>(chunks), dev::kSumThreads, STREAM, dev::sumOfSquaresKernel, x, n, partial);
  checkLaunch("sumOfSquaresKernel");
  std::vector<double> host(chunks);
  copyOut(host.data(), partial, host.size() * sizeof(double));
  double s = 0.0;
  for (double v : host) s += v;  // chunk order: the same sum for any device
  return s;
}

void Context::adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s) {
  LAUNCH(n, dev::adamwKernel, n, p, g, m, v, s);
}

}  // namespace cuda
}  // namespace pixelfly
