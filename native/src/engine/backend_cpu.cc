// CPU backend: forwards to the kernels of issue 3 (their own threads, runtime ISA dispatch).
#include "backend.h"
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
};

}  // namespace

Backend& cpuBackend() {
  static CpuBackend be;
  return be;
}

}  // namespace pixelfly
