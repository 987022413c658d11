// The one binding vocabulary of the addon's promise-returning calls (kernels, attention, the OpenBLAS
// baseline, CUDA, the engine): `Args` reads the single arguments object with messages that name
// the argument, `layoutArg` reads and validates a block index, and `Worker` runs a prepared job
// off the JS thread and settles its promise.
#pragma once

#include <napi.h>

#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernels.h"

namespace pixelfly {
namespace binding {

// A bad argument: becomes a rejected promise with a TypeError carrying this message.
struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads named fields of the single arguments object; pins every Float32Array it hands out so the
// memory outlives the job.
class Args {
 public:
  Args(std::string fnName, Napi::Object o) : fn(std::move(fnName)), obj(o) {}

  bool has(const char* name) const {
    Napi::Value v = obj.Get(name);
    return !v.IsUndefined() && !v.IsNull();
  }

  int integer(const char* name, long lo, long hi) const {
    Napi::Value v = obj.Get(name);
    const std::string what = fn + ": " + name;
    if (!v.IsNumber()) throw ArgError(what + " must be an integer, got " + typeName(v));
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(std::floor(d) == d) || d < (double)lo || d > (double)hi)
      throw ArgError(what + " must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                     v.ToString().Utf8Value());
    return (int)d;
  }

  float number(const char* name, float fallback) const {
    Napi::Value v = obj.Get(name);
    if (v.IsUndefined()) return fallback;
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
      throw ArgError(fn + ": " + name + " must be a finite number");
    return v.As<Napi::Number>().FloatValue();
  }

  bool boolean(const char* name, bool fallback) const {
    Napi::Value v = obj.Get(name);
    if (v.IsUndefined()) return fallback;
    if (!v.IsBoolean()) throw ArgError(fn + ": " + name + " must be a boolean, got " + typeName(v));
    return v.As<Napi::Boolean>().Value();
  }

  Napi::Object object(const char* name) const {
    Napi::Value v = obj.Get(name);
    if (!v.IsObject()) throw ArgError(fn + ": " + name + " must be an object, got " + typeName(v));
    return v.As<Napi::Object>();
  }

  // A Float32Array of exactly `expected` floats (`expr` says how that count is derived).
  float* floats(const char* name, size_t expected, const char* expr) {
    Napi::Value v = obj.Get(name);
    const std::string what = fn + ": " + name;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw ArgError(what + " must be a Float32Array, got " + typeName(v));
    Napi::Float32Array arr = v.As<Napi::Float32Array>();
    if (arr.ElementLength() != expected)
      throw ArgError(what + " has " + std::to_string(arr.ElementLength()) + " floats, expected " + expr + " = " +
                     std::to_string(expected));
    pinned.push_back(Napi::Persistent(arr.As<Napi::Object>()));
    return arr.Data();
  }

  // A matrix operand of exactly `expected` elements: a Float32Array (fp32) or a Uint16Array (bf16
  // bits, the upper halves of fp32 values).
  kernels::Src src(const char* name, size_t expected, const char* expr) { return typed(name, expected, expr).first; }
  kernels::Dst dst(const char* name, size_t expected, const char* expr) {
    auto t = typed(name, expected, expr);
    kernels::Dst d;
    d.data = const_cast<void*>(t.first.data);
    d.type = t.first.type;
    return d;
  }

  // The `precision` field: 'fp32' (default) or 'bf16'.
  kernels::Precision precision() const {
    Napi::Value v = obj.Get("precision");
    if (v.IsUndefined()) return kernels::Precision::F32;
    const std::string p = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (p == "fp32") return kernels::Precision::F32;
    if (p == "bf16") return kernels::Precision::BF16;
    throw ArgError(fn + ": precision must be 'fp32' or 'bf16'" + (p.empty() ? "" : ", got '" + p + "'"));
  }

  static std::string typeName(const Napi::Value& v) {
    if (v.IsUndefined()) return "undefined (missing)";
    if (v.IsNull()) return "null";
    if (v.IsTypedArray()) return "a typed array of another element type";
    if (v.IsArray()) return "an array";
    if (v.IsNumber()) return "a number";
    if (v.IsString()) return "a string";
    if (v.IsBoolean()) return "a boolean";
    return "an object";
  }

  const std::string fn;
  Napi::Object obj;
  std::vector<Napi::ObjectReference> pinned;

