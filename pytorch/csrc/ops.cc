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

#include <string>
#include <vector>

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

std::tuple<Tensor, std::vector<Tensor>> pixelflyLinearForwardOp(const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                                 int64_t out, const optional<Tensor>& bias,
                                                                 const optional<Tensor>& lr1, const optional<Tensor>& lr2,
                                                                 const optional<Tensor>& gw, const optional<Tensor>& gb) {
  requireActivation("x", x, -1, kCpu);
  followTorchThreads();
  return linearForward(*cpuBackend(), x, blocks, index, out, bias, lr1, lr2, gw, gb);
}

std::vector<Tensor> pixelflyLinearBackwardOp(const Tensor& dy, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                             const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                             const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                             const optional<Tensor>& gb, at::TensorList saved, bool inputGrad) {
  requireActivation("x", x, -1, kCpu);
  followTorchThreads();
  return linearBackward(*cpuBackend(), dy, x, blocks, index, bias, lr1, lr2, gw, gb, saved, inputGrad);
}

// ---------------------------------------------------------------- dispatch and threads

std::string isaInfo() { return k::isaName(k::activeIsa()); }

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
