// Module entry point: collects the areas registered with AddonArea (see addon_area.h).
#include <algorithm>
#include <map>
#include <string>

#include "addon_area.h"

namespace pixelfly {

// Function-local static: areas register from static initialisers in other translation units,
// whose order relative to this file is unspecified.
static std::map<std::string, AreaInit>& registry() {
  static std::map<std::string, AreaInit> areas;
  return areas;
}

AddonArea::AddonArea(const char* name, AreaInit init) { registry()[name] = init; }

void InitAreas(Napi::Env env, Napi::Object exports) {
  Napi::Array names = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& [name, init] : registry()) {
    init(env, exports);
    names.Set(i++, Napi::String::New(env, name));
  }
  exports.Set("areas", names);
}

}  // namespace pixelfly

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pixelfly::InitAreas(env, exports);
  return exports;
}

NODE_API_MODULE(pixelfly, Init)
