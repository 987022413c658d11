// The kernels' inner loops, compiled once per instruction set (PIXELFLY_ISA = 0 portable, 1 AVX2,
// 2 AVX-512, 3 AVX-512 with AVX512-BF16, 4 the same with AMX; see binding.gyp). Vectors are GCC
// vector extensions, so the same source lowers to zmm, ymm or baseline SSE registers; only the tile
// sizes differ per ISA.
//
// Every product is one register-blocked microkernel, C[MR×NR] (+)= Σ_k a[k][0:MR] ⊗ b[k][0:NR]:
// `a` values are broadcast, `b` rows are NR-wide vectors. Operands are first packed into panels
// (`a`: [k][MR], `b`: [k][NR], zero-padded), which is where transposes, padding and sparsity are
// resolved, so the microkernel only ever streams contiguous rows and never sees a mask:
//  - dense GEMM: BLIS-style loops (KC-deep B panels shared by the threads, MC×KC A blocks per thread);
//    for a long K with a small C (weight gradients over many rows) fixed K chunks with partial sums
//    instead; single-row / single-column products as dot or axpy loops without packing;
//  - Pixelfly forward/dX: each block-row (forward) or block-column (dX) of W is a list of b×b blocks,
//    i.e. a GEMM whose K dimension is the concatenation of those blocks; `a` comes from the packed
//    activation panel at each block's offset ("segments"), `b` is the packed blocks, contiguous;
//  - Pixelfly dW: per kept block a GEMM over the M rows, in chunks whose block tiles stay in cache,
//    parallel over kept blocks so no two threads write the same output.
//
// bf16 products (ISA >= 3) run the same loops on panels of bf16 PAIRS: one 32-bit element holds the
// bf16 values of two consecutive k (the even one in the low half), so a panel [k/2][w] of pairs has
// the shape and strides of an fp32 panel [k][w] of half the depth, and the microkernel's
// `acc += a·b` becomes vdpbf16ps (each of 16 fp32 lanes adds the two products of its pair). Packing
// is where fp32 operands are rounded to bf16 and k pairs interleaved; the loops are templates over
// the packed element E (float or Bf16Pair), with k counted in values and kElems<E>(k) panel rows.
// On AMX (ISA 4) the dense and Pixelfly bf16 products run on tiles instead (amx_kernels.h).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "host_memory.h"
#include "isa_table.h"
#if PIXELFLY_ISA == 4
#include "amx_tiles.h"
#endif

#if PIXELFLY_ISA == 4
#define ISA_TABLE kAmxKernels
#define ISA_NS isa_amx
#elif PIXELFLY_ISA == 3
#define ISA_TABLE kAvx512Bf16Kernels
#define ISA_NS isa_avx512bf16
#elif PIXELFLY_ISA == 2
#define ISA_TABLE kAvx512Kernels
#define ISA_NS isa_avx512
#elif PIXELFLY_ISA == 1
#define ISA_TABLE kAvx2Kernels
#define ISA_NS isa_avx2
#else
#define ISA_TABLE kPortableKernels
#define ISA_NS isa_portable
#endif
#define HAS_BF16 (PIXELFLY_ISA >= 3)

namespace pixelfly {
namespace kernels {
namespace ISA_NS {
namespace {

#if PIXELFLY_ISA >= 2
constexpr int VL = 16;      // floats per zmm
constexpr int MR = 14;      // 14×32 tile: 28 accumulators + 2 b vectors + broadcasts of 32 zmm
constexpr int MR_DW = 8;    // dW tiles must divide the block: 8×32
#elif PIXELFLY_ISA == 1
constexpr int VL = 8;       // floats per ymm
constexpr int MR = 6;       // 6×16 tile: 12 accumulators of 16 ymm
constexpr int MR_DW = 4;
#else
constexpr int VL = 4;       // baseline SSE
constexpr int MR = 6;
constexpr int MR_DW = 4;
#endif
constexpr int NV = 2;       // vectors per tile row for blocks >= NV*VL columns
// Packed activation block per work item of the Pixelfly forward / dX, in KB (tuned on this project's
// AVX-512 machines, 2 MB L2 per core: smaller blocks keep the panels closer to L1; dX's rows are 4×
// wider for the shapes we train, so it gets a larger block: each work item streams all of W's
// packed blocks once, and with 1024×4096 layers (4096-wide rows, 2-4 MB of blocks at density 1/8-1/4)
// 768 KB items (3 row panels instead of 1) cut dX's time by about a tenth, 1-thread CPU time).
constexpr int kForwardBlockKB = 192;
constexpr int kBackwardDataBlockKB = 768;
constexpr int KC = 768;     // deepest packed panel of the dense GEMM, in panel rows (fewer passes over C)

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int vf_i __attribute__((vector_size(VL * sizeof(int))));  // shuffle masks

inline vf loadu(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeu(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
// Non-temporal store of one vector to a vector-aligned address: with VL floats = one 64-byte line
// on AVX-512 it writes a whole line without first reading it (no read-for-ownership).
inline void storeStream(float* p, vf v) {
#if PIXELFLY_ISA >= 2
  _mm512_stream_ps(p, reinterpret_cast<__m512>(v));
#elif PIXELFLY_ISA == 1
  _mm256_stream_ps(p, reinterpret_cast<__m256>(v));
#else
  _mm_stream_ps(p, reinterpret_cast<__m128>(v));
#endif
}
// x - 0 is x for every x (unlike 0 + x for x = -0), so this folds to a single broadcast load.
inline vf bcast(float x) { return x - vf{}; }

// ---------------------------------------------------------------------------------------------
// Packed elements and operands
// ---------------------------------------------------------------------------------------------
// A bf16 product's packed element: the bf16 values of k = 2·k2 (low half) and 2·k2 + 1 (high half).
struct Bf16Pair {
  uint32_t bits;
};
template <class E>
constexpr int kPer = 1;  // k values per packed element
template <>
constexpr int kPer<Bf16Pair> = 2;
template <class E>
inline int kElems(long k) {
  return (int)((k + kPer<E> - 1) / kPer<E>);
}

inline int elemBytes(const Src& s) { return s.type == DType::BF16 ? 2 : 4; }
// The operand n elements on.
inline Src at(const Src& s, long n) {
  Src r = s;
  r.data = static_cast<const char*>(s.data) + n * elemBytes(s);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Scratch: per-thread buffers that only grow (host_memory.h), so steady-state calls neither
// allocate nor fault pages.
// ---------------------------------------------------------------------------------------------
thread_local GrowingBuffer tlsA;       // a-side panels (per worker thread)
thread_local GrowingBuffer tlsB;       // b-side panels shared by a call (owned by the calling thread)
thread_local std::vector<int> tlsOffsets;
thread_local std::vector<float> tlsVector;  // gemv's contiguous copy of its vector operand

// ---------------------------------------------------------------------------------------------
// Packing (fp32). dst is [nK][width]; entries outside kValid×wValid are zero.
// ---------------------------------------------------------------------------------------------
// dst[k][w] = src[k*ld + w]. Panel widths are compile-time constants so full rows become vector
// moves; partial rows (padding) take the scalar path.
template <int WIDTH>
inline void packCopy(float* dst, const float* src, long ld, int nK, int kValid, int wValid) {
  for (int k = 0; k < nK; k++) {
    float* d = dst + (long)k * WIDTH;
    if (k < kValid && wValid == WIDTH) {
      const float* s = src + k * ld;
#pragma GCC unroll 16
      for (int w = 0; w < WIDTH; w++) d[w] = s[w];
    } else if (k < kValid) {
      const float* s = src + k * ld;
      int w = 0;
      for (; w < wValid; w++) d[w] = s[w];
      for (; w < WIDTH; w++) d[w] = 0.f;
    } else {
      for (int w = 0; w < WIDTH; w++) d[w] = 0.f;
    }
  }
}

// dst[k][w] = src[w*ld + k]: a transpose, read in row segments so the source streams.
#if PIXELFLY_ISA >= 2
// 16×16 in-register transpose: at each step, swap the off-diagonal s×s sub-blocks of every 2s×2s tile.
template <int S>
inline void transposeStep(vf (&v)[16]) {
  vf_i lo, hi;  // lane l of the new top row / bottom row (indices >= 16 pick from b); folded at compile time
  for (int l = 0; l < 16; l++) {
    lo[l] = (l & S) ? 16 + l - S : l;
    hi[l] = (l & S) ? 16 + l : l + S;
  }
  for (int i = 0; i < 16; i++) {
    if (i & S) continue;
    const vf a = v[i], b = v[i + S];
    v[i] = __builtin_shuffle(a, b, lo);
    v[i + S] = __builtin_shuffle(a, b, hi);
  }
}
inline void transpose16(vf (&v)[16]) {
  transposeStep<8>(v);
  transposeStep<4>(v);
  transposeStep<2>(v);
  transposeStep<1>(v);
}
#endif

inline void packTrans(float* dst, const float* src, long ld, int nK, int kValid, int width, int wValid) {
  constexpr int KB = 16;
  for (int k0 = 0; k0 < nK; k0 += KB) {
    const int kn = std::min(KB, nK - k0);
    const int kv = std::max(0, std::min(kn, kValid - k0));
#if PIXELFLY_ISA >= 2
    // Activation panels (width MR = 14) and transposed weights (width 32) are the bulk of all
    // packing: transpose full 16×16 slices in registers instead of scalar moves.
    if (wValid == width && kv == KB && (width < 16 || width % 16 == 0)) {
      for (int w0 = 0; w0 < width; w0 += 16) {
        const int wn = std::min(16, width - w0);
        vf v[16];
        for (int w = 0; w < 16; w++) v[w] = w < wn ? loadu(src + (w0 + w) * ld + k0) : vf{};
        transpose16(v);
        float* d = dst + (long)k0 * width + w0;
        for (int k = 0; k < KB; k++) std::memcpy(d + (long)k * width, &v[k], wn * sizeof(float));
      }
      continue;
    }
#endif
    for (int w = 0; w < width; w++) {
      float* d = dst + (long)k0 * width + w;
      if (w < wValid) {
        const float* s = src + w * ld + k0;
        int k = 0;
        for (; k < kv; k++) d[(long)k * width] = s[k];
        for (; k < kn; k++) d[(long)k * width] = 0.f;
      } else {
        for (int k = 0; k < kn; k++) d[(long)k * width] = 0.f;
      }
    }
  }
}

#if HAS_BF16
// ---------------------------------------------------------------------------------------------
// Packing (bf16 pairs). Same shapes as the fp32 packers with k counted in values: dst has
// kElems(nK) rows of pairs; values outside kValid×wValid are zero. Sources S are fp32 (rounded to
// bf16 by VCVTNE2PS2BF16, whose rounding roundToBf16 reproduces) or bf16.
// ---------------------------------------------------------------------------------------------
inline uint16_t bf16Of(float x) { return roundToBf16(x); }
inline uint16_t bf16Of(bf16 x) { return x; }
inline Bf16Pair pairOf(uint16_t lo, uint16_t hi) { return {(uint32_t)lo | (uint32_t)hi << 16}; }

// Word j of the interleave: value j/2 of the low row (j even) or of the high row (j odd).
inline __m512i interleaveIndex() {
  alignas(64) uint16_t idx[32];
  for (int j = 0; j < 32; j++) idx[j] = (uint16_t)((j & 1) ? 16 + j / 2 : j / 2);
  return _mm512_load_si512(idx);
}
// The 16 pairs {lo[j], hi[j]}, j < 16, of two rows.
inline __m512i pairs16(const float* lo, const float* hi) {
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(hi), _mm512_loadu_ps(lo));  // lo's words first
  return _mm512_permutexvar_epi16(interleaveIndex(), both);
}
inline __m512i pairs16(const bf16* lo, const bf16* hi) {
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)lo)),
                                          _mm256_loadu_si256((const __m256i*)hi), 1);
  return _mm512_permutexvar_epi16(interleaveIndex(), both);
}
// The 16 pairs {row[2j], row[2j+1]} of 32 consecutive values: already pair order in memory.
inline __m512i pairsOfRow32(const float* row) {
  return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + 16), _mm512_loadu_ps(row));
}
inline __m512i pairsOfRow32(const bf16* row) { return _mm512_loadu_si512(row); }

