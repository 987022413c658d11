// JS binding of the CUDA side (exports.cuda), present in every build:
//  - info(): whether the backend was compiled in, whether a device can run it (and why not), the
//    devices (name, memory, compute capability), the CUDA runtime/driver versions, cuBLAS;
//  - reference.*: the GPU schedule (bsr_schedule.h) executed on the host (reference.h), which
//    needs no GPU: the schedule tests compare it with the CPU kernels;
//  - bsrForward/bsrBackwardData/bsrBackwardWeight/gemm: one product on the device from host
//    arrays (copied in and out), precision 'fp32' | 'bf16' | 'fp16' — what the GPU tests compare
//    with the CPU kernels;
//  - benchLayer: a Pixelfly layer's three products and the dense cuBLAS ones on device-resident
//    data, timed with CUDA events (npm run bench:kernels).
// Argument problems reject the promise with a TypeError naming the argument, as in kernels/.
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "addon_area.h"
#include "cuda/reference.h"
#include "binding_util.h"
#include "kernels/kernels.h"

#if PIXELFLY_CUDA
#include "cuda/cuda_api.h"
#include "cuda/layer_timing.h"
#endif

namespace pixelfly {
namespace cudabinding {
namespace {

using binding::ArgError;
using binding::Args;

// A layout as the shared parser copies and validates it, seen through the tile schedule's view
// together with the weight's logical sizes.
struct Layout {
  std::shared_ptr<binding::OwnedLayout> owned;
  sched::BsrView view;
};

std::shared_ptr<Layout> layoutArg(Args& a) {
  auto L = std::make_shared<Layout>();
  L->owned = binding::layoutArg(a);
  const kernels::BsrLayout& k = L->owned->view;
  sched::BsrView& v = L->view;
  v.block = k.block;
  v.blockRows = k.blockRows;
  v.blockCols = k.blockCols;
  v.nnz = k.nnz;
  v.rowPtr = k.rowPtr;
  v.colIdx = k.colIdx;
  v.colPtr = k.colPtr;
  v.rowIdx = k.rowIdx;
  v.tBlock = k.tBlock;
  v.out = a.integer("out", 1, 1 << 30);
  v.in = a.integer("in", 1, 1 << 30);
  const std::string err = kernels::validateWeightShape(k, v.out, v.in);
  if (!err.empty()) throw ArgError(a.fn + ": " + err + " (layout and weight shape disagree)");
  return L;
}

size_t packedSize(const sched::BsrView& v) { return size_t(v.nnz) * v.block * v.block; }

// The operands of one block-sparse product, checked on the JS thread.
struct Product {
  std::shared_ptr<Layout> L;
  int m = 0;
  const float* a = nullptr;     // x (forward, dW) or dy (dX)
  const float* b = nullptr;     // weights (forward, dX) or dy (dW)
  const float* bias = nullptr;
  float* c = nullptr;           // y, dx or dw
  bool accumulate = false;
  std::string precision = "fp32";
};

enum class Op { Forward, BackwardData, BackwardWeight };

Product productArgs(Args& a, Op op) {
  Product p;
  p.L = layoutArg(a);
  const sched::BsrView& v = p.L->view;
  p.m = a.integer("m", 0, 1 << 30);
  const size_t m = p.m;
  switch (op) {
    case Op::Forward:
      p.b = a.floats("weights", packedSize(v), "nnz*block*block");
      p.a = a.floats("x", m * v.in, "m*in");
      p.bias = a.has("bias") ? a.floats("bias", v.out, "out") : nullptr;
      p.c = a.floats("y", m * v.out, "m*out");
      break;
    case Op::BackwardData:
      p.b = a.floats("weights", packedSize(v), "nnz*block*block");
      p.a = a.floats("dy", m * v.out, "m*out");
      p.c = a.floats("dx", m * v.in, "m*in");
      break;
    case Op::BackwardWeight:
      p.b = a.floats("dy", m * v.out, "m*out");
      p.a = a.floats("x", m * v.in, "m*in");
      p.c = a.floats("dw", packedSize(v), "nnz*block*block");
      break;
  }
  p.accumulate = a.boolean("accumulate", false);
  Napi::Value pv = a.obj.Get("precision");
  if (!pv.IsUndefined()) {
    if (!pv.IsString()) throw ArgError(a.fn + ": precision must be 'fp32', 'bf16' or 'fp16'");
    p.precision = pv.As<Napi::String>().Utf8Value();
    if (p.precision != "fp32" && p.precision != "bf16" && p.precision != "fp16")
      throw ArgError(a.fn + ": precision must be 'fp32', 'bf16' or 'fp16', got '" + p.precision + "'");
  }
  return p;
}

// ------------------------------------------------------------------ reference (host, no GPU)

template <Op op>
Napi::Value Reference(const Napi::CallbackInfo& info) {
  static const char* names[] = {"reference.bsrForward", "reference.bsrBackwardData", "reference.bsrBackwardWeight"};
  return binding::run(info, names[int(op)], [](Args& a) -> std::function<void()> {
    Product p = productArgs(a, op);
    if (p.precision == "fp16") throw ArgError(a.fn + ": the host reference emulates fp32 and bf16 inputs only");
    const bool bf16 = p.precision == "bf16";
    int chunkRows = sched::kStepM;
    if (op == Op::BackwardWeight) {
      chunkRows = a.has("chunkRows") ? a.integer("chunkRows", 1, 1 << 30) : std::max(1, p.m);
      if (chunkRows % sched::kStepM != 0)
        throw ArgError(a.fn + ": chunkRows must be a multiple of " + std::to_string(sched::kStepM));
    }
    return [p, bf16, chunkRows] {
      const sched::BsrView& v = p.L->view;
      if (op == Op::Forward) sched::referenceForward(v, p.m, p.a, p.b, p.bias, p.c, p.accumulate, bf16);
      if (op == Op::BackwardData) sched::referenceBackwardData(v, p.m, p.a, p.b, p.c, p.accumulate, bf16);
      if (op == Op::BackwardWeight)
        sched::referenceBackwardWeight(v, p.m, p.b, p.a, p.c, p.accumulate, bf16, chunkRows);
    };
  });
}

// Chunk height the schedule picks (exposed so tests cover the same choice the kernels make).
Napi::Value ChunkRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4) throw Napi::TypeError::New(env, "backwardWeightChunkRows(nnz, m, targetTiles, minRows)");
  int x[4];
  for (int i = 0; i < 4; i++) {
    if (!info[i].IsNumber()) throw Napi::TypeError::New(env, "backwardWeightChunkRows: arguments must be integers");
    x[i] = info[i].As<Napi::Number>().Int32Value();
  }
  return Napi::Number::New(env, sched::backwardWeightChunkRows(x[0], x[1], x[2], x[3]));
}

// ------------------------------------------------------------------ device products

std::string unavailable() {
#if PIXELFLY_CUDA
  const cuda::Status& st = cuda::status();
  return st.available ? "" : st.reason;
#else
  return "this addon was built without the CUDA backend (nvcc was not found at build time)";
#endif
}

#if PIXELFLY_CUDA
// The binding's own stream, for tests and benchmarks (the engine's backend has its own).
cuda::Context& bindingContext() {
  static cuda::Context ctx;
  return ctx;
}
std::mutex& bindingMutex() {
  static std::mutex mu;
  return mu;
}

using cuda::DeviceArrays;

// A layout argument's index copied to the device (for one call).
cuda::DeviceLayout deviceLayout(const sched::BsrView& v) {
  return cuda::DeviceLayout(v.block, v.blockRows, v.blockCols, v.nnz, v.rowPtr, v.colIdx, v.colPtr, v.rowIdx,
                            v.tBlock, v.out, v.in);
}
#endif

template <Op op>
Napi::Value Device(const Napi::CallbackInfo& info) {
  static const char* names[] = {"bsrForward", "bsrBackwardData", "bsrBackwardWeight"};
  return binding::run(info, names[int(op)], [](Args& a) -> std::function<void()> {
    Product p = productArgs(a, op);
    const std::string why = unavailable();
    if (!why.empty()) throw Napi::Error::New(a.obj.Env(), a.fn + ": CUDA unavailable: " + why);
#if PIXELFLY_CUDA
    return [p] {
      std::lock_guard<std::mutex> lock(bindingMutex());
      cuda::Context& ctx = bindingContext();
      const sched::BsrView& v = p.L->view;
      const cuda::DeviceLayout L = deviceLayout(v);
      cuda::Precision prec;
      cuda::parsePrecision(p.precision, &prec);
      DeviceArrays d(ctx);
      const size_t m = p.m;
      if (op == Op::Forward) {
        float* y = d.copy(p.accumulate ? p.c : nullptr, m * v.out);
        ctx.bsrForward(L, p.m, d.copy(p.a, m * v.in), d.copy(p.b, packedSize(v)),
                       p.bias ? d.copy(p.bias, v.out) : nullptr, y, p.accumulate, prec);
        ctx.download(p.c, y, m * v.out);
      } else if (op == Op::BackwardData) {
        float* dx = d.copy(p.accumulate ? p.c : nullptr, m * v.in);
        ctx.bsrBackwardData(L, p.m, d.copy(p.a, m * v.out), d.copy(p.b, packedSize(v)), dx, p.accumulate, prec);
        ctx.download(p.c, dx, m * v.in);
      } else {
        float* dw = d.copy(p.accumulate ? p.c : nullptr, packedSize(v));
        ctx.bsrBackwardWeight(L, p.m, d.copy(p.b, m * v.out), d.copy(p.a, m * v.in), dw, p.accumulate, prec);
        ctx.download(p.c, dw, packedSize(v));
      }
    };
#else
    return [] {};
#endif
  });
}

// gemm({transA, transB, m, n, k, alpha?, a, b, beta?, c, precision?}) on the device.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return binding::run(info, "gemm", [](Args& a) -> std::function<void()> {
    binding::GemmArgs g = binding::gemmArgs(a);
    std::string precision = "fp32";
    if (a.has("precision")) {
      Napi::Value pv = a.obj.Get("precision");
      precision = pv.IsString() ? pv.As<Napi::String>().Utf8Value() : "";
      if (precision != "fp32" && precision != "bf16" && precision != "fp16")
        throw ArgError("gemm: precision must be 'fp32', 'bf16' or 'fp16'");
    }
    const std::string why = unavailable();
    if (!why.empty()) throw Napi::Error::New(a.obj.Env(), "gemm: CUDA unavailable: " + why);
#if PIXELFLY_CUDA
    return [g, precision] {
      std::lock_guard<std::mutex> lock(bindingMutex());
      cuda::Context& ctx = bindingContext();
      cuda::Precision prec;
      cuda::parsePrecision(precision, &prec);
      DeviceArrays d(ctx);
      const size_t nc = size_t(g.m) * g.n;
      float* c = d.copy(g.beta != 0.f ? g.c.f32() : nullptr, nc);
      ctx.gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, d.copy(g.a.f32(), size_t(g.m) * g.k), g.lda,
               d.copy(g.b.f32(), size_t(g.k) * g.n), g.ldb, g.beta, c, g.n, prec);
      ctx.download(g.c.f32(), c, nc);
    };
