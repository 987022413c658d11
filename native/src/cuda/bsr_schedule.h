// The work decomposition of the GPU block-sparse kernels, in plain C++ that both g++ and nvcc
// compile: which output tile a thread block owns, which kept blocks it walks, how far the real
// (unpadded) rows and columns reach, and how dW's reduction over M is split. The CUDA kernels call
// these functions on the device; reference.h walks the very same functions on the host, so the
// schedule is tested on machines without a GPU against the CPU kernels (test/cuda/schedule.test.ts).
//
// The index arrays are THE BLOCK ORDER of core/blockIndex.ts (row-major BSR + transposed view);
// nothing here re-derives a layout.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PF_HD __host__ __device__ __forceinline__
#else
#define PF_HD inline
#endif

namespace pixelfly {
namespace sched {

// A block index plus the logical sizes of the weight (out × in, rows = output features).
struct BsrView {
  int block = 0, blockRows = 0, blockCols = 0, nnz = 0;
  int out = 0, in = 0;
  const int32_t* rowPtr = nullptr;
  const int32_t* colIdx = nullptr;
  const int32_t* colPtr = nullptr;
  const int32_t* rowIdx = nullptr;
  const int32_t* tBlock = nullptr;
};

// Rows of activations one thread block of the forward / dX kernels covers. 64 rows × one weight
// block keeps a bf16 tile of X and of W (≤ 8 KiB each at block 64) in shared memory together with
// the fp32 staging tile, under the 48 KiB every sm_80/sm_90 part grants without opt-in.
constexpr int kTileM = 64;
// Rows of activations loaded per step inside dW's reduction.
constexpr int kStepM = 64;

PF_HD int ceilDiv(int a, int b) { return (a + b - 1) / b; }
PF_HD int imin(int a, int b) { return a < b ? a : b; }

// One output tile: rows [m0, m0 + rows) of the activations, and `major`, which is the block-row r
// (forward), the block-column c (dX) or the kept block k (dW).
struct Tile {
  int major, m0, rows;
};

// Tiles are numbered with M fastest, so neighbouring thread blocks read the same weights (L2 reuse).
PF_HD int mTiles(int M, int tileM) { return ceilDiv(M, tileM); }
PF_HD Tile decodeTile(int id, int M, int tileM) {
  const int mt = mTiles(M, tileM);
  Tile t;
  t.major = id / mt;
  t.m0 = (id % mt) * tileM;
  t.rows = imin(tileM, M - t.m0);
  return t;
}

// Forward Y = X·Wᵀ: one tile per (block-row, M tile); it walks the kept blocks of its block-row.
PF_HD int forwardTiles(const BsrView& v, int M) { return v.blockRows * mTiles(M, kTileM); }
// dX = dY·W: one tile per (block-column, M tile); it walks the transposed view of its block-column.
PF_HD int backwardDataTiles(const BsrView& v, int M) { return v.blockCols * mTiles(M, kTileM); }

// The i-th kept block that an output tile reduces over.
struct Step {
  int k;      // packed weight block (row-major index)
  int other;  // forward: block-column read from X; dX: block-row read from dY
};
PF_HD int forwardSteps(const BsrView& v, int r) { return v.rowPtr[r + 1] - v.rowPtr[r]; }
PF_HD Step forwardStep(const BsrView& v, int r, int i) {
  const int k = v.rowPtr[r] + i;
  return {k, v.colIdx[k]};
}
PF_HD int backwardDataSteps(const BsrView& v, int c) { return v.colPtr[c + 1] - v.colPtr[c]; }
PF_HD Step backwardDataStep(const BsrView& v, int c, int i) {
  const int t = v.colPtr[c] + i;
  return {v.tBlock[t], v.rowIdx[t]};
}

// How many rows/columns of block-row r / block-column c are real (the rest is layout padding,
// which reads as zero and is never written).
PF_HD int realOut(const BsrView& v, int r) { return imin(v.block, v.out - r * v.block); }
PF_HD int realIn(const BsrView& v, int c) { return imin(v.block, v.in - c * v.block); }

// dW at kept blocks: dW_k = dY[:, rows of r]ᵀ · X[:, cols of c], a reduction over all M rows for
// only nnz small outputs. To fill the device, M is split into chunks; chunk partials go to a
// workspace [chunks][nnz][block][block] and are summed IN CHUNK ORDER by a second pass, so the
// result does not depend on scheduling (the engine promises determinism for a seed).
//
// Chunks: enough (nnz × chunks ≥ targetTiles) to give every SM a few thread blocks, but each at
// least minRows rows (a multiple of kStepM) so a chunk amortises loading its weights' tile.
PF_HD int backwardWeightChunkRows(int nnz, int M, int targetTiles, int minRows) {
  if (nnz <= 0 || M <= 0) return kStepM;
  const int wantChunks = ceilDiv(targetTiles, nnz);
  int rows = ceilDiv(M, wantChunks < 1 ? 1 : wantChunks);
  if (rows < minRows) rows = minRows;
  return ceilDiv(rows, kStepM) * kStepM;
}
PF_HD int backwardWeightChunks(int M, int chunkRows) { return M <= 0 ? 0 : ceilDiv(M, chunkRows); }
// Tile id → (kept block, chunk); chunks fastest, so a kept block's chunks run side by side.
PF_HD Tile backwardWeightTile(int id, int M, int chunkRows) { return decodeTile(id, M, chunkRows); }
PF_HD int blockRowOf(const BsrView& v, int k) {
  // Binary search in rowPtr: the block-row holding kept block k (rowPtr is non-decreasing; empty
  // rows repeat a value, so search for the LAST r with rowPtr[r] <= k).
  int lo = 0, hi = v.blockRows - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (v.rowPtr[mid] <= k) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Round-to-nearest-even to bfloat16 and back: what the tensor-core path does to its inputs on load,
// so a host reference fed the same rounding matches it up to the order of fp32 accumulation.
PF_HD float roundToBf16(float x) {
  union {
    float f;
    uint32_t u;
  } v;
  v.f = x;
  if ((v.u & 0x7f800000u) == 0x7f800000u) return x;  // inf / NaN unchanged
  v.u = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
  return v.f;
}

}  // namespace sched
}  // namespace pixelfly