// d[j] = {r0[j], r1[j]} for j < n; a null row reads as zeros.
template <class S>
inline void interleaveRows(Bf16Pair* d, const S* r0, const S* r1, int n) {
  int j = 0;
  if (r0 && r1)
    for (; j + 16 <= n; j += 16) _mm512_storeu_si512(d + j, pairs16(r0 + j, r1 + j));
  for (; j < n; j++) d[j] = pairOf(r0 ? bf16Of(r0[j]) : 0, r1 ? bf16Of(r1[j]) : 0);
}

// dst[k2][w] = {src[2·k2][w], src[2·k2+1][w]} (rows ld apart).
template <int WIDTH, class S>
inline void packCopyPairs(Bf16Pair* dst, const S* src, long ld, int nK, int kValid, int wValid) {
  const int n2 = kElems<Bf16Pair>(nK);
  for (int k2 = 0; k2 < n2; k2++) {
    Bf16Pair* d = dst + (long)k2 * WIDTH;
    const int k = 2 * k2;
    const S* r0 = k < kValid ? src + k * ld : nullptr;
    const S* r1 = k + 1 < kValid ? src + (k + 1) * ld : nullptr;
    interleaveRows(d, r0, r1, wValid);
    for (int w = std::max(wValid, 0); w < WIDTH; w++) d[w] = {0};
  }
}

// dst[k2][w] = {src[w*ld + 2·k2], src[w*ld + 2·k2 + 1]}: each source row already holds its pairs in
// order, so full 32-value × 16-row slices are one 16×16 transpose of 32-bit elements.
template <class S>
inline void packTransPairs(Bf16Pair* dst, const S* src, long ld, int nK, int kValid, int width, int wValid) {
  constexpr int KB = 32;
  for (int k0 = 0; k0 < nK; k0 += KB) {
    const int kn = std::min(KB, nK - k0);
    const int kv = std::max(0, std::min(kn, kValid - k0));
    Bf16Pair* dk = dst + (long)(k0 / 2) * width;
    if (wValid == width && kv == KB && (width < 16 || width % 16 == 0)) {
      for (int w0 = 0; w0 < width; w0 += 16) {
        const int wn = std::min(16, width - w0);
        vf v[16];
        for (int w = 0; w < 16; w++) v[w] = w < wn ? (vf)pairsOfRow32(src + (long)(w0 + w) * ld + k0) : vf{};
        transpose16(v);
        for (int k2 = 0; k2 < 16; k2++) std::memcpy(dk + (long)k2 * width + w0, &v[k2], wn * sizeof(Bf16Pair));
      }
      continue;
    }
    const int n2 = (kn + 1) / 2;
    for (int w = 0; w < width; w++) {
      const S* s = w < wValid ? src + (long)w * ld + k0 : nullptr;
      for (int k2 = 0; k2 < n2; k2++) {
        const int k = 2 * k2;
        dk[(long)k2 * width + w] = pairOf(s && k < kv ? bf16Of(s[k]) : 0, s && k + 1 < kv ? bf16Of(s[k + 1]) : 0);
      }
    }
  }
}
#endif  // HAS_BF16

// Typed fronts the loops call: E = float packs an fp32 operand as it is; E = Bf16Pair packs pairs
// from an fp32 or bf16 operand.
template <int WIDTH>
inline void packCopyE(float* dst, const Src& src, long ld, int nK, int kValid, int wValid) {
  packCopy<WIDTH>(dst, src.f32(), ld, nK, kValid, wValid);
}
inline void packTransE(float* dst, const Src& src, long ld, int nK, int kValid, int width, int wValid) {
  packTrans(dst, src.f32(), ld, nK, kValid, width, wValid);
}
#if HAS_BF16
template <int WIDTH>
inline void packCopyE(Bf16Pair* dst, const Src& src, long ld, int nK, int kValid, int wValid) {
  if (src.type == DType::BF16) packCopyPairs<WIDTH>(dst, src.b16(), ld, nK, kValid, wValid);
  else packCopyPairs<WIDTH>(dst, src.f32(), ld, nK, kValid, wValid);
}
inline void packTransE(Bf16Pair* dst, const Src& src, long ld, int nK, int kValid, int width, int wValid) {
  if (src.type == DType::BF16) packTransPairs(dst, src.b16(), ld, nK, kValid, width, wValid);
  else packTransPairs(dst, src.f32(), ld, nK, kValid, width, wValid);
}
#endif

// ---------------------------------------------------------------------------------------------
// Microkernel. C[rows×cols] (=|+=) alpha · Σ_s Σ_k a_s[k*sa + 0:R] ⊗ b[(s*kseg + k)*sb + 0:NVV*VL] (+ bias)
//   a_s = a + aoff[s] (or a itself when aoff is null), sa elements apart per k (R for packed panels;
//   dW's block tiles are [k][b]);
//   b   = one stream of nseg*kseg rows of NVV vectors, sb elements apart.
// k counts packed elements (pairs for bf16).
// ---------------------------------------------------------------------------------------------
inline vf broadcastOf(const float* p) { return bcast(*p); }
inline vf vectorAt(const float* p) { return loadu(p); }
inline vf madd(vf acc, vf a, vf b) { return acc + a * b; }
#if HAS_BF16
inline __m512i broadcastOf(const Bf16Pair* p) { return _mm512_set1_epi32((int)p->bits); }
inline __m512i vectorAt(const Bf16Pair* p) { return _mm512_loadu_si512(p); }
inline vf madd(vf acc, __m512i a, __m512i b) {
  return (vf)_mm512_dpbf16_ps((__m512)acc, (__m512bh)a, (__m512bh)b);
}
#endif

// How a tile reaches C. `stream`: full tiles are written with non-temporal stores (the caller
// checked that C is vector-aligned, ldc a multiple of VL, and that C is too big for the caches to keep).
struct Epilogue {
  bool accumulate = false;
  const float* bias = nullptr;
  float alpha = 1.f;
  bool stream = false;
};

// Writing results: fp32 outputs, or (bf16 products) bf16 outputs, rounded once from the fp32 sum
// (accumulating: the old value widened and added first).
inline void putVector(float* c, vf v, bool accumulate, bool stream) {
  if (stream) storeStream(c, v);
  else storeu(c, accumulate ? loadu(c) + v : v);
}
inline void putValue(float* c, float v, bool accumulate) { *c = accumulate ? *c + v : v; }
#if HAS_BF16
inline void putVector(bf16* c, vf v, bool accumulate, bool stream) {
  if (accumulate) v += (vf)_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)c)), 16));
  const __m256i h = (__m256i)_mm512_cvtneps_pbh((__m512)v);
  if (stream) _mm256_stream_si256((__m256i*)c, h);
  else _mm256_storeu_si256((__m256i*)c, h);
}
inline void putValue(bf16* c, float v, bool accumulate) { *c = roundToBf16(accumulate ? bf16ToFloat(*c) + v : v); }
#endif

template <int R, int NVV, class E, class TC = float>
inline void micro(int nseg, int kseg, const E* a, long sa, const int* aoff, const E* b, long sb, TC* C, long ldc,
                  int rows, int cols, const Epilogue& ep) {
  constexpr int NR = NVV * VL;
  const bool streamTile = ep.stream && !ep.accumulate && rows == R && cols == NR;
  // C is usually cold (written by an earlier pass or another block): start fetching it now so the
  // final read-modify-write does not stall.
  if (!streamTile)
    for (int i = 0; i < rows; i++) {
      __builtin_prefetch(C + i * ldc, 1, 3);
      __builtin_prefetch(C + i * ldc + NR - 1, 1, 3);
    }
  vf acc[R][NVV];
#pragma GCC unroll 32
  for (int i = 0; i < R; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NVV; v++) acc[i][v] = vf{};

  for (int s = 0; s < nseg; s++) {
    const E* ap = aoff ? a + aoff[s] : a;
    // Segments jump around the packed panel: fetch the next one while this one runs.
    const E* next = (aoff && s + 1 < nseg) ? a + aoff[s + 1] : nullptr;
    for (int k = 0; k < kseg; k++) {
      if (next) __builtin_prefetch(next + (long)k * R);
      decltype(vectorAt(b)) bv[NVV];
#pragma GCC unroll 4
      for (int v = 0; v < NVV; v++) bv[v] = vectorAt(b + v * VL);
#pragma GCC unroll 32
      for (int i = 0; i < R; i++) {
        const auto ai = broadcastOf(ap + i);
#pragma GCC unroll 4
        for (int v = 0; v < NVV; v++) acc[i][v] = madd(acc[i][v], ai, bv[v]);
      }
      ap += sa;
      b += sb;
    }
  }

  if (ep.alpha != 1.f)
#pragma GCC unroll 32
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
      for (int v = 0; v < NVV; v++) acc[i][v] *= ep.alpha;
  if (ep.bias) {
    float bpad[NR];
    for (int j = 0; j < NR; j++) bpad[j] = j < cols ? ep.bias[j] : 0.f;
#pragma GCC unroll 4
    for (int v = 0; v < NVV; v++) {
      const vf bb = loadu(bpad + v * VL);
#pragma GCC unroll 32
      for (int i = 0; i < R; i++) acc[i][v] += bb;
    }
  }

  if (rows == R && cols == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
      for (int v = 0; v < NVV; v++) putVector(C + i * ldc + v * VL, acc[i][v], ep.accumulate, streamTile);
  } else {
    float tile[R][NR];
    for (int i = 0; i < R; i++)
      for (int v = 0; v < NVV; v++) storeu(&tile[i][v * VL], acc[i][v]);
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) putValue(C + i * ldc + j, tile[i][j], ep.accumulate);
  }
}

