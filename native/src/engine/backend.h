// Everything a layer computes, and the memory it computes on: layers call these operations on
// buffers the backend allocated, so the same layers train in host memory on the CPU backend and in
// device memory on the CUDA backend (issue 8) with nothing but the input batch and a few scalars
// (loss, gradient norm) crossing to the host per step.
//
// Conventions: buffers are row-major fp32 (int32 for class targets), activations unpadded (a
// Pixelfly weight's padding is the backend's business), `accumulate` chooses between overwriting an
// output and adding to it, and parameter gradients (dg, db, dgw, ...) are always ADDED to. Calls are
// ordered: a backend may run them asynchronously (a CUDA stream) as long as each sees the results of
// the calls before it; the calls that return host values (softmaxCrossEntropy, sumOfSquares, toHost)
// wait for the work before them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pixelfly {

// Block index in THE BLOCK ORDER of core/blockIndex.ts (row-major BSR plus its transposed view),
// built in TypeScript and copied in, never re-derived here.
struct BsrIndex {
  int block = 0, blockRows = 0, blockCols = 0, nnz = 0;
  std::vector<int32_t> rowPtr, colIdx, colPtr, rowIdx, tBlock;
};

// A block-sparse weight's shape: logical out×in, stored as packed blocks [nnz][block][block].
struct BsrShape {
  const BsrIndex* index;
  int out, in;
};

// One attention core: B samples of T tokens, D features in H heads, over a T×T score layout (a
// BsrIndex over the ceil(T/block)² grid, core/attention.ts, checked by
// kernels::validateAttentionLayout when the layer is built).
struct AttentionCore {
  const BsrIndex* layout;
  int B, T, D, H;
  bool causal;
};

// Pixelfly attention's low-rank term (engine/performer.h; kernels/ATTENTION.md (A4), (A5)) for one
// attention core, in its backend's memory: made by Backend::lowRankTerm, the projection fixed.
class LowRankTerm {
 public:
  virtual ~LowRankTerm() = default;
  // ctx holds the sparse part's output o^s on entry ([B, T, D]) and (A4)'s output on return; lse
  // ([B, H, T]) is the sparse part's. Keeps o^s and what the backward needs.
  virtual void forward(const AttentionCore& core, const float* qkv, const float* lse, float* ctx) = 0;
  // The sparse part's output as the forward received it (the kernels' backward reads it).
  virtual const float* sparseOut() const = 0;
  // From dL/d(output) (dctx): dL/do^s into dSparse ([B, T, D]) and dL/dlse into dlse ([B, H, T]),
  // for the kernels' backward; the low-rank term's gradients on q, k and v ADDED to dqkv ([B, T, 3D]).
  virtual void backward(const AttentionCore& core, const float* qkv, const float* dctx, float* dSparse, float* dlse, float* dqkv) = 0;
};

// One AdamW update (decoupled weight decay, bias-corrected moments), for one parameter tensor:
//   g' = clip·g;  m = b1·m + (1 − b1)·g';  v = b2·v + (1 − b2)·g'²
//   p = p·decay − lr·(m / c1) / (sqrt(v / c2) + eps)
struct AdamStep {
  float lr, b1, b2, c1, c2, eps, decay, clip;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // True when buffers are host memory and calls run synchronously on the CPU: layers may then call
  // the kernels directly for fused loops (TokenMixMlp), and parameters need no copies.
  virtual bool runsOnHost() const { return false; }
  // The products' input precision: "fp32", or "bf16" / "fp16" (inputs rounded, fp32 accumulation).
  virtual const char* precision() const { return "fp32"; }

  // ---- memory: allocations are aligned for any element type; contents start undefined.
  virtual void* allocBytes(size_t bytes) = 0;
  virtual void freeBytes(void* p) = 0;
  virtual void toDevice(void* dst, const void* src, size_t bytes) = 0;  // from host memory
  virtual void toHost(void* dst, const void* src, size_t bytes) = 0;    // to host memory; waits
  virtual void zero(void* p, size_t bytes) = 0;
  // Waits for every call made so far (the per-part step timings call it between parts).
  virtual void sync() {}

  // ---- products
  // Y[M×N] (=|+=) X[M×K]·W[N×K]ᵀ (+ bias[N] when not null).
  virtual void denseForward(int M, int K, int N, const float* X, const float* W, const float* bias, float* Y,
                            bool accumulate) = 0;
  // dX[M×K] (=|+=) dY[M×N]·W[N×K].
  virtual void denseBackwardData(int M, int K, int N, const float* dY, const float* W, float* dX, bool accumulate) = 0;
  // dW[N×K] (=|+=) dY[M×N]ᵀ·X[M×K].
  virtual void denseBackwardWeight(int M, int K, int N, const float* dY, const float* X, float* dW, bool accumulate) = 0;
  // db[N] (=|+=) column sums of dY[M×N].
  virtual void biasGrad(int M, int N, const float* dY, float* db, bool accumulate) = 0;

  // Y[M×out] (=|+=) X[M×in]·Wᵀ (+ bias).
  virtual void bsrForward(const BsrShape& s, int M, const float* X, const float* Wp, const float* bias, float* Y,
                          bool accumulate) = 0;
  // dX[M×in] (=|+=) dY[M×out]·W.
  virtual void bsrBackwardData(const BsrShape& s, int M, const float* dY, const float* Wp, float* dX, bool accumulate) = 0;
  // dWp (=|+=) dYᵀ·X at the kept blocks only; with dBias, also dBias[out] (=|+=) the column sums of dY
  // (what biasGrad gives), which the CPU kernels take from the dY they read anyway.
  virtual void bsrBackwardWeight(const BsrShape& s, int M, const float* dY, const float* X, float* dWp,
                                 bool accumulate, float* dBias) = 0;
  // Checks a block index once when a layer is built ("" when valid, else what is wrong).
  virtual std::string validate(const BsrShape& s) = 0;

