// Branch-free exp and erf that the compiler vectorises (libm's scalar calls do not), for GELU:
// with std::erf/std::exp GELU cost more than the Mixer's matmuls. Errors: exp ≲ 2 ulp (Cephes
// expf polynomial), erf ≤ 1.5e-7 absolute (Abramowitz & Stegun 7.1.26), far below fp32 training noise.
#pragma once
#include <cstdint>
#include <cstring>

namespace pixelfly {

// e^x for x ≤ 0 (GELU only needs e^(-x²/2)); inputs below -87 give ~0.
inline float expNonPositive(float x) {
  // max(x, -87) written branch-free: a compare-and-select here stops GCC vectorising the loop
  // (it cannot if-convert under -ftrapping-math).
  x = 0.5f * (x - 87.0f + __builtin_fabsf(x + 87.0f));
  const float t = x * 1.44269504088896341f;
  const float fn = static_cast<float>(static_cast<int32_t>(t - 0.5f));  // round to nearest for t ≤ 0
  const float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;          // Cody-Waite split of ln 2
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fn) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// erf(z) given e^(-z²) (callers often have it already).
inline float erfWithExp(float z, float expMinusZ2) {
  const float a = __builtin_fabsf(z);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  const float e = 1.0f - poly * expMinusZ2;
  return __builtin_copysignf(e, z);
}

}  // namespace pixelfly
