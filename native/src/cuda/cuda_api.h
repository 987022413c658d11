// The CUDA side of the addon as plain C++ (no CUDA headers), so g++-compiled code (the binding,
// the engine backend) can call it. Implemented in device.cu / kernels.cu / context.cu, which are
// only compiled when nvcc is present (binding.gyp defines PIXELFLY_CUDA=1 then).
//
// Loading without a GPU: the CUDA runtime is linked statically and loads the driver (libcuda.so.1)
// lazily on the first call, so the addon loads on any machine; status() turns "no driver" or
// "no device" into available=false with the runtime's reason. cuBLAS is not linked: it is opened
// at run time (cublas_loader.cc), and dense products use our own kernel when it is missing.
#pragma once
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda/bsr_schedule.h"
#include "engine/backend.h"

namespace pixelfly {
namespace cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  size_t totalMemory = 0;
  int major = 0, minor = 0, multiprocessors = 0;
};

struct Status {
  bool available = false;    // a device can run our kernels
  std::string reason;        // why not, when unavailable
  int runtimeVersion = 0;    // CUDA runtime linked in (e.g. 13000)
  int driverVersion = 0;     // 0 when no driver is installed
  std::vector<DeviceInfo> devices;
  std::string cublas;        // the cuBLAS library opened, or "" (then `cublasError` says why)
  std::string cublasError;
  std::vector<int> compiledArchs;  // SM versions with cubins in this build, e.g. {80, 90}
};

// Queried once per process (thread-safe); never throws.
const Status& status();

enum class Precision : int { F32 = 0, BF16 = 1, F16 = 2 };
const char* precisionName(Precision p);
bool parsePrecision(const std::string& s, Precision* out);

// A block index resident on the device (arrays owned), with the host copy the schedule needs.
// What Context's low-rank attention term computes on (device memory): the sizes of one attention core
// (B samples, T tokens, D = H·hd features, m Performer features, score blocks of bs tokens, n of them),
// the projection rows ω_r ([m/2][hd]) and the dropped-block mask ([n][n], 1: allowed and not kept),
// then, per item (b·H + h), what the forward keeps for the backward and the backward's scratch.
struct PerformerState {
  int B = 0, T = 0, D = 0, H = 0, m = 0, hd = 0, bs = 0, n = 0;
  const float* w = nullptr;
  const uint8_t* dropped = nullptr;
  // Forward: o^s [B·T·D]; features (shifted) [items·T·m] of queries and keys; each query's shift [items·T]
  // and the keys' [items]; key blocks' sums kv [items·n·m·hd], ks [items·n·m]; each query block's sums
  // over its dropped key blocks kvC, kC (the same sizes); u [items·T·hd]; the mixing weights ws, wl [items·T].
  float *os = nullptr, *phiQ = nullptr, *phiK = nullptr, *shiftQ = nullptr, *shiftK = nullptr, *kv = nullptr, *ks = nullptr,
        *kvC = nullptr, *kC = nullptr, *u = nullptr, *ws = nullptr, *wl = nullptr;
  // Backward: du [items·T·hd], dz [items·T], dkvC and dkC (kvC's and kC's sizes); kv and ks take the keys' sums.
  float *du = nullptr, *dz = nullptr, *dkvC = nullptr, *dkC = nullptr;
};

class DeviceLayout {
 public:
  DeviceLayout(int block, int blockRows, int blockCols, int nnz, const int32_t* rowPtr, const int32_t* colIdx,
               const int32_t* colPtr, const int32_t* rowIdx, const int32_t* tBlock, int out, int in);
  ~DeviceLayout();
  DeviceLayout(const DeviceLayout&) = delete;
  DeviceLayout& operator=(const DeviceLayout&) = delete;
  // Device pointers, in the shape the kernels read.
  sched::BsrView device() const { return dev_; }
  const sched::BsrView& host() const { return host_; }

 private:
  sched::BsrView dev_, host_;
  std::vector<int32_t> hostArrays_;
  int32_t* devArrays_ = nullptr;
};

