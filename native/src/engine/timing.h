// Wall-clock timing of the engine's step phases and model parts.
#pragma once
#include <chrono>

namespace pixelfly {

using Clock = std::chrono::steady_clock;

inline double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace pixelfly
