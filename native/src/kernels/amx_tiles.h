// The AMX tile instructions the AMX kernels use (isa_kernels.cc, PIXELFLY_ISA == 4), as thin
// wrappers: the real instructions, or (PIXELFLY_AMX_EMULATION) a scalar emulation of them that
// also checks every tile's shape against the loaded configuration and the operands' agreement, so
// the kernels' tile layouts are tested on CPUs without AMX (test/native/amxEmulation.test.ts).
//
// Tiles (palette 1): up to 16 rows of up to 64 bytes. tdpbf16ps: C[m][n] (fp32) +=
// Σ_k A[m][2k]·B[k][2n] + A[m][2k+1]·B[k][2n+1], A holding bf16 pairs along its rows and B in the
// VNNI layout (row k = the pairs {k = 2·k, 2·k + 1} of every column n).
#pragma once

#include <cstdint>
#include <cstring>

#if !PIXELFLY_AMX_EMULATION
#include <immintrin.h>
#else
#include <atomic>
#include <stdexcept>
#include <string>
#endif

namespace pixelfly {
namespace kernels {
namespace amx {

// LDTILECFG's 64-byte operand.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of tile i
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

#if !PIXELFLY_AMX_EMULATION

inline void configure(const TileConfig& c) { _tile_loadconfig(&c); }
inline void release() { _tile_release(); }
// GCC's tile intrinsics paste their tile numbers into the assembly, so each tile (and each product
// the kernels use) gets its own specialisation with a literal number.
template <int T>
void zero();
template <int T>
void load(const void* p, long strideBytes);
template <int T>
void store(void* p, long strideBytes);
template <int C, int A, int B>
void dpbf16();
#define PIXELFLY_TILE(T)                                                                          \
  template <>                                                                                     \
  inline void zero<T>() {                                                                         \
    _tile_zero(T);                                                                                \
  }                                                                                               \
  template <>                                                                                     \
  inline void load<T>(const void* p, long strideBytes) {                                          \
    _tile_loadd(T, p, strideBytes);                                                               \
  }                                                                                               \
  template <>                                                                                     \
  inline void store<T>(void* p, long strideBytes) {                                               \
    _tile_stored(T, p, strideBytes);                                                              \
  }
PIXELFLY_TILE(0)
PIXELFLY_TILE(1)
PIXELFLY_TILE(2)
PIXELFLY_TILE(3)
PIXELFLY_TILE(4)
PIXELFLY_TILE(5)
PIXELFLY_TILE(6)
PIXELFLY_TILE(7)
#undef PIXELFLY_TILE
#define PIXELFLY_TILE_DP(C, A, B) \
  template <>                     \
  inline void dpbf16<C, A, B>() { \
    _tile_dpbf16ps(C, A, B);      \
  }
PIXELFLY_TILE_DP(0, 4, 6)
PIXELFLY_TILE_DP(1, 4, 7)
PIXELFLY_TILE_DP(2, 5, 6)
PIXELFLY_TILE_DP(3, 5, 7)
#undef PIXELFLY_TILE_DP

#else  // the emulation: eight 1 KB tile registers per thread

// Products executed so far, in all threads (the test checks the tiles were used at all).
inline std::atomic<long>& tileProductCount() {
  static std::atomic<long> n{0};
  return n;
}
inline long tileProducts() { return tileProductCount().load(); }

struct EmulatedTiles {
  TileConfig cfg;
  bool configured = false;
  alignas(64) uint8_t t[8][1024];
};
inline EmulatedTiles& tiles() {
  static thread_local EmulatedTiles e;
  return e;
}
[[noreturn]] inline void fault(const std::string& what) { throw std::logic_error("emulated AMX: " + what); }
inline void check(int t) {
  const EmulatedTiles& e = tiles();
  if (!e.configured) fault("tile " + std::to_string(t) + " used before LDTILECFG");
  if (e.cfg.rows[t] == 0 || e.cfg.rows[t] > 16 || e.cfg.colsb[t] == 0 || e.cfg.colsb[t] > 64 || e.cfg.colsb[t] % 4)
    fault("tile " + std::to_string(t) + " is not configured to a valid shape");
}

inline void configure(const TileConfig& c) {
  if (c.palette != 1) fault("palette " + std::to_string(c.palette));
  tiles().cfg = c;
  tiles().configured = true;
}
inline void release() { tiles().configured = false; }
template <int T>
inline void zero() {
  check(T);
  std::memset(tiles().t[T], 0, sizeof tiles().t[T]);
}
template <int T>
inline void load(const void* p, long strideBytes) {
  check(T);
  const EmulatedTiles& e = tiles();
  for (int r = 0; r < e.cfg.rows[T]; r++)
    std::memcpy(tiles().t[T] + r * 64, static_cast<const uint8_t*>(p) + r * strideBytes, e.cfg.colsb[T]);
}
template <int T>
inline void store(void* p, long strideBytes) {
  check(T);
  const EmulatedTiles& e = tiles();
  for (int r = 0; r < e.cfg.rows[T]; r++)
    std::memcpy(static_cast<uint8_t*>(p) + r * strideBytes, e.t[T] + r * 64, e.cfg.colsb[T]);
}
inline float bf16At(const uint8_t* row, int i) {
  uint16_t h;
  std::memcpy(&h, row + 2 * i, 2);
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <int C, int A, int B>
inline void dpbf16() {
  check(C), check(A), check(B);
  EmulatedTiles& e = tiles();
  const int M = e.cfg.rows[C], N = e.cfg.colsb[C] / 4, K = e.cfg.colsb[A] / 4;
  if (e.cfg.rows[A] != M) fault("A's rows do not match C's");
  if (e.cfg.rows[B] != K) fault("B's rows do not match A's pairs per row");
  if (e.cfg.colsb[B] != e.cfg.colsb[C]) fault("B's columns do not match C's");
  tileProductCount()++;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      float c;
      std::memcpy(&c, e.t[C] + m * 64 + 4 * n, 4);
      for (int k = 0; k < K; k++) {
        const uint8_t* a = e.t[A] + m * 64 + 4 * k;
        const uint8_t* b = e.t[B] + k * 64 + 4 * n;
        c += bf16At(a, 0) * bf16At(b, 0) + bf16At(a, 1) * bf16At(b, 1);
      }
      std::memcpy(e.t[C] + m * 64 + 4 * n, &c, 4);
    }
}

#endif

}  // namespace amx
}  // namespace kernels
}  // namespace pixelfly