// One CUDA stream with its cuBLAS handle and scratch memory: the unit of work of a job. Calls on
// one Context are not thread-safe (a job owns its Context); different Contexts run concurrently.
// Every product is asynchronous on the stream; sync() waits. Errors throw std::runtime_error.
class Context {
 public:
  explicit Context(int device = 0);
  // Work goes on `stream` (a cudaStream_t someone else owns and keeps alive, e.g. PyTorch's current
  // stream), so it is ordered with that owner's work; the Context never destroys it.
  Context(int device, void* stream);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Device memory, and copies that are ordered on this stream (host memory may be reused as soon as
  // copyIn returns; copyOut waits for the copy).
  void* allocBytes(size_t bytes);
  void freeBytes(void* p);
  void copyIn(void* dst, const void* src, size_t bytes);
  void copyOut(void* dst, const void* src, size_t bytes);
  void copyOnDevice(void* dst, const void* src, size_t bytes);
  void zeroBytes(void* p, size_t bytes);
  void sync();
  // The same in floats.
  float* alloc(size_t floats) { return static_cast<float*>(allocBytes(std::max<size_t>(1, floats) * sizeof(float))); }
  void free(float* p) { freeBytes(p); }
  void upload(float* dst, const float* src, size_t floats) { copyIn(dst, src, floats * sizeof(float)); }
  void download(float* dst, const float* src, size_t floats) { copyOut(dst, src, floats * sizeof(float)); }
  void zero(float* p, size_t floats) { zeroBytes(p, floats * sizeof(float)); }

  // Y[M×out] (=|+=) X[M×in]·Wᵀ (+ bias), W packed [nnz][block][block] fp32 (inputs converted to
  // bf16/fp16 on load for the tensor-core path; accumulation always fp32).
  void bsrForward(const DeviceLayout& L, int M, const float* X, const float* Wp, const float* bias, float* Y,
                  bool accumulate, Precision p);
  void bsrBackwardData(const DeviceLayout& L, int M, const float* dY, const float* Wp, float* dX, bool accumulate,
                       Precision p);
  void bsrBackwardWeight(const DeviceLayout& L, int M, const float* dY, const float* X, float* dWp, bool accumulate,
                         Precision p);
  // The chunk height dW uses for this layout and M on this device (the schedule's choice).
  int backwardWeightChunkRows(const DeviceLayout& L, int M) const;

  // C[M×N] = alpha·op(A)·op(B) + beta·C, row-major fp32 buffers. cuBLAS when it was found (F32:
  // cublasSgemm; BF16/F16: cublasGemmEx on converted copies, fp32 compute), else our own kernel
  // (F32 only).
  void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
            int ldb, float beta, float* C, int ldc, Precision p = Precision::F32);
  // Y[m][n] += bias[n] for an M×N row-major Y.
  void addBias(int M, int N, const float* bias, float* Y);
  // db[N] (=|+=) column sums of dY[M×N].
  void biasGrad(int M, int N, const float* dY, float* db, bool accumulate);
  // Converts n floats to bf16/fp16 into `dst` (2 bytes each), for cuBLAS's reduced-precision inputs.
  void convert(const float* src, void* dst, size_t n, Precision p);

