// The `pixelfly` torch operators: the project's kernels (native/src/kernels) and PixelflyLinear's
// forward/backward (native/src/engine/pixelfly_linear.cc) on CPU tensors, registered with
// TORCH_LIBRARY so Python reaches them as torch.ops.pixelfly.* (pixelfly_torch/functional.py wraps
// them in autograd Functions).
//
// Conventions: activations are 2-D [M × features] fp32, contiguous; a Pixelfly weight is its packed
// blocks [nnz][block][block] and its block index, one int32 tensor (pixelfly_torch/layout.py's
// block_index). Every call checks shapes and the index (O(nnz), small next to the product), so a
// bad argument is a Python RuntimeError naming it, never a read out of bounds. Threads follow
// torch.get_num_threads(); results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include <array>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/pixelfly_linear.h"
#include "kernels/kernels.h"

namespace pixelfly {
namespace torch_ops {
namespace {

namespace k = kernels;
using at::Tensor;
using c10::optional;

// The kernels' workers and the engine's row loops run on torch's intra-op thread count.
void followTorchThreads() {
  const int n = std::max(1, at::get_num_threads());
  k::setThreads(n);
  omp_set_num_threads(n);
}

void requireActivation(const char* name, const Tensor& t, int64_t cols) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, ": expected float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 2, name, ": expected a 2-D tensor [rows × features], got ", t.dim(), " dimensions");
  TORCH_CHECK(t.is_contiguous(), name, ": must be contiguous");
  TORCH_CHECK(t.size(0) <= INT32_MAX, name, ": ", t.size(0), " rows exceed the kernels' int32 range");
  if (cols >= 0) TORCH_CHECK(t.size(1) == cols, name, ": expected ", cols, " features, got ", t.size(1));
}

void requireParam(const char* name, const Tensor& t, at::IntArrayRef shape) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, ": expected float32, got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, name, ": expected shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, ": must be contiguous");
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A Pixelfly weight's block index, read from the packed int32 tensor and checked in full.
struct Layout {
  BsrIndex index;
  int out = 0, in = 0;

  // `nnz` < 0: derive it from the index's length (the weight gradient has no blocks to count).
  Layout(const Tensor& packed, int64_t block, int64_t out_, int64_t in_, int64_t nnz) {
    TORCH_CHECK(packed.device().is_cpu() && packed.scalar_type() == at::kInt && packed.dim() == 1 && packed.is_contiguous(),
                "index: expected a contiguous 1-D int32 CPU tensor (pixelfly_torch.layout.block_index)");
    TORCH_CHECK(block == 16 || block == 32 || block == 64, "block: the kernels implement 16, 32 and 64, got ", block);
    TORCH_CHECK(out_ >= 1 && out_ <= INT32_MAX && in_ >= 1 && in_ <= INT32_MAX, "out/in features must be in 1..2^31-1, got ",
                out_, "/", in_);
    const int64_t br = ceilDiv(out_, block), bc = ceilDiv(in_, block);
    const int64_t rest = packed.numel() - br - bc - 2;
    if (nnz < 0) {
      TORCH_CHECK(rest >= 0 && rest % 3 == 0, "index: ", packed.numel(), " entries do not fit ", br, "x", bc,
                  " blocks (expected block_rows + block_cols + 2 + 3·nnz)");
      nnz = rest / 3;
    }
    TORCH_CHECK(rest == 3 * nnz, "index: ", packed.numel(), " entries, expected ", br + bc + 2 + 3 * nnz, " for ", br, "x",
                bc, " blocks of ", block, " with ", nnz, " kept");
    const int32_t* p = packed.data_ptr<int32_t>();
    auto take = [&](std::vector<int32_t>& v, int64_t n) {
      v.assign(p, p + n);
      p += n;
    };
    index.block = (int)block;
    index.blockRows = (int)br;
    index.blockCols = (int)bc;
    index.nnz = (int)nnz;
    take(index.rowPtr, br + 1);
    take(index.colIdx, nnz);
    take(index.colPtr, bc + 1);
    take(index.rowIdx, nnz);
    take(index.tBlock, nnz);
    out = (int)out_;
    in = (int)in_;
    const std::string err = k::validateLayout(view());
    TORCH_CHECK(err.empty(), "index: ", err);
  }

