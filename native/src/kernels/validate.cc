// Layout checks run once when a layout is built or received (never per kernel call): a corrupt
// index would otherwise make the kernels read or write out of bounds.
#include <string>

#include "block_sizes.h"
#include "kernels.h"

namespace pixelfly {
namespace kernels {

namespace {
std::string at(const char* name, long i) { return std::string(name) + "[" + std::to_string(i) + "]"; }
}  // namespace

std::string validateLayout(const BsrLayout& L) {
  if (!kernelBlock(L.block)) return "block: must be " + kernelBlocksText() + ", got " + std::to_string(L.block);
  if (L.blockRows < 1 || L.blockCols < 1)
    return "blockRows/blockCols: must be >= 1, got " + std::to_string(L.blockRows) + "x" + std::to_string(L.blockCols);
  if (L.nnz < 0 || (long)L.nnz > (long)L.blockRows * L.blockCols)
    return "nnz: " + std::to_string(L.nnz) + " is outside 0.." + std::to_string((long)L.blockRows * L.blockCols);
  if (!L.rowPtr || !L.colPtr || (L.nnz > 0 && (!L.colIdx || !L.rowIdx || !L.tBlock))) return "layout: missing index array";
  if (L.rowPtr[0] != 0 || L.rowPtr[L.blockRows] != L.nnz) return "rowPtr: must start at 0 and end at nnz";
  for (int r = 0; r < L.blockRows; r++) {
    if (L.rowPtr[r + 1] < L.rowPtr[r]) return at("rowPtr", r + 1) + " decreases";
    for (int k = L.rowPtr[r]; k < L.rowPtr[r + 1]; k++) {
      if (L.colIdx[k] < 0 || L.colIdx[k] >= L.blockCols) return at("colIdx", k) + " is out of range";
      if (k > L.rowPtr[r] && L.colIdx[k] <= L.colIdx[k - 1]) return at("colIdx", k) + " does not ascend within its row";
    }
  }
  if (L.colPtr[0] != 0 || L.colPtr[L.blockCols] != L.nnz) return "colPtr: must start at 0 and end at nnz";
  for (int c = 0; c < L.blockCols; c++) {
    if (L.colPtr[c + 1] < L.colPtr[c]) return at("colPtr", c + 1) + " decreases";
    for (int t = L.colPtr[c]; t < L.colPtr[c + 1]; t++) {
      const int r = L.rowIdx[t], k = L.tBlock[t];
      if (r < 0 || r >= L.blockRows) return at("rowIdx", t) + " is out of range";
      if (t > L.colPtr[c] && r <= L.rowIdx[t - 1]) return at("rowIdx", t) + " does not ascend within its column";
      if (k < L.rowPtr[r] || k >= L.rowPtr[r + 1] || L.colIdx[k] != c)
        return at("tBlock", t) + " does not point at block (" + std::to_string(r) + ", " + std::to_string(c) + ")";
    }
  }
  return "";
}

std::string validateWeightShape(const BsrLayout& L, int out, int in) {
  if (!kernelBlock(L.block)) return "block: must be " + kernelBlocksText() + ", got " + std::to_string(L.block);
  if (out <= (long)(L.blockRows - 1) * L.block || out > (long)L.blockRows * L.block)
    return "out: " + std::to_string(out) + " does not pad to " + std::to_string(L.blockRows) + " block-rows of " +
           std::to_string(L.block);
  if (in <= (long)(L.blockCols - 1) * L.block || in > (long)L.blockCols * L.block)
    return "in: " + std::to_string(in) + " does not pad to " + std::to_string(L.blockCols) + " block-columns of " +
           std::to_string(L.block);
  return "";
}

}  // namespace kernels
}  // namespace pixelfly
