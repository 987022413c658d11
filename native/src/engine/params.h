// All trainable parameters of a model live in one contiguous buffer (like karpathy/llm.c), with a
// gradient buffer of the same layout: the optimizer, gradient clipping, checkpoints and the
// weight export each walk one array instead of chasing per-layer allocations.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace pixelfly {

struct ParamInfo {
  std::string name;          // PyTorch-style state_dict key, e.g. "blocks.0.channel_mix.fc1.weight"
  std::vector<int> shape;    // PyTorch shape
  size_t offset = 0;         // into ParamStore::data / grad
  size_t size = 0;
  bool decay = true;         // AdamW weight decay applies (matrices yes; biases, norms, gates no)
};

class ParamStore {
 public:
  // Registers a tensor and returns its offset; storage exists only after allocate().
  size_t add(const std::string& name, std::vector<int> shape, bool decay) {
    size_t n = 1;
    for (int d : shape) n *= static_cast<size_t>(d);
    ParamInfo p{name, std::move(shape), total_, n, decay};
    infos_.push_back(p);
    total_ += n;
    return p.offset;
  }
  void allocate() {
    data_.assign(total_, 0.0f);
    grad_.assign(total_, 0.0f);
  }
  float* data(size_t offset) { return data_.data() + offset; }
  float* grad(size_t offset) { return grad_.data() + offset; }
  std::vector<float>& data() { return data_; }
  std::vector<float>& grad() { return grad_; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  size_t total() const { return total_; }
  void zeroGrad() { std::fill(grad_.begin(), grad_.end(), 0.0f); }

 private:
  std::vector<ParamInfo> infos_;
  std::vector<float> data_, grad_;
  size_t total_ = 0;
};

}  // namespace pixelfly
