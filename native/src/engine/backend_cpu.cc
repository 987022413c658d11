// CPU backend: host memory, the kernels of issue 3 for the products (their own threads, runtime ISA
// dispatch) and cpu_layers.cc for everything else.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend.h"
#include "cpu_layers.h"
#include "kernels/kernels.h"

namespace pixelfly {

namespace {

namespace k = kernels;

k::BsrWeight bsrWeight(const BsrShape& s, const float* blocks) {
  const BsrIndex& ix = *s.index;
  k::BsrWeight w;
  w.layout.block = ix.block;
  w.layout.blockRows = ix.blockRows;
  w.layout.blockCols = ix.blockCols;
  w.layout.nnz = ix.nnz;
  w.layout.rowPtr = ix.rowPtr.data();
  w.layout.colIdx = ix.colIdx.data();
  w.layout.colPtr = ix.colPtr.data();
  w.layout.rowIdx = ix.rowIdx.data();
  w.layout.tBlock = ix.tBlock.data();
  w.out = s.out;
  w.in = s.in;
  w.blocks = blocks;
  return w;
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  bool runsOnHost() const override { return true; }

  // 64-byte aligned: whole cache lines, and what the kernels' streamed stores need.
  void* allocBytes(size_t bytes) override {
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void freeBytes(void* p) override { std::free(p); }
  void toDevice(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void toHost(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void zero(void* p, size_t bytes) override { std::memset(p, 0, bytes); }
  void denseForward(int M, int K, int N, const float* X, const float* W, const float* bias, float* Y,
                    bool accumulate) override {
    k::denseForward(M, K, N, X, K, W, bias, Y, N, accumulate);
  }
  void denseBackwardInput(int M, int K, int N, const float* dY, const float* W, float* dX, bool accumulate) override {
    k::denseBackwardData(M, K, N, dY, N, W, dX, K, accumulate);
  }
  void denseBackwardWeight(int M, int K, int N, const float* dY, const float* X, float* dW, bool accumulate) override {
    k::denseBackwardWeight(M, K, N, dY, N, X, K, dW, accumulate);
  }
  void biasGrad(int M, int N, const float* dY, float* db, bool accumulate) override {
    k::biasGrad(M, N, dY, N, db, accumulate);
  }
  void bsrForward(const BsrShape& s, int M, const float* X, const float* Wp, const float* bias, float* Y,
                  bool accumulate) override {
    k::bsrForward(bsrWeight(s, Wp), M, X, s.in, bias, Y, s.out, accumulate);
  }
  void bsrBackwardInput(const BsrShape& s, int M, const float* dY, const float* Wp, float* dX, bool accumulate) override {
    k::bsrBackwardData(bsrWeight(s, Wp), M, dY, s.out, dX, s.in, accumulate);
  }
  void bsrBackwardWeight(const BsrShape& s, int M, const float* dY, const float* X, float* dWp,
                         bool accumulate) override {
    k::bsrBackwardWeight(bsrWeight(s, nullptr), M, dY, s.out, X, s.in, dWp, accumulate);
  }
  std::string validate(const BsrShape& s) override {
    const k::BsrWeight w = bsrWeight(s, nullptr);
    std::string err = k::validateLayout(w.layout);
    if (err.empty()) err = k::validateWeightShape(w.layout, s.out, s.in);
    return err;
  }

  void geluForward(const float* x, float* y, int64_t n) override { cpu::geluForward(x, y, n); }
  void geluBackward(const float* x, const float* dy, float* dx, int64_t n) override { cpu::geluBackward(x, dy, dx, n); }
  void add(const float* a, const float* b, float* y, int64_t n) override { cpu::add(a, b, y, n); }
  void addTo(float* y, const float* a, int64_t n) override { cpu::addTo(y, a, n); }
  void layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean,
                        float* rstd) override {
    cpu::layerNormForward(M, D, x, g, b, y, mean, rstd);
  }
  void layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean,
                         const float* rstd, float* dx, float* dg, float* db) override {
    cpu::layerNormBackward(M, D, x, dy, g, mean, rstd, dx, dg, db);
  }
  void transpose(int B, int T, int D, const float* x, float* y) override { cpu::transpose(B, T, D, x, y); }
  void patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward) override {
    cpu::patchify(B, C, H, W, p, src, dst, backward);
  }
  void poolForward(int B, int T, int D, bool first, const float* x, float* y) override { cpu::poolForward(B, T, D, first, x, y); }
  void poolBackward(int B, int T, int D, bool first, const float* dy, float* dx) override {
    cpu::poolBackward(B, T, D, first, dy, dx);
  }
  void tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe,
                                float* y) override {
    cpu::tokenPosEmbeddingForward(B, T, D, ids, wte, wpe, y);
  }
  void tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte,
                                 float* dwpe) override {
    cpu::tokenPosEmbeddingBackward(B, T, D, ids, dy, dwte, dwpe);
  }
  void clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y) override {
    cpu::clsTokenForward(B, T, D, cls, x, y);
  }
  void clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx) override {
    cpu::clsTokenBackward(B, T, D, dy, dcls, dx);
  }
  void posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y) override {
    cpu::posEmbeddingForward(B, n, x, pos, y);
  }
  void posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx) override {
    cpu::posEmbeddingBackward(B, n, dy, dpos, dx);
  }
  void attentionForward(int B, int T, int D, int H, bool causal, const float* qkv, float* att, float* ctx) override {
    cpu::attentionForward(B, T, D, H, causal, qkv, att, ctx);
  }
  void attentionBackward(int B, int T, int D, int H, bool causal, const float* qkv, const float* att, const float* dctx,
                         float* dqkv) override {
    cpu::attentionBackward(B, T, D, H, causal, qkv, att, dctx, dqkv);
  }
  void pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank,
                    float* gate, float* hs, float* xs) override {
    cpu::pixelflyGate(M, x, in, gw, gb, h, rank, gate, hs, xs);
  }
  void pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs,
                        const float* Ut, int rank) override {
    cpu::pixelflyLerpRows(M, y, out, gate, bias, hs, Ut, rank);
  }
  void pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h, int rank,
                           const float* gate, float* dx, float* dh, float* dz, float* dgw) override {
    cpu::pixelflyMixBackward(M, x, in, gw, V, h, rank, gate, dx, dh, dz, dgw);
  }
  void scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst) override {
    cpu::scaleRowsOneMinus(M, a, n, gate, dst);
  }
  double softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets, float* dlogits,
                             int64_t* correct) override {
    return cpu::softmaxCrossEntropy(rows, classes, logits, targets, dlogits, correct);
  }
  double sumOfSquares(const float* x, int64_t n) override { return cpu::sumOfSquares(x, n); }
  void adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s) override {
    cpu::adamw(n, p, g, m, v, s);
  }
};

}  // namespace

std::shared_ptr<Backend> cpuBackend() {
  static const std::shared_ptr<Backend> be = std::make_shared<CpuBackend>();
  return be;
}

}  // namespace pixelfly
