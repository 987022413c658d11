// Host emulation of exactly the CUDA features kernels.cuh uses, so the real kernel source runs on a
// machine without a GPU:
// one fiber per CUDA thread on the launching host thread, blocks one after another (so
// function-local `static` arrays are the block's shared memory), __syncthreads as a switch to the
// next fiber, bf16/fp16 as floats rounded the way the
// hardware converts, and wmma fragments as whole 16×16 tiles held by lane 0 of the warp, which
// loads, multiplies and stores them (the kernels treat fragments as opaque, so what the other lanes
// would hold is never seen: computing it 32 times over only cost time).
// The runtime API calls of context.cu are emulated over host memory too, so the whole host side
// (Context, the engine backend, the binding) can be built against it (binding.gyp's
// cuda_emulation=1, used by test/cuda/emulatedAddon.test.ts).
// Not a simulator of timing, memory coalescing or bank conflicts: it checks what the code computes.
#pragma once
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <sys/mman.h>
#include <tuple>
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

// The fibers of the launch in progress: one stack per CUDA thread of a block, all run by the host
// thread that launched (launches are serialised by emuDeviceMutex below). A fiber runs until its
// next __syncthreads, which switches back to the scheduler; the scheduler resumes every fiber in
// turn, so when a round ends every thread of the block has reached the barrier. OS threads per
// CUDA thread did the same with a std::barrier, but cost a thread start per CUDA thread per launch
// and a futex round trip per barrier: on a 2-core machine the emulated tests ran for minutes and
// starved everything beside them. The switch is emuSwitch below, not swapcontext, which makes two
// signal-mask system calls per switch (half the emulated tests' time went to them).
#if !defined(__x86_64__)
#error "the CUDA host emulation switches fibers with x86-64 code (emuSwitch)"
#endif
// emuSwitch(from, to): saves the callee-saved registers, MXCSR and the x87 control word on the
// current stack, stores the stack pointer in *from, and resumes the fiber whose pointer is `to`.
// A new fiber's stack holds such a frame whose return address is emuFiberStart, which calls
// emuFiberEntry(r12). Weak: every translation unit including this header defines it.
extern "C" void emuSwitch(void** from, void* to);
extern "C" void emuFiberStart();
asm(R"(
  .text
  .weak emuSwitch
  .type emuSwitch, @function
emuSwitch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emuSwitch, .-emuSwitch
  .weak emuFiberStart
  .type emuFiberStart, @function
emuFiberStart:
  movq %r12, %rdi
  call *%r13
  ud2
  .size emuFiberStart, .-emuFiberStart
)");

struct EmuFiber {
  void* sp = nullptr;
  dim3 idx, block;
  bool done = false;
};
struct EmuFibers {
  void* scheduler = nullptr;
  EmuFiber* current = nullptr;
  std::vector<EmuFiber> fibers;
  char* stacks = nullptr;
  size_t mapped = 0;
  ~EmuFibers() {
    if (stacks) munmap(stacks, mapped);
  }
};
inline EmuFibers emuFibers;
// Kernels keep wmma fragments (1 KiB each) and small arrays on the stack: 256 KiB a fiber, mapped
// lazily (only touched pages cost memory).
constexpr size_t kEmuStackBytes = size_t(256) << 10;

// A fresh fiber's stack: the frame emuSwitch restores (MXCSR and x87 defaults, r12 = arg,
// r13 = entry), returning into emuFiberStart with the stack 16-byte aligned.
inline void* emuFiberStack(char* base, size_t bytes, void (*entry)(void*), void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(base) + bytes) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = reinterpret_cast<uint64_t>(&emuFiberStart);  // ret
  *--sp = 0;                                             // rbp
  *--sp = 0;                                             // rbx
  *--sp = reinterpret_cast<uint64_t>(arg);               // r12
  *--sp = reinterpret_cast<uint64_t>(entry);             // r13
  *--sp = 0;                                             // r14
  *--sp = 0;                                             // r15
  *--sp = uint64_t(0x1F80) | (uint64_t(0x037F) << 32);   // MXCSR, x87 control word
  return sp;
}

inline void __syncthreads() {
  EmuFiber* f = emuFibers.current;
  emuSwitch(&f->sp, emuFibers.scheduler);
  // Resumed: the fibers share this host thread's thread_locals, so take this fiber's back.
  threadIdx = f->idx;
  blockIdx = f->block;
}

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
  if (threadIdx.x % 32 != 0) return;  // lane 0 holds the warp's tile
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++)
      f.x[r][c] = std::is_same<Layout, row_major>::value ? static_cast<float>(p[r * ldm + c]) : static_cast<float>(p[r + c * ldm]);
}

template <class A, class B, class C>
void mma_sync(C& d, const A& a, const B& b, const C& c) {
  if (threadIdx.x % 32 != 0) return;
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
  if (threadIdx.x % 32 != 0) return;  // lane 0 holds the tile and writes it
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) (layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm]) = f.x[r][c];
}
}  // namespace wmma
}  // namespace nvcuda