  k::BsrLayout view() const {
    k::BsrLayout L;
    L.block = index.block;
    L.blockRows = index.blockRows;
    L.blockCols = index.blockCols;
    L.nnz = index.nnz;
    L.rowPtr = index.rowPtr.data();
    L.colIdx = index.colIdx.data();
    L.colPtr = index.colPtr.data();
    L.rowIdx = index.rowIdx.data();
    L.tBlock = index.tBlock.data();
    return L;
  }
  k::BsrWeight weight(const Tensor& blocks) const {
    k::BsrWeight w;
    w.layout = view();
    w.out = out;
    w.in = in;
    w.blocks = blocks.defined() ? blocks.data_ptr<float>() : nullptr;
    return w;
  }
  BsrShape shape() const { return {&index, out, in}; }
};

int64_t blockOf(const Tensor& blocks) {
  TORCH_CHECK(blocks.dim() == 3 && blocks.size(1) == blocks.size(2), "blocks: expected [nnz, block, block], got ",
              blocks.sizes());
  return blocks.size(1);
}

Tensor empty2d(int64_t rows, int64_t cols) { return at::empty({rows, cols}, at::TensorOptions().dtype(at::kFloat)); }

// ---------------------------------------------------------------- block-sparse products

Tensor bsrForward(const Tensor& x, const Tensor& blocks, const Tensor& index, int64_t out, const optional<Tensor>& bias) {
  const int64_t b = blockOf(blocks);
  requireActivation("x", x, -1);
  const Layout L(index, b, out, x.size(1), blocks.size(0));
  requireParam("blocks", blocks, {L.index.nnz, b, b});
  if (bias) requireParam("bias", *bias, {out});
  followTorchThreads();
  Tensor y = empty2d(x.size(0), out);
  k::bsrForward(L.weight(blocks), (int)x.size(0), x.data_ptr<float>(), L.in, bias ? bias->data_ptr<float>() : nullptr,
                y.data_ptr<float>(), L.out, false);
  return y;
}

Tensor bsrBackwardData(const Tensor& dy, const Tensor& blocks, const Tensor& index, int64_t in) {
  const int64_t b = blockOf(blocks);
  requireActivation("dy", dy, -1);
  const Layout L(index, b, dy.size(1), in, blocks.size(0));
  requireParam("blocks", blocks, {L.index.nnz, b, b});
  followTorchThreads();
  Tensor dx = empty2d(dy.size(0), in);
  k::bsrBackwardData(L.weight(blocks), (int)dy.size(0), dy.data_ptr<float>(), L.out, dx.data_ptr<float>(), L.in, false);
  return dx;
}

Tensor bsrBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& index, int64_t block) {
  requireActivation("dy", dy, -1);
  requireActivation("x", x, -1);
  TORCH_CHECK(dy.size(0) == x.size(0), "dy and x: ", dy.size(0), " and ", x.size(0), " rows differ");
  const Layout L(index, block, dy.size(1), x.size(1), -1);
  followTorchThreads();
  Tensor dw = at::empty({L.index.nnz, block, block}, at::TensorOptions().dtype(at::kFloat));
  k::bsrBackwardWeight(L.weight(Tensor()), (int)x.size(0), dy.data_ptr<float>(), L.out, x.data_ptr<float>(), L.in,
                       dw.data_ptr<float>(), false);
  return dw;
}

// ---------------------------------------------------------------- dense products (our GEMM)

Tensor denseForward(const Tensor& x, const Tensor& weight, const optional<Tensor>& bias) {
  requireActivation("x", x, -1);
  TORCH_CHECK(weight.dim() == 2, "weight: expected [out, in], got ", weight.sizes());
  const int64_t out = weight.size(0), in = x.size(1);
  requireParam("weight", weight, {out, in});
  if (bias) requireParam("bias", *bias, {out});
  followTorchThreads();
  Tensor y = empty2d(x.size(0), out);
  k::denseForward((int)x.size(0), (int)in, (int)out, x.data_ptr<float>(), (int)in, weight.data_ptr<float>(),
                  bias ? bias->data_ptr<float>() : nullptr, y.data_ptr<float>(), (int)out, false);
  return y;
}

Tensor denseBackwardData(const Tensor& dy, const Tensor& weight) {
  requireActivation("dy", dy, -1);
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == dy.size(1), "weight: expected [", dy.size(1), ", in], got ",
              weight.sizes());
  requireParam("weight", weight, {weight.size(0), weight.size(1)});
  const int64_t out = weight.size(0), in = weight.size(1);
  followTorchThreads();
  Tensor dx = empty2d(dy.size(0), in);
  k::denseBackwardData((int)dy.size(0), (int)in, (int)out, dy.data_ptr<float>(), (int)out, weight.data_ptr<float>(),
                       dx.data_ptr<float>(), (int)in, false);
  return dx;
}

Tensor denseBackwardWeight(const Tensor& dy, const Tensor& x) {
  requireActivation("dy", dy, -1);
  requireActivation("x", x, -1);
  TORCH_CHECK(dy.size(0) == x.size(0), "dy and x: ", dy.size(0), " and ", x.size(0), " rows differ");
  const int64_t out = dy.size(1), in = x.size(1);
  followTorchThreads();
  Tensor dw = empty2d(out, in);
  k::denseBackwardWeight((int)x.size(0), (int)in, (int)out, dy.data_ptr<float>(), (int)out, x.data_ptr<float>(), (int)in,
                         dw.data_ptr<float>(), false);
  return dw;
}

