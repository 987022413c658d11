// The engine's Backend on the GPU: one CudaBackend per model, owning a cuda::Context (its own
// stream, cuBLAS handle and scratch), so each job runs on its own stream. Buffers are device
// memory; layers keep parameters, gradients, optimizer moments and activations there, and only the
// input batch goes up and the loss / gradient norm come back per step. Every operation is
// asynchronous on the stream except toHost, softmaxCrossEntropy and sumOfSquares, which wait.
// Products run in the model's precision: fp32 (the same numbers as the CPU up to summation order)
// or bf16/fp16 inputs on tensor cores with fp32 accumulation, the master weights, gradients and
// AdamW state staying fp32. Dense products need cuBLAS for reduced precision; without it they stay
// fp32 (our fallback kernel is fp32 only) while the block-sparse ones use the tensor cores.
#include "cuda/backend_cuda.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>

#if PIXELFLY_CUDA
#include "cuda/cuda_api.h"
#include "engine/buffer.h"
#include "engine/performer.h"
#endif

namespace pixelfly {

#if PIXELFLY_CUDA
namespace {

using cuda::Context;
using cuda::DeviceLayout;
using cuda::Precision;

// Pixelfly attention's low-rank term on the device (Context::performerForward / performerBackward):
// its projection and dropped-block mask uploaded once, its arrays in the backend's memory, sized
// for the batch it last saw. The model destroys its layers before its backend.
class CudaLowRankTerm final : public LowRankTerm {
 public:
  CudaLowRankTerm(Backend& be, Context& ctx, std::vector<float> projection, int features, int headDim, const BsrIndex& layout,
                  bool causal)
      : be_(be), ctx_(ctx) {
    checkLowRankShape(projection.size(), features, headDim);
    const std::vector<char> dropped = droppedScoreBlocks(layout, causal);
    be.toDevice(w_.resize(be, projection.size()), projection.data(), projection.size() * sizeof(float));
    be.toDevice(dropped_.resize(be, dropped.size()), dropped.data(), dropped.size());
    s_.m = features, s_.hd = headDim, s_.bs = layout.block, s_.n = layout.blockRows;
    s_.w = w_.data(), s_.dropped = dropped_.data();
  }

  void forward(const AttentionCore& core, const float* qkv, const float* lse, float* ctx) override {
    if (core.D / core.H != s_.hd) throw std::invalid_argument("attention.features: the projection is for head_dim " + std::to_string(s_.hd));
    size(core);
    ctx_.performerForward(s_, qkv, lse, ctx);
  }
  const float* sparseOut() const override { return s_.os; }
  void backward(const AttentionCore& core, const float* qkv, const float* dctx, float* dSparse, float* dlse, float* dqkv) override {
    if (core.B != s_.B || core.T != s_.T || core.H != s_.H) throw std::logic_error("CudaLowRankTerm: backward without its forward");
    ctx_.performerBackward(s_, qkv, dctx, dSparse, dlse, dqkv);
  }

 private:
  void size(const AttentionCore& c) {
    s_.B = c.B, s_.T = c.T, s_.D = c.D, s_.H = c.H;
    const size_t items = static_cast<size_t>(c.B) * c.H, T = c.T, m = s_.m, hd = s_.hd, n = s_.n;
    float** arrays[] = {&s_.os, &s_.phiQ, &s_.phiK, &s_.shiftQ, &s_.shiftK, &s_.kv, &s_.ks, &s_.kvC, &s_.kC,
                        &s_.u, &s_.ws, &s_.wl, &s_.du, &s_.dz, &s_.dkvC, &s_.dkC};
    const size_t sizes[] = {static_cast<size_t>(c.B) * T * c.D, items * T * m, items * T * m, items * T, items, items * n * m * hd,
                            items * n * m, items * n * m * hd, items * n * m, items * T * hd, items * T, items * T,
                            items * T * hd, items * T, items * n * m * hd, items * n * m};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) *arrays[i] = buffers_[i].resize(be_, sizes[i]);
  }

  Backend& be_;
  Context& ctx_;
  Buffer<float> w_;
  Buffer<uint8_t> dropped_;
  Buffer<float> buffers_[16];
  cuda::PerformerState s_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(Precision p) : sparse_(p), dense_(ctx_.usesCublas() ? p : Precision::F32) {}
  CudaBackend(int device, void* stream, Precision p)
      : ctx_(device, stream), sparse_(p), dense_(ctx_.usesCublas() ? p : Precision::F32) {}
  const char* name() const override { return "cuda"; }
  const char* precision() const override { return cuda::precisionName(sparse_); }

  // ---- memory
  void* allocBytes(size_t bytes) override { return ctx_.allocBytes(bytes); }
  void freeBytes(void* p) override { ctx_.freeBytes(p); }
  void toDevice(void* dst, const void* src, size_t bytes) override { ctx_.copyIn(dst, src, bytes); }
  void toHost(void* dst, const void* src, size_t bytes) override { ctx_.copyOut(dst, src, bytes); }
  void zero(void* p, size_t bytes) override { ctx_.zeroBytes(p, bytes); }
  void sync() override { ctx_.sync(); }