inline int ceilDiv(long a, long b) { return (int)((a + b - 1) / b); }

// Software prefetch of the rows the NEXT work item will pack (rows of rowBytes, ldBytes apart), a
// few cache lines per microkernel call, so that the sparse products overlap their activation
// traffic with compute: at density 1/8 their packing would otherwise wait on memory for about a
// third of the time (the hardware prefetchers stop at every 4 KB page, i.e. several times per row).
class RowPrefetcher {
 public:
  void reset(const void* p, long ldBytes, int rows, long rowBytes, long calls) {
    base_ = static_cast<const char*>(p);
    ldBytes_ = ldBytes;
    lines_ = p && rows > 0 && rowBytes > 0 ? (int)((rowBytes + 63) / 64) + 1 : 0;  // +1: unaligned rows
    rows_ = lines_ ? rows : 0;
    row_ = line_ = 0;
    perCall_ = calls > 0 ? (int)(((long)lines_ * rows_ + calls - 1) / calls) : 0;
  }
  // The same for rows of an operand: rows × cols elements, ld elements apart.
  void reset(const Src& s, long ld, int rows, long cols, long calls) {
    reset(s.data, ld * elemBytes(s), rows, cols * elemBytes(s), calls);
  }
  // Issues this call's share of the prefetches.
  void step() {
    for (int n = perCall_; n > 0 && row_ < rows_; n--) {
      __builtin_prefetch(base_ + row_ * ldBytes_ + line_ * 64L, 0, 2);
      if (++line_ == lines_) {
        line_ = 0;
        row_++;
      }
    }
  }

 private:
  const char* base_ = nullptr;
  long ldBytes_ = 0;
  int lines_ = 0, rows_ = 0, row_ = 0, line_ = 0, perCall_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Dense GEMM: C[M×N] (=|+=) alpha·op(A)·op(B)
// ---------------------------------------------------------------------------------------------
constexpr int NR_G = NV * VL;
constexpr int NC_SUB = 16 * NR_G;  // columns of one work item; A blocks are re-packed per item
constexpr int MR_S = MR / 2;       // short tiles: 7 rows on AVX-512, so 49 token rows pad to nothing

// One side of the product seen as an n×K matrix: op(A) (i = row of C) or op(B)ᵀ (i = column of C).
struct Operand {
  Src p;
  long ld;
  bool kMajor;  // element (i, k) is p[k*ld + i] (the stored rows run along i), else p[i*ld + k]
};

// Packs entries [i0, i0 + valid) × [k0, k0 + kValid) of an operand as a panel [kc][W], zero past
// valid and kValid (kValid < kc: the operand ends inside the panel; row-major operands only).
template <int W, class E>
inline void packPanel(E* dst, const Operand& o, long i0, long k0, int kc, int valid, int kValid = -1) {
  if (o.kMajor)
    packCopyE<W>(dst, at(o.p, k0 * o.ld + i0), o.ld, kc, kc, valid);
  else
    packTransE(dst, at(o.p, i0 * o.ld + k0), o.ld, kc, kValid < 0 ? kc : kValid, W, valid);
}

// Packs entries [i0, i0 + n) × [k0, k0 + kc) of a k-major operand as consecutive R-wide panels
// ([panel][kc][R], zero past n), walking the source row by row: panel by panel, each row would be
// visited once per panel (for transposed A with thousands of columns, one page per row each time).
template <int R>
inline void packPanelsKMajor(float* dst, const Operand& o, long i0, int n, long k0, int kc) {
  const int np = ceilDiv(n, R);
  for (int k = 0; k < kc; k++) {
    const float* s = o.p.f32() + (k0 + k) * o.ld + i0;
    for (int p = 0; p < np; p++) {
      float* d = dst + (long)p * R * kc + (long)k * R;
      const int v = std::min(R, n - p * R);
      if (v == R) {
        std::memcpy(d, s + p * R, R * sizeof(float));  // a few inline vector moves (R is a constant)
      } else {
        int w = 0;
        for (; w < v; w++) d[w] = s[p * R + w];
        for (; w < R; w++) d[w] = 0.f;
      }
    }
  }
}

#if HAS_BF16
thread_local std::vector<Bf16Pair> tlsPairRow;  // one interleaved row pair of a k-major operand

template <int R, class S>
inline void packPanelsKMajorPairs(Bf16Pair* dst, const S* src, long ld, int n, int kc) {
  const int np = ceilDiv(n, R), kc2 = kElems<Bf16Pair>(kc);
  std::vector<Bf16Pair>& row = tlsPairRow;
  row.resize((size_t)np * R);
  for (int k2 = 0; k2 < kc2; k2++) {
    const int k = 2 * k2;
    interleaveRows(row.data(), src + k * ld, k + 1 < kc ? src + (k + 1) * ld : nullptr, n);
    for (int w = n; w < np * R; w++) row[w] = {0};
    for (int p = 0; p < np; p++) std::memcpy(dst + (long)p * R * kc2 + (long)k2 * R, row.data() + p * R, R * sizeof(Bf16Pair));
  }
}
template <int R>
inline void packPanelsKMajor(Bf16Pair* dst, const Operand& o, long i0, int n, long k0, int kc) {
  const Src s = at(o.p, k0 * o.ld + i0);
  if (s.type == DType::BF16) packPanelsKMajorPairs<R>(dst, s.b16(), o.ld, n, kc);
  else packPanelsKMajorPairs<R>(dst, s.f32(), o.ld, n, kc);
}
#endif

// Column panels of C are NR_G wide, except a last one of VL columns when no more are left (a rank-16
// low-rank factor would otherwise compute 32 columns for 16). Packed panel jp starts at jp*NR_G*kcE
// (kcE: packed rows of the depth).
inline int panelCols(int N, int jp) { return std::min(NR_G, N - jp * NR_G); }

template <class E>
inline void packColumnPanel(E* dst, const Operand& b, int N, int jp, long k0, int kc) {
  const int cols = panelCols(N, jp);
  if (cols <= VL)
    packPanel<VL>(dst, b, (long)jp * NR_G, k0, kc, cols);
  else
    packPanel<NR_G>(dst, b, (long)jp * NR_G, k0, kc, cols);
}

// All column panels of [0, N) × [k0, k0 + kc); a k-major operand is copied row by row (a sequential
// read of the source instead of one strided pass per panel).
inline void packColumnPanels(float* Bp, const Operand& b, int N, long k0, int kc) {
  const int nPanels = ceilDiv(N, NR_G);
  if (!b.kMajor) {
    for (int jp = 0; jp < nPanels; jp++) packColumnPanel(Bp + (long)jp * NR_G * kc, b, N, jp, k0, kc);
    return;
  }
  for (int k = 0; k < kc; k++) {
    const float* s = b.p.f32() + (k0 + k) * b.ld;
    for (int jp = 0; jp < nPanels; jp++) {
      const int cols = panelCols(N, jp), w = cols <= VL ? VL : NR_G;
      float* d = Bp + (long)jp * NR_G * kc + (long)k * w;
      const float* src = s + (long)jp * NR_G;
      if (cols == NR_G) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) storeu(d + v * VL, loadu(src + v * VL));
      } else {
        int j = 0;
        for (; j < cols; j++) d[j] = src[j];
        for (; j < w; j++) d[j] = 0.f;
      }
    }
  }
}

#if HAS_BF16
template <class S>
inline void packColumnPanelsPairs(Bf16Pair* Bp, const S* src, long ld, int N, int kc) {
  const int nPanels = ceilDiv(N, NR_G), kc2 = kElems<Bf16Pair>(kc);
  for (int k2 = 0; k2 < kc2; k2++) {
    const S* r0 = src + 2L * k2 * ld;
    const S* r1 = 2 * k2 + 1 < kc ? r0 + ld : nullptr;
    for (int jp = 0; jp < nPanels; jp++) {
      const int cols = panelCols(N, jp), w = cols <= VL ? VL : NR_G;
      Bf16Pair* d = Bp + (long)jp * NR_G * kc2 + (long)k2 * w;
      interleaveRows(d, r0 + (long)jp * NR_G, r1 ? r1 + (long)jp * NR_G : nullptr, cols);
      for (int j = cols; j < w; j++) d[j] = {0};
    }
  }
}
inline void packColumnPanels(Bf16Pair* Bp, const Operand& b, int N, long k0, int kc) {
  const int kc2 = kElems<Bf16Pair>(kc);
  if (!b.kMajor) {
    for (int jp = 0; jp < ceilDiv(N, NR_G); jp++) packColumnPanel(Bp + (long)jp * NR_G * kc2, b, N, jp, k0, kc);
    return;
  }
  const Src s = at(b.p, k0 * b.ld);
  if (s.type == DType::BF16) packColumnPanelsPairs(Bp, s.b16(), b.ld, N, kc);
  else packColumnPanelsPairs(Bp, s.f32(), b.ld, N, kc);
}
#endif

