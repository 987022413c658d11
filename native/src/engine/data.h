// Datasets as the engine sees them: already decoded (the TypeScript loaders parse IDX, .npy and
// text files and report file errors), copied in once, and batched here with a seeded order.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "rng.h"

namespace pixelfly {

struct Split {
  // Classification: n samples × `features` inputs, stored as bytes (images, normalised on the fly
  // as x·scale + shift) or as floats. Language modelling: one token stream.
  std::vector<uint8_t> xBytes;
  std::vector<float> xFloats;
  std::vector<int32_t> labels;
  std::vector<int32_t> tokens;
  int64_t n = 0;  // samples (classification) or tokens (language modelling)
};

struct Dataset {
  enum class Kind { Classification, Tokens } kind = Kind::Classification;
  std::string name;
  int features = 0;  // classification: inputs per sample
  int classes = 0;   // classification: label range; tokens: vocabulary size
  float scale = 1.0f, shift = 0.0f;
  Split train, test;

  const Split& split(bool testSplit) const { return testSplit ? test : train; }
  // Writes sample `i` of `s` (features floats) into `x`.
  void sample(const Split& s, int64_t i, float* x) const;
};

// Deterministic batch order: epochs of shuffled samples (classification) or random windows of
// context+1 tokens (language modelling). Its state goes into checkpoints.
class Sampler {
 public:
  explicit Sampler(uint64_t seed) : rng_(seed) {}
  // Fills x (B × features, or B × context token ids as floats) and targets (B, or B × context).
  void next(const Dataset& d, int B, int context, float* x, int32_t* targets);
  int64_t epoch() const { return epoch_; }
  double epochProgress(const Dataset& d) const;
  // Checkpointable state.
  struct State {
    uint64_t rng[4];
    int64_t epoch, pos;
    std::vector<int64_t> order;
  };
  State state() const;
  void setState(const State& s);

 private:
  Rng rng_;
  int64_t epoch_ = 0, pos_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace pixelfly