 private:
  std::pair<kernels::Src, size_t> typed(const char* name, size_t expected, const char* expr) {
    Napi::Value v = obj.Get(name);
    const std::string what = fn + ": " + name;
    const napi_typedarray_type t = v.IsTypedArray() ? v.As<Napi::TypedArray>().TypedArrayType() : napi_int8_array;
    if (!v.IsTypedArray() || (t != napi_float32_array && t != napi_uint16_array))
      throw ArgError(what + " must be a Float32Array (fp32) or a Uint16Array (bf16), got " + typeName(v));
    Napi::TypedArray arr = v.As<Napi::TypedArray>();
    if (arr.ElementLength() != expected)
      throw ArgError(what + " has " + std::to_string(arr.ElementLength()) + " values, expected " + expr + " = " +
                     std::to_string(expected));
    pinned.push_back(Napi::Persistent(arr.As<Napi::Object>()));
    kernels::Src s;
    s.data = static_cast<const char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    s.type = t == napi_uint16_array ? kernels::DType::BF16 : kernels::DType::F32;
    return {s, expected};
  }
};

// Runs `job` on a libuv worker thread and settles `deferred`: resolved with `result(env)` (undefined
// without one), or rejected with the job's exception text. `done` runs on the JS thread first,
// either way (the engine marks its model free for the next call there). The caller's typed arrays
// (`pinned`) and `owner` (the JS object whose C++ state the job uses, so garbage collection cannot
// free it mid-job) stay referenced until the promise settles.
class Worker : public Napi::AsyncWorker {
 public:
  struct Options {
    std::function<Napi::Value(Napi::Env)> result;
    std::function<void()> done;
    std::vector<Napi::ObjectReference> pinned;
    Napi::Object owner;
  };

  Worker(Napi::Env env, const std::string& name, Napi::Promise::Deferred deferred, std::function<void()> job, Options o)
      : Napi::AsyncWorker(env, name.c_str()), deferred_(deferred), job_(std::move(job)), o_(std::move(o)) {
    if (!o_.owner.IsEmpty()) owner_ = Napi::Persistent(o_.owner);
    o_.owner = Napi::Object();  // a handle of this scope only: the reference above keeps it
  }

  // Queues `job` and returns the promise it settles.
  static Napi::Promise queue(Napi::Env env, const std::string& name, std::function<void()> job, Options o = {}) {
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    (new Worker(env, name, deferred, std::move(job), std::move(o)))->Queue();
    return deferred.Promise();
  }

