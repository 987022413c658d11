// The CPU backend: host memory and the kernels of issue 3 for the products (backend_cpu.cc), the
// other layer operations as OpenMP loops over pointwise.h (cpu_layers.cc). Its only state is the
// products' precision, so every model of a precision shares one (cpuBackend()). The operations and
// their meaning are Backend's (backend.h).
//
// bf16: every product rounds its inputs to bf16 and accumulates in fp32 (the kernels round fp32
// operands while packing them, so activations, master weights, gradients and AdamW moments stay
// fp32 in memory); elementwise layers, LayerNorm, softmax and the optimizer are fp32.
#pragma once
#include "backend.h"
#include "kernels/kernels.h"

namespace pixelfly {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(kernels::Precision p) : precision_(p) {}
  const char* name() const override { return "cpu"; }
  bool runsOnHost() const override { return true; }
  const char* precision() const override { return precision_ == kernels::Precision::BF16 ? "bf16" : "fp32"; }
  // For layers that call the kernels directly (TokenMixMlp).
  kernels::Precision kernelPrecision() const { return precision_; }

  // ---- memory and products (backend_cpu.cc)
  void* allocBytes(size_t bytes) override;
  void freeBytes(void* p) override;
  void toDevice(void* dst, const void* src, size_t bytes) override;
  void toHost(void* dst, const void* src, size_t bytes) override;
  void zero(void* p, size_t bytes) override;
  void denseForward(int M, int K, int N, const float* X, const float* W, const float* bias, float* Y,
      bool accumulate) override;
  void denseBackwardData(int M, int K, int N, const float* dY, const float* W, float* dX, bool accumulate) override;
  void denseBackwardWeight(int M, int K, int N, const float* dY, const float* X, float* dW, bool accumulate) override;
  void biasGrad(int M, int N, const float* dY, float* db, bool accumulate) override;
  void bsrForward(const BsrShape& s, int M, const float* X, const float* Wp, const float* bias, float* Y,
      bool accumulate) override;
  void bsrBackwardData(const BsrShape& s, int M, const float* dY, const float* Wp, float* dX,
      bool accumulate) override;
  void bsrBackwardWeight(const BsrShape& s, int M, const float* dY, const float* X, float* dWp,
      bool accumulate, float* dBias) override;
  std::string validate(const BsrShape& s) override;

  // ---- the other layer operations (cpu_layers.cc)
  void geluForward(const float* x, float* y, int64_t n) override;
  void geluBackward(const float* x, const float* dy, float* dx, int64_t n) override;
  void add(const float* a, const float* b, float* y, int64_t n) override;
  void addTo(float* y, const float* a, int64_t n) override;
  void layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean,
      float* rstd) override;
  void layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean,
      const float* rstd, float* dx, float* dg, float* db) override;
  void transpose(int B, int T, int D, const float* x, float* y) override;
  void patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward) override;
  void poolForward(int B, int T, int D, bool first, const float* x, float* y) override;
  void poolBackward(int B, int T, int D, bool first, const float* dy, float* dx) override;
  void tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe,
      float* y) override;
  void tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte,
      float* dwpe) override;
  void clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y) override;
  void clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx) override;
  void posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y) override;
  void posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx) override;
  void attentionForward(const AttentionCore& core, const float* qkv, float* ctx, float* lse) override;
  void attentionBackward(const AttentionCore& core, const float* qkv, const float* ctx, const float* lse,
      const float* dctx, float* dqkv, const float* dlse) override;
  std::unique_ptr<LowRankTerm> lowRankTerm(std::vector<float> projection, int features, int headDim, const BsrIndex& layout,
                                           bool causal) override;
  void pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank,
      float* gate, float* hs, float* xs) override;
  void pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs,
      const float* Ut, int rank) override;
  void pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h, int rank,
      const float* gate, float* dx, float* dh, float* dz, float* dgw) override;
  void scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst) override;
  void lowRankBackward(int M, int rank, int out, const float* dY, const float* U, const float* hs, float* dh,
                       float* dU) override;
  double softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets, float* dlogits,
      int64_t* correct) override;
  double sumOfSquares(const float* x, int64_t n) override;
  void adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s) override;

 private:
  const kernels::Precision precision_;
};

}  // namespace pixelfly