#else
    return [] {};
#endif
  });
}

// benchLayer({layout, out, in, m, precision, repeats}) -> Promise<{pixelfly: {fwd, dx, dw},
// dense: {fwd, dx, dw}, cublas}>: median ms of each product on random device-resident data; the
// dense products are the same layer's out×in weight through cuBLAS (or our fallback).
Napi::Value BenchLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  try {
    if (info.Length() != 1 || !info[0].IsObject()) throw ArgError("benchLayer: expected one arguments object");
    Args a("benchLayer", info[0].As<Napi::Object>());
    auto L = layoutArg(a);
    const int m = a.integer("m", 1, 1 << 24);
    const int repeats = a.has("repeats") ? a.integer("repeats", 1, 1000) : 10;
    std::string precision = "fp32";
    if (a.has("precision")) {
      Napi::Value pv = a.obj.Get("precision");
      precision = pv.IsString() ? pv.As<Napi::String>().Utf8Value() : "";
    }
    const std::string why = unavailable();
    if (!why.empty()) throw std::runtime_error("benchLayer: CUDA unavailable: " + why);
#if PIXELFLY_CUDA
    cuda::Precision prec;
    if (!cuda::parsePrecision(precision, &prec)) throw ArgError("benchLayer: precision must be 'fp32', 'bf16' or 'fp16'");
    struct Result {
      double ms[6] = {};
      bool cublas = false;
    };
    auto res = std::make_shared<Result>();
    binding::Worker::Options o;
    o.pinned = std::move(a.pinned);
    o.result = [res](Napi::Env e) -> Napi::Value {
      auto triple = [&](int at) {
        Napi::Object t = Napi::Object::New(e);
        t.Set("fwd", res->ms[at]);
        t.Set("dx", res->ms[at + 1]);
        t.Set("dw", res->ms[at + 2]);
        return t;
      };
      Napi::Object r = Napi::Object::New(e);
      r.Set("pixelfly", triple(0));
      r.Set("dense", triple(3));
      r.Set("cublas", res->cublas);
      return r;
    };
    (new binding::Worker(
         env, "benchLayer", deferred,
         [L, m, repeats, prec, res] {
           std::lock_guard<std::mutex> lock(bindingMutex());
           cuda::Context& ctx = bindingContext();
           const sched::BsrView& v = L->view;
           const cuda::DeviceLayout dl = deviceLayout(v);
           const cuda::LayerTimes t = cuda::timeLayer(ctx, dl, m, repeats, prec);
           std::copy(t.pixelfly, t.pixelfly + 3, res->ms);
           std::copy(t.dense, t.dense + 3, res->ms + 3);
           res->cublas = ctx.usesCublas();
         },
         std::move(o)))
        ->Queue();
#endif
  } catch (const ArgError& e) {
    deferred.Reject(Napi::TypeError::New(env, e.what()).Value());
  } catch (const std::exception& e) {
    deferred.Reject(Napi::Error::New(env, e.what()).Value());
  }
  return deferred.Promise();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#if PIXELFLY_CUDA
  const cuda::Status& st = cuda::status();
  o.Set("compiled", true);
  o.Set("available", st.available);
  if (!st.available) o.Set("reason", st.reason);
  o.Set("runtimeVersion", st.runtimeVersion);
  o.Set("driverVersion", st.driverVersion);
  Napi::Array archs = Napi::Array::New(env);
  for (size_t i = 0; i < st.compiledArchs.size(); i++) archs.Set(uint32_t(i), st.compiledArchs[i]);
  o.Set("archs", archs);
  Napi::Array devs = Napi::Array::New(env);
  for (size_t i = 0; i < st.devices.size(); i++) {
    const cuda::DeviceInfo& d = st.devices[i];
    Napi::Object j = Napi::Object::New(env);
    j.Set("index", d.index);
    j.Set("name", d.name);
    j.Set("memoryBytes", double(d.totalMemory));
    j.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    j.Set("multiprocessors", d.multiprocessors);
    devs.Set(uint32_t(i), j);
  }
  o.Set("devices", devs);
  if (st.available) {
    if (!st.cublas.empty()) o.Set("cublas", st.cublas);
    else o.Set("cublasError", st.cublasError);
  }