// ---------------------------------------------------------------- PixelflyLinear

// The layer's arrays as tensors: the saved ones go back to Python for autograd to keep.
struct TensorMemory final : PixelflyMemory {
  std::array<Tensor, kPixelflySlots> slots;
  float* get(PixelflySlot slot, size_t n) override {
    Tensor& t = slots[static_cast<int>(slot)];
    if (!t.defined()) t = at::empty({static_cast<int64_t>(n)}, at::TensorOptions().dtype(at::kFloat));
    TORCH_CHECK(static_cast<size_t>(t.numel()) >= n, "saved: slot ", static_cast<int>(slot), " holds ", t.numel(),
                " floats, the layer needs ", n);
    return t.data_ptr<float>();
  }
};

struct LayerArgs {
  Layout layout;
  PixelflyLinearShape shape;
  PixelflyLinearParams params;
};

LayerArgs layerArgs(int64_t in, const Tensor& blocks, const Tensor& index, int64_t out, const optional<Tensor>& bias,
                    const optional<Tensor>& lr1, const optional<Tensor>& lr2, const optional<Tensor>& gw,
                    const optional<Tensor>& gb) {
  const int64_t b = blockOf(blocks);
  LayerArgs a{Layout(index, b, out, in, blocks.size(0)), {}, {}};
  requireParam("blocks", blocks, {a.layout.index.nnz, b, b});
  const bool lowRank = lr1.has_value();
  TORCH_CHECK(lowRank == lr2.has_value() && lowRank == gw.has_value() && lowRank == gb.has_value(),
              "lr_weight1, lr_weight2, gate_weight and gate_bias: give all four (rank > 0) or none (rank 0)");
  const int64_t rank = lowRank ? lr1->size(0) : 0;
  a.shape = {a.layout.shape(), static_cast<int>(rank)};
  a.params.blocks = blocks.data_ptr<float>();
  if (lowRank) {
    TORCH_CHECK(rank >= 1, "lr_weight1: rank must be >= 1");
    requireParam("lr_weight1", *lr1, {rank, in});
    requireParam("lr_weight2", *lr2, {out, rank});
    requireParam("gate_weight", *gw, {1, in});
    requireParam("gate_bias", *gb, {1});
    a.params.V = lr1->data_ptr<float>();
    a.params.U = lr2->data_ptr<float>();
    a.params.gw = gw->data_ptr<float>();
    a.params.gb = gb->data_ptr<float>();
  }
  if (bias) {
    requireParam("bias", *bias, {out});
    a.params.bias = bias->data_ptr<float>();
  }
  return a;
}

std::tuple<Tensor, std::vector<Tensor>> pixelflyLinearForwardOp(const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                                 int64_t out, const optional<Tensor>& bias,
                                                                 const optional<Tensor>& lr1, const optional<Tensor>& lr2,
                                                                 const optional<Tensor>& gw, const optional<Tensor>& gb) {
  requireActivation("x", x, -1);
  const LayerArgs a = layerArgs(x.size(1), blocks, index, out, bias, lr1, lr2, gw, gb);
  followTorchThreads();
  Tensor y = empty2d(x.size(0), out);
  TensorMemory mem;
  pixelflyLinearForward(*cpuBackend(), a.shape, (int)x.size(0), x.data_ptr<float>(), a.params, mem, y.data_ptr<float>());
  // Slots this shape does not use go back empty (a Tensor[] cannot hold None).
  std::vector<Tensor> saved;
  for (int i = 0; i < kPixelflySavedSlots; i++)
    saved.push_back(mem.slots[i].defined() ? mem.slots[i] : at::empty({0}, at::TensorOptions().dtype(at::kFloat)));
  return {y, saved};
}

