// Host side of the CUDA backend: device status, device-resident layouts, and the Context (one
// stream + cuBLAS handle + scratch) that launches the kernels of kernels.cuh.
#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cublas_loader.h"
#include "cuda/cuda_api.h"
#include "cuda/kernels.cuh"
#include "kernels/block_sizes.h"

namespace pixelfly {
namespace cuda {

namespace {

void checkBlas(int s, const char* what) {
  if (s != 0) throw std::runtime_error(std::string("cuBLAS ") + what + " failed with status " + std::to_string(s));
}

// Tensor-core kernels need sm_80 (bf16 wmma); this build carries cubins for sm_80 and sm_90 and
// PTX for compute_90, which newer devices compile on load.
constexpr int kMinMajor = 8;

}  // namespace

const char* precisionName(Precision p) {
  switch (p) {
    case Precision::F32: return "fp32";
    case Precision::BF16: return "bf16";
    case Precision::F16: return "fp16";
  }
  return "?";
}

bool parsePrecision(const std::string& s, Precision* out) {
  if (s == "fp32") *out = Precision::F32;
  else if (s == "bf16") *out = Precision::BF16;
  else if (s == "fp16") *out = Precision::F16;
  else return false;
  return true;
}

const Status& status() {
  static std::once_flag once;
  static Status st;
  std::call_once(once, [] {
#ifdef __CUDA_ARCH_LIST__
    st.compiledArchs = {__CUDA_ARCH_LIST__};
    for (int& a : st.compiledArchs) a /= 10;
#endif
    cudaRuntimeGetVersion(&st.runtimeVersion);
    cudaDriverGetVersion(&st.driverVersion);  // 0 without a driver; never fails
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      st.reason = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
      cudaGetLastError();  // clear the sticky-free error so later queries start clean
      return;
    }
    for (int i = 0; i < n; i++) {
      cudaDeviceProp p{};
      if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
      st.devices.push_back({i, p.name, p.totalGlobalMem, p.major, p.minor, p.multiProcessorCount});
    }
    if (st.devices.empty()) {
      st.reason = "no CUDA device found";
    } else if (st.devices[0].major < kMinMajor) {
      st.reason = "device 0 (" + st.devices[0].name + ") has compute capability " + std::to_string(st.devices[0].major) +
                  "." + std::to_string(st.devices[0].minor) + "; the tensor-core kernels need 8.0 or newer";
    } else {
      st.available = true;
    }
#ifdef PIXELFLY_CUDA_EMULATION
    st.cublasError = "not used by the host emulation";
#else
    if (st.available) cublasApi(&st.cublasError) ? (void)(st.cublas = cublasApi(nullptr)->library) : (void)0;
#endif
  });
  return st;
}

// ------------------------------------------------------------------ DeviceLayout

DeviceLayout::DeviceLayout(int block, int blockRows, int blockCols, int nnz, const int32_t* rowPtr,
                           const int32_t* colIdx, const int32_t* colPtr, const int32_t* rowIdx, const int32_t* tBlock,
                           int out, int in) {
  const size_t nR = blockRows + 1, nC = blockCols + 1, nz = nnz;
  hostArrays_.resize(nR + nC + 3 * nz);
  int32_t* h = hostArrays_.data();
  std::copy(rowPtr, rowPtr + nR, h);
  std::copy(colIdx, colIdx + nz, h + nR);
  std::copy(colPtr, colPtr + nC, h + nR + nz);
  std::copy(rowIdx, rowIdx + nz, h + nR + nz + nC);
  std::copy(tBlock, tBlock + nz, h + nR + nC + 2 * nz);
  check(cudaMalloc(&devArrays_, hostArrays_.size() * sizeof(int32_t)), "cudaMalloc (layout)");
  check(cudaMemcpy(devArrays_, h, hostArrays_.size() * sizeof(int32_t), cudaMemcpyHostToDevice), "copy layout");
  auto fill = [&](sched::BsrView& v, const int32_t* base) {
    v.block = block;
    v.blockRows = blockRows;
    v.blockCols = blockCols;
    v.nnz = nnz;
    v.out = out;
    v.in = in;
    v.rowPtr = base;
    v.colIdx = base + nR;
    v.colPtr = base + nR + nz;
    v.rowIdx = base + nR + nz + nC;
    v.tBlock = base + nR + nC + 2 * nz;
  };
  fill(host_, h);
  fill(dev_, devArrays_);
}

DeviceLayout::~DeviceLayout() { cudaFree(devArrays_); }

// ------------------------------------------------------------------ Context

#define STREAM static_cast<cudaStream_t>(stream_)

Context::Context(int device) : Context(device, nullptr) {
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
  ownsStream_ = true;
  if (cublas_) checkBlas(cublasApi(nullptr)->setStream(cublas_, stream_), "setStream");
}

Context::Context(int device, void* stream) : stream_(stream), ownsStream_(false), device_(device) {
  const Status& st = status();
  if (!st.available) throw std::runtime_error("CUDA is not available: " + st.reason);
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device), "SM count");
#ifndef PIXELFLY_CUDA_EMULATION  // emulated device memory is host memory: a real cuBLAS must not see it
  if (const CublasApi* b = cublasApi(nullptr)) {
    CublasApi::Handle h = nullptr;
    checkBlas(b->create(&h), "create");
    checkBlas(b->setStream(h, stream_), "setStream");
    cublas_ = h;
  }
