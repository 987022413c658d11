// A model built from a (validated) model spec and a plan, with its AdamW optimizer and batch order.
// The spec's meaning is documented in core/modelSpec.ts; this is its C++ mirror.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data.h"
#include "modules.h"

namespace pixelfly {

struct ModelConfig {
  std::string kind;  // "mlp" | "mixer" | "vit" | "gpt" | "probe"
  // Inputs: mlp reads `features`; mixer/vit read an image; gpt reads `context` token ids.
  int features = 0, channels = 0, height = 0, width = 0, patch = 0;
  int vocab = 0, context = 0;
  int dim = 0, depth = 0, heads = 0;
  int tokenHidden = 0, channelHidden = 0, mlpHidden = 0;
  std::vector<int> hidden;  // mlp hidden widths
  int classes = 0;
  std::string pool = "mean";  // vit: "mean" | "cls"
  // Plan: Pixelfly configs keyed by inventory name (e.g. "blocks.channel_mix.fc1"); absent = dense.
  std::map<std::string, PixelflyConfig> pixelfly;
  // vit / gpt / transformer probes: every attention core's T×T score layout (core/attention.ts:
  // Pixelfly, or every block for dense attention); block 0 = not given.
  BsrIndex attention;
  // Pixelfly attention's low-rank term (native/src/engine/performer.h): m Performer features (0:
  // none) and every attention core's projection, depth × m/2 × head_dim, drawn in core/attention.ts.
  int attentionFeatures = 0;
  std::vector<float> attentionProjection;
  // kind "probe" (tests): one layer alone, see buildProbe in model.cc.
  std::string probeLayer;
  int probeT = 1;
  bool causal = false;
};

struct TrainConfig {
  int batch = 64;
  double lr = 1e-3, minLrRatio = 0.1, weightDecay = 0.05, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t warmupSteps = 0, totalSteps = 1000;
  double clipNorm = 1.0;  // <= 0: no clipping
};

struct StepResult {
  double loss = 0, lr = 0, gradNorm = 0;
  double dataMs = 0, forwardMs = 0, backwardMs = 0, optimizerMs = 0, totalMs = 0;
  PartTimes parts;  // forward and backward time per part of the model (the loss is in forwardMs only)
  int64_t step = 0;
  double epoch = 0;
};

struct EvalResult {
  double loss = 0;
  double accuracy = -1;  // classification only
  int64_t samples = 0;   // samples (classification) or predicted tokens (language modelling)
};

class Model {
 public:
  // The model owns its backend (on CUDA: its own stream, so each job runs on its own).
  Model(const ModelConfig& cfg, const TrainConfig& train, uint64_t seed, std::shared_ptr<Backend> be);
  // Throws std::invalid_argument naming the mismatch if `d` cannot feed this model.
  void checkDataset(const Dataset& d) const;
  StepResult trainStep(const Dataset& d);
  EvalResult evaluate(const Dataset& d, bool testSplit, int64_t maxSamples);
  // Test hook: forward (and backward of sum(y·dy) when dy is given) on raw input rows; the outputs
  // are copied to the host (the gradients into the ParamStore's host array).
  void probe(const std::vector<float>& x, int B, const std::vector<float>* dy, std::vector<float>* y, std::vector<float>* dx);

  // Parameters and AdamW moments: read and write their host arrays between a pull() and a push()
  // (ParamStore), which the checkpoint and export paths do.
  ParamStore& params() { return ps_; }
  Backend& backend() { return *be_; }
  int64_t step() const { return step_; }
  void setStep(int64_t s) { step_ = s; }
  Sampler& sampler() { return sampler_; }
  Dims inputDims() const { return net_->in; }
  Dims outputDims() const { return net_->out; }
  bool languageModel() const { return cfg_.kind == "gpt"; }
  double learningRate(int64_t step) const;
  TrainConfig& trainConfig() { return train_; }

 private:
  // The batch in backend memory: the host arrays themselves on the CPU, an upload on a device.
  template <class T>
  const T* stage(const std::vector<T>& host, Buffer<T>& dev);

  // Declared first, destroyed last: every buffer below lives in the backend's memory.
  std::shared_ptr<Backend> be_;
  ModelConfig cfg_;
  TrainConfig train_;
  ParamStore ps_;
  std::unique_ptr<Sequential> net_;
  int64_t step_ = 0;
  Sampler sampler_;
  std::vector<float> bx_;  // host batch, then staged
  std::vector<int32_t> by_;
  Buffer<float> x_, dlogits_;
  Buffer<int32_t> y_;
};

}  // namespace pixelfly
