// The engine's Backend on the GPU. The engine's layers keep their activations and parameters in
// host memory (modules.cc), so each product here stages its operands: upload, run on the device,
// download. Layouts are uploaded once and kept (they live as long as the model's layers). The
// products use the fp32 kernels so a model trains to the same numbers as on the CPU, up to
// summation order; the tensor-core path (bf16/fp16) is exercised by the kernel API and benchmarks.
#include "cuda/backend_cuda.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#if PIXELFLY_CUDA
#include "cuda/cuda_api.h"
#endif

namespace pixelfly {

#if PIXELFLY_CUDA
namespace {

using cuda::Context;
using cuda::DeviceLayout;
using cuda::Precision;

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }

  void denseForward(int M, int K, int N, const float* X, const float* W, const float* bias, float* Y,
                    bool accumulate) override {
    std::lock_guard<std::mutex> lock(mu_);
    float* dX = stage(0, X, size_t(M) * K);
    float* dW = stage(1, W, size_t(N) * K);
    float* dY = accumulate ? stage(2, Y, size_t(M) * N) : buffer(2, size_t(M) * N);
    ctx_.gemm(false, true, M, N, K, 1.f, dX, K, dW, K, accumulate ? 1.f : 0.f, dY, N);
    if (bias) ctx_.addBias(M, N, stage(3, bias, N), dY);
    ctx_.download(Y, dY, size_t(M) * N);
  }
  void denseBackwardInput(int M, int K, int N, const float* dY, const float* W, float* dX, bool accumulate) override {
    std::lock_guard<std::mutex> lock(mu_);
    float* g = stage(0, dY, size_t(M) * N);
    float* w = stage(1, W, size_t(N) * K);
    float* o = accumulate ? stage(2, dX, size_t(M) * K) : buffer(2, size_t(M) * K);
    ctx_.gemm(false, false, M, K, N, 1.f, g, N, w, K, accumulate ? 1.f : 0.f, o, K);
    ctx_.download(dX, o, size_t(M) * K);
  }
  void denseBackwardWeight(int M, int K, int N, const float* dY, const float* X, float* dW, bool accumulate) override {
    std::lock_guard<std::mutex> lock(mu_);
    float* g = stage(0, dY, size_t(M) * N);
    float* x = stage(1, X, size_t(M) * K);
    float* o = accumulate ? stage(2, dW, size_t(N) * K) : buffer(2, size_t(N) * K);
    ctx_.gemm(true, false, N, K, M, 1.f, g, N, x, K, accumulate ? 1.f : 0.f, o, K);
    ctx_.download(dW, o, size_t(N) * K);
  }
  void biasGrad(int M, int N, const float* dY, float* db, bool accumulate) override {
    std::lock_guard<std::mutex> lock(mu_);
    float* g = stage(0, dY, size_t(M) * N);
    float* o = accumulate ? stage(1, db, N) : buffer(1, N);
    ctx_.biasGrad(M, N, g, o, accumulate);
    ctx_.download(db, o, N);
  }
  void bsrForward(const BsrShape& s, int M, const float* X, const float* Wp, const float* bias, float* Y,
                  bool accumulate) override {
    std::lock_guard<std::mutex> lock(mu_);
    const DeviceLayout& L = layout(s);
    float* x = stage(0, X, size_t(M) * s.in);
    float* w = stage(1, Wp, packed(s));
    float* y = accumulate ? stage(2, Y, size_t(M) * s.out) : buffer(2, size_t(M) * s.out);
    float* b = bias ? stage(3, bias, s.out) : nullptr;
    ctx_.bsrForward(L, M, x, w, b, y, accumulate, Precision::F32);
    ctx_.download(Y, y, size_t(M) * s.out);
  }
  void bsrBackwardInput(const BsrShape& s, int M, const float* dY, const float* Wp, float* dX, bool accumulate) override {
    std::lock_guard<std::mutex> lock(mu_);
    const DeviceLayout& L = layout(s);
    float* g = stage(0, dY, size_t(M) * s.out);
    float* w = stage(1, Wp, packed(s));
    float* o = accumulate ? stage(2, dX, size_t(M) * s.in) : buffer(2, size_t(M) * s.in);
    ctx_.bsrBackwardData(L, M, g, w, o, accumulate, Precision::F32);
    ctx_.download(dX, o, size_t(M) * s.in);
  }
  void bsrBackwardWeight(const BsrShape& s, int M, const float* dY, const float* X, float* dWp,
                         bool accumulate) override {
    std::lock_guard<std::mutex> lock(mu_);
    const DeviceLayout& L = layout(s);
    float* g = stage(0, dY, size_t(M) * s.out);
    float* x = stage(1, X, size_t(M) * s.in);
    float* o = accumulate ? stage(2, dWp, packed(s)) : buffer(2, packed(s));
    ctx_.bsrBackwardWeight(L, M, g, x, o, accumulate, Precision::F32);
    ctx_.download(dWp, o, packed(s));
  }
  std::string validate(const BsrShape& s) override {
    // The same checks as the CPU (they are about the index, not the device).
    return cpuBackend().validate(s);
  }

