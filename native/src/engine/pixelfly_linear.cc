#include "pixelfly_linear.h"

namespace pixelfly {

namespace {

// The forward scales x by (1 − g) when in ≤ out (see pixelflyLinearForward).
bool scalesInput(const PixelflyLinearShape& s) { return s.sparse.in <= s.sparse.out; }

}  // namespace

size_t pixelflySlotSize(const PixelflyLinearShape& s, PixelflySlot slot, int M) {
  const size_t m = static_cast<size_t>(M), r = static_cast<size_t>(s.rank);
  const size_t in = static_cast<size_t>(s.sparse.in), out = static_cast<size_t>(s.sparse.out);
  if (r == 0) return 0;  // the block-sparse product alone needs no other arrays
  switch (slot) {
    case PixelflySlot::H:
    case PixelflySlot::GatedH:
    case PixelflySlot::DH:
      return m * r;
    case PixelflySlot::Gate:
    case PixelflySlot::DZ:
      return m;
    case PixelflySlot::Scaled:
      return scalesInput(s) ? m * in : 0;
    case PixelflySlot::Ut:
      return scalesInput(s) ? 0 : r * out;
    case PixelflySlot::DX:
      return m * in;
    case PixelflySlot::DYScaled:
      return scalesInput(s) ? 0 : m * out;
  }
  return 0;
}

void pixelflyLinearForward(Backend& be, const PixelflyLinearShape& s, int M, const float* x,
                           const PixelflyLinearParams& p, PixelflyMemory& mem, float* y) {
  const int in = s.sparse.in, out = s.sparse.out, r = s.rank;
  if (r == 0) {
    be.bsrForward(s.sparse, M, x, p.blocks, p.bias, y, false);
    return;
  }
  // y = (1 − g)·s + g·l + bias, never materialising l:
  //  - in ≤ out: y = (g∘h)·Uᵀ + bias, then y += ((1 − g)∘x)·Wᵀ: two products write y and no extra
  //    pass reads it; (1 − g)∘x is kept, the sparse weight's gradient needs it again;
  //  - in > out: y = s, then one row pass applies the gate, the bias and + (g∘h)·Uᵀ (a (1 − g)∘x
  //    copy would cost more than that pass over the narrower y).
  auto slot = [&](PixelflySlot k) { return mem.get(k, pixelflySlotSize(s, k, M)); };
  float* h = slot(PixelflySlot::H);
  float* g = slot(PixelflySlot::Gate);
  float* hs = slot(PixelflySlot::GatedH);
  const bool scaleX = scalesInput(s);
  float* xs = scaleX ? slot(PixelflySlot::Scaled) : nullptr;
  be.denseForward(M, in, r, x, p.V, nullptr, h, false);
  be.pixelflyGate(M, x, in, p.gw, p.gb, h, r, g, hs, xs);
  if (scaleX) {
    be.denseForward(M, r, out, hs, p.U, p.bias, y, false);
    be.bsrForward(s.sparse, M, xs, p.blocks, nullptr, y, true);
  } else {
    be.bsrForward(s.sparse, M, x, p.blocks, nullptr, y, false);
    float* ut = slot(PixelflySlot::Ut);
    be.transpose(1, out, r, p.U, ut);
    be.pixelflyLerpRows(M, y, out, g, p.bias, hs, ut, r);
  }
}

void pixelflyLinearBackward(Backend& be, const PixelflyLinearShape& s, int M, const float* x, const float* dy,
                            const PixelflyLinearParams& p, PixelflyMemory& mem, const PixelflyLinearGrads& grads,
                            float* dx) {
  const int in = s.sparse.in, out = s.sparse.out, r = s.rank;
  auto slot = [&](PixelflySlot k) { return mem.get(k, pixelflySlotSize(s, k, M)); };
  // The bias gradient (column sums of dy) comes with the sparse dW whenever that product reads dy
  // itself: one pass over the M×out gradient fewer.
  if (r == 0) {
    be.bsrBackwardWeight(s.sparse, M, dy, x, grads.blocks, true, grads.bias);
    if (dx) be.bsrBackwardData(s.sparse, M, dy, p.blocks, dx, false);
    return;
  }
  // y = s + g·(l − s) with one gate value per row, so dL/ds = (1 − g)·dy and dL/dl = g·dy are row
  // scalings of dy: scale the narrower operand instead of materialising two M×out arrays.
  //   dW_sparse = dyᵀ·((1 − g)∘x) = ((1 − g)∘dy)ᵀ·x     dx_sparse = (1 − g)∘(dy·W)
  //   dU = dyᵀ·(g∘h)                                    dh = g∘(dy·U)   (one pass over dy: lowRankBackward)
  //   dz = g(1 − g)·Σ_j dy_j (l_j − s_j)   through the sigmoid (see pointwise::pixelflyMixBackward)
  const float* h = slot(PixelflySlot::H);
  const float* g = slot(PixelflySlot::Gate);
  const float* hs = slot(PixelflySlot::GatedH);
  if (!dx) dx = slot(PixelflySlot::DX);  // the gate's gradient still needs dy·W
  float* dh = slot(PixelflySlot::DH);
  float* dz = slot(PixelflySlot::DZ);
  be.bsrBackwardData(s.sparse, M, dy, p.blocks, dx, false);
  be.lowRankBackward(M, r, out, dy, p.U, hs, dh, grads.U);
  be.pixelflyMixBackward(M, x, in, p.gw, p.V, h, r, g, dx, dh, dz, grads.gw);
  if (scalesInput(s)) {
    be.bsrBackwardWeight(s.sparse, M, dy, slot(PixelflySlot::Scaled), grads.blocks, true, grads.bias);
  } else {
    float* dys = slot(PixelflySlot::DYScaled);
    be.scaleRowsOneMinus(M, dy, out, g, dys);
    be.bsrBackwardWeight(s.sparse, M, dys, x, grads.blocks, true, nullptr);
    if (grads.bias) be.biasGrad(M, out, dy, grads.bias, true);
  }
  be.denseBackwardWeight(M, in, r, dh, x, grads.V, true);
  be.biasGrad(M, 1, dz, grads.gb, true);
}

}  // namespace pixelfly
