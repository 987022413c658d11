// The CUDA attention kernels (src/cuda/attention_kernels.cuh) compiled against the host emulation and
// run by attentionHost.test.ts: forward (ctx, lse) and backward (dq, dk, dv) against the CPU's plain
// reference (kernels/attention_reference.cc) on small shapes that reach every branch — T not a
// multiple of the block, more keys per block than a row group has lanes, causal diagonal blocks,
// global rows and columns, head dimensions above one feature per lane — and bitwise the same output
// for any grid (a few blocks striding over the rows, or a block per row).
// Prints one line per failure and exits non-zero when any check failed.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/device_runtime.h"
#include "cuda/layer_kernels.cuh"
#include "cuda/attention_kernels.cuh"
#include "kernels/attention.h"

using namespace pixelfly;
using namespace pixelfly::cuda;

static int failures = 0;
static void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL %s\n", what.c_str());
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

// A score layout as core/blockIndex.ts builds it from a block mask.
struct Layout {
  int block, n;
  std::vector<int32_t> rowPtr, colIdx, colPtr, rowIdx, tBlock;
  Layout(int T, int blk, bool causal, const std::function<bool(int, int)>& keep) : block(blk), n((T + blk - 1) / blk) {
    rowPtr.assign(n + 1, 0);
    colPtr.assign(n + 1, 0);
    for (int r = 0; r < n; r++) {
      for (int c = 0; c < n; c++)
        if ((r == c || keep(r, c)) && !(causal && c > r)) colIdx.push_back(c), colPtr[c + 1]++;
      rowPtr[r + 1] = static_cast<int32_t>(colIdx.size());
    }
    for (int c = 0; c < n; c++) colPtr[c + 1] += colPtr[c];
    rowIdx.resize(colIdx.size());
    tBlock.resize(colIdx.size());
    std::vector<int32_t> fill(colPtr.begin(), colPtr.end() - 1);
    for (int r = 0; r < n; r++)
      for (int k = rowPtr[r]; k < rowPtr[r + 1]; k++) {
        const int t = fill[colIdx[k]]++;
        rowIdx[t] = r;
        tBlock[t] = k;
      }
  }
  kernels::BsrLayout view() const {
    return {block, n, n, static_cast<int>(colIdx.size()), rowPtr.data(), colIdx.data(), colPtr.data(), rowIdx.data(), tBlock.data()};
  }
};

static double maxDiff(const std::vector<float>& a, const std::vector<float>& b, double* scale) {
  double m = 0, s = 1;
  for (size_t i = 0; i < a.size(); i++) m = std::max(m, std::fabs(double(a[i]) - b[i])), s = std::max(s, std::fabs(double(b[i])));
  *scale = s;
  return m;
}

