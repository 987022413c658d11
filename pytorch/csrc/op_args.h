// What every `pixelfly` torch operator shares, whatever the device: argument checks whose messages
// name the argument, a Pixelfly weight's block index read from its packed int32 tensor, and
// PixelflyLinear's forward / backward (native/src/engine/pixelfly_linear.h) on any Backend over
// tensors (the arrays autograd saves between the two are tensors too).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <tuple>
#include <vector>

#include "engine/backend.h"
#include "engine/pixelfly_linear.h"
#include "kernels/kernels.h"

namespace pixelfly {
namespace torch_ops {

using at::Tensor;
using c10::optional;

// A 2-D [rows × features] float32 contiguous tensor on `device` (cols < 0: any width).
void requireActivation(const char* name, const Tensor& t, int64_t cols, const at::Device& device);
// A float32 contiguous parameter of exactly `shape` on `device`.
void requireParam(const char* name, const Tensor& t, at::IntArrayRef shape, const at::Device& device);
// The block size of packed blocks [nnz, block, block].
int64_t blockOf(const Tensor& blocks);

// A Pixelfly weight's block index, from the packed int32 CPU tensor (layout.py's block_index), checked
// in full the first time it is seen. Indexes are kept for the life of the process, one per distinct
// content, so a backend may cache device copies by address (the CUDA backend does).
struct Layout {
  const BsrIndex* index;
  int out, in;
  // nnz < 0: derive it from the index's length (the weight gradient has no blocks to count).
  Layout(const Tensor& packed, int64_t block, int64_t out, int64_t in, int64_t nnz);
  kernels::BsrWeight weight(const float* blocks) const;
  BsrShape shape() const { return {index, out, in}; }
};

// PixelflyLinear forward: y and the four saved arrays (empty where the shape uses none).
std::tuple<Tensor, std::vector<Tensor>> linearForward(Backend& be, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                      int64_t out, const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                                      const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                                      const optional<Tensor>& gb);

// linearForward's results with their shapes only, on x's device (Meta: sizing a model without allocating it).
std::tuple<Tensor, std::vector<Tensor>> linearForwardShapes(const Tensor& x, const Tensor& blocks, const Tensor& index,
                                                            int64_t out, const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                                            const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                                            const optional<Tensor>& gb);

// Gradients [dx, dblocks, dbias, dlr_weight1, dlr_weight2, dgate_weight, dgate_bias]; undefined (None) for
// the input when not wanted and for the parameters the layer does not have.
std::vector<Tensor> linearBackward(Backend& be, const Tensor& dy, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                   const optional<Tensor>& bias, const optional<Tensor>& lr1, const optional<Tensor>& lr2,
                                   const optional<Tensor>& gw, const optional<Tensor>& gb, at::TensorList saved,
                                   bool inputGrad);

}  // namespace torch_ops
}  // namespace pixelfly
