// OpenBLAS as the benchmark's dense baseline (exports.openblas), loaded with dlopen at first use so
// the addon neither links against it nor needs it installed: when it is missing, info() says so and
// the benchmark reports it instead of failing.
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "addon_area.h"
#include "binding_util.h"

namespace pixelfly {
namespace kernels {
namespace {

using binding::Args;

// cblas enums (values fixed by the CBLAS standard).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

struct OpenBlas {
  bool tried = false;
  std::string path, error;
  void (*sgemm)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int) = nullptr;
  void (*setThreads)(int) = nullptr;
  char* (*coreName)() = nullptr;
  char* (*config)() = nullptr;
};

OpenBlas& lib() {
  static OpenBlas ob;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (ob.tried) return ob;
  ob.tried = true;
  for (const char* name : {"libopenblas.so.0", "libopenblas.so"}) {
    void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      ob.error = dlerror();
      continue;
    }
    ob.path = name;
    ob.sgemm = reinterpret_cast<decltype(ob.sgemm)>(dlsym(h, "cblas_sgemm"));
    ob.setThreads = reinterpret_cast<decltype(ob.setThreads)>(dlsym(h, "openblas_set_num_threads"));
    ob.coreName = reinterpret_cast<decltype(ob.coreName)>(dlsym(h, "openblas_get_corename"));
    ob.config = reinterpret_cast<decltype(ob.config)>(dlsym(h, "openblas_get_config"));
    if (!ob.sgemm) ob.error = std::string(name) + " has no cblas_sgemm";
    else ob.error.clear();
    break;
  }
  if (!ob.sgemm && ob.error.empty()) ob.error = "libopenblas.so.0 not found";
  return ob;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenBlas& ob = lib();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", ob.sgemm != nullptr);
  if (ob.sgemm) {
    o.Set("library", ob.path);
    o.Set("coreName", ob.coreName ? std::string(ob.coreName()) : std::string("unknown"));
    o.Set("config", ob.config ? std::string(ob.config()) : std::string("unknown"));
  } else {
    o.Set("error", ob.error + " (install Debian's libopenblas-dev: apt-get install libopenblas-dev)");
  }
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenBlas& ob = lib();
  if (!ob.setThreads) throw Napi::Error::New(env, "openblas.setThreads: OpenBLAS is not available: " + ob.error);
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1)
    throw Napi::TypeError::New(env, "openblas.setThreads: expected an integer >= 1");
  ob.setThreads(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return binding::run(info, "openblas.gemm", [](Args& a) -> std::function<void()> {
    OpenBlas& ob = lib();
    if (!ob.sgemm) throw binding::ArgError("openblas.gemm: OpenBLAS is not available: " + ob.error);
    binding::GemmArgs g = binding::gemmArgs(a);
    auto sgemm = ob.sgemm;
    return [g, sgemm] {
      sgemm(kRowMajor, g.ta ? kTrans : kNoTrans, g.tb ? kTrans : kNoTrans, g.m, g.n, g.k, g.alpha, g.a.f32(), g.lda,
            g.b.f32(), g.ldb, g.beta, g.c.f32(), g.n);
    };
  });
}

void InitOpenBlas(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("info", Napi::Function::New(env, Info, "info"));
  o.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  o.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("openblas", o);
}

AddonArea area("openblas", InitOpenBlas);

}  // namespace
}  // namespace kernels
}  // namespace pixelfly
