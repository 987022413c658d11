// Device buffers for one call, and the timing of a Pixelfly layer against its dense products:
// shared by the addon's benchLayer (binding.cc) and the Node-less gpu_check, so both time exactly
// the same products.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/cuda_api.h"

namespace pixelfly {
namespace cuda {

// Device arrays freed with the Context's allocator at scope exit.
class DeviceArrays {
 public:
  explicit DeviceArrays(Context& ctx) : ctx_(ctx) {}
  ~DeviceArrays() {
    for (float* p : ptrs_) ctx_.free(p);
  }
  DeviceArrays(const DeviceArrays&) = delete;
  DeviceArrays& operator=(const DeviceArrays&) = delete;
  // n floats on the device, filled from `host` when it is not null.
  float* copy(const float* host, size_t n) {
    float* d = ctx_.alloc(n);
    ptrs_.push_back(d);
    if (host) ctx_.upload(d, host, n);
    return d;
  }

 private:
  Context& ctx_;
  std::vector<float*> ptrs_;
};

// Median ms (of `repeats`, see Context::medianMs) of fwd, dX and dW.
struct LayerTimes {
  double pixelfly[3], dense[3];
};

// The layer's three Pixelfly products, and the same layer's dense out×in products through
// Context::gemm (cuBLAS, or our fallback without it), on device-resident data of m rows.
inline LayerTimes timeLayer(Context& ctx, const DeviceLayout& dl, int m, int repeats, Precision prec) {
  const sched::BsrView& v = dl.host();
  const size_t nx = size_t(m) * v.in, ny = size_t(m) * v.out, nw = size_t(v.nnz) * v.block * v.block,
               nd = size_t(v.out) * v.in;
  // Deterministic values in [-1, 1) (the timing does not depend on them, only finite inputs matter).
  std::vector<float> host(std::max({nx, ny, nw, nd}));
  uint32_t s = 12345u;
  for (float& f : host) f = ((s = s * 1664525u + 1013904223u) >> 8) * (2.0f / 16777216.0f) - 1.0f;
  DeviceArrays d(ctx);
  float *x = d.copy(host.data(), nx), *dy = d.copy(host.data(), ny), *w = d.copy(host.data(), nw);
  float *wd = d.copy(host.data(), nd), *y = d.copy(nullptr, ny), *dx = d.copy(nullptr, nx);
  float *dw = d.copy(nullptr, nw), *dwd = d.copy(nullptr, nd);
  LayerTimes t;
  t.pixelfly[0] = ctx.medianMs(repeats, [&] { ctx.bsrForward(dl, m, x, w, nullptr, y, false, prec); });
  t.pixelfly[1] = ctx.medianMs(repeats, [&] { ctx.bsrBackwardData(dl, m, dy, w, dx, false, prec); });
  t.pixelfly[2] = ctx.medianMs(repeats, [&] { ctx.bsrBackwardWeight(dl, m, dy, x, dw, false, prec); });
  t.dense[0] = ctx.medianMs(repeats, [&] { ctx.gemm(false, true, m, v.out, v.in, 1.f, x, v.in, wd, v.in, 0.f, y, v.out, prec); });
  t.dense[1] = ctx.medianMs(repeats, [&] { ctx.gemm(false, false, m, v.in, v.out, 1.f, dy, v.out, wd, v.in, 0.f, dx, v.in, prec); });
  t.dense[2] = ctx.medianMs(repeats, [&] { ctx.gemm(true, false, v.out, v.in, m, 1.f, dy, v.out, x, v.in, 0.f, dwd, v.in, prec); });
  return t;
}

}  // namespace cuda
}  // namespace pixelfly
