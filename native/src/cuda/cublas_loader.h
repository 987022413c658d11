// cuBLAS opened at run time (dlopen) instead of linked: the toolkit on the build machine need not
// ship it, and a machine with a GPU but without cuBLAS still trains (dense products fall back to
// our own kernel). Only the handful of entry points we call are declared, with the ABI of
// cublas_api.h (stable across CUDA 11-13).
#pragma once
#include <string>

namespace pixelfly {
namespace cuda {

struct CublasApi {
  using Handle = void*;
  int (*create)(Handle*) = nullptr;                 // cublasCreate_v2
  int (*destroy)(Handle) = nullptr;                 // cublasDestroy_v2
  int (*setStream)(Handle, void* stream) = nullptr; // cublasSetStream_v2
  // cublasSgemm_v2 (column-major)
  int (*sgemm)(Handle, int transa, int transb, int m, int n, int k, const float* alpha, const float* A, int lda,
               const float* B, int ldb, const float* beta, float* C, int ldc) = nullptr;
  // cublasGemmEx (column-major, typed inputs)
  int (*gemmEx)(Handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* A, int Atype,
                int lda, const void* B, int Btype, int ldb, const void* beta, void* C, int Ctype, int ldc,
                int computeType, int algo) = nullptr;
  std::string library;  // the file that was opened
};

// cublas_api.h / library_types.h constants we pass.
constexpr int kCublasOpN = 0, kCublasOpT = 1;
constexpr int kCudaR32F = 0, kCudaR16F = 2, kCudaR16BF = 14;
constexpr int kCublasCompute32F = 68;
constexpr int kCublasGemmDefault = -1;

// Opens cuBLAS once per process; nullptr (and *error set) when it cannot be found or lacks a symbol.
const CublasApi* cublasApi(std::string* error);

}  // namespace cuda
}  // namespace pixelfly
