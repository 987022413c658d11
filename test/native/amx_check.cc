// The AMX kernels' bf16 products on an emulation of the tile instructions (kernels/amx_tiles.h,
// PIXELFLY_AMX_EMULATION), against a float64 reference fed the same bf16-rounded inputs: the
// tile configuration, the A/B panel layouts, segment offsets, tile steps, padding and the
// epilogue, on CPUs without AMX. Built and run by amxEmulation.test.ts; prints one line per check
// and exits 1 on any failure.
//
//   c++ -std=c++17 -O1 -fopenmp -Inative/src -DPIXELFLY_ISA=4 -DPIXELFLY_AMX_EMULATION=1 -mavx512f
//       -mavx512vl -mavx512dq -mavx512bw -mavx512bf16 -mfma -mavx2 native/src/kernels/isa_kernels.cc
//       test/native/amx_check.cc -o amx_check
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/amx_tiles.h"
#include "kernels/isa_table.h"

using namespace pixelfly::kernels;

namespace {

std::mt19937 gen(12345);
int failures = 0;

std::vector<float> randomFloats(size_t n) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = u(gen);
  return v;
}
std::vector<bf16> toBf16(const std::vector<float>& v) {
  std::vector<bf16> h(v.size());
  for (size_t i = 0; i < v.size(); i++) h[i] = roundToBf16(v[i]);
  return h;
}
double rounded(float x) { return bf16ToFloat(roundToBf16(x)); }

void report(const std::string& what, const std::vector<float>& got, const std::vector<double>& want, double tol) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const double e = std::fabs(got[i] - want[i]) / (1 + std::fabs(want[i]));
    if (!(e <= worst)) worst = e;
  }
  const bool ok = worst <= tol && got.size() == want.size();
  if (!ok) failures++;
  std::printf("%s %s: worst relative error %.3g\n", ok ? "PASS" : "FAIL", what.c_str(), worst);
}

// A random block mask over padded out×in, its row-major index and transposed view (core/blockIndex.ts).
struct Layout {
  BsrLayout view;
  std::vector<int32_t> rowPtr, colIdx, colPtr, rowIdx, tBlock;
};
Layout randomLayout(int out, int in, int block, double keep) {
  Layout L;
  const int rows = (out + block - 1) / block, cols = (in + block - 1) / block;
  std::vector<char> mask(rows * cols);
  std::bernoulli_distribution kept(keep);
  for (auto& m : mask) m = kept(gen);
  for (int c = 0; c < cols; c++) mask[c] = 0;  // an empty block-row: bias only
  mask[(rows - 1) * cols] = 1;
  L.rowPtr.push_back(0);
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < cols; c++)
      if (mask[r * cols + c]) L.colIdx.push_back(c);
    L.rowPtr.push_back((int32_t)L.colIdx.size());
  }
  L.colPtr.push_back(0);
  for (int c = 0; c < cols; c++) {
    for (int r = 0; r < rows; r++)
      if (mask[r * cols + c]) {
        L.rowIdx.push_back(r);
        int k = L.rowPtr[r];
        while (L.colIdx[k] != c) k++;
        L.tBlock.push_back(k);
      }
    L.colPtr.push_back((int32_t)L.rowIdx.size());
  }
  L.view = {block, rows, cols, (int)L.colIdx.size(), L.rowPtr.data(), L.colIdx.data(), L.colPtr.data(), L.rowIdx.data(), L.tBlock.data()};
  return L;
}

// The weight's dense out×in form from rounded blocks.
std::vector<double> denseOf(const Layout& L, int out, int in, const std::vector<float>& blocks) {
  const int b = L.view.block;
  std::vector<double> d((size_t)out * in, 0.0);
  for (int r = 0; r < L.view.blockRows; r++)
    for (int k = L.rowPtr[r]; k < L.rowPtr[r + 1]; k++)
      for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++) {
          const int o = r * b + i, q = L.colIdx[k] * b + j;
          if (o < out && q < in) d[(size_t)o * in + q] = rounded(blocks[((size_t)k * b + i) * b + j]);
        }
  return d;
}