// One kernel at a time on the emulated device. Two CUDA backends (two models, each with its own
// Context and stream) may launch from two host threads at once, but the emulation's shared state is
// process-wide: `emuFibers` is one global, and a kernel's `__shared__` arrays are function-local
// statics that every launch of that kernel shares. Two overlapping launches would switch into each
// other's fibers and overwrite each other's shared memory. A real device runs the streams' kernels side by side with separate shared memory;
// running them one after another gives the same results, since no kernel depends on another
// stream's progress.
inline std::mutex emuDeviceMutex;

// The launch configuration a real device refuses (cudaErrorInvalidConfiguration, reported by the
// next cudaGetLastError, the kernel not run): more than 1024 threads a block, grid.x above 2³¹ − 1,
// grid.y or grid.z above 65535. Checked here so a launch that would fail on a GPU fails the
// emulated tests too.
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidConfiguration = 9 };
inline thread_local cudaError_t emuLastError = cudaSuccess;  // per host thread, as the runtime's

// kernel<<<grid, threads>>>(args...): a fiber per CUDA thread, which run the blocks one after
// another with a barrier between blocks (so the `static` shared arrays belong to one block at a time).
template <class Launch>
void emuFiberMain(void* launch) {
  const Launch& l = *static_cast<const Launch*>(launch);
  EmuFiber* f = emuFibers.current;
  threadIdx = f->idx;
  for (uint64_t b = 0; b < l.blocks; b++) {
    f->block = dim3(unsigned(b % l.grid.x), unsigned(b / l.grid.x % l.grid.y), unsigned(b / (uint64_t(l.grid.x) * l.grid.y)));
    blockIdx = f->block;
    std::apply(l.kernel, l.args);
    __syncthreads();  // the block is done before the next one reuses shared memory
  }
  f->done = true;
  emuSwitch(&f->sp, emuFibers.scheduler);  // never resumed
}

template <class... KArgs, class... Args>
void emuLaunch(dim3 grid, dim3 threads, void (*kernel)(KArgs...), Args... args) {
  std::lock_guard<std::mutex> device(emuDeviceMutex);
  if (threads.x * threads.y * threads.z > 1024 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    emuLastError = cudaErrorInvalidConfiguration;
    return;
  }
  const unsigned n = threads.x * threads.y * threads.z;
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  if (n == 0 || blocks == 0) return;
  struct Launch {
    void (*kernel)(KArgs...);
    std::tuple<Args...> args;
    uint64_t blocks;
    dim3 grid;
  } launch{kernel, std::tuple<Args...>(args...), blocks, grid};
  EmuFibers& F = emuFibers;
  if (F.mapped < size_t(n) * kEmuStackBytes) {
    if (F.stacks) munmap(F.stacks, F.mapped);
    F.stacks = nullptr;
    F.mapped = 0;
    void* m = mmap(nullptr, size_t(n) * kEmuStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      emuLastError = cudaErrorMemoryAllocation;
      return;
    }
    F.stacks = static_cast<char*>(m);
    F.mapped = size_t(n) * kEmuStackBytes;
  }
  F.fibers.assign(n, EmuFiber{});
  for (unsigned t = 0; t < n; t++) {
    EmuFiber& f = F.fibers[t];
    f.idx = dim3(t % threads.x, t / threads.x % threads.y, t / (threads.x * threads.y));
    f.sp = emuFiberStack(F.stacks + size_t(t) * kEmuStackBytes, kEmuStackBytes, &emuFiberMain<Launch>, &launch);
  }
  const dim3 savedThread = threadIdx, savedBlock = blockIdx;
  blockDim = threads;
  gridDim = grid;
  // Each round resumes every fiber once: it runs to its next barrier (or its end), so a round is one
  // barrier phase of the block, and the end-of-block barrier keeps all fibers on the same block.
  for (bool running = true; running;) {
    running = false;
    for (EmuFiber& f : F.fibers) {
      if (f.done) continue;
      F.current = &f;
      emuSwitch(&F.scheduler, f.sp);
      running = running || !f.done;
    }
  }
  F.current = nullptr;
  threadIdx = savedThread;
  blockIdx = savedBlock;
}

// ---- the CUDA runtime API calls context.cu makes, over host memory (one emulated device).
// An H100's SM count, so the emulated Context splits dW's reduction into chunks as it would there.
constexpr int kEmuSms = 132;
using cudaStream_t = void*;
using cudaEvent_t = std::chrono::steady_clock::time_point*;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount };
constexpr unsigned cudaStreamNonBlocking = 1;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : e == cudaErrorInvalidConfiguration ? "invalid configuration argument" : "out of memory";
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emuLastError;
  emuLastError = cudaSuccess;
  return e;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaDriverGetVersion(int* v) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::snprintf(p->name, sizeof p->name, "host emulation of the CUDA kernels");
  p->totalGlobalMem = size_t(1) << 30;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = kEmuSms;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = kEmuSms; return cudaSuccess; }
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  *p = static_cast<T*>(std::malloc(bytes));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) { std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) { std::memset(d, v, n); return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = nullptr; return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }  // launches run to completion
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = new std::chrono::steady_clock::time_point(); return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { *e = std::chrono::steady_clock::now(); return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(*b - *a).count();
  return cudaSuccess;
}
