// A growable array in a backend's memory (host memory on the CPU, device memory on CUDA): what a
// layer keeps its outputs, saved activations and scratch in. Growing does not keep the contents
// (every caller overwrites what it asked for), so a resize to a size already held costs nothing.
#pragma once
#include <cstddef>
#include <utility>

#include "backend.h"

namespace pixelfly {

template <class T>
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(cap_, o.cap_);
    return *this;
  }

  // At least n elements on `be`; returns the data.
  T* resize(Backend& be, size_t n) {
    if (&be != be_ || n > cap_) {
      release();
      p_ = static_cast<T*>(be.allocBytes(n * sizeof(T)));
      be_ = &be;
      cap_ = n;
    }
    n_ = n;
    return p_;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void release() {
    if (p_) be_->freeBytes(p_);
    p_ = nullptr;
    n_ = cap_ = 0;
  }
  Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0, cap_ = 0;
};

}  // namespace pixelfly
