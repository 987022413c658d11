#include "cuda/cublas_loader.h"

#include <dlfcn.h>

#include <mutex>

namespace pixelfly {
namespace cuda {

namespace {

template <class F>
bool bind(void* lib, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (!*out) *missing += std::string(missing->empty() ? "" : ", ") + name;
  return *out != nullptr;
}

}  // namespace

const CublasApi* cublasApi(std::string* error) {
  static std::once_flag once;
  static CublasApi api;
  static const CublasApi* ok = nullptr;
  static std::string why;
  std::call_once(once, [] {
    // Newest first; the unversioned name covers toolkits installed only as a development package.
    const char* names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};
    void* lib = nullptr;
    std::string tried;
    for (const char* n : names) {
      lib = dlopen(n, RTLD_NOW | RTLD_LOCAL);
      if (lib) {
        api.library = n;
        break;
      }
      const char* e = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (e ? e : n);
    }
    if (!lib) {
      why = "cuBLAS not found (" + tried + ")";
      return;
    }
    std::string missing;
    bind(lib, "cublasCreate_v2", &api.create, &missing);
    bind(lib, "cublasDestroy_v2", &api.destroy, &missing);
    bind(lib, "cublasSetStream_v2", &api.setStream, &missing);
    bind(lib, "cublasSgemm_v2", &api.sgemm, &missing);
    bind(lib, "cublasGemmEx", &api.gemmEx, &missing);
    if (!missing.empty()) {
      why = api.library + " lacks " + missing;
      return;
    }
    ok = &api;
  });
  if (!ok && error) *error = why;
  return ok;
}

}  // namespace cuda
}  // namespace pixelfly
