// Host memory for what the kernels read and write, allocated one way everywhere (the engine's CPU
// buffers, the kernels' scratch, the Node binding's arrays): 64-byte aligned — whole cache lines,
// and what the streamed stores need — and from 2 MB up, 2 MB aligned and advised for transparent
// huge pages (madvise; Debian's default THP mode is "madvise", so memory nobody advises gets none).
// Why: the block-sparse products walk strided rows of large operands (dW reads a 32-column strip of
// dY across 128 rows: 128 different 4 KB pages), and on 4 KB pages those walks miss the TLB. On
// this project's 2-core EPYC, bf16 fwd + dX + dW at 768→3072, density 1/8, M 4096 took 21.9 ms on
// 4 KB pages and 20.6–21.0 ms on huge pages (dW 7.8 → 7.0 ms); the dense GEMM, which copies its
// operands into contiguous panels first, did not change. Where the kernel gives no huge pages the
// advice is ignored and the memory is the same as before.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pixelfly {
namespace kernels {

constexpr size_t kHugePage = size_t(2) << 20;

// At least `bytes` (at least 1, in whole cache lines), freed with std::free; throws std::bad_alloc.
// Not rounded up to whole huge pages: the 2 MB stretches inside the range get huge pages, a partial
// last one stays on small pages, so a buffer holds no more memory than its size.
inline void* allocHost(size_t bytes) {
  const size_t size = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  const bool huge = size >= kHugePage;
  void* p = nullptr;
  if (posix_memalign(&p, huge ? kHugePage : 64, size) != 0) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, size, MADV_HUGEPAGE);
#endif
  return p;
}

// A buffer that only grows (steady-state calls neither allocate nor fault pages): `get<T>(n)`
// returns room for n values of T, its old contents dropped when it grows.
class GrowingBuffer {
 public:
  GrowingBuffer() = default;
  GrowingBuffer(const GrowingBuffer&) = delete;
  GrowingBuffer& operator=(const GrowingBuffer&) = delete;
  ~GrowingBuffer() { std::free(ptr_); }
  template <class T = float>
  T* get(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes > cap_ || !ptr_) {
      std::free(ptr_);
      ptr_ = nullptr;
      cap_ = 0;
      ptr_ = allocHost(bytes);
      cap_ = std::max<size_t>(bytes, 1);
    }
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace kernels
}  // namespace pixelfly
