// PixelflyLinear (the authors' SparseLRLinear) forward and backward on a Backend, over memory the
// caller owns: the engine's layer (modules.cc) keeps its arrays in Buffers, the PyTorch operators
// (pytorch/csrc) in tensors that autograd saves. One implementation, so a model trained by the
// daemon and the same model in the user's PyTorch loop compute the same thing.
//
//   y = (1 − g)·s + g·l + bias,   s = x·Wᵀ (block-sparse),  l = h·Uᵀ with h = x·Vᵀ,
//   g = sigmoid(x·gw + gb), one gate value per row (token).
//
// rank 0 is the block-sparse product alone (no low-rank term, no gate).
#pragma once
#include <cstddef>

#include "backend.h"

namespace pixelfly {

struct PixelflyLinearShape {
  BsrShape sparse;  // the block index and the logical out×in
  int rank = 0;
};

// Parameters in backend memory (V, U, gw, gb only when rank > 0; bias may be null).
struct PixelflyLinearParams {
  const float* blocks = nullptr;  // [nnz][block][block], core's block order
  const float* V = nullptr;       // lr_weight1 [rank × in]
  const float* U = nullptr;       // lr_weight2 [out × rank]
  const float* gw = nullptr;      // gate weight [in]
  const float* gb = nullptr;      // gate bias [1]
  const float* bias = nullptr;    // [out]
};

// Parameter gradients, ADDED to (null for an absent bias).
struct PixelflyLinearGrads {
  float* blocks = nullptr;
  float* V = nullptr;
  float* U = nullptr;
  float* gw = nullptr;
  float* gb = nullptr;
  float* bias = nullptr;
};

// The arrays the layer uses besides its inputs and outputs. The forward fills the first four and
// the backward reads them again; the rest is scratch for one call.
enum class PixelflySlot : int {
  H = 0,       // x·Vᵀ                                            [M × rank]
  Gate,        // g                                               [M]
  GatedH,      // g∘h                                             [M × rank]
  Scaled,      // (1 − g)∘x when in ≤ out (forward's operand, reused by dW)  [M × in]
  Ut,          // Uᵀ for the forward's row pass when in > out     [rank × out]
  DH,          // dL/dh                                           [M × rank]
  DZ,          // dL/d(gate logit)                                [M]
  DX,          // dy·W when the caller wants no input gradient    [M × in]
  DYScaled,    // (1 − g)∘dy when in > out                        [M × out]
};
constexpr int kPixelflySlots = 9;
constexpr int kPixelflySavedSlots = 4;  // H, Gate, GatedH, Scaled: what the backward needs again

// Hands out the memory for a slot: at least n floats in the backend's memory, valid until the call
// that asked returns (the saved slots: until the backward). Asked only for the slots a shape uses.
class PixelflyMemory {
 public:
  virtual ~PixelflyMemory() = default;
  virtual float* get(PixelflySlot slot, size_t n) = 0;
};

// Floats each slot takes for M rows (0 when the shape does not use it).
size_t pixelflySlotSize(const PixelflyLinearShape& s, PixelflySlot slot, int M);

// y[M×out] = the layer's output (overwritten).
void pixelflyLinearForward(Backend& be, const PixelflyLinearShape& s, int M, const float* x,
                           const PixelflyLinearParams& p, PixelflyMemory& mem, float* y);

// Gradients for the forward that saw x (its saved slots still in `mem`): parameter gradients added
// to `g`; dx[M×in] overwritten when not null.
void pixelflyLinearBackward(Backend& be, const PixelflyLinearShape& s, int M, const float* x, const float* dy,
                            const PixelflyLinearParams& p, PixelflyMemory& mem, const PixelflyLinearGrads& g,
                            float* dx);

}  // namespace pixelfly
