// JS binding of the kernels (exports.kernels): every product runs on a libuv worker thread and
// returns a promise. Arguments are checked on the JS thread and copied into a plain C++ struct
// (the baton): sizes, the layout's index arrays (copied), and pointers into the caller's typed
// arrays (Float32Array: fp32; Uint16Array: bf16 bits), which stay referenced until the promise
// settles. `precision: 'bf16'` makes an all-fp32 product a bf16 product (see kernels.h). A bad argument rejects the
// promise with an Error naming the argument; nothing invalid ever reaches a kernel.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "addon_area.h"
#include "binding_util.h"
#include "kernels/block_sizes.h"
#include "kernels/host_memory.h"
#include "kernels/kernels.h"

namespace pixelfly {
namespace kernels {
namespace {

using binding::Args;
using binding::ArgError;
using binding::OwnedLayout;
using binding::layoutArg;

// The weight descriptor shared by the three Pixelfly products: layout, out, in, precision, and (when
// the product reads W) `weights` of nnz*block*block values.
struct WeightArgs {
  std::shared_ptr<OwnedLayout> layout;
  BsrWeight w;
  int m = 0;
};

WeightArgs weightArgs(Args& a, bool readsWeights) {
  WeightArgs r;
  r.layout = layoutArg(a);
  r.w.layout = r.layout->view;
  r.w.out = a.integer("out", 1, 1 << 30);
  r.w.in = a.integer("in", 1, 1 << 30);
  const std::string err = validateWeightShape(r.w.layout, r.w.out, r.w.in);
  if (!err.empty()) throw ArgError(a.fn + ": " + err + " (layout and weight shape disagree)");
  const long bb = (long)r.w.layout.block * r.w.layout.block;
  if (readsWeights) r.w.blocks = a.src("weights", (size_t)(r.w.layout.nnz * bb), "nnz*block*block");
  r.w.precision = a.precision();
  r.m = a.integer("m", 0, 1 << 30);
  return r;
}

Napi::Value BsrForward(const Napi::CallbackInfo& info) {
  return binding::run(info, "bsrForward", [](Args& a) -> std::function<void()> {
    WeightArgs p = weightArgs(a, true);
    const size_t m = p.m;
    const Src x = a.src("x", m * p.w.in, "m*in");
    const float* bias = a.has("bias") ? a.floats("bias", p.w.out, "out") : nullptr;
    const Dst y = a.dst("y", m * p.w.out, "m*out");
    const bool acc = a.boolean("accumulate", false);
    return [p, x, bias, y, acc] { bsrForward(p.w, p.m, x, p.w.in, bias, y, p.w.out, acc); };
  });
}

Napi::Value BsrBackwardData(const Napi::CallbackInfo& info) {
  return binding::run(info, "bsrBackwardData", [](Args& a) -> std::function<void()> {
    WeightArgs p = weightArgs(a, true);
    const size_t m = p.m;
    const Src dy = a.src("dy", m * p.w.out, "m*out");
    const Dst dx = a.dst("dx", m * p.w.in, "m*in");
    const bool acc = a.boolean("accumulate", false);
    return [p, dy, dx, acc] { bsrBackwardData(p.w, p.m, dy, p.w.out, dx, p.w.in, acc); };
  });
}

Napi::Value BsrBackwardWeight(const Napi::CallbackInfo& info) {
  return binding::run(info, "bsrBackwardWeight", [](Args& a) -> std::function<void()> {
    WeightArgs p = weightArgs(a, false);
    const size_t m = p.m;
    const long bb = (long)p.w.layout.block * p.w.layout.block;
    const Src dy = a.src("dy", m * p.w.out, "m*out");
    const Src x = a.src("x", m * p.w.in, "m*in");
    const Dst dw = a.dst("dw", (size_t)(p.w.layout.nnz * bb), "nnz*block*block");
    float* db = a.has("db") ? a.floats("db", p.w.out, "out") : nullptr;
    const bool acc = a.boolean("accumulate", false);
    return [p, dy, x, dw, db, acc] { bsrBackwardWeight(p.w, p.m, dy, p.w.out, x, p.w.in, dw, acc, db); };
  });
}

Napi::Value BiasGrad(const Napi::CallbackInfo& info) {
  return binding::run(info, "biasGrad", [](Args& a) -> std::function<void()> {
    const int m = a.integer("m", 0, 1 << 30), n = a.integer("n", 1, 1 << 30);
    const Src dy = a.src("dy", (size_t)m * n, "m*n");
    const Dst db = a.dst("db", (size_t)n, "n");
    const bool acc = a.boolean("accumulate", false);
    return [=] { biasGrad(m, n, dy, n, db, acc); };
  });
}

// gemm({transA, transB, m, n, k, alpha?, a, b, beta?, c, lda?, ldb?, ldc?, precision?}):
// c = alpha·op(a)·op(b) + beta·c, row-major, with optional row strides (tests of strided operands).
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return binding::run(info, "gemm", [](Args& a) -> std::function<void()> {
    binding::GemmArgs g = binding::gemmArgs(a, true, true);
    return [g] {
      gemm(g.ta ? Trans::Yes : Trans::No, g.tb ? Trans::Yes : Trans::No, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb,
           g.beta, g.c, g.ldc, g.precision);
    };
  });
}

Napi::Value ValidateLayoutJs(const Napi::CallbackInfo& info) {
  // Synchronous: returns "" or the problem (cheap, used by loaders before training starts).
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw ArgError("validateLayout: expected an arguments object");
    Napi::Object wrapper = Napi::Object::New(env);
    wrapper.Set("layout", info[0]);
    Args a("validateLayout", wrapper);
    layoutArg(a);
    return Napi::String::New(env, "");
  } catch (const ArgError& e) {
    return Napi::String::New(env, e.what());
  }
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", isaName(activeIsa()));
  o.Set("bestIsa", isaName(bestIsa()));
  Napi::Array supported = Napi::Array::New(env);
  uint32_t i = 0;
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16, Isa::Amx})
    if (isaSupported(isa)) supported.Set(i++, isaName(isa));
  o.Set("supportedIsas", supported);
  o.Set("bf16", bf16Path());
  const std::string amx = amxUnavailableReason();
  if (!amx.empty()) o.Set("amxUnavailable", amx);
  o.Set("threads", threads());
  o.Set("maxThreads", maxThreads());
  o.Set("blocks", binding::intArray(env, kKernelBlocks));
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "setThreads: expected a number of threads (integer >= 1)");
  const double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 1 && n <= 1024 && std::floor(n) == n))
    throw Napi::RangeError::New(env, "setThreads: threads must be an integer in 1..1024, got " + std::to_string(n));
  setThreads((int)n);
  return env.Undefined();
}

