// All trainable parameters of a model live in one contiguous buffer (like karpathy/llm.c), with
// gradient and AdamW moment buffers of the same layout: the optimizer, gradient clipping,
// checkpoints and the weight export each walk one array instead of chasing per-layer allocations.
//
// The layers and the optimizer work on the backend's copy (device memory on CUDA, so training never
// moves weights over PCIe); initialisation, checkpoints and the export work on the host copy. On the
// CPU backend the two are the same memory and push()/pull() cost nothing.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "buffer.h"

namespace pixelfly {

struct ParamInfo {
  std::string name;          // PyTorch-style state_dict key, e.g. "blocks.0.channel_mix.fc1.weight"
  std::vector<int> shape;    // PyTorch shape
  size_t offset = 0;         // into each of the buffers
  size_t size = 0;
  bool decay = true;         // AdamW weight decay applies (matrices yes; biases, norms, gates no)
};

class ParamStore {
 public:
  enum Array { kParams = 0, kGrads = 1, kAdamM = 2, kAdamV = 3 };

  // Registers a tensor and returns its offset; storage exists only after allocate().
  size_t add(const std::string& name, std::vector<int> shape, bool decay) {
    size_t n = 1;
    for (int d : shape) n *= static_cast<size_t>(d);
    ParamInfo p{name, std::move(shape), total_, n, decay};
    infos_.push_back(p);
    total_ += n;
    return p.offset;
  }
  // Zeroed host arrays, and the backend's arrays (zeroed too).
  void allocate(Backend& be) {
    be_ = &be;
    for (int a = 0; a < 4; a++) {
      host_[a].assign(total_, 0.0f);
      live_[a] = be.runsOnHost() ? host_[a].data() : dev_[a].resize(be, total_);
      if (!be.runsOnHost()) be.zero(live_[a], bytes());
    }
  }
  // The backend's arrays, which layers and the optimizer use.
  float* data(size_t offset) { return live_[kParams] + offset; }
  float* grad(size_t offset) { return live_[kGrads] + offset; }
  float* live(Array a) { return live_[a]; }
  // The host arrays: layers' init() writes here, checkpoints read and write here.
  float* host(size_t offset) { return host_[kParams].data() + offset; }
  std::vector<float>& hostArray(Array a) { return host_[a]; }

  // Host parameters and moments → backend (after initialisation or loading a checkpoint).
  void push() {
    if (be_->runsOnHost()) return;
    for (Array a : {kParams, kAdamM, kAdamV}) be_->toDevice(live_[a], host_[a].data(), bytes());
  }
  // Backend → host for parameters and moments (and gradients when asked): before a checkpoint, the
  // export or a test reads them.
  void pull(bool grads) {
    if (be_->runsOnHost()) return;
    for (Array a : {kParams, kAdamM, kAdamV}) be_->toHost(host_[a].data(), live_[a], bytes());
    if (grads) be_->toHost(host_[kGrads].data(), live_[kGrads], bytes());
  }
  void zeroGrad() { be_->zero(live_[kGrads], bytes()); }

  const std::vector<ParamInfo>& infos() const { return infos_; }
  size_t total() const { return total_; }

 private:
  size_t bytes() const { return total_ * sizeof(float); }
  std::vector<ParamInfo> infos_;
  size_t total_ = 0;
  Backend* be_ = nullptr;
  std::vector<float> host_[4];
  Buffer<float> dev_[4];      // unused on a host backend
  float* live_[4] = {nullptr, nullptr, nullptr, nullptr};
};

}  // namespace pixelfly