#endif
}

Context::~Context() {
  if (cublas_) cublasApi(nullptr)->destroy(cublas_);
  cudaFree(workspace_);
  cudaFree(half_[0]);
  cudaFree(half_[1]);
  if (ownsStream_) cudaStreamDestroy(STREAM);
}

void* Context::allocBytes(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(1, bytes)), "cudaMalloc");
  return p;
}
void Context::freeBytes(void* p) {
  // Kernels queued on this stream may still use p. No check: this runs in destructors (Buffer), and
  // an error here would be the stream's earlier one, which the next checked call reports.
  cudaStreamSynchronize(STREAM);
  cudaFree(p);
}
void Context::copyIn(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, STREAM), "copy to the device");
}
void Context::copyOut(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, STREAM), "copy to the host");
  sync();
}
void Context::copyOnDevice(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, STREAM), "copy on the device");
}
void Context::zeroBytes(void* p, size_t bytes) { check(cudaMemsetAsync(p, 0, bytes, STREAM), "memset"); }
void Context::sync() { check(cudaStreamSynchronize(STREAM), "stream synchronize"); }

float* Context::workspace(size_t floats) {
  if (floats > workspaceFloats_) {
    sync();  // a previous kernel may still read the old workspace
    cudaFree(workspace_);
    workspace_ = nullptr;
    workspaceFloats_ = 0;
    workspace_ = alloc(floats);
    workspaceFloats_ = floats;
  }
  return workspace_;
}

void* Context::halfBuffer(int i, size_t bytes) {
  if (bytes > halfBytes_[i]) {
    sync();
    cudaFree(half_[i]);
    half_[i] = nullptr;
    check(cudaMalloc(&half_[i], bytes), "cudaMalloc (half copies)");
    halfBytes_[i] = bytes;
  }
  return half_[i];
}

namespace {

// Instantiates `Launch::template run<B>()` for the block size at run time: one case per entry of
// kernels::kKernelBlocks (the static_assert keeps the two in step).
static_assert(sizeof kernels::kKernelBlocks / sizeof(int) == 3 && kernels::kKernelBlocks[0] == 16 && kernels::kKernelBlocks[1] == 32 &&
                  kernels::kKernelBlocks[2] == 64,
              "byBlock has a case for each block size the kernels implement");
template <class Launch>
void byBlock(int block, Launch&& l) {
  switch (block) {
    case 16: l.template operator()<16>(); break;
    case 32: l.template operator()<32>(); break;
    case 64: l.template operator()<64>(); break;
    default: throw std::invalid_argument("block must be " + kernels::kernelBlocksText() + ", got " + std::to_string(block));
  }
}

template <bool Fwd>
void launchRows(cudaStream_t s, const sched::BsrView& v, int M, const float* A, const float* Wp, const float* bias,
                float* C, bool accumulate, Precision p) {
  const int tiles = Fwd ? sched::forwardTiles(v, M) : sched::backwardDataTiles(v, M);
  if (tiles == 0) return;
  byBlock(v.block, [&]<int B>() {
    switch (p) {
      case Precision::F32:
        dev::launch(tiles, dev::kThreadsF32, s, dev::bsrRowsF32<B, Fwd>, v, M, A, Wp, bias, C, accumulate);
        break;
      case Precision::BF16:
        dev::launch(tiles, dev::kThreadsTC, s, dev::bsrRowsTC<B, Fwd, __nv_bfloat16>, v, M, A, Wp, bias, C, accumulate);
        break;
      case Precision::F16:
        dev::launch(tiles, dev::kThreadsTC, s, dev::bsrRowsTC<B, Fwd, half>, v, M, A, Wp, bias, C, accumulate);
        break;
    }
  });
  checkLaunch(Fwd ? "bsrForward launch" : "bsrBackwardData launch");
}

}  // namespace

void Context::bsrForward(const DeviceLayout& L, int M, const float* X, const float* Wp, const float* bias, float* Y,
                         bool accumulate, Precision p) {
  launchRows<true>(STREAM, L.device(), M, X, Wp, bias, Y, accumulate, p);
}

void Context::bsrBackwardData(const DeviceLayout& L, int M, const float* dY, const float* Wp, float* dX,
                              bool accumulate, Precision p) {
  launchRows<false>(STREAM, L.device(), M, dY, Wp, nullptr, dX, accumulate, p);
}

int Context::backwardWeightChunkRows(const DeviceLayout& L, int M) const {
  // About four thread blocks per SM; a chunk is at least 256 rows so its partial is worth writing.
  return sched::backwardWeightChunkRows(L.host().nnz, M, 4 * sms_, 256);
}

