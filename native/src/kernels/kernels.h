// Pixelfly CPU kernels: the C++ interface the training engine calls directly (from its own worker
// thread) and that the JS binding wraps. All functions are synchronous and thread-safe to call from
// any thread; they parallelise internally over `threads()` workers.
//
// Conventions (shared with core/blockIndex.ts):
//  - Matrices are row-major float32 with an explicit leading dimension (ld >= columns), so callers
//    can pass slices of bigger buffers without copying.
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
// Precision: every descriptor carries a Precision. Storage stays fp32 (the optimizer's master
// weights) whatever the precision; a future bf16 path (AMX tiles, fp32 accumulation) converts
// internally, so callers only change the enum value, never the buffers they pass.
#pragma once

#include <cstdint>
#include <string>

namespace pixelfly {
namespace kernels {

// ---------------------------------------------------------------------------------------------
// Dispatch and threading
// ---------------------------------------------------------------------------------------------

// Instruction-set paths, best last. Portable is plain C++ (GCC vector extensions lowered to the
// baseline ISA), AVX2 needs avx2+fma, AVX-512 needs avx512f.
enum class Isa : int { Portable = 0, Avx2 = 1, Avx512 = 2 };

const char* isaName(Isa isa);               // "portable" | "avx2" | "avx512"
bool parseIsa(const std::string& name, Isa* out);
bool isaSupported(Isa isa);                 // by this CPU (and compiled in)
Isa bestIsa();                              // chosen at load
Isa activeIsa();
// Forces a path (tests, benchmarks). Throws std::invalid_argument if this CPU lacks it.
void forceIsa(Isa isa);

// Worker threads used inside each kernel call (default: hardware concurrency). n >= 1.
void setThreads(int n);
int threads();
int maxThreads();                           // hardware concurrency

enum class Precision : int {
  F32 = 0,   // fp32 products, fp32 accumulation
  // BF16 = 1 is reserved for AMX tiles with fp32 accumulation.
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
  const float* blocks = nullptr;   // [nnz][block][block], fp32
  Precision precision = Precision::F32;
};

// Full consistency check of a layout and the sizes of `w` (block size, ranges, ascending columns,
// transposed view matching the row view). Returns "" when valid, else a message naming the field.
std::string validateLayout(const BsrLayout& layout);
std::string validateWeightShape(const BsrLayout& layout, int out, int in);

// Y[M×out] (=|+=) X[M×in] · Wᵀ (+ bias[out] if bias != nullptr).
void bsrForward(const BsrWeight& w, int M, const float* X, int ldx, const float* bias, float* Y, int ldy,
                bool accumulate);

// dX[M×in] (=|+=) dY[M×out] · W.
void bsrBackwardData(const BsrWeight& w, int M, const float* dY, int lddy, float* dX, int lddx, bool accumulate);

// dW[nnz][block][block] (=|+=) (dYᵀ · X) restricted to the kept blocks of w.layout (w.blocks is not
// read). Entries of padded rows/columns are 0 (or unchanged when accumulating).
void bsrBackwardWeight(const BsrWeight& w, int M, const float* dY, int lddy, const float* X, int ldx, float* dW,
                       bool accumulate);

// ---------------------------------------------------------------------------------------------
// Dense products (dense layers, low-rank factors, the gate)
// ---------------------------------------------------------------------------------------------

enum class Trans : int { No = 0, Yes = 1 };

// C[M×N] = alpha · op(A) · op(B) + beta · C, row-major; op(A) is M×K, op(B) is K×N.
// beta == 0 never reads C (it may hold NaNs).
void gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc, Precision precision = Precision::F32);

// Linear layer helpers, W is out×in (PyTorch's nn.Linear layout):
// Y[M×out] (=|+=) X[M×in] · Wᵀ (+ bias)
void denseForward(int M, int in, int out, const float* X, int ldx, const float* W, const float* bias, float* Y,
                  int ldy, bool accumulate, Precision precision = Precision::F32);
// dX[M×in] (=|+=) dY[M×out] · W
void denseBackwardData(int M, int in, int out, const float* dY, int lddy, const float* W, float* dX, int lddx,
                       bool accumulate, Precision precision = Precision::F32);
// dW[out×in] (=|+=) dYᵀ · X
void denseBackwardWeight(int M, int in, int out, const float* dY, int lddy, const float* X, int ldx, float* dW,
                         bool accumulate, Precision precision = Precision::F32);

// db[N] (=|+=) column sums of dY[M×N].
void biasGrad(int M, int N, const float* dY, int lddy, float* db, bool accumulate);

}  // namespace kernels
}  // namespace pixelfly
