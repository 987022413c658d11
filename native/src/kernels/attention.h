// Block-sparse attention cores (Pixelfly attention and dense attention, which is the same
// computation over every score block): the C++ interface the training engine and the PyTorch
// extension call directly. Plain C++, synchronous, thread-safe; each call parallelises over
// `threads` workers (0: kernels::threads()). The method and its choices: ATTENTION.md.
//
// For every (batch b, head h) the scores s_ij = scale·q_i·k_j are computed only at the kept blocks
// of `layout` (a BsrLayout over the ceil(T/block)² grid of (query block, key block) pairs, core's
// block order), and, when `causal`, only for j ≤ i. Each query row's softmax runs over exactly those
// scores:  o_i = Σ_j softmax_j(s_ij) v_j,  lse_i = log Σ_j exp(s_ij).
// The kernels never hold the T×T matrix: per query block they keep a running row max and sum
// (online softmax) and a block of output; the backward recomputes the probabilities from lse.
//
// Tensors are [batch][head][token][feature] views with the features contiguous and any other
// strides (in elements), so the engine passes slices of its qkv rows (q | k | v, heads
// contiguous) and PyTorch passes [B, T, H, hd] or [B, H, T, hd] tensors without copies. lse is a
// contiguous [batch][head][T] array.
#pragma once

#include <cstdint>
#include <string>

#include "kernels.h"

namespace pixelfly {
namespace kernels {

template <class F>
struct HeadsView {
  F* data = nullptr;
  int64_t batchStride = 0, headStride = 0, rowStride = 0;
  F* row(int b, int h, int t) const { return data + b * batchStride + h * headStride + t * rowStride; }
};
using Heads = HeadsView<const float>;
using HeadsOut = HeadsView<float>;

struct AttentionShape {
  int batch = 0, heads = 0, T = 0, headDim = 0;
  bool causal = false;
  float scale = 0.f;  // usually 1/sqrt(headDim)
};

// Score block sizes the kernels implement.
constexpr int kAttentionBlocks[] = {16, 32, 64, 128};

// Checks a score layout for T tokens once, when it is built or received ("" when valid): the index
// itself (as validateLayout, any block of kAttentionBlocks), a square grid of ceil(T/block) blocks,
// every diagonal block kept (so every query has a key, the softmax is defined), and no block above
// the diagonal when causal.
std::string validateAttentionLayout(const BsrLayout& layout, int T, bool causal);

// o and lse are overwritten.
void attentionForward(const BsrLayout& layout, const AttentionShape& s, Heads q, Heads k, Heads v, HeadsOut o,
                      float* lse, int threads = 0);

// dq, dk, dv (overwritten) from do_, given the forward's o and lse. dq/dk/dv must not overlap the
// inputs (they may be slices of one dqkv buffer). `dlse` (optional, [batch][head][T] like lse) is a
// gradient on lse itself, for callers that use lse beyond normalising this softmax (the sparse +
// low-rank attention mixes the two parts by it): ∂lse_i/∂s_ij = p_ij, so it adds p_ij·dlse_i to
// each dS_ij, i.e. Δ_i = dO_i·o_i − dlse_i.
void attentionBackward(const BsrLayout& layout, const AttentionShape& s, Heads q, Heads k, Heads v, Heads o,
                       const float* lse, Heads dO, HeadsOut dq, HeadsOut dk, HeadsOut dv, int threads = 0,
                       const float* dlse = nullptr);

// The plain reference (scalar loops, double accumulation, the probabilities of each row
// materialised), which the kernels are checked against; same contract. Single-threaded.
void attentionForwardReference(const BsrLayout& layout, const AttentionShape& s, Heads q, Heads k, Heads v, HeadsOut o,
                               float* lse);
void attentionBackwardReference(const BsrLayout& layout, const AttentionShape& s, Heads q, Heads k, Heads v,
                                Heads dO, HeadsOut dq, HeadsOut dk, HeadsOut dv, const float* dlse = nullptr);

}  // namespace kernels
}  // namespace pixelfly
