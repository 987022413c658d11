// Checks of the layer kernels' launch geometry that the engine's shapes cannot reach under the host
// emulation, compiled against it and run by layerKernelsHost.test.ts:
//  - the grid.y fold: gridYZ() never exceeds the device's 65535, the emulated device refuses a
//    launch past it (as a GPU does), and the transpose with fewer grid rows than matrices (what a
//    batch above 65535 gets) still transposes every matrix;
//  - determinism across grids: every row-group kernel and the column / batch sums give bitwise the same
//    output whether one block strides over all the rows or every row has its own group (attention's
//    kernels: attention_host.cc).
// Prints one line per failure and exits non-zero when any check failed.
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "cuda/device_runtime.h"
#include "cuda/layer_kernels.cuh"

using namespace pixelfly::cuda;

static int failures = 0;
static void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAIL %s\n", what);
    failures++;
  }
}

static std::vector<float> randoms(size_t n, unsigned seed) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = static_cast<float>(seed >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
  }
  return v;
}

// Runs `run(grid)` (which fills its outputs from scratch) with grids of 1, 2 and enough blocks and
// checks that `out` is bitwise the same each time.
static void sameForAnyGrid(const char* what, unsigned enough, std::vector<float>& out,
                           const std::function<void(unsigned)>& run) {
  std::vector<float> first;
  for (unsigned grid : {enough, 1u, 2u}) {
    std::fill(out.begin(), out.end(), 0.0f);
    run(grid);
    check(cudaGetLastError() == cudaSuccess, what);
    if (first.empty()) first = out;
    else check(std::memcmp(first.data(), out.data(), out.size() * sizeof(float)) == 0, what);
  }
}