#else
  o.Set("compiled", false);
  o.Set("available", false);
  o.Set("reason", unavailable());
  o.Set("archs", Napi::Array::New(env));
  o.Set("devices", Napi::Array::New(env));
#endif
  return o;
}

void InitCuda(Napi::Env env, Napi::Object exports) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("info", Napi::Function::New(env, Info, "info"));
  c.Set("bsrForward", Napi::Function::New(env, Device<Op::Forward>, "bsrForward"));
  c.Set("bsrBackwardData", Napi::Function::New(env, Device<Op::BackwardData>, "bsrBackwardData"));
  c.Set("bsrBackwardWeight", Napi::Function::New(env, Device<Op::BackwardWeight>, "bsrBackwardWeight"));
  c.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  c.Set("benchLayer", Napi::Function::New(env, BenchLayer, "benchLayer"));
  Napi::Object r = Napi::Object::New(env);
  r.Set("bsrForward", Napi::Function::New(env, Reference<Op::Forward>, "bsrForward"));
  r.Set("bsrBackwardData", Napi::Function::New(env, Reference<Op::BackwardData>, "bsrBackwardData"));
  r.Set("bsrBackwardWeight", Napi::Function::New(env, Reference<Op::BackwardWeight>, "bsrBackwardWeight"));
  r.Set("backwardWeightChunkRows", Napi::Function::New(env, ChunkRows, "backwardWeightChunkRows"));
  c.Set("reference", r);
  exports.Set("cuda", c);
}

AddonArea area("cuda", InitCuda);

}  // namespace
}  // namespace cudabinding
}  // namespace pixelfly