 private:
  static size_t packed(const BsrShape& s) { return size_t(s.index->nnz) * s.index->block * s.index->block; }

  // Device copy of a layer's block index. Keyed by the index's address, but a freed model's address
  // can be reused by a new model's index, so a cached copy is only used when its contents match.
  const DeviceLayout& layout(const BsrShape& s) {
    const BsrIndex& ix = *s.index;
    auto& slot = layouts_[s.index];
    if (!slot || !same(slot->host(), ix, s)) {
      slot = std::make_unique<DeviceLayout>(ix.block, ix.blockRows, ix.blockCols, ix.nnz, ix.rowPtr.data(),
                                            ix.colIdx.data(), ix.colPtr.data(), ix.rowIdx.data(), ix.tBlock.data(),
                                            s.out, s.in);
    }
    return *slot;
  }
  static bool same(const sched::BsrView& h, const BsrIndex& ix, const BsrShape& s) {
    auto eq = [](const int32_t* a, const std::vector<int32_t>& b) { return std::equal(b.begin(), b.end(), a); };
    return h.block == ix.block && h.blockRows == ix.blockRows && h.blockCols == ix.blockCols && h.nnz == ix.nnz &&
           h.out == s.out && h.in == s.in && eq(h.rowPtr, ix.rowPtr) && eq(h.colIdx, ix.colIdx) &&
           eq(h.colPtr, ix.colPtr) && eq(h.rowIdx, ix.rowIdx) && eq(h.tBlock, ix.tBlock);
  }
  float* buffer(int i, size_t n) {
    if (n > cap_[i]) {
      ctx_.sync();
      ctx_.free(buf_[i]);
      buf_[i] = ctx_.alloc(n);
      cap_[i] = n;
    }
    return buf_[i];
  }
  float* stage(int i, const float* host, size_t n) {
    float* d = buffer(i, n);
    ctx_.upload(d, host, n);
    return d;
  }

  std::mutex mu_;  // the engine may run two models at once; they share this stream
  Context ctx_;
  std::map<const BsrIndex*, std::unique_ptr<DeviceLayout>> layouts_;
  float* buf_[4] = {nullptr, nullptr, nullptr, nullptr};
  size_t cap_[4] = {0, 0, 0, 0};
};

}  // namespace

std::string cudaUnavailableReason() {
  const cuda::Status& st = cuda::status();
  return st.available ? "" : st.reason;
}

static Backend& cudaBackend() {
  static CudaBackend be;  // created on first use, only when a device is available
  return be;
}
#else
std::string cudaUnavailableReason() {
  return "this addon was built without the CUDA backend (nvcc was not found at build time)";
}
static Backend& cudaBackend() { throw std::logic_error("CUDA backend not compiled"); }
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

Backend& selectBackend(const std::string& requested) {
  return std::string(resolveBackendName(requested)) == "cuda" ? cudaBackend() : cpuBackend();
}

std::string defaultBackendName() {
  const char* env = std::getenv("PIXELFLY_BACKEND");
  return env && *env ? env : "auto";
}

}  // namespace pixelfly