  // ---- elementwise
  // Exact (erf) GELU as torch.nn.GELU(): y = x·Φ(x); dx = dy·(Φ(x) + x·φ(x)).
  virtual void geluForward(const float* x, float* y, int64_t n) = 0;
  virtual void geluBackward(const float* x, const float* dy, float* dx, int64_t n) = 0;
  virtual void add(const float* a, const float* b, float* y, int64_t n) = 0;  // y = a + b
  virtual void addTo(float* y, const float* a, int64_t n) = 0;                 // y += a

  // ---- LayerNorm over the last axis (D), eps 1e-5 as torch; keeps mean and rstd per row for backward.
  virtual void layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean,
                                float* rstd) = 0;
  // dg, db += ; dx = (skipped when null).
  virtual void layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean,
                                 const float* rstd, float* dx, float* dg, float* db) = 0;

  // ---- data movement
  // y[b][d][t] = x[b][t][d] for B matrices of T×D.
  virtual void transpose(int B, int T, int D, const float* x, float* y) = 0;
  // Images [B × C·H·W] → patches [B × (H/p)(W/p) × C·p·p], each patch ordered (c, i, j) like a Conv2d
  // kernel; `backward` scatters patch gradients back to image positions instead.
  virtual void patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward) = 0;
  // y[b] = mean over the T tokens of x[b] (first: token 0), x [B × T × D] → y [B × D]; backward
  // writes dx from dy.
  virtual void poolForward(int B, int T, int D, bool first, const float* x, float* y) = 0;
  virtual void poolBackward(int B, int T, int D, bool first, const float* dy, float* dx) = 0;

  // ---- embeddings (parameter gradients added to)
  // y[b][t] = wte[id] + wpe[t] with ids stored exactly as floats, [B × T].
  virtual void tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe,
                                        float* y) = 0;
  virtual void tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte,
                                         float* dwpe) = 0;
  // [B × T × D] → [B × (T+1) × D] with the class token first; backward: dcls +=, dx = (when not null).
  virtual void clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y) = 0;
  virtual void clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx) = 0;
  // y[b] = x[b] + pos for B slices of n values; backward: dpos +=, dx = dy (when not null).
  virtual void posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y) = 0;
  virtual void posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx) = 0;

  // ---- attention core: qkv [B × T × 3D] (q | k | v, heads contiguous in each) → ctx [B × T × D],
  // each query's softmax taken over the kept score blocks of `core.layout` only (and keys j ≤ i
  // when causal; dense attention is the layout with every block), scale 1/√(D/H). lse [B × H × T]
  // keeps each query's log-sum-exp for backward, which recomputes the probabilities (no T×T array
  // is kept) and writes dqkv from dctx, reading the forward's ctx and lse.
  virtual void attentionForward(const AttentionCore& core, const float* qkv, float* ctx, float* lse) = 0;
  // dlse (null, or [B, H, T]): a gradient on lse too (the low-rank term's mixing weights read it).
  virtual void attentionBackward(const AttentionCore& core, const float* qkv, const float* ctx, const float* lse,
                                 const float* dctx, float* dqkv, const float* dlse) = 0;
  // The low-rank term of one attention core: `features` (m, even) Performer features from the m/2
  // projection rows ω_r (headDim each, row-major), over the dropped blocks of `layout` (allowed,
  // not kept; the backend copies what it needs, so the layout need not outlive the call).
  virtual std::unique_ptr<LowRankTerm> lowRankTerm(std::vector<float> projection, int features, int headDim,
                                                   const BsrIndex& layout, bool causal) = 0;

  // ---- Pixelfly's gate and low-rank mix over M rows (the math is in pointwise.h, whose CPU loops
  // these are). gb points at the gate's bias (one value) in backend memory.
  virtual void pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank,
                            float* gate, float* hs, float* xs) = 0;
  virtual void pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs,
                                const float* Ut, int rank) = 0;
  virtual void pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h,
                                   int rank, const float* gate, float* dx, float* dh, float* dz, float* dgw) = 0;
  virtual void scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst) = 0;
  // dh = dY·U (overwritten) and dU += dYᵀ·hs: the low-rank factor's two backward products (U is
  // out × rank), both reading the M×out gradient. By default the two dense products; the CPU does
  // both in one pass over dY (pointwise::lowRankBackward).
  virtual void lowRankBackward(int M, int rank, int out, const float* dY, const float* U, const float* hs, float* dh,
                               float* dU) {
    denseBackwardData(M, rank, out, dY, U, dh, false);
    denseBackwardWeight(M, rank, out, dY, hs, dU, true);
  }

  // ---- loss and optimizer
  // Mean softmax cross-entropy over `rows` rows of logits against int32 targets (both backend
  // memory); writes dL/dlogits (already divided by rows) when dlogits is not null, and counts rows
  // whose argmax equals the target into *correct when not null. Returns the loss on the host.
  virtual double softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets,
                                     float* dlogits, int64_t* correct) = 0;
  // Σ x² over n values, summed in a fixed order (the same for any thread or SM count).
  virtual double sumOfSquares(const float* x, int64_t n) = 0;
  virtual void adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s) = 0;
};

// The CPU backend: the kernels of native/src/kernels (issue 3) and the loops of pointwise.h. It has
// no state besides its products' precision ("fp32" or "bf16"), so every model of a precision shares it.
std::shared_ptr<Backend> cpuBackend(const std::string& precision = "fp32");

}  // namespace pixelfly
