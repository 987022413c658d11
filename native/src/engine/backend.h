// The compute a layer needs from a device, and nothing else: layers call these products so that a
// CUDA backend (issue 8) can mirror the layers without changing them. Buffers are row-major fp32,
// activations unpadded (a Pixelfly weight's padding is the backend's business), and `accumulate`
// chooses between overwriting the output and adding to it.
#pragma once
#include <cstdint>
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

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // True when the products run on the CPU, on host memory: layers may then call the kernels
  // directly for fused loops (TokenMixMlp) instead of one backend product at a time.
  virtual bool runsOnHost() const { return false; }

  // Y[M×N] (=|+=) X[M×K]·W[N×K]ᵀ (+ bias[N] when not null).
  virtual void denseForward(int M, int K, int N, const float* X, const float* W, const float* bias, float* Y,
                            bool accumulate) = 0;
  // dX[M×K] (=|+=) dY[M×N]·W[N×K].
  virtual void denseBackwardInput(int M, int K, int N, const float* dY, const float* W, float* dX, bool accumulate) = 0;
  // dW[N×K] (=|+=) dY[M×N]ᵀ·X[M×K].
  virtual void denseBackwardWeight(int M, int K, int N, const float* dY, const float* X, float* dW, bool accumulate) = 0;
  // db[N] (=|+=) column sums of dY[M×N].
  virtual void biasGrad(int M, int N, const float* dY, float* db, bool accumulate) = 0;

  // Y[M×out] (=|+=) X[M×in]·Wᵀ (+ bias).
  virtual void bsrForward(const BsrShape& s, int M, const float* X, const float* Wp, const float* bias, float* Y,
                          bool accumulate) = 0;
  // dX[M×in] (=|+=) dY[M×out]·W.
  virtual void bsrBackwardInput(const BsrShape& s, int M, const float* dY, const float* Wp, float* dX, bool accumulate) = 0;
  // dWp (=|+=) dYᵀ·X at the kept blocks only.
  virtual void bsrBackwardWeight(const BsrShape& s, int M, const float* dY, const float* X, float* dWp,
                                 bool accumulate) = 0;
  // Checks a block index once when a layer is built ("" when valid, else what is wrong).
  virtual std::string validate(const BsrShape& s) = 0;
};

// The CPU backend: the kernels of native/src/kernels (issue 3) behind this interface.
Backend& cpuBackend();

}  // namespace pixelfly