int main() {
  const dim3 rowBlock(dev::kLanes, dev::kGroups);

  // ---- grid.y fold
  check(dev::gridYZ(0) == 1 && dev::gridYZ(1) == 1 && dev::gridYZ(65535) == 65535, "gridYZ keeps small counts");
  check(dev::gridYZ(65536) == 65535 && dev::gridYZ(int64_t(1) << 40) == 65535, "gridYZ caps at 65535");
  {
    std::vector<float> x(1), y(1);
    dev::launch(dim3(1, 65536), dim3(dev::kTile, 8), nullptr, dev::transposeKernel, 1, 1, 1, x.data(), y.data());
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "the emulated device refuses grid.y = 65536");
    check(cudaGetLastError() == cudaSuccess, "the launch error is cleared once read");
  }
  {
    const int B = 7, T = 33, D = 5;  // grid.y = 3 < B: rows 0..2 of the grid take 3 matrices or 2
    const auto x = randoms(size_t(B) * T * D, 1);
    std::vector<float> y(x.size(), -1.0f);
    const unsigned tiles = ((D + dev::kTile - 1) / dev::kTile) * ((T + dev::kTile - 1) / dev::kTile);
    dev::launch(dim3(tiles, 3), dim3(dev::kTile, 8), nullptr, dev::transposeKernel, B, T, D, x.data(), y.data());
    check(cudaGetLastError() == cudaSuccess, "folded transpose launches");
    bool ok = true;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) ok = ok && y[(size_t(b) * D + d) * T + t] == x[(size_t(b) * T + t) * D + d];
    check(ok, "folded transpose (7 matrices on 3 grid rows) = transpose");
  }

  // ---- the same bits for any grid
  const int M = 70, D = 45;  // more rows than 2 blocks of groups, rows wider than a group
  const auto x = randoms(size_t(M) * D, 2), dy = randoms(size_t(M) * D, 3), g = randoms(D, 4), b = randoms(D, 5);
  const unsigned rowBlocks = (M + dev::kGroups - 1) / dev::kGroups;
  {
    std::vector<float> out(size_t(M) * D + 2 * M);  // y | mean | rstd
    sameForAnyGrid("layerNormForward", rowBlocks, out, [&](unsigned grid) {
      dev::launch(grid, rowBlock, nullptr, dev::layerNormForwardKernel, M, D, x.data(), g.data(), b.data(), out.data(),
                  out.data() + size_t(M) * D, out.data() + size_t(M) * D + M);
    });
    const float* mean = out.data() + size_t(M) * D;
    const float* rstd = mean + M;
    std::vector<float> dx(size_t(M) * D);
    sameForAnyGrid("layerNormBackwardData", rowBlocks, dx, [&](unsigned grid) {
      dev::launch(grid, rowBlock, nullptr, dev::layerNormBackwardDataKernel, M, D, x.data(), dy.data(), g.data(), mean,
                  rstd, dx.data());
    });
    const int chunks = (M + dev::kChunkRows - 1) / dev::kChunkRows;
    check(chunks > 1, "the column sums take more than one chunk");
    std::vector<float> part(2 * size_t(chunks) * D), dgdb(2 * size_t(D));
    sameForAnyGrid("layerNorm dg/db", unsigned(chunks * D + dev::kThreads - 1) / dev::kThreads, dgdb, [&](unsigned grid) {
      dev::launch(grid, dev::kThreads, nullptr, dev::layerNormParamPartialsKernel, M, D, x.data(), dy.data(), mean, rstd,
                  part.data());
      dev::launch(grid, dev::kThreads, nullptr, dev::reduceColumnChunksKernel, chunks, D, 2 * int64_t(D), part.data(),
                  dgdb.data());
      dev::launch(grid, dev::kThreads, nullptr, dev::reduceColumnChunksKernel, chunks, D, 2 * int64_t(D),
                  part.data() + D, dgdb.data() + D);
    });
  }
  {
    const int chunks = (M + dev::kChunkRows - 1) / dev::kChunkRows;  // x as M batch entries of 45, summed 40 wide
    std::vector<float> part(size_t(chunks) * 40), sum(40);
    sameForAnyGrid("sum over the batch", unsigned(chunks * 40 + dev::kThreads - 1) / dev::kThreads, sum, [&](unsigned grid) {
      dev::launch(grid, dev::kThreads, nullptr, dev::batchChunkPartialsKernel, M, int64_t(40), int64_t(D), x.data(),
                  part.data());
      dev::launch(grid, dev::kThreads, nullptr, dev::reduceColumnChunksKernel, chunks, int64_t(40), int64_t(40),
                  part.data(), sum.data());
    });
  }
  {
    const int rank = 3;
    const auto h = randoms(size_t(M) * rank, 6), V = randoms(size_t(rank) * D, 7), gb = randoms(1, 8);
    std::vector<float> out(size_t(M) + size_t(M) * rank + size_t(M) * D);  // gate | hs | xs
    sameForAnyGrid("pixelflyGate", rowBlocks, out, [&](unsigned grid) {
      dev::launch(grid, rowBlock, nullptr, dev::pixelflyGateKernel, M, x.data(), D, g.data(), gb.data(), h.data(), rank,
                  out.data(), out.data() + M, out.data() + M + size_t(M) * rank);
    });
    const float* gate = out.data();
    std::vector<float> mix(size_t(M) * D + size_t(M) * rank + M);  // dx | dh | dz, dx and dh updated in place
    sameForAnyGrid("pixelflyMixBackward", rowBlocks, mix, [&](unsigned grid) {
      std::copy(dy.begin(), dy.end(), mix.begin());
      std::copy(h.begin(), h.end(), mix.begin() + size_t(M) * D);
      dev::launch(grid, rowBlock, nullptr, dev::pixelflyMixBackwardKernel, M, x.data(), D, g.data(), V.data(), h.data(),
                  rank, gate, mix.data(), mix.data() + size_t(M) * D, mix.data() + size_t(M) * D + size_t(M) * rank);
    });
  }
  {
    const int classes = 45;  // rows of x as logits
    std::vector<int32_t> targets(M);
    for (int r = 0; r < M; r++) targets[r] = (r * 7) % classes;
    std::vector<double> stats(2 * size_t(M));
    std::vector<float> out(size_t(M) * classes + 4 * size_t(M));  // dlogits | stats as floats' bits
    sameForAnyGrid("softmaxCrossEntropy", rowBlocks, out, [&](unsigned grid) {
      dev::launch(grid, rowBlock, nullptr, dev::softmaxCrossEntropyKernel, M, classes, x.data(), targets.data(),
                  out.data(), stats.data());
      std::memcpy(out.data() + size_t(M) * classes, stats.data(), stats.size() * sizeof(double));
    });
  }
  std::printf(failures ? "%d checks failed\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