// lseGrad: a gradient on lse too (what the low-rank term's mix gives the sparse part).
static void checkShape(int B, int T, int D, int H, int block, bool causal, const std::function<bool(int, int)>& keep, bool lseGrad = false) {
  const std::string name = "B " + std::to_string(B) + " T " + std::to_string(T) + " D " + std::to_string(D) + " H " +
                           std::to_string(H) + " block " + std::to_string(block) + (causal ? " causal" : "") + (lseGrad ? " dlse" : "");
  const Layout L(T, block, causal, keep);
  const int hd = D / H;
  const auto qkv = randoms(size_t(B) * T * 3 * D, 11 + T), dctx = randoms(size_t(B) * T * D, 12 + T);
  const int64_t rows = int64_t(B) * H * T;
  const auto dlseValues = randoms(size_t(rows), 13 + T);
  const float* dlse = lseGrad ? dlseValues.data() : nullptr;

  // The CPU reference on the same strided views the engine passes.
  const kernels::AttentionShape s{B, H, T, hd, causal, 1.0f / std::sqrt(float(hd))};
  auto in = [&](const float* p, int which) { return kernels::Heads{p + which * D, int64_t(T) * 3 * D, hd, 3 * D}; };
  auto out = [&](float* p, int which) { return kernels::HeadsOut{p + which * D, int64_t(T) * 3 * D, hd, 3 * D}; };
  std::vector<float> refCtx(size_t(B) * T * D), refLse(rows), refGrad(qkv.size());
  kernels::attentionForwardReference(L.view(), s, in(qkv.data(), 0), in(qkv.data(), 1), in(qkv.data(), 2),
                                     kernels::HeadsOut{refCtx.data(), int64_t(T) * D, hd, D}, refLse.data());
  kernels::attentionBackwardReference(L.view(), s, in(qkv.data(), 0), in(qkv.data(), 1), in(qkv.data(), 2),
                                      kernels::Heads{dctx.data(), int64_t(T) * D, hd, D}, out(refGrad.data(), 0),
                                      out(refGrad.data(), 1), out(refGrad.data(), 2), dlse);

  const dev::AttentionArgs a{L.rowPtr.data(), L.colIdx.data(), L.colPtr.data(), L.rowIdx.data(), block, B, T, D, H, causal, s.scale};
  std::vector<float> first;
  for (unsigned grid : {unsigned(rows), 3u}) {
    std::vector<float> ctx(refCtx.size()), lse(rows), delta(rows), grad(qkv.size());
    dev::launch(grid, dim3(dev::kLanes), nullptr, dev::attentionForwardKernel, a, qkv.data(), ctx.data(), lse.data());
    dev::launch(grid, dim3(dev::kLanes), nullptr, dev::attentionRowDotKernel, a, ctx.data(), dctx.data(), dlse, delta.data());
    dev::launch(grid, dim3(dev::kLanes), nullptr, dev::attentionBackwardQueryKernel, a, qkv.data(), lse.data(), delta.data(),
                dctx.data(), grad.data());
    dev::launch(grid, dim3(dev::kLanes), nullptr, dev::attentionBackwardKeyKernel, a, qkv.data(), lse.data(), delta.data(),
                dctx.data(), grad.data());
    check(cudaGetLastError() == cudaSuccess, name + ": launch");
    double sc = 1;
    const double eCtx = maxDiff(ctx, refCtx, &sc);
    check(eCtx < 2e-6 * sc, name + ": ctx differs from the reference by " + std::to_string(eCtx));
    const double eLse = maxDiff(lse, refLse, &sc);
    check(eLse < 4e-6 * sc, name + ": lse differs by " + std::to_string(eLse));
    const double eGrad = maxDiff(grad, refGrad, &sc);
    check(eGrad < 1e-5 * sc, name + ": dqkv differs by " + std::to_string(eGrad));
    std::vector<float> all(ctx);
    all.insert(all.end(), lse.begin(), lse.end());
    all.insert(all.end(), grad.begin(), grad.end());
    if (first.empty()) first = all;
    else check(std::memcmp(first.data(), all.data(), all.size() * sizeof(float)) == 0, name + ": the same bits for any grid");
  }
}

int main() {
  const auto dense = [](int, int) { return true; };
  const auto butterfly = [](int r, int c) { return __builtin_popcount(unsigned(r ^ c)) == 1 || c == 0; };  // + a global column
  checkShape(1, 37, 8, 2, 16, false, dense);   // 37 keys: more than a row group's lanes, a partial last block
  checkShape(2, 37, 8, 1, 16, true, dense);
  checkShape(1, 70, 12, 3, 16, true, butterfly);
  checkShape(1, 70, 12, 3, 16, true, butterfly, true);
  checkShape(2, 37, 8, 2, 16, false, dense, true);
  checkShape(1, 70, 72, 1, 32, false, butterfly);  // 72 features: three per lane for some lanes
  checkShape(1, 130, 16, 1, 64, true, butterfly);
  std::printf(failures ? "%d checks failed\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