void Context::bsrBackwardWeight(const DeviceLayout& L, int M, const float* dY, const float* X, float* dWp,
                                bool accumulate, Precision p) {
  const sched::BsrView v = L.device();
  const size_t n = static_cast<size_t>(v.nnz) * v.block * v.block;
  if (n == 0) return;
  if (M == 0) {
    if (!accumulate) zero(dWp, n);
    return;
  }
  const int chunkRows = backwardWeightChunkRows(L, M);
  const int chunks = sched::backwardWeightChunks(M, chunkRows);
  const bool direct = chunks == 1;
  float* out = direct ? dWp : workspace(n * chunks);
  const int tiles = v.nnz * chunks;
  cudaStream_t s = STREAM;
  byBlock(v.block, [&]<int B>() {
    switch (p) {
      case Precision::F32:
        dev::launch(tiles, dev::kThreadsF32, s, dev::bsrWeightF32<B>, v, M, chunkRows, dY, X, out, direct, accumulate);
        break;
      case Precision::BF16:
        dev::launch(tiles, dev::kThreadsTC, s, dev::bsrWeightTC<B, __nv_bfloat16>, v, M, chunkRows, dY, X, out, direct, accumulate);
        break;
      case Precision::F16:
        dev::launch(tiles, dev::kThreadsTC, s, dev::bsrWeightTC<B, half>, v, M, chunkRows, dY, X, out, direct, accumulate);
        break;
    }
  });
  checkLaunch("bsrBackwardWeight launch");
  if (!direct) {
    dev::launch(static_cast<unsigned>((n + 255) / 256), 256, s, dev::reduceChunks, out, chunks, n, dWp, accumulate);
    checkLaunch("bsrBackwardWeight reduction launch");
  }
}

void Context::addBias(int M, int N, const float* bias, float* Y) {
  const size_t n = static_cast<size_t>(M) * N;
  if (n == 0) return;
  dev::launch(static_cast<unsigned>((n + 255) / 256), 256, STREAM, dev::addBiasKernel, M, N, bias, Y);
  checkLaunch("addBias launch");
}

void Context::convert(const float* src, void* dst, size_t n, Precision p) {
  if (n == 0) return;
  const unsigned grid = static_cast<unsigned>((n + 255) / 256);
  if (p == Precision::BF16) dev::launch(grid, 256, STREAM, dev::convertKernel<__nv_bfloat16>, src, static_cast<__nv_bfloat16*>(dst), n);
  else if (p == Precision::F16) dev::launch(grid, 256, STREAM, dev::convertKernel<half>, src, static_cast<half*>(dst), n);
  else throw std::invalid_argument("convert: precision must be bf16 or fp16");
  checkLaunch("convert launch");
}

void Context::gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                   float beta, float* C, int ldc, Precision p) {
  if (M == 0 || N == 0) return;
  if (!cublas_) {
    if (p != Precision::F32)
      throw std::runtime_error(std::string("dense ") + precisionName(p) + " products need cuBLAS, which is missing");
    const dim3 grid((N + 15) / 16, std::min((M + 15) / 16, 65535)), threads(16, 16);
    dev::launch(grid, threads, STREAM, dev::gemmFallback, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    checkLaunch("gemm fallback launch");
    return;
  }
  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands, keep the flags.
  const CublasApi* b = cublasApi(nullptr);
  const int opA = ta ? kCublasOpT : kCublasOpN, opB = tb ? kCublasOpT : kCublasOpN;
  if (p == Precision::F32) {
    checkBlas(b->sgemm(cublas_, opB, opA, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc), "sgemm");
    return;
  }
  // Reduced precision: contiguous operands converted to 16-bit copies, fp32 accumulation and output.
  const size_t nA = static_cast<size_t>(ta ? K : M) * lda, nB = static_cast<size_t>(tb ? N : K) * ldb;
  void* a16 = halfBuffer(0, nA * 2);
  void* b16 = halfBuffer(1, nB * 2);
  convert(A, a16, nA, p);
  convert(B, b16, nB, p);
  const int type = p == Precision::BF16 ? kCudaR16BF : kCudaR16F;
  checkBlas(b->gemmEx(cublas_, opB, opA, N, M, K, &alpha, b16, type, ldb, a16, type, lda, &beta, C, kCudaR32F, ldc,
                      kCublasCompute32F, kCublasGemmDefault),
            "gemmEx");
}

double Context::medianMs(int repeats, const std::function<void()>& fn) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  fn();  // warm-up: first launches, workspace growth, cuBLAS heuristics
  std::vector<double> ms;
  for (int i = 0; i < std::max(1, repeats); i++) {
    cudaEventRecord(a, STREAM);
    fn();
    cudaEventRecord(b, STREAM);
    check(cudaEventSynchronize(b), "event synchronize");
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace cuda
}  // namespace pixelfly
