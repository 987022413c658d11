// PixelflyLinear's forward / backward on CUDA tensors: the project's CUDA backend (native/src/cuda,
// the daemon's kernels) on PyTorch's current stream, so the layer is ordered with the rest of the
// step and its outputs come from PyTorch's caching allocator. Compiled when the interpreter's torch
// has CUDA and nvcc is present (pytorch/build.py); it needs no CUDA header: the stream arrives from
// Python as the integer torch.cuda.current_stream().cuda_stream.
#include <torch/library.h>

#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "cuda/backend_cuda.h"
#include "op_args.h"

namespace pixelfly {
namespace torch_ops {
namespace {

// One backend per (device, stream): its cuBLAS handle, scratch and device copies of the block indexes.
std::mutex gBackendsMutex;
std::map<std::pair<int, int64_t>, std::shared_ptr<Backend>> gBackends;

Backend& backendFor(const Tensor& x, int64_t stream) {
  TORCH_CHECK(x.is_cuda(), "x: expected a CUDA tensor, got one on ", x.device());
  const int device = x.get_device();
  std::lock_guard<std::mutex> lock(gBackendsMutex);
  auto& slot = gBackends[{device, stream}];
  if (!slot) {
    try {
      slot = cudaBackendOnStream(device, reinterpret_cast<void*>(stream), "fp32");
    } catch (const std::exception& e) {
      gBackends.erase({device, stream});
      TORCH_CHECK(false, "pixelfly CUDA operators: ", e.what());
    }
  }
  return *slot;
}

std::tuple<Tensor, std::vector<Tensor>> cudaForward(const Tensor& x, const Tensor& blocks, const Tensor& index, int64_t out,
                                                    const optional<Tensor>& bias, const optional<Tensor>& lr1,
                                                    const optional<Tensor>& lr2, const optional<Tensor>& gw,
                                                    const optional<Tensor>& gb, int64_t stream) {
  return linearForward(backendFor(x, stream), x, blocks, index, out, bias, lr1, lr2, gw, gb);
}

std::vector<Tensor> cudaBackward(const Tensor& dy, const Tensor& x, const Tensor& blocks, const Tensor& index,
                                 const optional<Tensor>& bias, const optional<Tensor>& lr1, const optional<Tensor>& lr2,
                                 const optional<Tensor>& gw, const optional<Tensor>& gb, at::TensorList saved, bool inputGrad,
                                 int64_t stream) {
  return linearBackward(backendFor(x, stream), dy, x, blocks, index, bias, lr1, lr2, gw, gb, saved, inputGrad);
}

// "" when the CUDA operators can run here, else why not (no driver, no device, too old).
std::string cudaStatus() { return cudaUnavailableReason(); }

}  // namespace
}  // namespace torch_ops
}  // namespace pixelfly

TORCH_LIBRARY_FRAGMENT(pixelfly, m) {
  m.def(
      "cuda_pixelfly_linear_forward(Tensor x, Tensor blocks, Tensor index, int out_features, Tensor? bias, "
      "Tensor? lr_weight1, Tensor? lr_weight2, Tensor? gate_weight, Tensor? gate_bias, int stream) -> (Tensor, Tensor[])",
      pixelfly::torch_ops::cudaForward);
  m.def(
      "cuda_pixelfly_linear_backward(Tensor dy, Tensor x, Tensor blocks, Tensor index, Tensor? bias, Tensor? lr_weight1, "
      "Tensor? lr_weight2, Tensor? gate_weight, Tensor? gate_bias, Tensor[] saved, bool input_grad, int stream) -> Tensor[]",
      pixelfly::torch_ops::cudaBackward);
  m.def("cuda_status() -> str", pixelfly::torch_ops::cudaStatus);
}