Napi::Value ForceIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Isa isa;
  if (info.Length() < 1 || !info[0].IsString() || !parseIsa(info[0].As<Napi::String>().Utf8Value(), &isa))
    throw Napi::TypeError::New(env, "forceIsa: expected 'portable', 'avx2', 'avx512', 'avx512bf16' or 'amx'");
  if (!isaSupported(isa))
    throw Napi::Error::New(env, std::string("forceIsa: this CPU does not support ") + isaName(isa));
  forceIsa(isa);
  return env.Undefined();
}

// An ArrayBuffer of `bytes` in the kernels' own memory (host_memory.h: 64-byte aligned, huge pages
// from 2 MB), freed with it: products writing large outputs into aligned memory use non-temporal
// stores, and Node's own ArrayBuffers are only 16-byte aligned, on 4 KB pages. Out of memory is a
// JS error naming `fn`, never an abort.
Napi::ArrayBuffer hostArrayBuffer(Napi::Env env, size_t bytes, const char* fn) {
  void* data;
  try {
    data = allocHost(bytes);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string(fn) + ": out of memory for " + std::to_string(bytes) + " bytes");
  }
  return Napi::ArrayBuffer::New(env, data, bytes, [](Napi::Env, void* p) { std::free(p); });
}

// A zero-filled Float32Array in the kernels' own memory.
Napi::Value AlignedFloat32Array(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "alignedFloat32Array: expected a length (integer >= 0)");
  const double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0 && n <= 4.0e9 && std::floor(n) == n))
    throw Napi::RangeError::New(env, "alignedFloat32Array: length must be an integer in 0..4e9, got " + std::to_string(n));
  const size_t bytes = std::max<size_t>(64, ((static_cast<size_t>(n) * sizeof(float) + 63) / 64) * 64);
  Napi::ArrayBuffer buf = hostArrayBuffer(env, bytes, "alignedFloat32Array");
  std::memset(buf.Data(), 0, bytes);
  return Napi::Float32Array::New(env, static_cast<size_t>(n), buf, 0);
}

// toBf16(Float32Array) -> Uint16Array and toF32(Uint16Array) -> Float32Array, synchronous: the
// kernels' own rounding (round to nearest even), for callers that hold bf16 tensors as bits.
Napi::Value ToBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "toBf16: expected a Float32Array");
  Napi::Float32Array src = info[0].As<Napi::Float32Array>();
  // The kernels' own memory, as for alignedFloat32Array: bf16 operands are large.
  const size_t n = src.ElementLength();
  Napi::Uint16Array dst = Napi::Uint16Array::New(env, n, hostArrayBuffer(env, n * sizeof(bf16), "toBf16"), 0);
  toBf16(src.Data(), dst.Data(), n);
  return dst;
}

Napi::Value ToF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
    throw Napi::TypeError::New(env, "toF32: expected a Uint16Array of bf16 values");
  Napi::Uint16Array src = info[0].As<Napi::Uint16Array>();
  Napi::Float32Array dst = Napi::Float32Array::New(env, src.ElementLength());
  toF32(src.Data(), dst.Data(), src.ElementLength());
  return dst;
}

void InitKernels(Napi::Env env, Napi::Object exports) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("info", Napi::Function::New(env, Info, "info"));
  k.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  k.Set("forceIsa", Napi::Function::New(env, ForceIsa, "forceIsa"));
  k.Set("validateLayout", Napi::Function::New(env, ValidateLayoutJs, "validateLayout"));
  k.Set("bsrForward", Napi::Function::New(env, BsrForward, "bsrForward"));
  k.Set("bsrBackwardData", Napi::Function::New(env, BsrBackwardData, "bsrBackwardData"));
  k.Set("bsrBackwardWeight", Napi::Function::New(env, BsrBackwardWeight, "bsrBackwardWeight"));
  k.Set("biasGrad", Napi::Function::New(env, BiasGrad, "biasGrad"));
  k.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  k.Set("alignedFloat32Array", Napi::Function::New(env, AlignedFloat32Array, "alignedFloat32Array"));
  k.Set("toBf16", Napi::Function::New(env, ToBf16, "toBf16"));
  k.Set("toF32", Napi::Function::New(env, ToF32, "toF32"));
  exports.Set("kernels", k);
}

AddonArea area("kernels", InitKernels);

}  // namespace
}  // namespace kernels
}  // namespace pixelfly
