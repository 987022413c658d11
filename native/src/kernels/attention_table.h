// Internal: the per-instruction-set attention kernels (attention_isa.cc, compiled once per ISA in
// binding.gyp's kernels_* libraries, like isa_kernels.cc); attention.cc checks arguments and calls
// the table of the active ISA.
#pragma once

#include "attention.h"

namespace pixelfly {
namespace kernels {

// One call's operands, already checked (forward reads q, k, v and writes o, lse; backward also
// reads o, lse, dO and writes dq, dk, dv).
struct AttentionProblem {
  BsrLayout layout;
  AttentionShape shape;
  Heads q, k, v, o, dO;
  HeadsOut oOut, dq, dk, dv;
  float* lseOut = nullptr;
  const float* lse = nullptr;
  const float* dlse = nullptr;  // optional gradient on lse (backward)
};

struct AttentionTable {
  void (*forward)(const AttentionProblem& p, int threads);
  void (*backward)(const AttentionProblem& p, int threads);
};

extern const AttentionTable kPortableAttention;
extern const AttentionTable kAvx2Attention;
extern const AttentionTable kAvx512Attention;

}  // namespace kernels
}  // namespace pixelfly
