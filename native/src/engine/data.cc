#include "data.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace pixelfly {

void Dataset::sample(const Split& s, int64_t i, float* x) const {
  const size_t off = static_cast<size_t>(i) * features;
  if (!s.xBytes.empty()) {
    for (int f = 0; f < features; f++) x[f] = s.xBytes[off + f] * scale + shift;
  } else {
    for (int f = 0; f < features; f++) x[f] = s.xFloats[off + f] * scale + shift;
  }
}

void Sampler::next(const Dataset& d, int B, int context, float* x, int32_t* targets) {
  const Split& s = d.train;
  if (d.kind == Dataset::Kind::Tokens) {
    const int64_t span = s.n - context - 1;
    for (int b = 0; b < B; b++) {
      const int64_t start = static_cast<int64_t>(rng_.below(static_cast<uint64_t>(span + 1)));
      for (int t = 0; t < context; t++) {
        x[static_cast<size_t>(b) * context + t] = static_cast<float>(s.tokens[start + t]);
        targets[static_cast<size_t>(b) * context + t] = s.tokens[start + t + 1];
      }
      pos_ += context;
      if (pos_ >= s.n) {
        pos_ -= s.n;
        epoch_++;
      }
    }
    return;
  }
  for (int b = 0; b < B; b++) {
    if (order_.size() != static_cast<size_t>(s.n) || pos_ >= s.n) {
      if (order_.size() == static_cast<size_t>(s.n)) epoch_++;
      order_.resize(s.n);
      std::iota(order_.begin(), order_.end(), 0);
      for (int64_t i = s.n - 1; i > 0; i--) std::swap(order_[i], order_[rng_.below(static_cast<uint64_t>(i + 1))]);
      pos_ = 0;
    }
    const int64_t i = order_[pos_++];
    d.sample(s, i, x + static_cast<size_t>(b) * d.features);
    targets[b] = s.labels[i];
  }
}

double Sampler::epochProgress(const Dataset& d) const {
  return static_cast<double>(epoch_) + (d.train.n > 0 ? static_cast<double>(pos_) / d.train.n : 0.0);
}

Sampler::State Sampler::state() const {
  State st;
  std::copy(rng_.state(), rng_.state() + 4, st.rng);
  st.epoch = epoch_;
  st.pos = pos_;
  st.order = order_;
  return st;
}

void Sampler::setState(const State& st) {
  rng_.setState(st.rng);
  epoch_ = st.epoch;
  pos_ = st.pos;
  order_ = st.order;
}

}  // namespace pixelfly