  // ---- every other operation of engine/backend.h, with its semantics there (layers.cu): device
  // pointers, asynchronous on this stream except the two that return host values, which wait.
  void geluForward(const float* x, float* y, int64_t n);
  void geluBackward(const float* x, const float* dy, float* dx, int64_t n);
  void add(const float* a, const float* b, float* y, int64_t n);
  void addTo(float* y, const float* a, int64_t n);
  void layerNormForward(int M, int D, const float* x, const float* g, const float* b, float* y, float* mean, float* rstd);
  void layerNormBackward(int M, int D, const float* x, const float* dy, const float* g, const float* mean,
                         const float* rstd, float* dx, float* dg, float* db);
  void transpose(int B, int T, int D, const float* x, float* y);
  void patchify(int B, int C, int H, int W, int p, const float* src, float* dst, bool backward);
  void poolForward(int B, int T, int D, bool first, const float* x, float* y);
  void poolBackward(int B, int T, int D, bool first, const float* dy, float* dx);
  void tokenPosEmbeddingForward(int B, int T, int D, const float* ids, const float* wte, const float* wpe, float* y);
  void tokenPosEmbeddingBackward(int B, int T, int D, const float* ids, const float* dy, float* dwte, float* dwpe);
  void clsTokenForward(int B, int T, int D, const float* cls, const float* x, float* y);
  void clsTokenBackward(int B, int T, int D, const float* dy, float* dcls, float* dx);
  void posEmbeddingForward(int B, int64_t n, const float* x, const float* pos, float* y);
  void posEmbeddingBackward(int B, int64_t n, const float* dy, float* dpos, float* dx);
  // The attention core over the score layout L (a T×T block layout, out = in = T).
  void attentionForward(const DeviceLayout& L, int B, int T, int D, int H, bool causal, const float* qkv, float* ctx,
                        float* lse);
  // dlse (null, or [B, H, T]): a gradient on lse too (the low-rank term's mix gives one).
  void attentionBackward(const DeviceLayout& L, int B, int T, int D, int H, bool causal, const float* qkv,
                         const float* ctx, const float* lse, const float* dctx, float* dqkv, const float* dlse);
  // Pixelfly attention's low-rank term (performer_kernels.cuh: engine/performer.cc's math, per (sample,
  // head) item): the forward makes ctx (o^s on entry) the mixed output and fills the state's saved
  // arrays; the backward gives dSparse, dlse and ADDS the term's q, k, v gradients to dqkv.
  void performerForward(const PerformerState& s, const float* qkv, const float* lse, float* ctx);
  void performerBackward(const PerformerState& s, const float* qkv, const float* dctx, float* dSparse, float* dlse,
                         float* dqkv);
  void pixelflyGate(int M, const float* x, int in, const float* gw, const float* gb, const float* h, int rank,
                    float* gate, float* hs, float* xs);
  void pixelflyLerpRows(int M, float* y, int out, const float* gate, const float* bias, const float* hs,
                        const float* Ut, int rank);
  void pixelflyMixBackward(int M, const float* x, int in, const float* gw, const float* V, const float* h, int rank,
                           const float* gate, float* dx, float* dh, float* dz, float* dgw);
  void scaleRowsOneMinus(int M, const float* a, int n, const float* gate, float* dst);
  double softmaxCrossEntropy(int rows, int classes, const float* logits, const int32_t* targets, float* dlogits,
                             int64_t* correct);
  double sumOfSquares(const float* x, int64_t n);
  void adamw(int64_t n, float* p, const float* g, float* m, float* v, const AdamStep& s);

  // Times `fn` (which enqueues work on this stream) with CUDA events: median of `repeats` runs of
  // ms, after one warm-up run.
  double medianMs(int repeats, const std::function<void()>& fn);

  bool usesCublas() const { return cublas_ != nullptr; }
  int multiprocessors() const { return sms_; }

 private:
  void* stream_ = nullptr;  // cudaStream_t
  bool ownsStream_ = true;
  void* cublas_ = nullptr;  // cublasHandle_t
  int device_ = 0, sms_ = 1;
  // Scratch that lives between the calls of one operation only (dW's chunk partials, attention's
  // row terms, per-row loss statistics, Σx² partials); the stream runs those operations one after another.
  float* workspace_ = nullptr;
  size_t workspaceFloats_ = 0;
  float* workspace(size_t floats);
  void* half_[2] = {nullptr, nullptr};  // reduced-precision copies for cublasGemmEx
  size_t halfBytes_[2] = {0, 0};
  void* halfBuffer(int i, size_t bytes);
};

}  // namespace cuda
}  // namespace pixelfly