// Gradients [dx, dblocks, dbias, dlr_weight1, dlr_weight2, dgate_weight, dgate_bias]; undefined (None)
// for the input when not wanted and for parameters the layer does not have.
std::vector<Tensor> pixelflyLinearBackwardOp(const Tensor& dy, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                             const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                             const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                             const optional<Tensor>& gb, at::TensorList saved, bool needInputGrad) {
  requireActivation("x", x, -1);
  requireActivation("dy", dy, -1);
  TORCH_CHECK(dy.size(0) == x.size(0), "dy and x: ", dy.size(0), " and ", x.size(0), " rows differ");
  const LayerArgs a = layerArgs(x.size(1), blocks, index, dy.size(1), bias, lr1, lr2, gw, gb);
  TORCH_CHECK(saved.size() == kPixelflySavedSlots, "saved: expected the forward's ", kPixelflySavedSlots, " tensors, got ",
              saved.size());
  const int M = (int)x.size(0);
  TensorMemory mem;
  for (int i = 0; i < kPixelflySavedSlots; i++) {
    const Tensor& t = saved[i];
    const size_t need = pixelflySlotSize(a.shape, static_cast<PixelflySlot>(i), M);
    if (need == 0) continue;
    TORCH_CHECK(t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
                    static_cast<size_t>(t.numel()) == need,
                "saved[", i, "]: not what the forward saved for these shapes");
    mem.slots[i] = t;
  }
  followTorchThreads();
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  Tensor dx = needInputGrad ? empty2d(M, x.size(1)) : Tensor();
  auto zerosLike = [&](const optional<Tensor>& p) { return p ? at::zeros(p->sizes(), opts) : Tensor(); };
  Tensor dblocks = at::zeros(blocks.sizes(), opts);
  Tensor dbias = zerosLike(bias), dV = zerosLike(lr1), dU = zerosLike(lr2), dgw = zerosLike(gw), dgb = zerosLike(gb);
  auto ptr = [](Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };
  PixelflyLinearGrads g;
  g.blocks = ptr(dblocks);
  g.bias = ptr(dbias);
  g.V = ptr(dV);
  g.U = ptr(dU);
  g.gw = ptr(dgw);
  g.gb = ptr(dgb);
  pixelflyLinearBackward(*cpuBackend(), a.shape, M, x.data_ptr<float>(), dy.data_ptr<float>(), a.params, mem, g, ptr(dx));
  return {dx, dblocks, dbias, dV, dU, dgw, dgb};
}

// ---------------------------------------------------------------- dispatch and threads

std::string isaInfo() { return k::isaName(k::activeIsa()); }

void forceIsa(const std::string& name) {
  k::Isa isa;
  TORCH_CHECK(k::parseIsa(name, &isa), "isa: expected portable, avx2 or avx512, got ", name);
  TORCH_CHECK(k::isaSupported(isa), "isa: this CPU does not support ", name);
  k::forceIsa(isa);
}

std::vector<std::string> supportedIsas() {
  std::vector<std::string> out;
  for (k::Isa isa : {k::Isa::Portable, k::Isa::Avx2, k::Isa::Avx512})
    if (k::isaSupported(isa)) out.push_back(k::isaName(isa));
  return out;
}

}  // namespace
}  // namespace torch_ops
}  // namespace pixelfly

TORCH_LIBRARY(pixelfly, m) {
  m.def("bsr_forward(Tensor x, Tensor blocks, Tensor index, int out_features, Tensor? bias) -> Tensor");
  m.def("bsr_backward_data(Tensor dy, Tensor blocks, Tensor index, int in_features) -> Tensor");
  m.def("bsr_backward_weight(Tensor dy, Tensor x, Tensor index, int block) -> Tensor");
  m.def("dense_forward(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  m.def("dense_backward_data(Tensor dy, Tensor weight) -> Tensor");
  m.def("dense_backward_weight(Tensor dy, Tensor x) -> Tensor");
  m.def(
      "pixelfly_linear_forward(Tensor x, Tensor blocks, Tensor index, int out_features, Tensor? bias, Tensor? lr_weight1, "
      "Tensor? lr_weight2, Tensor? gate_weight, Tensor? gate_bias) -> (Tensor, Tensor[])");
  m.def(
      "pixelfly_linear_backward(Tensor dy, Tensor x, Tensor blocks, Tensor index, Tensor? bias, Tensor? lr_weight1, "
      "Tensor? lr_weight2, Tensor? gate_weight, Tensor? gate_bias, Tensor[] saved, bool input_grad) -> Tensor[]");
  m.def("isa() -> str", pixelfly::torch_ops::isaInfo);
  m.def("supported_isas() -> str[]", pixelfly::torch_ops::supportedIsas);
  m.def("force_isa(str isa) -> ()", pixelfly::torch_ops::forceIsa);
}

TORCH_LIBRARY_IMPL(pixelfly, CPU, m) {
  using namespace pixelfly::torch_ops;
  m.impl("bsr_forward", bsrForward);
  m.impl("bsr_backward_data", bsrBackwardData);
  m.impl("bsr_backward_weight", bsrBackwardWeight);
  m.impl("dense_forward", denseForward);
  m.impl("dense_backward_data", denseBackwardData);
  m.impl("dense_backward_weight", denseBackwardWeight);
  m.impl("pixelfly_linear_forward", pixelflyLinearForwardOp);
  m.impl("pixelfly_linear_backward", pixelflyLinearBackwardOp);
}
