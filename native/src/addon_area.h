// Each area of the addon (kernels, engine, ...) registers its JS exports here from its own source
// file, so adding an area means adding sources to binding.gyp and one `static AddonArea` line in the
// area's file, without touching anyone else's code:
//
//   static pixelfly::AddonArea area("engine", InitEngine);   // InitEngine(Napi::Env, Napi::Object)
//
// addon.cc calls every registered init at module load, in name order (deterministic exports).
#pragma once

#include <napi.h>

namespace pixelfly {

using AreaInit = void (*)(Napi::Env env, Napi::Object exports);

struct AddonArea {
  AddonArea(const char* name, AreaInit init);
};

// Runs all registered inits (called once by the module init).
void InitAreas(Napi::Env env, Napi::Object exports);

}  // namespace pixelfly
