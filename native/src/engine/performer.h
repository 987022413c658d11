// The low-rank term of Pixelfly attention (native/src/kernels/ATTENTION.md, (A1), (A4), (A5)):
// Performer features φ estimate exp(scale·q·k) on the score blocks the layout drops (allowed, not
// kept), and one normaliser mixes that estimate with the sparse part the kernels computed. The
// authors' sparse + low-rank attention; pixelfly_torch's `_with_low_rank` is the same math.
//
// Host memory, (batch, head) work items on the engine's threads, loops compiled per x86-64 level
// like pointwise.cc's: the CPU backend's. Per head it holds the features of every query and key and
// each query block's sums over its dropped key blocks, never a T×T array.
#pragma once
#include <vector>

#include "backend.h"

namespace pixelfly {

// The score blocks the low-rank term estimates, n × n (n = layout.blockRows): allowed (every block,
// or J ≤ I when causal) and not kept. Every backend's term uses these.
std::vector<char> droppedScoreBlocks(const BsrIndex& layout, bool causal);
// Throws std::invalid_argument unless m is even and ≥ 2 and the projection holds m/2 × headDim values.
void checkLowRankShape(size_t projectionValues, int features, int headDim);

// The CPU backend's LowRankTerm (Backend::lowRankTerm).
class PerformerTerm final : public LowRankTerm {
 public:
  // projection: the m/2 rows ω_r (head_dim each) of a Gaussian orthogonal matrix, drawn once
  // (core/attention.ts performerProjection) and fixed; m = `features` (even). layout: the core's
  // score layout, whose dropped blocks (allowed, not kept) are found once here.
  PerformerTerm(std::vector<float> projection, int features, int headDim, const BsrIndex& layout, bool causal);

  void forward(const AttentionCore& core, const float* qkv, const float* lse, float* ctx) override;
  const float* sparseOut() const override { return os_.data(); }
  void backward(const AttentionCore& core, const float* qkv, const float* dctx, float* dSparse, float* dlse, float* dqkv) override;

 private:
  std::vector<float> w_;   // [m/2][hd]
  std::vector<float> wT_;  // [hd][m/2]: ωᵀ·scale^½, the features' product's right-hand side
  int m_, hd_, bs_, n_;
  // Saved by forward, per (b, h) item: features of queries and keys (shifted, see (A5)), each query
  // block's sums over its dropped key blocks, the low-rank output u and the mixing weights.
  std::vector<float> os_, phiQ_, phiK_, shiftQ_, kvC_, kC_, u_, ws_, wl_;
  int B_ = 0, T_ = 0, H_ = 0;
  std::vector<char> dropped_;  // n × n score blocks: allowed and not kept
};

}  // namespace pixelfly