// ---------------------------------------------------------------------------------------------
// A panels and their products. The dense GEMM's blocked loops and the Pixelfly forward / dX pack
// the M side ("A") of a product in panels of P::R rows, `depth` packed rows of k deep, and
// multiply them by B panels [k][NR]:
//  - BroadcastPanels (fp32 and vdpbf16ps): k-major panels [depth][R] whose values the
//    microkernel broadcasts (R = MR, or MR_S for the split-K chunks' short tiles);
//  - AmxPanels (ISA 4, bf16): row-major panels [R][depth] of pairs, read as 16-row A tiles.
// ---------------------------------------------------------------------------------------------
template <int Rows = MR>
struct BroadcastPanels {
  static constexpr int R = Rows;
  static constexpr int kPanelsPerBlock = 12;  // MC: the per-thread A block (MC×KC) should stay in L2
  static int depth(int kE) { return kE; }
  static int offsetOfK(int kE) { return kE * R; }  // where packed row kE starts in a panel
  static void begin(int /*kStepE*/) {}
  static void end() {}
  // Rows [i0, i0 + n) × [k0, k0 + kc) of an operand (zero past kValid) as consecutive panels.
  template <class E>
  static void pack(E* dst, int depthE, const Operand& o, long i0, int n, long k0, int kc, int kValid) {
    if (o.kMajor) {
      packPanelsKMajor<R>(dst, o, i0, n, k0, kc);
      return;
    }
    for (int p = 0; p < ceilDiv(n, R); p++)
      packPanel<R>(dst + (long)p * R * depthE, o, i0 + p * R, k0, kc, std::min(R, n - p * R), kValid);
  }
  // C[rows × cols] (=|+=) Σ_s panel columns from aoff[s] (kseg deep) · the next nseg·kseg rows of b.
  template <int NVV, class E, class TC>
  static void product(int nseg, int kseg, const E* a, int /*depthE*/, const int* aoff, const E* b, long sb, TC* C,
                      long ldc, int rows, int cols, const Epilogue& ep) {
    micro<R, NVV>(nseg, kseg, a, R, aoff, b, sb, C, ldc, rows, cols, ep);
  }
};

#if PIXELFLY_ISA == 4
// Writes a product held in a float tile (ld floats per row): alpha, bias, and C overwritten, added
// to or streamed, as the microkernel's own epilogue does from its registers.
template <int NR, class TC>
inline void writeTile(const float* t, int tld, TC* C, long ldc, int rows, int cols, int R, const Epilogue& ep) {
  const bool streamTile = ep.stream && !ep.accumulate && rows == R && cols == NR;
  for (int i = 0; i < rows; i++) {
    TC* c = C + i * ldc;
    const float* ti = t + (long)i * tld;
    if (cols == NR) {
      for (int j = 0; j < NR; j += VL) {
        vf v = loadu(ti + j);
        if (ep.alpha != 1.f) v *= ep.alpha;
        if (ep.bias) v += loadu(ep.bias + j);
        putVector(c + j, v, ep.accumulate, streamTile);
      }
    } else {
      for (int j = 0; j < cols; j++) putValue(c + j, ti[j] * ep.alpha + (ep.bias ? ep.bias[j] : 0.f), ep.accumulate);
    }
  }
}

// The pairs {row[2·k2], row[2·k2+1]}, k2 < depthE, of a row's first kValid values (zero past them).
template <class S>
inline void rowPairs(Bf16Pair* d, const S* row, int kValid, int depthE) {
  int k = 0;
  for (; k + 32 <= kValid; k += 32) _mm512_storeu_si512(d + k / 2, pairsOfRow32(row + k));
  for (; k < 2 * depthE; k += 2) d[k / 2] = pairOf(k < kValid ? bf16Of(row[k]) : 0, k + 1 < kValid ? bf16Of(row[k + 1]) : 0);
}

// Row-major pair panels from a k-major operand (element (i, k) at k·ld + i): rows 2·k2 and
// 2·k2 + 1 interleaved give [k2][i], transposed in 16×16 blocks into [i][k2].
template <class S>
inline void transposedPairs(Bf16Pair* d, int depthE, const S* src, long ld, int rows, int kc) {
  for (int i0 = 0; i0 < 32; i0 += 16)
    for (int k20 = 0; k20 < depthE; k20 += 16) {
      vf v[16];
      for (int t = 0; t < 16; t++) {
        const int k = 2 * (k20 + t);
        const S* r0 = k < kc ? src + (long)k * ld : nullptr;
        const S* r1 = k + 1 < kc ? src + (long)(k + 1) * ld : nullptr;
        if (r0 && r1 && i0 + 16 <= rows) {
          v[t] = (vf)pairs16(r0 + i0, r1 + i0);
        } else {
          alignas(64) Bf16Pair row[16];
          for (int j = 0; j < 16; j++)
            row[j] = pairOf(r0 && i0 + j < rows ? bf16Of(r0[i0 + j]) : 0, r1 && i0 + j < rows ? bf16Of(r1[i0 + j]) : 0);
          std::memcpy(&v[t], row, sizeof row);
        }
      }
      transpose16(v);
      for (int j = 0; j < 16; j++) std::memcpy(d + (long)(i0 + j) * depthE + k20, &v[j], 16 * sizeof(Bf16Pair));
    }
}

struct AmxPanels {
  static constexpr int R = 32;                // two 16-row A tiles
  static constexpr int kPanelsPerBlock = 6;
  static constexpr int KT = 16;               // pairs per tile row (64 bytes)
  inline static thread_local int kStep = KT;  // pairs per tdpbf16ps in this thread's configuration
  static int depth(int kE) { return (kE + KT - 1) / KT * KT; }  // whole tile steps
  static int offsetOfK(int kE) { return kE; }
  // Tiles 0-3: C as 2×2 blocks of 16×16 fp32; 4-5: A, rows 0-15 and 16-31; 6-7: B, columns 0-15
  // and 16-31. kStepE pairs per step (8 for 16-wide blocks, else 16).
  static void begin(int kStepE) {
    kStep = kStepE;
    amx::TileConfig c;
    for (int t = 0; t < 4; t++) c.rows[t] = 16, c.colsb[t] = 64;
    for (int t = 4; t < 6; t++) c.rows[t] = 16, c.colsb[t] = (uint16_t)(4 * kStepE);
    for (int t = 6; t < 8; t++) c.rows[t] = (uint8_t)kStepE, c.colsb[t] = 64;
    amx::configure(c);
  }
  static void end() { amx::release(); }
  static void pack(Bf16Pair* dst, int depthE, const Operand& o, long i0, int n, long k0, int kc, int kValid) {
    for (int p = 0; p < ceilDiv(n, R); p++) {
      Bf16Pair* d = dst + (long)p * R * depthE;
      const int rows = std::min(R, n - p * R);
      const long r0 = i0 + (long)p * R;
      if (o.kMajor) {
        const Src s = at(o.p, k0 * o.ld + r0);
        if (s.type == DType::BF16) transposedPairs(d, depthE, s.b16(), o.ld, rows, kc);
        else transposedPairs(d, depthE, s.f32(), o.ld, rows, kc);
        continue;
      }
      for (int i = 0; i < R; i++) {
        Bf16Pair* di = d + (long)i * depthE;
        if (i >= rows) {
          std::memset(di, 0, depthE * sizeof(Bf16Pair));
          continue;
        }
        const Src s = at(o.p, (r0 + i) * o.ld + k0);
        if (s.type == DType::BF16) rowPairs(di, s.b16(), kValid, depthE);
        else rowPairs(di, s.f32(), kValid, depthE);
      }
    }
  }
  template <int NVV, class TC>
  static void product(int nseg, int kseg, const Bf16Pair* a, int depthE, const int* aoff, const Bf16Pair* b, long sb,
                      TC* C, long ldc, int rows, int cols, const Epilogue& ep) {
    const long aStride = (long)depthE * sizeof(Bf16Pair), bStride = sb * (long)sizeof(Bf16Pair);
    const int ks = kStep;
    amx::zero<0>();
    amx::zero<2>();
    if (NVV == 2) {
      amx::zero<1>();
      amx::zero<3>();
    }
    for (int s = 0; s < nseg; s++) {
      const Bf16Pair* as = aoff ? a + aoff[s] : a;
      for (int kk = 0; kk < kseg; kk += ks) {
        amx::load<4>(as + kk, aStride);
        amx::load<5>(as + 16L * depthE + kk, aStride);
        amx::load<6>(b, bStride);
        amx::dpbf16<0, 4, 6>();
        amx::dpbf16<2, 5, 6>();
        if (NVV == 2) {
          amx::load<7>(b + 16, bStride);
          amx::dpbf16<1, 4, 7>();
          amx::dpbf16<3, 5, 7>();
        }
        b += (long)ks * sb;
      }
    }
    alignas(64) float tile[32][32];
    amx::store<0>(&tile[0][0], sizeof tile[0]);
    amx::store<2>(&tile[16][0], sizeof tile[0]);
    if (NVV == 2) {
      amx::store<1>(&tile[0][16], sizeof tile[0]);
      amx::store<3>(&tile[16][16], sizeof tile[0]);
    }
    writeTile<NVV * 16>(&tile[0][0], 32, C, ldc, rows, cols, R, ep);
  }
};
#endif

// C[rows × panel jp] (=|+=) alpha · a panel (kcE deep) · b panel jp.
template <class P, class E>
inline void panelProduct(int kcE, const E* ap, const E* bp, int N, int jp, float* C, long ldc, int rows, bool accumulate,
                         float alpha) {
  const int cols = panelCols(N, jp);
  float* c = C + (long)jp * NR_G;
  Epilogue ep;
  ep.accumulate = accumulate;
  ep.alpha = alpha;
  if (cols <= VL)
    P::template product<1>(1, kcE, ap, kcE, nullptr, bp, VL, c, ldc, rows, cols, ep);
  else
    P::template product<NV>(1, kcE, ap, kcE, nullptr, bp, NR_G, c, ldc, rows, cols, ep);
}

