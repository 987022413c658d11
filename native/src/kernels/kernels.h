// Pixelfly CPU kernels: the C++ interface the training engine calls directly (from its own worker
// thread), that the JS binding wraps and that the PyTorch extension compiles. All functions are
// synchronous and thread-safe to call from any thread; they parallelise internally over `threads()`
// workers.
//
// Conventions (shared with core/blockIndex.ts):
//  - Matrices are row-major with an explicit leading dimension (ld >= columns), so callers can pass
//    slices of bigger buffers without copying. Elements are fp32 or bf16 (see Src / Dst below).
//  - A Pixelfly weight W is logically out×in (rows = output features). It is stored as packed blocks
//    [nnz][block][block] in the core's row-major BSR order: block k lies in block-row r with
//    rowPtr[r] <= k < rowPtr[r+1], block-column colIdx[k]; element (i, j) of block k is
//    W[r*block + i][colIdx[k]*block + j]. The padded weight is (blockRows*block)×(blockCols*block).
//  - PADDING IS INTERNAL: activations are UNPADDED (X is M×in, Y is M×out). Padded rows/columns of W
//    behave as if the activations were zero there: the forward ignores them, dX never writes past
//    `in`, and dW at padded positions is exactly 0.
//  - `accumulate == false` overwrites the output, `true` adds to it (so a layer can sum dX from its
//    sparse, low-rank and gate branches without a temporary).
//  - Functions throw std::invalid_argument (with a message naming the argument) on bad shapes; the
//    index arrays themselves are only checked by validateLayout(), which callers run once when a
//    layout is built or loaded (the per-step kernels trust them).
//
// Precision. A product is an fp32 product (fp32 inputs, fp32 accumulation) or a bf16 product: every
// input rounded to bf16 (round to nearest even), products and sums in fp32 — what a bf16 training
// step needs (torch.autocast's bf16 matmuls compute the same). A product is bf16 when its
// `Precision` says BF16 or when any of its inputs is stored as bf16 (fp32 inputs of such a product
// are rounded too). So callers holding fp32 master weights only change the enum, and callers holding
// bf16 tensors (PyTorch's bf16 models) pass them as they are. Outputs are fp32 or bf16 as the caller
// stores them; accumulation is fp32 in either case (a bf16 output is rounded once, when written;
// with `accumulate` the old value is widened, added, and the sum rounded).
// Which instructions compute bf16 products: AMX tiles where the CPU has amx_bf16 and the kernel
// grants the process its tile state, else AVX512-BF16 (vdpbf16ps), else the fp32 kernels on
// operands converted to (bf16-rounded) fp32 — the same numbers up to summation order. info().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pixelfly {
namespace kernels {

// ---------------------------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------------------------

// A bfloat16 value: the upper 16 bits of an fp32 (sign, 8 exponent bits, 7 mantissa bits), stored
// as a uint16_t: the layout of at::BFloat16, __bf16 and ml_dtypes.bfloat16, so a PyTorch tensor's
// data passes as reinterpret_cast<const bf16*>(t.data_ptr<at::BFloat16>()).
using bf16 = uint16_t;

enum class DType : int { F32 = 0, BF16 = 1 };

// An input operand: its data and element type, taken from the pointer's type (a const float* or
// const bf16* converts implicitly, so calls read like plain pointer arguments).
struct Src {
  const void* data = nullptr;
  DType type = DType::F32;
  Src() = default;
  Src(std::nullptr_t) {}
  Src(const float* p) : data(p), type(DType::F32) {}
  Src(const bf16* p) : data(p), type(DType::BF16) {}
  const float* f32() const { return static_cast<const float*>(data); }
  const bf16* b16() const { return static_cast<const bf16*>(data); }
};

// An output operand, likewise.
struct Dst {
  void* data = nullptr;
  DType type = DType::F32;
  Dst() = default;
  Dst(std::nullptr_t) {}
  Dst(float* p) : data(p), type(DType::F32) {}
  Dst(bf16* p) : data(p), type(DType::BF16) {}
  float* f32() const { return static_cast<float*>(data); }
  bf16* b16() const { return static_cast<bf16*>(data); }
};

// fp32 → bf16, round to nearest even, as VCVTNEPS2BF16 (NaNs stay NaN, denormals flush to ±0), and
// bf16 → fp32 (exact). Parallel over `threads()` for long arrays.
void toBf16(const float* src, bf16* dst, size_t n);
void toF32(const bf16* src, float* dst, size_t n);
// One value (the reference the vector paths equal bit for bit).
inline bf16 roundToBf16(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0) return (bf16)((u >> 16) & 0x8000u);                 // ±0 and denormals
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x0040u);         // NaN: quiet
  return (bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);                           // nearest even
}
inline float bf16ToFloat(bf16 h) {
  const uint32_t u = (uint32_t)h << 16;
  float x;
  __builtin_memcpy(&x, &u, 4);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Dispatch and threading
// ---------------------------------------------------------------------------------------------

// Instruction-set paths, best last. Portable is plain C++ (GCC vector extensions lowered to the
// baseline ISA), AVX2 needs avx2+fma, AVX-512 needs avx512f/vl/bw/dq. The last two add bf16
// products to the AVX-512 path (whose fp32 products they share): Avx512Bf16 with vdpbf16ps
// (avx512_bf16), Amx with tiles (amx_tile + amx_bf16, and the kernel's permission to use them).
// On the first three, bf16 products convert their operands and run the fp32 kernels.
enum class Isa : int { Portable = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3, Amx = 4 };

const char* isaName(Isa isa);               // "portable" | "avx2" | "avx512" | "avx512bf16" | "amx"
bool parseIsa(const std::string& name, Isa* out);
bool isaSupported(Isa isa);                 // by this CPU (and its kernel, for AMX)
Isa bestIsa();                              // chosen at load
Isa activeIsa();
// Forces a path (tests, benchmarks). Throws std::invalid_argument if this CPU lacks it.
void forceIsa(Isa isa);
// How the active path computes bf16 products: "amx" | "avx512bf16" | "fp32-fallback".
const char* bf16Path();
// Why AMX is not usable here ("" when it is): no amx_bf16 in cpuid, no OS tile state, or the
// kernel refused arch_prctl(ARCH_REQ_XCOMP_PERM).
std::string amxUnavailableReason();

// Worker threads used inside each kernel call (default: hardware concurrency). n >= 1.
void setThreads(int n);
int threads();
int maxThreads();                           // hardware concurrency

enum class Precision : int {
  F32 = 0,   // fp32 products, fp32 accumulation (bf16 inputs still make a bf16 product)
  BF16 = 1,  // inputs rounded to bf16, fp32 accumulation
};

// ---------------------------------------------------------------------------------------------
// Block-sparse (Pixelfly) weights
// ---------------------------------------------------------------------------------------------

// The block index built by core/blockIndex.ts (the arrays are borrowed, not owned).
struct BsrLayout {
  int block = 0;            // 16, 32 or 64
  int blockRows = 0;        // outPadded / block
  int blockCols = 0;        // inPadded / block
  int nnz = 0;              // kept blocks
  const int32_t* rowPtr = nullptr;  // [blockRows + 1]
  const int32_t* colIdx = nullptr;  // [nnz]
  const int32_t* colPtr = nullptr;  // [blockCols + 1]
  const int32_t* rowIdx = nullptr;  // [nnz]
  const int32_t* tBlock = nullptr;  // [nnz]
};

// A block-sparse weight W (out×in) with its layout.
struct BsrWeight {
  BsrLayout layout;
  int out = 0;                     // logical sizes: (blockRows-1)*block < out <= blockRows*block
  int in = 0;
  Src blocks;                      // [nnz][block][block], fp32 or bf16
  Precision precision = Precision::F32;
};

// Full consistency check of a layout and the sizes of `w` (block size, ranges, ascending columns,
// transposed view matching the row view). Returns "" when valid, else a message naming the field.
std::string validateLayout(const BsrLayout& layout);
std::string validateWeightShape(const BsrLayout& layout, int out, int in);

// Y[M×out] (=|+=) X[M×in] · Wᵀ (+ bias[out] if bias != nullptr).
void bsrForward(const BsrWeight& w, int M, Src X, int ldx, const float* bias, Dst Y, int ldy, bool accumulate);

// dX[M×in] (=|+=) dY[M×out] · W.
void bsrBackwardData(const BsrWeight& w, int M, Src dY, int lddy, Dst dX, int lddx, bool accumulate);

// dW[nnz][block][block] (=|+=) (dYᵀ · X) restricted to the kept blocks of w.layout (w.blocks is not
// read). Entries of padded rows/columns are 0 (or unchanged when accumulating). A bf16 dW is
// accumulated in fp32 over all M rows and rounded once.
// With dBias, also dBias[out] (=|+=) the column sums of dY (biasGrad's result up to summation order,
// fp32 sums of dY as stored): a layer's bias gradient read while dW reads dY anyway, instead of
// another pass over the M×out gradient.
void bsrBackwardWeight(const BsrWeight& w, int M, Src dY, int lddy, Src X, int ldx, Dst dW, bool accumulate,
                       float* dBias = nullptr);

// ---------------------------------------------------------------------------------------------
// Dense products (dense layers, low-rank factors, the gate)
// ---------------------------------------------------------------------------------------------

enum class Trans : int { No = 0, Yes = 1 };

// C[M×N] = alpha · op(A) · op(B) + beta · C, row-major; op(A) is M×K, op(B) is K×N.
// beta == 0 never reads C (it may hold NaNs).
void gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, Src A, int lda, Src B, int ldb, float beta, Dst C,
          int ldc, Precision precision = Precision::F32);

// Linear layer helpers, W is out×in (PyTorch's nn.Linear layout):
// Y[M×out] (=|+=) X[M×in] · Wᵀ (+ bias)
void denseForward(int M, int in, int out, Src X, int ldx, Src W, const float* bias, Dst Y, int ldy, bool accumulate,
                  Precision precision = Precision::F32);
// dX[M×in] (=|+=) dY[M×out] · W
void denseBackwardData(int M, int in, int out, Src dY, int lddy, Src W, Dst dX, int lddx, bool accumulate,
                       Precision precision = Precision::F32);
// dW[out×in] (=|+=) dYᵀ · X
void denseBackwardWeight(int M, int in, int out, Src dY, int lddy, Src X, int ldx, Dst dW, bool accumulate,
                         Precision precision = Precision::F32);

// db[N] (=|+=) column sums of dY[M×N] (fp32 sums).
void biasGrad(int M, int N, Src dY, int lddy, Dst db, bool accumulate);

}  // namespace kernels
}  // namespace pixelfly
