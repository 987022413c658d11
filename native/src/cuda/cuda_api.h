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
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda/bsr_schedule.h"

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
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Device memory (floats), and copies that are ordered on this stream.
  float* alloc(size_t floats);
  void free(float* p);
  void upload(float* dst, const float* src, size_t floats);
  void download(float* dst, const float* src, size_t floats);  // waits for the copy
  void zero(float* p, size_t floats);
  void sync();

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

  // Times `fn` (which enqueues work on this stream) with CUDA events: median of `repeats` runs of
  // ms, after one warm-up run.
  double medianMs(int repeats, const std::function<void()>& fn);

  bool usesCublas() const { return cublas_ != nullptr; }
  int multiprocessors() const { return sms_; }

 private:
  void* stream_ = nullptr;  // cudaStream_t
  void* cublas_ = nullptr;  // cublasHandle_t
  int device_ = 0, sms_ = 1;
  float* workspace_ = nullptr;
  size_t workspaceFloats_ = 0;
  float* workspace(size_t floats);
  void* half_[2] = {nullptr, nullptr};  // reduced-precision copies for cublasGemmEx
  size_t halfBytes_[2] = {0, 0};
  void* halfBuffer(int i, size_t bytes);
};

}  // namespace cuda
}  // namespace pixelfly