// The general case: BLIS-style loops, KC-deep B panels shared by the threads, MC×KC A blocks per
// work item.
template <class E, class P = BroadcastPanels<>>
void gemmBlocked(const Operand& a, const Operand& b, int M, int N, int K, float alpha, bool accumulate, float* C,
                 int ldc, int threads) {
  constexpr int R = P::R;
  // Equal-depth passes (K = 1024 runs as 2×512, not 768 + 256); a bf16 pass covers twice the k
  // values in the same panel bytes.
  const int kcLimit = KC * kPer<E>;
  const int passes = std::max(1, ceilDiv(K, kcLimit));
  const int kcMax = std::max(1, ((ceilDiv(K, passes) + 7) / 8) * 8);
  const int depthMax = P::depth(kElems<E>(kcMax));
  const int MC = R * P::kPanelsPerBlock;
  const int nPanels = ceilDiv(N, NR_G);
  E* Bp = tlsB.get<E>((size_t)nPanels * NR_G * depthMax);
  const int mBlocks = ceilDiv(M, MC);
  // Split columns only when there are too few row blocks to keep every thread busy: each split
  // re-packs the A block.
  const int nSubs = mBlocks >= 4 * threads ? 1 : ceilDiv(N, NC_SUB);
  const int panelsPerSub = ceilDiv(nPanels, nSubs);
  const int items = mBlocks * nSubs;
  const int nt = std::max(1, std::min(threads, std::max(items, nPanels)));
  // With a small K (token-mixing layers have K = 49, low-rank factors K = 16) writing C is most of
  // the work: walk it row panel by row panel, in long contiguous runs, instead of down 32-column
  // strips of MC rows, as long as all of B's panels stay in L2.
  const bool rowOrder = K <= 64 && (long)depthMax * nPanels * NR_G * (long)sizeof(E) <= 256 * 1024;

#pragma omp parallel num_threads(nt)
  {
    E* Ap = tlsA.get<E>((size_t)ceilDiv(MC, R) * R * depthMax);
    P::begin(16);
    for (int pc = 0; pc < K; pc += kcMax) {
      const int kc = std::min(kcMax, K - pc), kcE = kElems<E>(kc), depth = P::depth(kcE);
#pragma omp for schedule(static)
      for (int jp = 0; jp < nPanels; jp++) {
        E* bp = Bp + (long)jp * NR_G * depth;
        packColumnPanel(bp, b, N, jp, pc, kc);
        // Tile steps past the depth multiply zeros (AMX panels are whole steps deep).
        const int w = panelCols(N, jp) <= VL ? VL : NR_G;
        std::memset(bp + (long)kcE * w, 0, (size_t)(depth - kcE) * w * sizeof(E));
      }
      // implicit barrier: Bp complete
      const bool acc = accumulate || pc > 0;
#pragma omp for schedule(dynamic, 1)
      for (int item = 0; item < items; item++) {
        const int ib = item / nSubs, js = item % nSubs;
        const int i0 = ib * MC, mc = std::min(MC, M - i0);
        const int mp = ceilDiv(mc, R);
        P::pack(Ap, depth, a, i0, mc, pc, kc, kc);
        const int jpBegin = js * panelsPerSub;
        const int jpEnd = std::min(nPanels, jpBegin + panelsPerSub);
        if (rowOrder) {
          for (int p = 0; p < mp; p++) {
            const int r0 = i0 + p * R;
            for (int jp = jpBegin; jp < jpEnd; jp++)
              panelProduct<P>(depth, Ap + (long)p * R * depth, Bp + (long)jp * NR_G * depth, N, jp, C + (long)r0 * ldc, ldc,
                              std::min(R, M - r0), acc, alpha);
          }
        } else {
          for (int jp = jpBegin; jp < jpEnd; jp++)
            for (int p = 0; p < mp; p++) {
              const int r0 = i0 + p * R;
              panelProduct<P>(depth, Ap + (long)p * R * depth, Bp + (long)jp * NR_G * depth, N, jp, C + (long)r0 * ldc, ldc,
                              std::min(R, M - r0), acc, alpha);
            }
        }
      }
      // implicit barrier before Bp is overwritten
    }
    P::end();
  }
}

// Long K, small C (weight gradients dYᵀ·X summed over 65536 token rows; low-rank factor gradients):
// the blocked loops would have one or two row blocks to share per K pass, so K is cut into chunks
// instead, each an independent partial product in its own buffer, and the partials are summed in
// chunk order. Chunk boundaries depend only on K, so the result does not depend on the thread
// count or on which thread ran which chunk. The product is computed as C or as Cᵀ = op(B)ᵀ·op(A)ᵀ,
// with MR- or MR_S-row tiles, whichever pads least (C = 256×49 runs as Cᵀ = 49×256 in 7-row tiles).
constexpr int KSPLIT_MIN = 4096;   // K from which the split is considered
constexpr int KCHUNK = 1024;       // nominal chunk depth
constexpr int KC_SPLIT = 256;      // deepest packed depth within a chunk, in panel rows
// The packed depth within a chunk, in k values: both operands' panels (a few hundred KB) stay in L2.
template <class E>
inline int splitDepth(int rowsPad, int colsPad) {
  const int kc = (int)((256L << 10) / ((long)(rowsPad + colsPad) * sizeof(E)));
  return std::max(16, std::min(KC_SPLIT, kc / 8 * 8)) * kPer<E>;
}

inline bool useSplitK(int M, int N, int K) {
  return K >= KSPLIT_MIN && (long)M * N <= (1L << 20) &&
         ((long)M * N <= (64L << 10) || (long)ceilDiv(M, MR * 12) * ceilDiv(N, NC_SUB) < 8);
}

// Padded work of an R-row tiling of rows × cols.
inline long paddedWork(int rows, int cols, int R) {
  const int tail = cols % NR_G;
  const long paddedCols = (long)(cols / NR_G) * NR_G + (tail == 0 ? 0 : tail <= VL ? VL : NR_G);
  return (long)ceilDiv(rows, R) * R * paddedCols;
}

// P[rows×cols] (ld cols) = Σ_{k in chunk} a(i, k)·b(j, k), in R-row tiles.
template <int R, class E>
void chunkProduct(const Operand& a, const Operand& b, int rows, int cols, long k0, int kLen, float* P) {
  const int mp = ceilDiv(rows, R), nPanels = ceilDiv(cols, NR_G);
  const int depth = splitDepth<E>(mp * R, nPanels * NR_G), depthE = kElems<E>(depth);
  E* Ap = tlsA.get<E>((size_t)mp * R * depthE + (size_t)nPanels * NR_G * depthE);
  E* Bp = Ap + (size_t)mp * R * depthE;
  for (int kk = 0; kk < kLen; kk += depth) {
    const int kc = std::min(depth, kLen - kk), kcE = kElems<E>(kc);
    BroadcastPanels<R>::pack(Ap, kcE, a, 0, rows, k0 + kk, kc, kc);
    packColumnPanels(Bp, b, cols, k0 + kk, kc);
    // While this depth computes, fetch the next one's source rows (k-major operands: a few
    // contiguous rows; the packing would otherwise wait on memory for all of them).
    const int kn = std::min(depth, kLen - kk - kc);
    RowPrefetcher pfA, pfB;
    const long calls = (long)mp * nPanels;
    if (kn > 0 && a.kMajor) pfA.reset(at(a.p, (k0 + kk + kc) * a.ld), a.ld, kn, rows, calls);
    if (kn > 0 && b.kMajor) pfB.reset(at(b.p, (k0 + kk + kc) * b.ld), b.ld, kn, cols, calls);
    for (int p = 0; p < mp; p++)
      for (int jp = 0; jp < nPanels; jp++) {
        pfA.step();
        pfB.step();
        panelProduct<BroadcastPanels<R>>(kcE, Ap + (long)p * R * kcE, Bp + (long)jp * NR_G * kcE, cols, jp, P + (long)p * R * cols,
                                         cols, std::min(R, rows - p * R), kk > 0, 1.f);
      }
  }
}

thread_local GrowingBuffer tlsPartials;

template <class E>
void gemmSplitK(const Operand& a, const Operand& b, int M, int N, int K, float alpha, bool accumulate, float* C,
                int ldc, int threads) {
  // Orientation and tile height: the least padded of C or Cᵀ in MR- or MR_S-row tiles (short tiles
  // do a little less work per load, so they must save at least an eighth to be chosen).
  const bool transposed = std::min(paddedWork(N, M, MR), paddedWork(N, M, MR_S) * 9 / 8) <
                          std::min(paddedWork(M, N, MR), paddedWork(M, N, MR_S) * 9 / 8);
  const int rows = transposed ? N : M, cols = transposed ? M : N;
  const Operand& ra = transposed ? b : a;
  const Operand& rb = transposed ? a : b;
  const bool shortTiles = paddedWork(rows, cols, MR_S) * 9 / 8 < paddedWork(rows, cols, MR);

  const int nChunks = std::max(1, std::min(64, std::min(K / KCHUNK, (int)((8L << 20) / ((long)M * N)))));
  const int kLen = ((ceilDiv(K, nChunks) + 7) / 8) * 8;
  const int chunks = ceilDiv(K, kLen);
  const long size = (long)M * N;
  float* parts = tlsPartials.get((size_t)chunks * size);
  const int nt = std::max(1, std::min(threads, chunks));
#pragma omp parallel num_threads(nt)
  {
    tlsVector.resize(cols);
#pragma omp for schedule(dynamic, 1)
    for (int q = 0; q < chunks; q++) {
      const long k0 = (long)q * kLen;
      const int len = (int)std::min<long>(kLen, K - k0);
      if (shortTiles)
        chunkProduct<MR_S, E>(ra, rb, rows, cols, k0, len, parts + q * size);
      else
        chunkProduct<MR, E>(ra, rb, rows, cols, k0, len, parts + q * size);
    }
    // Sum the partials in chunk order, along their own rows (contiguous), then write C (or Cᵀ).
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
      float* sum = tlsVector.data();  // sized below, before the parallel region
      const float* p0 = parts + (long)r * cols;
      std::copy(p0, p0 + cols, sum);
      for (int q = 1; q < chunks; q++) {
        const float* pq = p0 + q * size;
        for (int j = 0; j < cols; j++) sum[j] += pq[j];
      }
      for (int j = 0; j < cols; j++) {
        float* c = transposed ? C + (long)j * ldc + r : C + (long)r * ldc + j;
        *c = alpha * sum[j] + (accumulate ? *c : 0.f);
      }
    }
  }
}

