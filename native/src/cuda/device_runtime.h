// What every .cu file of the CUDA backend needs: the CUDA runtime (or, under
// PIXELFLY_CUDA_EMULATION, its host emulation), `dev::launch` (the one launch site both run), and
// the checks that turn CUDA errors into std::runtime_error.
#pragma once
#ifdef PIXELFLY_CUDA_EMULATION
#include "cuda/emulation.h"  // host emulation: the kernel tests that run without a GPU
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#endif

#include <stdexcept>
#include <string>

namespace pixelfly {
namespace cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}
inline void checkLaunch(const char* what) { check(cudaGetLastError(), what); }

namespace dev {

// kernel<<<grid, threads, 0, stream>>>(args...), written as a call so the host emulation (which
// g++ compiles) runs the same launch sites.
template <class... KArgs, class... Args>
void launch(dim3 grid, dim3 threads, cudaStream_t stream, void (*kernel)(KArgs...), Args... args) {
#ifdef PIXELFLY_CUDA_EMULATION
  emuLaunch(grid, threads, kernel, args...);
  (void)stream;
#else
  kernel<<<grid, threads, 0, stream>>>(args...);
#endif
}

}  // namespace dev
}  // namespace cuda
}  // namespace pixelfly
