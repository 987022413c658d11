// Runs the REAL device kernels (native/src/cuda/kernels.cuh) on the host through
// native/src/cuda/emulation.h: reads one block-sparse case on stdin, writes the forward (with bias),
// dX, dW, and a forward accumulated onto ones (Y + 1) to stdout, all float32. Built and driven by
// emulation.test.ts, which compares the results with the CPU kernels. The launch choices mirror
// Context's in context.cu (tile counts from the schedule, 256 / 128 threads, dW chunks + reduction).
#define PIXELFLY_CUDA_EMULATION 1
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/kernels.cuh"

using namespace pixelfly;
using namespace pixelfly::cuda::dev;

template <class T>
std::vector<T> readArray(size_t n) {
  std::vector<T> v(n);
  if (n && std::fread(v.data(), sizeof(T), n, stdin) != n) throw std::runtime_error("short input");
  return v;
}

template <int B, class T>
void run(int precision, const sched::BsrView& v, int M, int chunkRows, const float* W, const float* X, const float* dY,
         const float* bias, float* Y, float* dX, float* dW, float* Y2) {
  const int fwdTiles = sched::forwardTiles(v, M), dxTiles = sched::backwardDataTiles(v, M);
  const int chunks = sched::backwardWeightChunks(M, chunkRows);
  const size_t n = static_cast<size_t>(v.nnz) * B * B;
  std::vector<float> part(n * (chunks > 1 ? chunks : 0));
  float* out = chunks == 1 ? dW : part.data();
  if (precision == 0) {
    emuLaunch(fwdTiles, kThreadsF32, bsrRowsF32<B, true>, v, M, X, W, bias, Y, false);
    emuLaunch(fwdTiles, kThreadsF32, bsrRowsF32<B, true>, v, M, X, W, bias, Y2, true);
    emuLaunch(dxTiles, kThreadsF32, bsrRowsF32<B, false>, v, M, dY, W, static_cast<const float*>(nullptr), dX, false);
    emuLaunch(v.nnz * chunks, kThreadsF32, bsrWeightF32<B>, v, M, chunkRows, dY, X, out, chunks == 1, false);
  } else {
    emuLaunch(fwdTiles, kThreadsTC, bsrRowsTC<B, true, T>, v, M, X, W, bias, Y, false);
    emuLaunch(fwdTiles, kThreadsTC, bsrRowsTC<B, true, T>, v, M, X, W, bias, Y2, true);
    emuLaunch(dxTiles, kThreadsTC, bsrRowsTC<B, false, T>, v, M, dY, W, static_cast<const float*>(nullptr), dX, false);
    emuLaunch(v.nnz * chunks, kThreadsTC, bsrWeightTC<B, T>, v, M, chunkRows, dY, X, out, chunks == 1, false);
  }
  if (chunks > 1) emuLaunch(static_cast<unsigned>((n + 255) / 256), 256, reduceChunks, static_cast<const float*>(part.data()), chunks, n, dW, false);
}

template <int B>
void byPrecision(int precision, const sched::BsrView& v, int M, int chunkRows, const float* W, const float* X,
                 const float* dY, const float* bias, float* Y, float* dX, float* dW, float* Y2) {
  if (precision == 2) run<B, half>(precision, v, M, chunkRows, W, X, dY, bias, Y, dX, dW, Y2);
  else run<B, __nv_bfloat16>(precision, v, M, chunkRows, W, X, dY, bias, Y, dX, dW, Y2);
}

int main() {
  try {
    const std::vector<int32_t> h = readArray<int32_t>(10);
    const int precision = h[0], block = h[1], M = h[7], chunkRows = h[8], hasBias = h[9];
    sched::BsrView v;
    v.block = block;
    v.blockRows = h[2];
    v.blockCols = h[3];
    v.nnz = h[4];
    v.out = h[5];
    v.in = h[6];
    const auto rowPtr = readArray<int32_t>(v.blockRows + 1), colIdx = readArray<int32_t>(v.nnz);
    const auto colPtr = readArray<int32_t>(v.blockCols + 1), rowIdx = readArray<int32_t>(v.nnz);
    const auto tBlock = readArray<int32_t>(v.nnz);
    v.rowPtr = rowPtr.data();
    v.colIdx = colIdx.data();
    v.colPtr = colPtr.data();
    v.rowIdx = rowIdx.data();
    v.tBlock = tBlock.data();
    const size_t nw = static_cast<size_t>(v.nnz) * block * block;
    const auto W = readArray<float>(nw), X = readArray<float>(size_t(M) * v.in), dY = readArray<float>(size_t(M) * v.out);
    const auto bias = readArray<float>(hasBias ? v.out : 0);
    std::vector<float> Y(size_t(M) * v.out), dX(size_t(M) * v.in), dW(nw);
    const float* b = hasBias ? bias.data() : nullptr;
    // Y2 starts at 1 everywhere, so the accumulating forward must give Y + 1.
    std::vector<float> Y2(Y.size(), 1.0f);
    if (block == 16) byPrecision<16>(precision, v, M, chunkRows, W.data(), X.data(), dY.data(), b, Y.data(), dX.data(), dW.data(), Y2.data());
    else if (block == 32) byPrecision<32>(precision, v, M, chunkRows, W.data(), X.data(), dY.data(), b, Y.data(), dX.data(), dW.data(), Y2.data());
    else if (block == 64) byPrecision<64>(precision, v, M, chunkRows, W.data(), X.data(), dY.data(), b, Y.data(), dX.data(), dW.data(), Y2.data());
    else throw std::runtime_error("block must be 16, 32 or 64");
    std::fwrite(Y.data(), sizeof(float), Y.size(), stdout);
    std::fwrite(dX.data(), sizeof(float), dX.size(), stdout);
    std::fwrite(dW.data(), sizeof(float), dW.size(), stdout);
    std::fwrite(Y2.data(), sizeof(float), Y2.size(), stdout);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emulate_kernels: %s\n", e.what());
    return 1;
  }
}