// One row or one column of output (M == 1 or N == 1): y[i] = alpha·Σ_k x[k]·m(i, k) (+ y[i]), with
// m an operand of n rows and x contiguous. Memory-bound, so no packing: when m's stored rows run
// along k each output is a dot product, otherwise the stored rows are scaled and added ("axpy").
// Either way each output sums its terms in one fixed order, whichever thread computes it.
void gemv(const float* mp, long mld, bool mKMajor, int n, int K, const float* x, float alpha, bool accumulate, float* y,
          long incy, int threads) {
  if (!mKMajor) {
    // Dot products, 4 rows at a time (rows past n repeat the last one, results dropped), each with
    // two vector accumulators over k and a scalar tail, summed in the same order for every row.
    constexpr int G = 4;
    const int groups = ceilDiv(n, G);
    const int nt = std::max(1, std::min(threads, groups / 16));
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int g = 0; g < groups; g++) {
      const float* r[G];
      for (int t = 0; t < G; t++) r[t] = mp + (long)std::min(g * G + t, n - 1) * mld;
      vf acc0[G], acc1[G];
      for (int t = 0; t < G; t++) acc0[t] = acc1[t] = vf{};
      int k = 0;
      for (; k + 2 * VL <= K; k += 2 * VL) {
        const vf x0 = loadu(x + k), x1 = loadu(x + k + VL);
        for (int t = 0; t < G; t++) {
          acc0[t] += loadu(r[t] + k) * x0;
          acc1[t] += loadu(r[t] + k + VL) * x1;
        }
      }
      for (int t = 0; t < G; t++) {
        const int i = g * G + t;
        if (i >= n) break;
        const vf v = acc0[t] + acc1[t];
        float s = 0.f;
        for (int l = 0; l < VL; l++) s += v[l];
        for (int kk = k; kk < K; kk++) s += r[t][kk] * x[kk];
        float* yi = y + (long)i * incy;
        *yi = alpha * s + (accumulate ? *yi : 0.f);
      }
    }
    return;
  }
  // y[0:n] = Σ_k x[k]·m.p[k*ld + 0:n]: each thread a contiguous range of outputs, in blocks of 8
  // vectors (8 independent accumulation chains), each summed over k in order.
  constexpr int BW = 8 * VL;
  const int blocks = ceilDiv(n, BW);
  const int nt = std::max(1, std::min(threads, blocks));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int q = 0; q < blocks; q++) {
    const int j0 = q * BW, w = std::min(BW, n - j0);
    float out[BW];
    if (w == BW) {
      vf acc[8];
      for (int v = 0; v < 8; v++) acc[v] = vf{};
      for (int k = 0; k < K; k++) {
        const float* row = mp + (long)k * mld + j0;
        const vf xk = bcast(x[k]);
        for (int v = 0; v < 8; v++) acc[v] += xk * loadu(row + v * VL);
      }
      for (int v = 0; v < 8; v++) storeu(out + v * VL, acc[v]);
    } else {
      std::fill(out, out + BW, 0.f);
      for (int k = 0; k < K; k++) {
        const float* row = mp + (long)k * mld + j0;
        for (int j = 0; j < w; j++) out[j] += x[k] * row[j];
      }
    }
    for (int j = 0; j < w; j++) {
      float* yj = y + (long)(j0 + j) * incy;
      *yj = alpha * out[j] + (accumulate ? *yj : 0.f);
    }
  }
}

// M == 1 or N == 1: the single row/column of the other side, made contiguous, then gemv.
void gemmVector(const Operand& a, const Operand& b, int M, int N, int K, float alpha, bool accumulate, float* C,
                int ldc, int threads) {
  const Operand& vec = N == 1 ? b : a;
  const Operand& mat = N == 1 ? a : b;
  std::vector<float>& x = tlsVector;
  x.resize(K);
  const float* v = vec.p.f32();
  for (long k = 0; k < K; k++) x[k] = vec.kMajor ? v[k * vec.ld] : v[k];
  if (N == 1)
    gemv(mat.p.f32(), mat.ld, mat.kMajor, M, K, x.data(), alpha, accumulate, C, ldc, threads);
  else
    gemv(mat.p.f32(), mat.ld, mat.kMajor, N, K, x.data(), alpha, accumulate, C, 1, threads);
}

template <class E, class P = BroadcastPanels<>>
void gemmT(const Operand& a, const Operand& b, int M, int N, int K, float alpha, bool accumulate, float* C, int ldc,
           int threads) {
  if (useSplitK(M, N, K))
    gemmSplitK<E>(a, b, M, N, K, alpha, accumulate, C, ldc, threads);
  else
    gemmBlocked<E, P>(a, b, M, N, K, alpha, accumulate, C, ldc, threads);
}

// C = 0·A·B (+ C): nothing to multiply.
bool gemmEmpty(int M, int N, int K, bool accumulate, float* C, int ldc) {
  if (M <= 0 || N <= 0) return true;
  if (K > 0) return false;
  if (!accumulate)
    for (int i = 0; i < M; i++) std::fill(C + (long)i * ldc, C + (long)i * ldc + N, 0.f);
  return true;
}

void gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          bool accumulate, float* C, int ldc, int threads) {
  if (gemmEmpty(M, N, K, accumulate, C, ldc)) return;
  const Operand a{A, lda, ta == Trans::Yes};     // op(A) as M×K
  const Operand b{B, ldb, tb == Trans::No};      // op(B)ᵀ as N×K
  if (N == 1 || M == 1)
    gemmVector(a, b, M, N, K, alpha, accumulate, C, ldc, threads);
  else
    gemmT<float>(a, b, M, N, K, alpha, accumulate, C, ldc, threads);
}

// ---------------------------------------------------------------------------------------------
// Pixelfly forward / dX: C[M × nOuter*b] (=|+=) A[M × K] · (block lists)
//   outer block o (a block-row of W for the forward, a block-column for dX) lists segments
//   s in [segPtr[o], segPtr[o+1]); segment s reads A's columns [segCol[s]*b, +b) and the packed
//   block Bp[jt][s] ([b][NR], b/2 rows of pairs for bf16).
// ---------------------------------------------------------------------------------------------
template <int NVV, class E, class P, class TC>
void blockRowsProduct(int M, const Src& A, long lda, int aCols, int aBlocks, int b, int nOuter, const int* segPtr,
                      const int* segCol, int nseg, const E* Bp, TC* C, long ldc, int cCols, const float* bias,
                      bool accumulate, int threads, int budgetKB, bool prefetchNext) {
  constexpr int NR = NVV * VL, R = P::R;
  const int jtN = b / NR;
  const int bE = b / kPer<E>;  // packed rows per block
  const int kPad = aBlocks * b, depth = P::depth(aBlocks * bE);
  // MC: rows per work item; the packed A block (MC × kPad, budgetKB) stays in cache while every
  // outer block streams its weights through it.
  int panels = (int)((budgetKB * 1024L) / ((long)depth * R * sizeof(E)));
  panels = std::max(1, std::min(panels, 16 * MR / R));
  const int MC = panels * R;
  const int items = ceilDiv(M, MC);
  const int nt = std::max(1, std::min(threads, items));

  // An output bigger than the caches, written once (no accumulate): non-temporal stores skip the
  // read-for-ownership of every line, a third of the forward's memory traffic at density 1/8.
  const bool stream = !accumulate && reinterpret_cast<uintptr_t>(C) % (VL * sizeof(TC)) == 0 && ldc % VL == 0 &&
                      (long)M * ldc * (long)sizeof(TC) >= (8L << 20);
  // Offsets of each segment's panel slice (independent of the row panel).
  std::vector<int>& aoff = tlsOffsets;
  aoff.resize(std::max(nseg, 1));
  for (int s = 0; s < nseg; s++) aoff[s] = P::offsetOfK(segCol[s] * bE);

#pragma omp parallel num_threads(nt)
  {
    E* Ap = tlsA.get<E>((size_t)panels * R * depth);
    P::begin(std::min(bE, 16));
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < items; item++) {
      const int i0 = item * MC, mc = std::min(MC, M - i0);
      const int mp = ceilDiv(mc, R);
      P::pack(Ap, depth, Operand{A, lda, false}, i0, mc, 0, kPad, aCols);
      // The item a thread most likely takes next is `nt` items on (dynamic schedule, equal items).
      const int nextI0 = (item + nt) * MC;
      RowPrefetcher pf;
      if (prefetchNext && nextI0 < M)
        pf.reset(at(A, (long)nextI0 * lda), lda, std::min(MC, M - nextI0), aCols, (long)nOuter * jtN * mp);
      for (int o = 0; o < nOuter; o++) {
        const int s0 = segPtr[o], ns = segPtr[o + 1] - s0;
        for (int jt = 0; jt < jtN; jt++) {
          const int c0 = o * b + jt * NR;
          if (c0 >= cCols) break;
          const int cols = std::min(NR, cCols - c0);
          const E* bp = Bp + ((long)jt * nseg + s0) * bE * NR;
          const float* bb = bias ? bias + c0 : nullptr;
          for (int p = 0; p < mp; p++) {
            const int r0 = i0 + p * R;
            TC* c = C + (long)r0 * ldc + c0;
            if (ns == 0) {
              // An empty block-row/column still defines its outputs: bias (or 0), or unchanged.
              if (!accumulate || bb) {
                for (int i = 0; i < std::min(R, M - r0); i++)
                  for (int j = 0; j < cols; j++) putValue(c + i * ldc + j, bb ? bb[j] : 0.f, accumulate);
              }
              continue;
            }
            pf.step();
            Epilogue ep;
            ep.accumulate = accumulate;
            ep.bias = bb;
            ep.stream = stream;
            P::template product<NVV>(ns, bE, Ap + (long)p * R * depth, depth, aoff.data() + s0, bp, NR, c, ldc,
                                     std::min(R, M - r0), cols, ep);
          }
        }
      }
    }
    P::end();
    if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: each thread publishes its own
  }
}

template <int NVV, class E, class P, class TC>
void bsrForwardT(const BsrWeight& w, int M, const Src& X, int ldx, const float* bias, TC* Y, int ldy,
                 bool accumulate, int threads) {
  constexpr int NR = NVV * VL;
  const BsrLayout& L = w.layout;
  const int b = L.block, jtN = b / NR, bE = b / kPer<E>;
  // Bp[jt][k][j][jj] = W_k[jt*NR + jj][j]: block k transposed, so a row of it is NR outputs.
  E* Bp = tlsB.get<E>((size_t)std::max(L.nnz, 1) * bE * b);
  const int nt = std::max(1, std::min(threads, L.nnz));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int k = 0; k < L.nnz; k++)
    for (int jt = 0; jt < jtN; jt++)
      packTransE(Bp + ((long)jt * L.nnz + k) * bE * NR, at(w.blocks, (long)k * b * b + (long)jt * NR * b), b, b, b, NR, NR);
  blockRowsProduct<NVV, E, P, TC>(M, X, ldx, w.in, L.blockCols, b, L.blockRows, L.rowPtr, L.colIdx, L.nnz, Bp, Y, ldy, w.out,
                        bias, accumulate, threads, kForwardBlockKB, true);
}

template <int NVV, class E, class P, class TC>
void bsrBackwardDataT(const BsrWeight& w, int M, const Src& dY, int lddy, TC* dX, int lddx, bool accumulate,
                      int threads) {
  constexpr int NR = NVV * VL;
  const BsrLayout& L = w.layout;
  const int b = L.block, jtN = b / NR, bE = b / kPer<E>;
  // Bp[jt][t][i][jj] = W_{tBlock[t]}[i][jt*NR + jj]: blocks in column order, natural orientation.
  E* Bp = tlsB.get<E>((size_t)std::max(L.nnz, 1) * bE * b);
  const int nt = std::max(1, std::min(threads, L.nnz));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int t = 0; t < L.nnz; t++)
    for (int jt = 0; jt < jtN; jt++)
      packCopyE<NR>(Bp + ((long)jt * L.nnz + t) * bE * NR, at(w.blocks, (long)L.tBlock[t] * b * b + jt * NR), b, b, b, NR);
  blockRowsProduct<NVV, E, P, TC>(M, dY, lddy, w.out, L.blockRows, b, L.blockCols, L.colPtr, L.rowIdx, L.nnz, Bp, dX, lddx, w.in,
                        nullptr, accumulate, threads, kBackwardDataBlockKB, false);
}

