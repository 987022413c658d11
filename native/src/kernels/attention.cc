// Public attention API (attention.h): argument and layout checks, then the active ISA's kernels
// (attention_isa.cc).
#include <stdexcept>
#include <string>

#include "attention_table.h"

namespace pixelfly {
namespace kernels {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

bool attentionBlock(int block) {
  for (int b : kAttentionBlocks)
    if (b == block) return true;
  return false;
}

const AttentionTable& table() {
  switch (activeIsa()) {
    case Isa::Amx:         // the bf16 paths run on AVX-512 CPUs: their attention is the AVX-512 one
    case Isa::Avx512Bf16:
    case Isa::Avx512:
      return kAvx512Attention;
    case Isa::Avx2:
      return kAvx2Attention;
    default:
      return kPortableAttention;
  }
}

void requireShape(const AttentionShape& s) {
  if (s.batch < 0 || s.heads < 1 || s.T < 1 || s.headDim < 1)
    fail("attention: batch >= 0, heads, T and headDim >= 1 required, got batch " + std::to_string(s.batch) + ", heads " +
         std::to_string(s.heads) + ", T " + std::to_string(s.T) + ", headDim " + std::to_string(s.headDim));
  if (s.headDim > 256) fail("attention: headDim " + std::to_string(s.headDim) + " is above the kernels' 256");
  if (!(s.scale > 0.f) || s.scale != s.scale) fail("attention: scale must be a positive number");
}

template <class F>
void requireHeads(const char* name, const HeadsView<F>& t, const AttentionShape& s) {
  if (s.batch == 0) return;
  if (!t.data) fail(std::string("attention: ") + name + " is null");
  if (t.rowStride < s.headDim && s.T > 1)
    fail(std::string("attention: ") + name + "'s row stride " + std::to_string(t.rowStride) + " is below headDim " +
         std::to_string(s.headDim));
}

void requireLayout(const BsrLayout& L, const AttentionShape& s) {
  const std::string err = validateAttentionLayout(L, s.T, s.causal);
  if (!err.empty()) fail("attention layout: " + err);
}

int resolveThreads(int n) { return n > 0 ? n : threads(); }

}  // namespace

std::string validateAttentionLayout(const BsrLayout& L, int T, bool causal) {
  if (!attentionBlock(L.block)) return "block: must be 16, 32, 64 or 128, got " + std::to_string(L.block);
  const int n = (T + L.block - 1) / L.block;
  if (L.blockRows != n || L.blockCols != n)
    return "grid: " + std::to_string(L.blockRows) + "x" + std::to_string(L.blockCols) + " blocks, expected " +
           std::to_string(n) + "x" + std::to_string(n) + " (T " + std::to_string(T) + " in blocks of " +
           std::to_string(L.block) + ")";
  // validateLayout knows the weight blocks (16..64); the index checks are the same for any block.
  BsrLayout asWeight = L;
  asWeight.block = 16;
  const std::string err = validateLayout(asWeight);
  if (!err.empty()) return err;
  for (int r = 0; r < n; r++) {
    bool diagonal = false;
    for (int k = L.rowPtr[r]; k < L.rowPtr[r + 1]; k++) {
      if (L.colIdx[k] == r) diagonal = true;
      if (causal && L.colIdx[k] > r)
        return "block (" + std::to_string(r) + ", " + std::to_string(L.colIdx[k]) +
               ") is above the diagonal, which a causal layout must not keep";
    }
    if (!diagonal) return "diagonal block " + std::to_string(r) + " is not kept (every query must see itself)";
  }
  return "";
}

void attentionForward(const BsrLayout& layout, const AttentionShape& s, Heads q, Heads k, Heads v, HeadsOut o,
                      float* lse, int threads) {
  requireShape(s);
  requireLayout(layout, s);
  requireHeads("q", q, s);
  requireHeads("k", k, s);
  requireHeads("v", v, s);
  requireHeads("o", o, s);
  if (s.batch > 0 && !lse) fail("attention: lse is null");
  if (s.batch == 0) return;
  AttentionProblem p;
  p.layout = layout;
  p.shape = s;
  p.q = q, p.k = k, p.v = v, p.oOut = o, p.lseOut = lse;
  table().forward(p, resolveThreads(threads));
}

void attentionBackward(const BsrLayout& layout, const AttentionShape& s, Heads q, Heads k, Heads v, Heads o,
                       const float* lse, Heads dO, HeadsOut dq, HeadsOut dk, HeadsOut dv, int threads,
                       const float* dlse) {
  requireShape(s);
  requireLayout(layout, s);
  requireHeads("q", q, s);
  requireHeads("k", k, s);
  requireHeads("v", v, s);
  requireHeads("o", o, s);
  requireHeads("dO", dO, s);
  requireHeads("dq", dq, s);
  requireHeads("dk", dk, s);
  requireHeads("dv", dv, s);
  if (s.batch > 0 && !lse) fail("attention: lse is null");
  if (s.batch == 0) return;
  AttentionProblem p;
  p.layout = layout;
  p.shape = s;
  p.q = q, p.k = k, p.v = v, p.o = o, p.lse = lse, p.dO = dO, p.dq = dq, p.dk = dk, p.dv = dv, p.dlse = dlse;
  table().backward(p, resolveThreads(threads));
}

}  // namespace kernels
}  // namespace pixelfly