  void Execute() override {
    try {
      job_();
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    if (o_.done) o_.done();
    deferred_.Resolve(o_.result ? o_.result(Env()) : Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    if (o_.done) o_.done();
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> job_;
  Options o_;
  Napi::ObjectReference owner_;
};

// Parses the single arguments object with `prepare` (on the JS thread) and queues the job it
// returns. Argument problems reject the returned promise; they never throw synchronously.
template <class Prepare>
Napi::Value run(const Napi::CallbackInfo& info, const char* fn, Prepare prepare) {
  Napi::Env env = info.Env();
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  try {
    if (info.Length() != 1 || !info[0].IsObject())
      throw ArgError(std::string(fn) + ": expected one arguments object");
    Args a(fn, info[0].As<Napi::Object>());
    std::function<void()> job = prepare(a);
    Worker::Options o;
    o.pinned = std::move(a.pinned);
    (new Worker(env, fn, deferred, std::move(job), std::move(o)))->Queue();
  } catch (const ArgError& e) {
    deferred.Reject(Napi::TypeError::New(env, e.what()).Value());
  } catch (const std::invalid_argument& e) {
    deferred.Reject(Napi::TypeError::New(env, std::string(fn) + ": " + e.what()).Value());
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  }
  return deferred.Promise();
}

// Arguments of a row-major gemm: c[m×n] = alpha·op(a)·op(b) + beta·c with contiguous operands.
// Operands are fp32 (the element types a plain binding reads: a.f32() ...) unless `typed`: then
// each may also be bf16 (a Uint16Array), and `precision` is read.
struct GemmArgs {
  bool ta = false, tb = false;
  int m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.f, beta = 0.f;
  kernels::Src a, b;
  kernels::Dst c;
  kernels::Precision precision = kernels::Precision::F32;
};

// Floats a row-major rows×cols matrix with leading dimension ld spans (the last row ends at cols).
inline size_t spanOf(long rows, long cols, long ld) { return rows == 0 || cols == 0 ? 0 : (size_t)((rows - 1) * ld + cols); }

// leadingDims: also accept optional lda/ldb/ldc (row strides >= the columns; the arrays must then
// hold exactly the span of their rows), for callers that implement them (the CPU kernels).
inline GemmArgs gemmArgs(Args& a, bool leadingDims = false, bool typed = false) {
  GemmArgs g;
  g.ta = a.boolean("transA", false);
  g.tb = a.boolean("transB", false);
  g.m = a.integer("m", 1, 1 << 30);
  g.n = a.integer("n", 1, 1 << 30);
  g.k = a.integer("k", 0, 1 << 30);
  g.alpha = a.number("alpha", 1.f);
  g.beta = a.number("beta", 0.f);
  if (typed) g.precision = a.precision();
  const int aRows = g.ta ? g.k : g.m, aCols = g.ta ? g.m : g.k;
  const int bRows = g.tb ? g.n : g.k, bCols = g.tb ? g.k : g.n;
  g.lda = std::max(1, aCols);
  g.ldb = std::max(1, bCols);
  g.ldc = g.n;
  const bool strided = leadingDims && (a.has("lda") || a.has("ldb") || a.has("ldc"));
  if (strided) {
    if (a.has("lda")) g.lda = a.integer("lda", std::max(1, aCols), 1 << 30);
    if (a.has("ldb")) g.ldb = a.integer("ldb", std::max(1, bCols), 1 << 30);
    if (a.has("ldc")) g.ldc = a.integer("ldc", g.n, 1 << 30);
  }
  const size_t na = strided ? spanOf(aRows, aCols, g.lda) : (size_t)g.m * g.k;
  const size_t nb = strided ? spanOf(bRows, bCols, g.ldb) : (size_t)g.k * g.n;
  const size_t nc = strided ? spanOf(g.m, g.n, g.ldc) : (size_t)g.m * g.n;
  const char* ea = strided ? "(rows(op a)-1)*lda + cols" : "m*k";
  const char* eb = strided ? "(rows(op b)-1)*ldb + cols" : "k*n";
  const char* ec = strided ? "(m-1)*ldc + n" : "m*n";
  if (typed) {
    g.a = a.src("a", na, ea);
    g.b = a.src("b", nb, eb);
    g.c = a.dst("c", nc, ec);
  } else {
    g.a = a.floats("a", na, ea);
    g.b = a.floats("b", nb, eb);
    g.c = a.floats("c", nc, ec);
  }
  return g;
}

template <class Ints>
Napi::Array intArray(Napi::Env env, const Ints& values) {
  Napi::Array arr = Napi::Array::New(env);
  uint32_t i = 0;
  for (int v : values) arr.Set(i++, v);
  return arr;
}
inline Napi::Array intArray(Napi::Env env, std::initializer_list<int> values) { return intArray<std::initializer_list<int>>(env, values); }

// Layout index arrays owned by the baton (the caller's Int32Arrays may change after the call).
struct OwnedLayout {
  kernels::BsrLayout view;
  std::vector<int32_t> rowPtr, colIdx, colPtr, rowIdx, tBlock;

  void bind() {
    view.rowPtr = rowPtr.data();
    view.colIdx = colIdx.data();
    view.colPtr = colPtr.data();
    view.rowIdx = rowIdx.data();
    view.tBlock = tBlock.data();
  }
};

inline std::vector<int32_t> int32Array(const Args& a, const Napi::Object& obj, const char* name, size_t length) {
  Napi::Value v = obj.Get(name);
  const std::string what = a.fn + ": layout." + name;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw ArgError(what + " must be an Int32Array");
  Napi::Int32Array arr = v.As<Napi::Int32Array>();
  if (arr.ElementLength() != length)
    throw ArgError(what + " has " + std::to_string(arr.ElementLength()) + " entries, expected " +
                   std::to_string(length));
  return std::vector<int32_t>(arr.Data(), arr.Data() + length);
}

// The `layout` argument (core's BlockIndex fields), copied and checked by the kernels' validator:
// one definition of a valid layout for every binding.
inline std::shared_ptr<OwnedLayout> layoutArg(const Args& a) {
  Napi::Object obj = a.object("layout");
  Args la(a.fn + ": layout", obj);
  auto L = std::make_shared<OwnedLayout>();
  L->view.block = la.integer("block", 16, 64);
  L->view.blockRows = la.integer("blockRows", 1, 1 << 20);
  L->view.blockCols = la.integer("blockCols", 1, 1 << 20);
  L->view.nnz = la.integer("nnz", 0, 1 << 30);
  L->rowPtr = int32Array(a, obj, "rowPtr", (size_t)L->view.blockRows + 1);
  L->colIdx = int32Array(a, obj, "colIdx", (size_t)L->view.nnz);
  L->colPtr = int32Array(a, obj, "colPtr", (size_t)L->view.blockCols + 1);
  L->rowIdx = int32Array(a, obj, "rowIdx", (size_t)L->view.nnz);
  L->tBlock = int32Array(a, obj, "tBlock", (size_t)L->view.nnz);
  L->bind();
  const std::string err = kernels::validateLayout(L->view);
  if (!err.empty()) throw ArgError(a.fn + ": layout." + err);
  return L;
}

}  // namespace binding
}  // namespace pixelfly