void checkBsr(int block, int out, int in, int M) {
  const Layout L = randomLayout(out, in, block, 0.5);
  BsrWeight w;
  w.layout = L.view;
  w.out = out;
  w.in = in;
  const std::vector<float> blocks = randomFloats((size_t)L.view.nnz * block * block);
  const std::vector<float> x = randomFloats((size_t)M * in), dy = randomFloats((size_t)M * out), bias = randomFloats(out);
  const std::vector<bf16> x16 = toBf16(x), blocks16 = toBf16(blocks);
  const std::vector<double> W = denseOf(L, out, in, blocks);
  const std::string name = "b" + std::to_string(block) + " " + std::to_string(out) + "x" + std::to_string(in) + " M=" + std::to_string(M);

  std::vector<double> yRef((size_t)M * out), dxRef((size_t)M * in);
  for (int i = 0; i < M; i++)
    for (int o = 0; o < out; o++) {
      double s = bias[o];
      for (int q = 0; q < in; q++) s += rounded(x[(size_t)i * in + q]) * W[(size_t)o * in + q];
      yRef[(size_t)i * out + o] = s;
    }
  for (int i = 0; i < M; i++)
    for (int q = 0; q < in; q++) {
      double s = 0;
      for (int o = 0; o < out; o++) s += rounded(dy[(size_t)i * out + o]) * W[(size_t)o * in + q];
      dxRef[(size_t)i * in + q] = s;
    }

  std::vector<float> y((size_t)M * out, NAN);
  w.blocks = blocks16.data();
  kAmxKernels.bsrForwardBf16(w, M, x16.data(), in, bias.data(), y.data(), out, false, 2);
  report("forward (bf16 X and W) " + name, y, yRef, 1e-5);
  // fp32 inputs, rounded while packed; accumulating onto the previous result.
  w.blocks = blocks.data();
  kAmxKernels.bsrForwardBf16(w, M, x.data(), in, bias.data(), y.data(), out, true, 2);
  std::vector<double> twice(yRef);
  for (double& v : twice) v *= 2;
  report("forward accumulate (fp32 X and W) " + name, y, twice, 1e-5);
  // A bf16 output, rounded once from the tile's fp32 sums.
  std::vector<bf16> y16((size_t)M * out);
  kAmxKernels.bsrForwardBf16(w, M, x16.data(), in, bias.data(), y16.data(), out, false, 2);
  std::vector<float> yw(y16.size());
  for (size_t i = 0; i < y16.size(); i++) yw[i] = bf16ToFloat(y16[i]);
  report("forward into bf16 " + name, yw, yRef, 8e-3);
  std::vector<float> dx((size_t)M * in, NAN);
  kAmxKernels.bsrBackwardDataBf16(w, M, dy.data(), out, dx.data(), in, false, 2);
  report("dX " + name, dx, dxRef, 1e-5);

  // dW at the kept blocks (padding exactly 0), accumulated onto a start value.
  const int nnz = L.view.nnz;
  std::vector<double> dwRef((size_t)nnz * block * block, 0.0);
  std::vector<float> dw(dwRef.size());
  for (size_t i = 0; i < dw.size(); i++) dw[i] = (float)(i % 7) - 3.f;
  for (int r = 0; r < L.view.blockRows; r++)
    for (int k = L.rowPtr[r]; k < L.rowPtr[r + 1]; k++)
      for (int i = 0; i < block; i++)
        for (int j = 0; j < block; j++) {
          const size_t at = ((size_t)k * block + i) * block + j;
          const int o = r * block + i, q = L.colIdx[k] * block + j;
          double s = dw[at];
          if (o < out && q < in)
            for (int t = 0; t < M; t++) s += rounded(dy[(size_t)t * out + o]) * rounded(x[(size_t)t * in + q]);
          dwRef[at] = s;
        }
  kAmxKernels.bsrBackwardWeightBf16(w, M, dy.data(), out, x16.data(), in, dw.data(), nullptr, true, 2);
  report("dW accumulate " + name, dw, dwRef, 1e-5 * std::max(1.0, M / 300.0));
}

void checkGemm(int M, int N, int K, bool ta, bool tb) {
  const std::vector<float> a = randomFloats((size_t)M * K), b = randomFloats((size_t)K * N), c0 = randomFloats((size_t)M * N);
  const std::vector<bf16> a16 = toBf16(a);
  const int lda = ta ? M : K, ldb = tb ? K : N;
  std::vector<double> ref((size_t)M * N);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += rounded(ta ? a[(size_t)k * lda + i] : a[(size_t)i * lda + k]) * rounded(tb ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j]);
      ref[(size_t)i * N + j] = 0.5 * s + c0[(size_t)i * N + j];
    }
  std::vector<float> c(c0);
  kAmxKernels.gemmBf16(ta ? Trans::Yes : Trans::No, tb ? Trans::Yes : Trans::No, M, N, K, 0.5f, a16.data(), lda, b.data(), ldb,
                       true, c.data(), N, 2);
  report("gemm " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (ta ? " tA" : "") + (tb ? " tB" : ""),
         c, ref, 1e-5 * std::max(1.0, K / 300.0));
}

}  // namespace

int main() {
  // Pixelfly forward / dX / dW: 8-pair tile steps for block 16 (one 16-column B tile), 16-pair steps
  // for 32 and 64; padded out/in; M with a partial 32-row panel; several work items and threads.
  for (int block : {16, 32, 64}) {
    checkBsr(block, 3 * block - 5, 4 * block + 3, 37);
    checkBsr(block, 2 * block, 3 * block, 1);
  }
  checkBsr(32, 200, 450, 700);  // dW: several 128-row chunks, the last one partial and odd
  checkBsr(64, 130, 100, 301);
  // Dense (blocked loops; split-K shapes stay on vdpbf16ps): odd K padded to whole tile steps, two K
  // passes (K > 1536), a narrow last column panel, k-major A (transposed) packed into row-major tiles.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      checkGemm(70, 45, 71, ta, tb);
      checkGemm(33, 48, 1601, ta, tb);
    }
  checkGemm(200, 300, 64, false, true);
  const long dp = amx::tileProducts();
  std::printf("%s emulated tdpbf16ps executed: %ld\n", dp > 0 ? "PASS" : "FAIL", dp);
  if (dp == 0) failures++;
  std::printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