// Copies rows [0, kc) of the block-columns `cols` of src (row-major, ld) into tiles
// dst[t][m][b] (tile t for cols[t] - first): row by row, so the source streams like a plain copy.
// Columns at or past `valid` are zero.
inline void packBlockTiles(float* dst, long tileStride, const Src& srcOp, long ld, int kc, const int* cols, int nCols,
                           int first, int b, int valid) {
  const float* src = srcOp.f32();
  for (int m = 0; m < kc; m++) {
    const float* row = src + m * ld;
    for (int t = 0; t < nCols; t++) {
      const int c = cols[t];
      float* d = dst + (long)(c - first) * tileStride + (long)m * b;
      const int n = std::min(b, valid - c * b);
      if (n == b) {
        // b is a multiple of VL: inline vector moves (a libc memcpy call per 128-byte piece costs
        // as much as the copy itself).
        const float* s = row + (long)c * b;
        for (int j = 0; j < b; j += VL) storeu(d + j, loadu(s + j));
      } else {
        for (int j = 0; j < b; j++) d[j] = j < n ? row[(long)c * b + j] : 0.f;
      }
    }
  }
}

#if HAS_BF16
// The same as pairs: dst[t][m2][b] = {row 2·m2, row 2·m2 + 1} of each block-column.
template <class S>
inline void packBlockTilesPairs(Bf16Pair* dst, long tileStride, const S* src, long ld, int kc, const int* cols,
                                int nCols, int first, int b, int valid) {
  const int kc2 = kElems<Bf16Pair>(kc);
  for (int m2 = 0; m2 < kc2; m2++) {
    const S* r0 = src + 2L * m2 * ld;
    const S* r1 = 2 * m2 + 1 < kc ? r0 + ld : nullptr;
    for (int t = 0; t < nCols; t++) {
      const int c = cols[t];
      Bf16Pair* d = dst + (long)(c - first) * tileStride + (long)m2 * b;
      const int n = std::max(0, std::min(b, valid - c * b));
      if (r1 && n == b) {  // the common case inline: b is a multiple of 16
        for (int j = 0; j < b; j += 16) _mm512_storeu_si512(d + j, pairs16(r0 + (long)c * b + j, r1 + (long)c * b + j));
        continue;
      }
      interleaveRows(d, r0 + (long)c * b, r1 ? r1 + (long)c * b : nullptr, n);
      for (int j = n; j < b; j++) d[j] = {0};
    }
  }
}
inline void packBlockTiles(Bf16Pair* dst, long tileStride, const Src& src, long ld, int kc, const int* cols, int nCols,
                           int first, int b, int valid) {
  if (src.type == DType::BF16) packBlockTilesPairs(dst, tileStride, src.b16(), ld, kc, cols, nCols, first, b, valid);
  else packBlockTilesPairs(dst, tileStride, src.f32(), ld, kc, cols, nCols, first, b, valid);
}
#endif

// How dW multiplies a block-row's dY strip by a block-column's X tile, over kcE packed rows:
//  - BroadcastDw: the strip as packed ([k][b], like X's tiles), RW×NR microkernel tiles;
//  - AmxDw (ISA 4): the strip transposed into row-major pairs [b][depth] (A tiles), X's tiles as B
//    tiles, each 32×32 quadrant of the dW block accumulated in four C tiles loaded from and stored
//    to dW itself; depth in whole 16-pair tile steps (zero rows past the chunk).
template <int RW, int NVV>
struct BroadcastDw {
  static constexpr int NR = NVV * VL;
  static int depth(int kcE) { return kcE; }
  static long stripSize(int b, int kcwE) { return (long)kcwE * b; }
  static int callsPerBlock(int b) { return (b / RW) * (b / NR); }
  static void begin() {}
  static void end() {}
  template <class E>
  static void packStrip(E* Dc, const Src& dY, long lddy, int kc, int r, int b, int valid, int /*depthE*/) {
    packBlockTiles(Dc, 0, dY, lddy, kc, &r, 1, r, b, valid);
  }
  template <class E>
  static void block(const E* dt, const E* xt, float* dWk, int b, int kcE, int /*depthE*/, bool accumulate,
                    RowPrefetcher& pfD, RowPrefetcher& pfX) {
    Epilogue ep;
    ep.accumulate = accumulate;
    for (int it = 0; it < b / RW; it++)
      for (int jt = 0; jt < b / NR; jt++) {
        pfD.step();
        pfX.step();
        micro<RW, NVV>(1, kcE, dt + it * RW, b, nullptr, xt + jt * NR, b, dWk + (long)it * RW * b + jt * NR, b, RW, NR, ep);
      }
  }
};

#if PIXELFLY_ISA == 4
struct AmxDw {
  static int depth(int kcE) { return AmxPanels::depth(kcE); }
  static long stripSize(int b, int kcwE) { return (long)std::max(b, 32) * depth(kcwE); }
  static int callsPerBlock(int) { return 1; }
  static void begin() { AmxPanels::begin(AmxPanels::KT); }
  static void end() { AmxPanels::end(); }
  static void packStrip(Bf16Pair* Dc, const Src& dY, long lddy, int kc, int r, int b, int valid, int depthE) {
    for (int i0 = 0; i0 < b; i0 += 32) {
      const Src s = at(dY, (long)r * b + i0);
      const int rows = std::max(0, std::min(32, valid - r * b - i0));
      if (s.type == DType::BF16) transposedPairs(Dc + (long)i0 * depthE, depthE, s.b16(), lddy, rows, kc);
      else transposedPairs(Dc + (long)i0 * depthE, depthE, s.f32(), lddy, rows, kc);
    }
  }
  static void block(const Bf16Pair* dt, const Bf16Pair* xt, float* dWk, int b, int /*kcE*/, int depthE, bool accumulate,
                    RowPrefetcher& pfD, RowPrefetcher& pfX) {
    pfD.step();
    pfX.step();
    const long aStride = (long)depthE * sizeof(Bf16Pair), bStride = (long)b * sizeof(Bf16Pair), cStride = (long)b * sizeof(float);
    const bool two = b >= 32;  // 2×2 tiles per quadrant (block 16: one tile)
    for (int qi = 0; qi < b; qi += 32)
      for (int qj = 0; qj < b; qj += 32) {
        float* c = dWk + (long)qi * b + qj;
        if (accumulate) {
          amx::load<0>(c, cStride);
          if (two) {
            amx::load<1>(c + 16, cStride);
            amx::load<2>(c + 16L * b, cStride);
            amx::load<3>(c + 16L * b + 16, cStride);
          }
        } else {
          amx::zero<0>();
          if (two) {
            amx::zero<1>();
            amx::zero<2>();
            amx::zero<3>();
          }
        }
        const Bf16Pair* a = dt + (long)qi * depthE;
        for (int kk = 0; kk < depthE; kk += AmxPanels::KT) {
          amx::load<4>(a + kk, aStride);
          amx::load<6>(xt + (long)kk * b + qj, bStride);
          amx::dpbf16<0, 4, 6>();
          if (two) {
            amx::load<5>(a + 16L * depthE + kk, aStride);
            amx::load<7>(xt + (long)kk * b + qj + 16, bStride);
            amx::dpbf16<1, 4, 7>();
            amx::dpbf16<2, 5, 6>();
            amx::dpbf16<3, 5, 7>();
          }
        }
        amx::store<0>(c, cStride);
        if (two) {
          amx::store<1>(c + 16, cStride);
          amx::store<2>(c + 16L * b, cStride);
          amx::store<3>(c + 16L * b + 16, cStride);
        }
      }
  }
};
#endif

// db[0:n] (=|+=) Σ_{m < kc} src[m][0:n]: the bias gradient of one block-row's columns over one chunk
// of rows, summed in row order in fp32 (the same order for any thread count). dW has just read
// these rows into its strip, so they come from cache: the separate pass over all of dY it replaces
// costs as much as a third of dW at density 1/8.
inline float valueOf(float x) { return x; }
inline float valueOf(bf16 x) { return bf16ToFloat(x); }
template <class S>
inline void stripColumnSums(const S* src, long ld, int kc, int n, float* db, bool accumulate) {
  float s[64];  // n <= block <= 64
  for (int j = 0; j < n; j++) s[j] = accumulate ? db[j] : 0.f;
  for (int m = 0; m < kc; m++) {
    const S* row = src + m * ld;
    for (int j = 0; j < n; j++) s[j] += valueOf(row[j]);
  }
  for (int j = 0; j < n; j++) db[j] = s[j];
}
inline void stripColumnSums(const Src& src, long ld, int kc, int n, float* db, bool accumulate) {
  if (src.type == DType::BF16) stripColumnSums(src.b16(), ld, kc, n, db, accumulate);
  else stripColumnSums(src.f32(), ld, kc, n, db, accumulate);
}

