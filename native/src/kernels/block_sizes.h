// The block sizes the Pixelfly kernels implement (CPU and CUDA): core/planner.ts's
// KERNEL_BLOCK_SIZES, the list the planner, the settings schema and pixelfly_torch take.
// kernels.info().blocks reports this list, and test/native/kernels.test.ts checks it against core's.
#pragma once

#include <string>

namespace pixelfly {
namespace kernels {

constexpr int kKernelBlocks[] = {16, 32, 64};

constexpr bool kernelBlock(int block) {
  for (int b : kKernelBlocks)
    if (b == block) return true;
  return false;
}

// "16, 32 or 64", for messages.
inline std::string kernelBlocksText() {
  std::string s;
  const int n = sizeof kKernelBlocks / sizeof kKernelBlocks[0];
  for (int i = 0; i < n; i++) s += (i == 0 ? "" : i == n - 1 ? " or " : ", ") + std::to_string(kKernelBlocks[i]);
  return s;
}

}  // namespace kernels
}  // namespace pixelfly
