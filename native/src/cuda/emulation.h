// Host emulation of exactly the CUDA features kernels.cuh uses, so the real kernel source runs on a
// machine without a GPU (test/cuda/emulation.test.ts builds test/cuda/emulate_kernels.cc with it):
// one std::thread per CUDA thread, blocks one after another (so function-local `static` arrays are
// the block's shared memory), __syncthreads as a barrier, bf16/fp16 as floats rounded the way the
// hardware converts, and wmma fragments as whole 16×16 tiles held by every lane of the warp (the
// kernels treat fragments as opaque, which is what makes this faithful), stored by lane 0.
// Not a simulator of timing, memory coalescing or bank conflicts: it checks what the kernels compute.
#pragma once
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "cuda/bsr_schedule.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
inline std::barrier<>* emuBarrier = nullptr;
inline void __syncthreads() { emuBarrier->arrive_and_wait(); }

struct __nv_bfloat16 {
  float v;
  operator float() const { return v; }
};
struct half {
  float v;
  operator float() const { return v; }
};
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return {pixelfly::sched::roundToBf16(x)}; }
inline half __float2half_rn(float x) { return {static_cast<float>(static_cast<_Float16>(x))}; }

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  float x[16][16] = {};  // (row, col) of the 16×16 tile this fragment stands for
};

template <class F>
void fill_fragment(F& f, float v) {
  for (auto& row : f.x)
    for (float& e : row) e = v;
}

// matrix_a (i, k) / matrix_b (k, j): row_major reads p[r*ldm + c], col_major p[r + c*ldm].
template <class Use, int M, int N, int K, class T, class Layout, class P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++)
      f.x[r][c] = std::is_same<Layout, row_major>::value ? static_cast<float>(p[r * ldm + c]) : static_cast<float>(p[r + c * ldm]);
}

template <class A, class B, class C>
void mma_sync(C& d, const A& a, const B& b, const C& c) {
  C out;
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      float s = c.x[i][j];
      for (int k = 0; k < 16; k++) s += a.x[i][k] * b.x[k][j];
      out.x[i][j] = s;
    }
  d = out;
}

template <class C>
void store_matrix_sync(float* p, const C& f, unsigned ldm, layout_t layout) {
  if (threadIdx.x % 32 != 0) return;  // every lane holds the tile; one writes it
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) (layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm]) = f.x[r][c];
}
}  // namespace wmma
}  // namespace nvcuda

// kernel<<<grid, threads>>>(args...) for one-dimensional launches.
template <class... KArgs, class... Args>
void emuLaunch(unsigned grid, unsigned threads, void (*kernel)(KArgs...), Args... args) {
  for (unsigned b = 0; b < grid; b++) {
    std::barrier<> bar(threads);
    emuBarrier = &bar;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; t++)
      pool.emplace_back([=] {
        threadIdx = dim3(t);
        blockIdx = dim3(b);
        blockDim = dim3(threads);
        gridDim = dim3(grid);
        kernel(args...);
      });
    for (auto& th : pool) th.join();
  }
}