  // ---- products (row-major operands as cuBLAS sees them through Context::gemm)
  void denseForward(int M, int K, int N, const float* X, const float* W, const float* bias, float* Y,
                    bool accumulate) override {
    ctx_.gemm(false, true, M, N, K, 1.f, X, K, W, K, accumulate ? 1.f : 0.f, Y, N, dense_);
    if (bias) ctx_.addBias(M, N, bias, Y);
  }
  void denseBackwardData(int M, int K, int N, const float* dY, const float* W, float* dX, bool accumulate) override {
    ctx_.gemm(false, false, M, K, N, 1.f, dY, N, W, K, accumulate ? 1.f : 0.f, dX, K, dense_);
  }
  void denseBackwardWeight(int M, int K, int N, const float* dY, const float* X, float* dW, bool accumulate) override {
    ctx_.gemm(true, false, N, K, M, 1.f, dY, N, X, K, accumulate ? 1.f : 0.f, dW, K, dense_);
  }
  void biasGrad(int M, int N, const float* dY, float* db, bool accumulate) override {
    ctx_.biasGrad(M, N, dY, db, accumulate);
  }
  void bsrForward(const BsrShape& s, int M, const float* X, const float* Wp, const float* bias, float* Y,
                  bool accumulate) override {
    ctx_.bsrForward(layout(s), M, X, Wp, bias, Y, accumulate, sparse_);
  }
  void bsrBackwardData(const BsrShape& s, int M, const float* dY, const float* Wp, float* dX, bool accumulate) override {
    ctx_.bsrBackwardData(layout(s), M, dY, Wp, dX, accumulate, sparse_);
  }
  void bsrBackwardWeight(const BsrShape& s, int M, const float* dY, const float* X, float* dWp, bool accumulate,
                         float* dBias) override {
    if (dBias) ctx_.biasGrad(M, s.out, dY, dBias, accumulate);  // a column-sum kernel of its own on the GPU
    ctx_.bsrBackwardWeight(layout(s), M, dY, X, dWp, accumulate, sparse_);
  }
  std::string validate(const BsrShape& s) override {
    // The same checks as the CPU (they are about the index, not the device).
    return cpuBackend()->validate(s);
  }

  // ---- everything else: the Context's kernels (layers.cu)
  void geluForward(const float* x, float* y, int64_t n) override { ctx_.geluForward(x, y, n); }
  void geluBackward(const float* x, const float* dy, float* dx, int64_t n) override { ctx_.geluBackward(x, dy, dx, n); }
  void add(const float* a, const float* b, float* y, int64_t n) override { ctx_.add(a, b, y, n); }
  void addTo(float* y, const float* a, int64_t n) override { ctx_.addTo(y, a, n); }
  void layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean,
                        float* rstd) override {
    ctx_.layerNormForward(M, D, x, g, b, y, mean, rstd);
  }
  void layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean,
                         const float* rstd, float* dx, float* dg, float* db) override {
    ctx_.layerNormBackward(M, D, x, dy, g, mean, rstd, dx, dg, db);
  }
  void transpose(int B, int T, int D, const float* x, float* y) override { ctx_.transpose(B, T, D, x, y); }
  void patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward) override {
    ctx_.patchify(B, C, H, W, p, src, dst, backward);
  }
  void poolForward(int B, int T, int D, bool first, const float* x, float* y) override {
    ctx_.poolForward(B, T, D, first, x, y);
  }
  void poolBackward(int B, int T, int D, bool first, const float* dy, float* dx) override {
    ctx_.poolBackward(B, T, D, first, dy, dx);
  }
  void tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe,
                                float* y) override {
    ctx_.tokenPosEmbeddingForward(B, T, D, ids, wte, wpe, y);
  }
  void tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte,
                                 float* dwpe) override {
    ctx_.tokenPosEmbeddingBackward(B, T, D, ids, dy, dwte, dwpe);
  }
  void clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y) override {
    ctx_.clsTokenForward(B, T, D, cls, x, y);
  }
  void clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx) override {
    ctx_.clsTokenBackward(B, T, D, dy, dcls, dx);
  }
  void posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y) override {
    ctx_.posEmbeddingForward(B, n, x, pos, y);
  }
  void posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx) override {
    ctx_.posEmbeddingBackward(B, n, dy, dpos, dx);
  }
  void attentionForward(const AttentionCore& a, const float* qkv, float* ctx, float* lse) override {
    ctx_.attentionForward(layout({a.layout, a.T, a.T}), a.B, a.T, a.D, a.H, a.causal, qkv, ctx, lse);
  }
  void attentionBackward(const AttentionCore& a, const float* qkv, const float* ctx, const float* lse,
                         const float* dctx, float* dqkv, const float* dlse) override {
    ctx_.attentionBackward(layout({a.layout, a.T, a.T}), a.B, a.T, a.D, a.H, a.causal, qkv, ctx, lse, dctx, dqkv, dlse);
  }
  std::unique_ptr<LowRankTerm> lowRankTerm(std::vector<float> projection, int features, int headDim, const BsrIndex& layout,
                                           bool causal) override {
    return std::make_unique<CudaLowRankTerm>(*this, ctx_, std::move(projection), features, headDim, layout, causal);
  }
  void pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank,
                    float* gate, float* hs, float* xs) override {
    ctx_.pixelflyGate(M, x, in, gw, gb, h, rank, gate, hs, xs);
  }
  void pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs,
                        const float* Ut, int rank) override {
    ctx_.pixelflyLerpRows(M, y, out, gate, bias, hs, Ut, rank);
  }
  void pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h, int rank,
                           const float* gate, float* dx, float* dh, float* dz, float* dgw) override {
    ctx_.pixelflyMixBackward(M, x, in, gw, V, h, rank, gate, dx, dh, dz, dgw);
  }
  void scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst) override {
    ctx_.scaleRowsOneMinus(M, a, n, gate, dst);
  }
  double softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets, float* dlogits,
                             int64_t* correct) override {
    return ctx_.softmaxCrossEntropy(rows, classes, logits, targets, dlogits, correct);
  }
  double sumOfSquares(const float* x, int64_t n) override { return ctx_.sumOfSquares(x, n); }
  void adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s) override {
    ctx_.adamw(n, p, g, m, v, s);
  }

 private:
  // Device copy of a layer's block index (a weight's, or an attention core's score layout), made on first use. Keyed by the index's address: a backend
  // belongs to one model, whose layers own their indexes for as long as the model computes, so an address
  // never comes to mean another index (no per-call comparison of the arrays is needed).
  const DeviceLayout& layout(const BsrShape& s) {
    auto& slot = layouts_[s.index];
    if (!slot) {
      const BsrIndex& ix = *s.index;
      slot = std::make_unique<DeviceLayout>(ix.block, ix.blockRows, ix.blockCols, ix.nnz, ix.rowPtr.data(),
                                            ix.colIdx.data(), ix.colPtr.data(), ix.rowIdx.data(), ix.tBlock.data(),
                                            s.out, s.in);
    }
    return *slot;
  }

  Context ctx_;  // declared first, destroyed last: the layouts go before the stream
  const Precision sparse_, dense_;
  std::map<const BsrIndex*, std::unique_ptr<DeviceLayout>> layouts_;
};

}  // namespace

