// The `pixelfly` torch operators: the project's kernels (native/src/kernels: block-sparse products
// and attention cores) and PixelflyLinear's forward/backward (native/src/engine/pixelfly_linear.cc) on CPU tensors, registered with
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

#include <string>
#include <vector>

#include "kernels/attention.h"
#include "op_args.h"

namespace pixelfly {
namespace torch_ops {
namespace {

namespace k = kernels;

// The kernels' workers and the engine's row loops run on torch's intra-op thread count.
void followTorchThreads() {
  const int n = std::max(1, at::get_num_threads());
  k::setThreads(n);
  omp_set_num_threads(n);
}

const at::Device kCpu(at::kCPU);

Tensor empty2d(int64_t rows, int64_t cols) { return at::empty({rows, cols}, at::TensorOptions().dtype(at::kFloat)); }

// ---------------------------------------------------------------- block-sparse products

Tensor bsrForward(const Tensor& x, const Tensor& blocks, const Tensor& index, int64_t out, const optional<Tensor>& bias) {
  const int64_t b = blockOf(blocks);
  requireActivation("x", x, -1, kCpu);
  const Layout L(index, b, out, x.size(1), blocks.size(0));
  requireParam("blocks", blocks, {L.index->nnz, b, b}, kCpu);
  if (bias) requireParam("bias", *bias, {out}, kCpu);
  followTorchThreads();
  Tensor y = empty2d(x.size(0), out);
  k::bsrForward(L.weight(blocks.data_ptr<float>()), (int)x.size(0), x.data_ptr<float>(), L.in, bias ? bias->data_ptr<float>() : nullptr,
                y.data_ptr<float>(), L.out, false);
  return y;
}

Tensor bsrBackwardData(const Tensor& dy, const Tensor& blocks, const Tensor& index, int64_t in) {
  const int64_t b = blockOf(blocks);
  requireActivation("dy", dy, -1, kCpu);
  const Layout L(index, b, dy.size(1), in, blocks.size(0));
  requireParam("blocks", blocks, {L.index->nnz, b, b}, kCpu);
  followTorchThreads();
  Tensor dx = empty2d(dy.size(0), in);
  k::bsrBackwardData(L.weight(blocks.data_ptr<float>()), (int)dy.size(0), dy.data_ptr<float>(), L.out, dx.data_ptr<float>(), L.in, false);
  return dx;
}

Tensor bsrBackwardWeight(const Tensor& dy, const Tensor& x, const Tensor& index, int64_t block) {
  requireActivation("dy", dy, -1, kCpu);
  requireActivation("x", x, -1, kCpu);
  TORCH_CHECK(dy.size(0) == x.size(0), "dy and x: ", dy.size(0), " and ", x.size(0), " rows differ");
  const Layout L(index, block, dy.size(1), x.size(1), -1);
  followTorchThreads();
  Tensor dw = at::empty({L.index->nnz, block, block}, at::TensorOptions().dtype(at::kFloat));
  k::bsrBackwardWeight(L.weight(nullptr), (int)x.size(0), dy.data_ptr<float>(), L.out, x.data_ptr<float>(), L.in,
                       dw.data_ptr<float>(), false);
  return dw;
}

// ---------------------------------------------------------------- dense products (our GEMM)

Tensor denseForward(const Tensor& x, const Tensor& weight, const optional<Tensor>& bias) {
  requireActivation("x", x, -1, kCpu);
  TORCH_CHECK(weight.dim() == 2, "weight: expected [out, in], got ", weight.sizes());
  const int64_t out = weight.size(0), in = x.size(1);
  requireParam("weight", weight, {out, in}, kCpu);
  if (bias) requireParam("bias", *bias, {out}, kCpu);
  followTorchThreads();
  Tensor y = empty2d(x.size(0), out);
  k::denseForward((int)x.size(0), (int)in, (int)out, x.data_ptr<float>(), (int)in, weight.data_ptr<float>(),
                  bias ? bias->data_ptr<float>() : nullptr, y.data_ptr<float>(), (int)out, false);
  return y;
}

Tensor denseBackwardData(const Tensor& dy, const Tensor& weight) {
  requireActivation("dy", dy, -1, kCpu);
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == dy.size(1), "weight: expected [", dy.size(1), ", in], got ",
              weight.sizes());
  requireParam("weight", weight, {weight.size(0), weight.size(1)}, kCpu);
  const int64_t out = weight.size(0), in = weight.size(1);
  followTorchThreads();
  Tensor dx = empty2d(dy.size(0), in);
  k::denseBackwardData((int)dy.size(0), (int)in, (int)out, dy.data_ptr<float>(), (int)out, weight.data_ptr<float>(),
                       dx.data_ptr<float>(), (int)in, false);
  return dx;
}

Tensor denseBackwardWeight(const Tensor& dy, const Tensor& x) {
  requireActivation("dy", dy, -1, kCpu);
  requireActivation("x", x, -1, kCpu);
  TORCH_CHECK(dy.size(0) == x.size(0), "dy and x: ", dy.size(0), " and ", x.size(0), " rows differ");
  const int64_t out = dy.size(1), in = x.size(1);
  followTorchThreads();
  Tensor dw = empty2d(out, in);
  k::denseBackwardWeight((int)x.size(0), (int)in, (int)out, dy.data_ptr<float>(), (int)out, x.data_ptr<float>(), (int)in,
                         dw.data_ptr<float>(), false);
  return dw;
}

// ---------------------------------------------------------------- PixelflyLinear

// "fp32" products, or "bf16": every product's inputs rounded to bf16, fp32 accumulation (the bf16
// kernels: AMX, AVX512-BF16, or the fp32 ones on rounded copies), as the engine's bf16 training.
Backend& backendFor(const std::string& precision) {
  TORCH_CHECK(precision == "fp32" || precision == "bf16", "precision: expected 'fp32' or 'bf16', got '", precision, "'");
  return *cpuBackend(precision);
}

std::tuple<Tensor, std::vector<Tensor>> pixelflyLinearForwardOp(const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                                 int64_t out, const optional<Tensor>& bias,
                                                                 const optional<Tensor>& lr1, const optional<Tensor>& lr2,
                                                                 const optional<Tensor>& gw, const optional<Tensor>& gb,
                                                                 const std::string& precision) {
  requireActivation("x", x, -1, kCpu);
  followTorchThreads();
  return linearForward(backendFor(precision), x, blocks, index, out, bias, lr1, lr2, gw, gb);
}

std::vector<Tensor> pixelflyLinearBackwardOp(const Tensor& dy, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                             const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                             const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                             const optional<Tensor>& gb, at::TensorList saved, bool inputGrad,
                                             const std::string& precision) {
  requireActivation("x", x, -1, kCpu);
  followTorchThreads();
  return linearBackward(backendFor(precision), dy, x, blocks, index, bias, lr1, lr2, gw, gb, saved, inputGrad);
}

// ---------------------------------------------------------------- attention cores

// q, k, v, o, dO: [batch, heads, T, head_dim] float32 CPU tensors whose features are contiguous
// (any other strides: a [B, T, H, D] tensor transposed to [B, H, T, D] is read in place).
template <class F>
k::HeadsView<F> headsOf(const char* name, const Tensor& t, at::IntArrayRef shape) {
  TORCH_CHECK(t.device() == kCpu, name, ": expected a CPU tensor, got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, ": expected float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 4 && t.sizes() == shape, name, ": expected [batch, heads, T, head_dim] = ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.stride(3) == 1 || t.size(3) == 1, name, ": the head features must be contiguous (stride 1), got strides ",
              t.strides());
  k::HeadsView<F> h;
  h.data = t.data_ptr<float>();
  h.batchStride = t.stride(0), h.headStride = t.stride(1), h.rowStride = t.stride(2);
  return h;
}

// The score layout of T tokens from its packed block index (layout.py's block_index of the
// ceil(T/block)² mask). The index does not depend on the block size, so it is read and checked
// once as a grid of 16-blocks, then given the score block and checked as an attention layout.
k::BsrLayout attentionLayoutOf(const Tensor& index, int64_t block, int64_t T, bool causal) {
  TORCH_CHECK(block == 16 || block == 32 || block == 64 || block == 128, "block: the attention kernels implement 16, 32, 64 and 128, got ",
              block);
  const int64_t n = (T + block - 1) / block;
  const Layout grid(index, 16, n * 16, n * 16, -1);
  k::BsrLayout L = grid.weight(nullptr).layout;
  L.block = static_cast<int>(block);
  const std::string err = k::validateAttentionLayout(L, static_cast<int>(T), causal);
  TORCH_CHECK(err.empty(), "layout: ", err);
  return L;
}

k::AttentionShape attentionShape(const Tensor& q, bool causal, double scale) {
  TORCH_CHECK(q.dim() == 4, "q: expected [batch, heads, T, head_dim], got ", q.sizes());
  TORCH_CHECK(q.size(2) >= 1 && q.size(2) <= INT32_MAX && q.size(0) <= INT32_MAX && q.size(1) <= INT32_MAX,
              "q: sizes out of the kernels' range: ", q.sizes());
  k::AttentionShape s;
  s.batch = static_cast<int>(q.size(0)), s.heads = static_cast<int>(q.size(1)), s.T = static_cast<int>(q.size(2));
  s.headDim = static_cast<int>(q.size(3)), s.causal = causal, s.scale = static_cast<float>(scale);
  return s;
}

void requireLse(const char* name, const Tensor& t, at::IntArrayRef shape) {
  TORCH_CHECK(t.device() == kCpu && t.scalar_type() == at::kFloat && t.is_contiguous() && t.sizes() == shape, name,
              ": expected a contiguous float32 CPU tensor [batch, heads, T] = ", shape, ", got ", t.scalar_type(), " ",
              t.sizes(), t.is_contiguous() ? "" : " (not contiguous)");
}

std::tuple<Tensor, Tensor> attentionForwardOp(const Tensor& q, const Tensor& key, const Tensor& value, const Tensor& index,
                                              int64_t block, bool causal, double scale) {
  const k::AttentionShape s = attentionShape(q, causal, scale);
  const auto shape = q.sizes();
  const k::Heads Q = headsOf<const float>("q", q, shape), K = headsOf<const float>("k", key, shape),
                 V = headsOf<const float>("v", value, shape);
  const k::BsrLayout L = attentionLayoutOf(index, block, s.T, causal);
  followTorchThreads();
  Tensor o = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  Tensor lse = at::empty({q.size(0), q.size(1), q.size(2)}, at::TensorOptions().dtype(at::kFloat));
  k::attentionForward(L, s, Q, K, V, headsOf<float>("o", o, shape), lse.data_ptr<float>());
  return {o, lse};
}

std::tuple<Tensor, Tensor, Tensor> attentionBackwardOp(const Tensor& q, const Tensor& key, const Tensor& value, const Tensor& o,
                                                       const Tensor& lse, const Tensor& dO, const optional<Tensor>& dlse,
                                                       const Tensor& index, int64_t block, bool causal, double scale) {
  const k::AttentionShape s = attentionShape(q, causal, scale);
  const auto shape = q.sizes();
  const k::Heads Q = headsOf<const float>("q", q, shape), K = headsOf<const float>("k", key, shape),
                 V = headsOf<const float>("v", value, shape), O = headsOf<const float>("o", o, shape),
                 dOut = headsOf<const float>("dout", dO, shape);
  const std::vector<int64_t> rows = {q.size(0), q.size(1), q.size(2)};
  requireLse("lse", lse, rows);
  if (dlse) requireLse("dlse", *dlse, rows);
  const k::BsrLayout L = attentionLayoutOf(index, block, s.T, causal);
  followTorchThreads();
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  Tensor dq = at::empty(shape, opts), dk = at::empty(shape, opts), dv = at::empty(shape, opts);
  k::attentionBackward(L, s, Q, K, V, O, lse.data_ptr<float>(), dOut, headsOf<float>("dq", dq, shape),
                       headsOf<float>("dk", dk, shape), headsOf<float>("dv", dv, shape), 0,
                       dlse ? dlse->data_ptr<float>() : nullptr);
  return {dq, dk, dv};
}

// ---------------------------------------------------------------- shapes only (Meta)

// The forwards on meta tensors give results of the right sizes and allocate nothing, so a model
// holding Pixelfly layers can be sized on torch's meta device (the runner's admission does) with
// autograd saving exactly what it saves on the CPU.
std::tuple<Tensor, std::vector<Tensor>> pixelflyLinearForwardMeta(const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                                   int64_t out, const optional<Tensor>& bias,
                                                                   const optional<Tensor>& lr1, const optional<Tensor>& lr2,
                                                                   const optional<Tensor>& gw, const optional<Tensor>& gb,
                                                                   const std::string&) {
  return linearForwardShapes(x, blocks, index, out, bias, lr1, lr2, gw, gb);
}

std::tuple<Tensor, Tensor> attentionForwardMeta(const Tensor& q, const Tensor& key, const Tensor& value, const Tensor&, int64_t,
                                                bool causal, double scale) {
  attentionShape(q, causal, scale);
  TORCH_CHECK(key.sizes() == q.sizes() && value.sizes() == q.sizes(), "k and v: expected the shape of q, ", q.sizes(), ", got ",
              key.sizes(), " and ", value.sizes());
  return {at::empty(q.sizes(), q.options()), at::empty({q.size(0), q.size(1), q.size(2)}, q.options())};
}

// ---------------------------------------------------------------- dispatch and threads

std::string isaInfo() { return k::isaName(k::activeIsa()); }

// How bf16 products run on the active path: "amx", "avx512bf16" or "fp32-fallback".
std::string bf16Path() { return k::bf16Path(); }

void forceIsa(const std::string& name) {
  k::Isa isa;
  TORCH_CHECK(k::parseIsa(name, &isa), "isa: expected portable, avx2, avx512, avx512bf16 or amx, got ", name);
  TORCH_CHECK(k::isaSupported(isa), "isa: this CPU does not support ", name);
  k::forceIsa(isa);
}

std::vector<std::string> supportedIsas() {
  std::vector<std::string> out;
  for (k::Isa isa : {k::Isa::Portable, k::Isa::Avx2, k::Isa::Avx512, k::Isa::Avx512Bf16, k::Isa::Amx})
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
      "Tensor? lr_weight2, Tensor? gate_weight, Tensor? gate_bias, str precision=\"fp32\") -> (Tensor, Tensor[])");
  m.def(
      "pixelfly_linear_backward(Tensor dy, Tensor x, Tensor blocks, Tensor index, Tensor? bias, Tensor? lr_weight1, "
      "Tensor? lr_weight2, Tensor? gate_weight, Tensor? gate_bias, Tensor[] saved, bool input_grad, str precision=\"fp32\") -> Tensor[]");
  m.def("attention_forward(Tensor q, Tensor k, Tensor v, Tensor index, int block, bool causal, float scale) -> (Tensor, Tensor)");
  m.def(
      "attention_backward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dout, Tensor? dlse, Tensor index, int block, "
      "bool causal, float scale) -> (Tensor, Tensor, Tensor)");
  m.def("isa() -> str", pixelfly::torch_ops::isaInfo);
  m.def("bf16_path() -> str", pixelfly::torch_ops::bf16Path);
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
  m.impl("attention_forward", attentionForwardOp);
  m.impl("attention_backward", attentionBackwardOp);
}

TORCH_LIBRARY_IMPL(pixelfly, Meta, m) {
  using namespace pixelfly::torch_ops;
  m.impl("pixelfly_linear_forward", pixelflyLinearForwardMeta);
  m.impl("attention_forward", attentionForwardMeta);
}

// The autograd Functions around the operators (pixelfly_torch/functional.py) do the autograd; torch
// 1.13 passes CPU tensors through the autograd key by itself, meta ones only when told.
TORCH_LIBRARY_IMPL(pixelfly, AutogradMeta, m) {
  m.impl("pixelfly_linear_forward", torch::CppFunction::makeFallthrough());
  m.impl("attention_forward", torch::CppFunction::makeFallthrough());
}
