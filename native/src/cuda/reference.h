// Host execution of the GPU schedule (bsr_schedule.h): the same tiles, the same walk over kept
// blocks, the same padding limits and the same chunked, ordered dW reduction, computed with scalar
// loops. It is what the schedule tests run on machines without a GPU (compared with the CPU
// kernels of issue 3), and with `bf16Inputs` it is the matched reference for the tensor-core path.
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

#include "cuda/bsr_schedule.h"

namespace pixelfly {
namespace sched {

inline float loadIn(float x, bool bf16) { return bf16 ? roundToBf16(x) : x; }

// Y[M×out] (=|+=) X[M×in]·Wᵀ (+ bias).
inline void referenceForward(const BsrView& v, int M, const float* X, const float* Wp, const float* bias, float* Y,
                             bool accumulate, bool bf16Inputs) {
  const int B = v.block;
  std::vector<float> acc(static_cast<size_t>(kTileM) * B);
  for (int id = 0; id < forwardTiles(v, M); id++) {
    const Tile t = decodeTile(id, M, kTileM);
    const int r = t.major, nOut = realOut(v, r);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int s = 0; s < forwardSteps(v, r); s++) {
      const Step st = forwardStep(v, r, s);
      const int nIn = realIn(v, st.other);
      const float* w = Wp + static_cast<size_t>(st.k) * B * B;
      for (int m = 0; m < t.rows; m++) {
        const float* x = X + static_cast<size_t>(t.m0 + m) * v.in + st.other * B;
        for (int j = 0; j < nOut; j++) {
          float sum = 0.0f;
          for (int kk = 0; kk < nIn; kk++) sum += loadIn(x[kk], bf16Inputs) * loadIn(w[j * B + kk], bf16Inputs);
          acc[static_cast<size_t>(m) * B + j] += sum;
        }
      }
    }
    for (int m = 0; m < t.rows; m++)
      for (int j = 0; j < nOut; j++) {
        float* y = Y + static_cast<size_t>(t.m0 + m) * v.out + r * B + j;
        const float val = acc[static_cast<size_t>(m) * B + j] + (bias ? bias[r * B + j] : 0.0f);
        *y = accumulate ? *y + val : val;
      }
  }
}

// dX[M×in] (=|+=) dY[M×out]·W.
inline void referenceBackwardData(const BsrView& v, int M, const float* dY, const float* Wp, float* dX,
                                  bool accumulate, bool bf16Inputs) {
  const int B = v.block;
  std::vector<float> acc(static_cast<size_t>(kTileM) * B);
  for (int id = 0; id < backwardDataTiles(v, M); id++) {
    const Tile t = decodeTile(id, M, kTileM);
    const int c = t.major, nIn = realIn(v, c);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int s = 0; s < backwardDataSteps(v, c); s++) {
      const Step st = backwardDataStep(v, c, s);
      const int nOut = realOut(v, st.other);
      const float* w = Wp + static_cast<size_t>(st.k) * B * B;
      for (int m = 0; m < t.rows; m++) {
        const float* dy = dY + static_cast<size_t>(t.m0 + m) * v.out + st.other * B;
        for (int j = 0; j < nIn; j++) {
          float sum = 0.0f;
          for (int kk = 0; kk < nOut; kk++) sum += loadIn(dy[kk], bf16Inputs) * loadIn(w[kk * B + j], bf16Inputs);
          acc[static_cast<size_t>(m) * B + j] += sum;
        }
      }
    }
    for (int m = 0; m < t.rows; m++)
      for (int j = 0; j < nIn; j++) {
        float* dx = dX + static_cast<size_t>(t.m0 + m) * v.in + c * B + j;
        const float val = acc[static_cast<size_t>(m) * B + j];
        *dx = accumulate ? *dx + val : val;
      }
  }
}

// dWp (=|+=) dYᵀ·X at the kept blocks, chunked over M exactly like the kernel (chunkRows from
// backwardWeightChunkRows), partials summed in chunk order.
inline void referenceBackwardWeight(const BsrView& v, int M, const float* dY, const float* X, float* dWp,
                                    bool accumulate, bool bf16Inputs, int chunkRows) {
  const int B = v.block;
  const size_t bb = static_cast<size_t>(B) * B;
  const int chunks = backwardWeightChunks(M, chunkRows);
  std::vector<float> part(static_cast<size_t>(chunks) * v.nnz * bb, 0.0f);
  for (int id = 0; id < v.nnz * chunks; id++) {
    const Tile t = backwardWeightTile(id, M, chunkRows);
    const int k = t.major, chunk = t.m0 / chunkRows;
    const int r = blockRowOf(v, k), c = v.colIdx[k];
    const int nOut = realOut(v, r), nIn = realIn(v, c);
    float* p = &part[(static_cast<size_t>(chunk) * v.nnz + k) * bb];
    for (int m = t.m0; m < t.m0 + t.rows; m++) {
      const float* dy = dY + static_cast<size_t>(m) * v.out + r * B;
      const float* x = X + static_cast<size_t>(m) * v.in + c * B;
      for (int i = 0; i < nOut; i++)
        for (int j = 0; j < nIn; j++) p[i * B + j] += loadIn(dy[i], bf16Inputs) * loadIn(x[j], bf16Inputs);
    }
  }
  for (size_t e = 0; e < static_cast<size_t>(v.nnz) * bb; e++) {
    float sum = 0.0f;
    for (int ch = 0; ch < chunks; ch++) sum += part[static_cast<size_t>(ch) * v.nnz * bb + e];
    dWp[e] = accumulate ? dWp[e] + sum : sum;
  }
}

}  // namespace sched
}  // namespace pixelfly