std::string cudaUnavailableReason() {
  const cuda::Status& st = cuda::status();
  return st.available ? "" : st.reason;
}

static std::shared_ptr<Backend> newCudaBackend(const std::string& precision) {
  Precision p = Precision::F32;
  cuda::parsePrecision(precision, &p);  // checked by checkPrecision before
  return std::make_shared<CudaBackend>(p);
}

std::shared_ptr<Backend> cudaBackendOnStream(int device, void* stream, const std::string& precision) {
  checkPrecision(resolveBackendName("cuda"), precision);
  Precision p = Precision::F32;
  cuda::parsePrecision(precision, &p);
  return std::make_shared<CudaBackend>(device, stream, p);
}
#else
std::shared_ptr<Backend> cudaBackendOnStream(int, void*, const std::string&) {
  throw std::invalid_argument("backend: 'cuda' requested but " + cudaUnavailableReason());
}

std::string cudaUnavailableReason() {
  return "this addon was built without the CUDA backend (nvcc was not found at build time)";
}
static std::shared_ptr<Backend> newCudaBackend(const std::string&) { throw std::logic_error("CUDA backend not compiled"); }
#endif

const char* resolveBackendName(const std::string& requested) {
  if (requested == "cpu") return "cpu";
  if (requested != "auto" && requested != "cuda")
    throw std::invalid_argument("backend: must be 'auto', 'cpu' or 'cuda', got '" + requested + "'");
  const std::string why = cudaUnavailableReason();
  if (why.empty()) return "cuda";
  if (requested == "cuda") throw std::invalid_argument("backend: 'cuda' requested but " + why);
  return "cpu";
}

void checkPrecision(const std::string& backend, const std::string& precision) {
  if (precision != "fp32" && precision != "bf16" && precision != "fp16")
    throw std::invalid_argument("precision: must be 'fp32', 'bf16' or 'fp16', got '" + precision + "'");
  if (precision == "fp16" && backend != "cuda")
    throw std::invalid_argument("precision: 'fp16' runs on the CUDA backend only; the " + backend +
                                " backend computes fp32 or bf16 products");
}

std::shared_ptr<Backend> createBackend(const std::string& requested, const std::string& precision) {
  const std::string backend = resolveBackendName(requested);
  checkPrecision(backend, precision);
  return backend == "cuda" ? newCudaBackend(precision) : cpuBackend(precision);
}

std::string defaultBackendName() {
  const char* env = std::getenv("PIXELFLY_BACKEND");
  return env && *env ? env : "auto";
}

}  // namespace pixelfly