// dW_k = Σ_m dY[m, r-block]ᵀ ⊗ X[m, c-block] for each kept block k = (r, c).
// Each thread owns a contiguous range of kept blocks (no two threads write the same dW block) and
// walks the rows in chunks of KCW. Per chunk it copies, row by row, the block-columns of X its
// blocks use into tiles Xc[c][m][b] (zero past `in`; they stay in L2 and every kept block of the
// column reuses them). dY is copied one block-row strip at a time (kc × b floats, zero past
// `out`), just before that row's blocks use it, into one small contiguous tile: rows of dY are
// 12-16 KB apart, so uncopied strips fall into a handful of cache sets and thrash, and copying all
// block-rows of a chunk at once (the earlier scheme) pushed X's tiles and dW out of L2. While a
// block-row computes, the next one's strip is prefetched, and the next chunk of X over the whole
// chunk, a few lines per microkernel call, so the copies rarely wait on memory. The chunk
// boundaries do not depend on the thread count, so neither does the summation order. The threads
// never wait for each other (no barrier per chunk), so a thread the OS preempts delays only its
// own blocks. bf16 chunks are KCW pairs of rows (the same tile bytes).
// With dBias, it also sums dY's columns into the bias gradient (every block-row must hold a kept
// block; dispatch.cc checks): each block-row's sums belong to the thread holding its first block.
template <class E, class DP>
void bsrBackwardWeightT(const BsrWeight& w, int M, const Src& dY, int lddy, const Src& X, int ldx, float* dW,
                        float* dBias, bool accumulate, int threads) {
  constexpr int KCW = 64;                    // packed rows per chunk
  constexpr int KCW_K = KCW * kPer<E>;       // M rows per chunk
  const BsrLayout& L = w.layout;
  const int b = L.block;
  const long bb = (long)b * b;
  if (L.nnz == 0) return;
  if (M <= 0) {
    if (!accumulate) std::fill(dW, dW + L.nnz * bb, 0.f);
    if (!accumulate && dBias) std::fill(dBias, dBias + w.out, 0.f);
    return;
  }
  const int depthMax = DP::depth(KCW);
  const long tile = (long)depthMax * b, strip = DP::stripSize(b, KCW);
  const int nt = std::max(1, std::min(threads, L.nnz));
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), T = omp_get_num_threads();
    const int k0 = (int)((long)L.nnz * tid / T), k1 = (int)((long)L.nnz * (tid + 1) / T);
    if (k0 < k1) {
      DP::begin();
      const int rFirst = (int)(std::upper_bound(L.rowPtr, L.rowPtr + L.blockRows + 1, k0) - L.rowPtr) - 1;
      const int rLast = (int)(std::upper_bound(L.rowPtr, L.rowPtr + L.blockRows + 1, k1 - 1) - L.rowPtr) - 1;
      std::vector<int> cols;
      std::vector<char> used(L.blockCols, 0);
      for (int k = k0; k < k1; k++) used[L.colIdx[k]] = 1;
      for (int c = 0; c < L.blockCols; c++)
        if (used[c]) cols.push_back(c);
      E* Dc = tlsA.get<E>((size_t)(strip + tile * L.blockCols));  // one dY strip, then X's tiles
      E* Xc = Dc + strip;
      const long callsPerRowBlock = DP::callsPerBlock(b);
      for (int m0 = 0; m0 < M; m0 += KCW_K) {
        const int kc = std::min(KCW_K, M - m0), kcE = kElems<E>(kc), depth = DP::depth(kcE);
        packBlockTiles(Xc, tile, at(X, (long)m0 * ldx), ldx, kc, cols.data(), (int)cols.size(), 0, b, w.in);
        if (depth > kcE)  // whole tile steps: zero rows past the chunk
          for (int c : cols) std::memset(Xc + c * tile + (long)kcE * b, 0, (size_t)(depth - kcE) * b * sizeof(E));
        const bool acc = accumulate || m0 > 0;
        RowPrefetcher pfX;
        if (m0 + KCW_K < M) {
          const int x0 = cols.front() * b, x1 = std::min((cols.back() + 1) * b, w.in);
          pfX.reset(at(X, (long)(m0 + KCW_K) * ldx + x0), ldx, std::min(KCW_K, M - m0 - KCW_K), x1 - x0,
                    (long)(k1 - k0) * callsPerRowBlock);
        }
        for (int r = rFirst; r <= rLast; r++) {
          const int kb = std::max(k0, L.rowPtr[r]), ke = std::min(k1, L.rowPtr[r + 1]);
          if (kb >= ke) continue;
          // Next strip: the next block-row of this chunk, else the first one of the next chunk.
          RowPrefetcher pfD;
          const int nr = r < rLast ? r + 1 : rFirst;
          const int nm0 = r < rLast ? m0 : m0 + KCW_K;
          if (nm0 < M && nr * b < w.out)
            pfD.reset(at(dY, (long)nm0 * lddy + (long)nr * b), lddy, std::min(KCW_K, M - nm0), std::min(b, w.out - nr * b),
                      (long)(ke - kb) * callsPerRowBlock);
          DP::packStrip(Dc, at(dY, (long)m0 * lddy), lddy, kc, r, b, w.out, depth);
          if (dBias && kb == L.rowPtr[r] && r * b < w.out)
            stripColumnSums(at(dY, (long)m0 * lddy + (long)r * b), lddy, kc, std::min(b, w.out - r * b), dBias + r * b,
                            acc);
          for (int k = kb; k < ke; k++)
            DP::block(Dc, Xc + L.colIdx[k] * tile, dW + k * bb, b, kcE, depth, acc, pfD, pfX);
        }
      }
      DP::end();
    }
  }
}

// Block 16 on AVX-512 is one vector wide; otherwise tiles are NV vectors.
constexpr bool kNarrowBlocks16 = (NV * VL > 16);

template <class E, class P = BroadcastPanels<>, class TC = float>
void bsrForwardE(const BsrWeight& w, int M, const Src& X, int ldx, const float* bias, TC* Y, int ldy,
                 bool accumulate, int threads) {
  if (kNarrowBlocks16 && w.layout.block == 16)
    bsrForwardT<1, E, P>(w, M, X, ldx, bias, Y, ldy, accumulate, threads);
  else
    bsrForwardT<NV, E, P>(w, M, X, ldx, bias, Y, ldy, accumulate, threads);
}

template <class E, class P = BroadcastPanels<>, class TC = float>
void bsrBackwardDataE(const BsrWeight& w, int M, const Src& dY, int lddy, TC* dX, int lddx, bool accumulate,
                      int threads) {
  if (kNarrowBlocks16 && w.layout.block == 16)
    bsrBackwardDataT<1, E, P>(w, M, dY, lddy, dX, lddx, accumulate, threads);
  else
    bsrBackwardDataT<NV, E, P>(w, M, dY, lddy, dX, lddx, accumulate, threads);
}

template <class E>
void bsrBackwardWeightE(const BsrWeight& w, int M, const Src& dY, int lddy, const Src& X, int ldx, float* dW,
                        float* dBias, bool accumulate, int threads) {
  if (kNarrowBlocks16 && w.layout.block == 16)
    bsrBackwardWeightT<E, BroadcastDw<16, 1>>(w, M, dY, lddy, X, ldx, dW, dBias, accumulate, threads);
  else
    bsrBackwardWeightT<E, BroadcastDw<MR_DW, NV>>(w, M, dY, lddy, X, ldx, dW, dBias, accumulate, threads);
}

// ---- the table's fp32 entries
void bsrForward(const BsrWeight& w, int M, const float* X, int ldx, const float* bias, float* Y, int ldy,
                bool accumulate, int threads) {
  bsrForwardE<float>(w, M, X, ldx, bias, Y, ldy, accumulate, threads);
}
void bsrBackwardData(const BsrWeight& w, int M, const float* dY, int lddy, float* dX, int lddx, bool accumulate,
                     int threads) {
  bsrBackwardDataE<float>(w, M, dY, lddy, dX, lddx, accumulate, threads);
}
void bsrBackwardWeight(const BsrWeight& w, int M, const float* dY, int lddy, const float* X, int ldx, float* dW,
                       float* dBias, bool accumulate, int threads) {
  bsrBackwardWeightE<float>(w, M, dY, lddy, X, ldx, dW, dBias, accumulate, threads);
}

// ---- conversions (single-threaded ranges; dispatch.cc splits long arrays over threads)
void toBf16(const float* src, bf16* dst, size_t n) {
  size_t i = 0;
#if HAS_BF16
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i*)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
#endif
  for (; i < n; i++) dst[i] = roundToBf16(src[i]);
}
void toF32(const bf16* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bf16ToFloat(src[i]);
}

#if HAS_BF16
// ---- the table's bf16 entries (the forward and dX write fp32 or bf16 outputs, the others fp32;
// dispatch.cc computes their bf16 outputs in fp32 and rounds them). On AMX the Pixelfly products
// and the blocked dense GEMM run on tiles; the split-K GEMM (long K, small C) keeps vdpbf16ps.
#if PIXELFLY_ISA == 4
using Bf16Panels = AmxPanels;
#else
using Bf16Panels = BroadcastPanels<>;
#endif

void bsrForwardBf16(const BsrWeight& w, int M, Src X, int ldx, const float* bias, Dst Y, int ldy, bool accumulate,
                    int threads) {
  if (Y.type == DType::BF16) bsrForwardE<Bf16Pair, Bf16Panels>(w, M, X, ldx, bias, Y.b16(), ldy, accumulate, threads);
  else bsrForwardE<Bf16Pair, Bf16Panels>(w, M, X, ldx, bias, Y.f32(), ldy, accumulate, threads);
}
void bsrBackwardDataBf16(const BsrWeight& w, int M, Src dY, int lddy, Dst dX, int lddx, bool accumulate,
                         int threads) {
  if (dX.type == DType::BF16) bsrBackwardDataE<Bf16Pair, Bf16Panels>(w, M, dY, lddy, dX.b16(), lddx, accumulate, threads);
  else bsrBackwardDataE<Bf16Pair, Bf16Panels>(w, M, dY, lddy, dX.f32(), lddx, accumulate, threads);
}
void bsrBackwardWeightBf16(const BsrWeight& w, int M, Src dY, int lddy, Src X, int ldx, float* dW, float* dBias,
                           bool accumulate, int threads) {
#if PIXELFLY_ISA == 4
  bsrBackwardWeightT<Bf16Pair, AmxDw>(w, M, dY, lddy, X, ldx, dW, dBias, accumulate, threads);
#else
  bsrBackwardWeightE<Bf16Pair>(w, M, dY, lddy, X, ldx, dW, dBias, accumulate, threads);
#endif
}

void gemmBf16(Trans ta, Trans tb, int M, int N, int K, float alpha, Src A, int lda, Src B, int ldb, bool accumulate,
              float* C, int ldc, int threads) {
  if (gemmEmpty(M, N, K, accumulate, C, ldc)) return;
  gemmT<Bf16Pair, Bf16Panels>({A, lda, ta == Trans::Yes}, {B, ldb, tb == Trans::No}, M, N, K, alpha, accumulate, C, ldc,
                              threads);
}
#endif

}  // namespace
}  // namespace ISA_NS

extern const KernelTable ISA_TABLE = {
    ISA_NS::bsrForward,
    ISA_NS::bsrBackwardData,
    ISA_NS::bsrBackwardWeight,
    ISA_NS::gemm,
#if HAS_BF16
    ISA_NS::bsrForwardBf16,
    ISA_NS::bsrBackwardDataBf16,
    ISA_NS::bsrBackwardWeightBf16,
    ISA_NS::gemmBf16,
#else
    nullptr,
    nullptr,
    nullptr,
    nullptr,
#endif
    ISA_NS::toBf16,
    ISA_NS::toF32,
};

}  // namespace kernels
}  // namespace pixelfly
