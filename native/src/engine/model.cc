#include "model.h"

#include <cmath>
#include <stdexcept>

#include "kernels/attention.h"
#include "timing.h"

namespace pixelfly {

namespace {

std::string str(int i) { return std::to_string(i); }

// Builds layers; every matmul goes through linear(), which picks dense or Pixelfly per the plan.
class Builder {
 public:
  Builder(ParamStore& ps, const ModelConfig& cfg, Backend& be) : ps_(ps), cfg_(cfg), be_(be) {}

  // `name` is the instance's parameter prefix ("blocks.3.channel_mix.fc1"), `planKey` its
  // inventory name in the plan ("blocks.channel_mix.fc1").
  ModulePtr linear(const std::string& name, const std::string& planKey, int T, int in, int out) {
    auto it = cfg_.pixelfly.find(planKey);
    if (it == cfg_.pixelfly.end()) return std::make_unique<Linear>(ps_, name, T, in, out);
    const PixelflyConfig& pc = it->second;
    const BsrShape shape{&pc.index, out, in};
    const std::string err = be_.validate(shape);
    if (!err.empty()) throw std::invalid_argument("plan layer '" + planKey + "' (" + str(out) + "×" + str(in) + "): " + err);
    if (pc.rank < 0 || pc.rank > std::min(in, out))
      throw std::invalid_argument("plan layer '" + planKey + "': rank " + str(pc.rank) + " must be in 0.." +
                                  str(std::min(in, out)));
    return std::make_unique<PixelflyLinear>(ps_, name, T, in, out, pc);
  }

  // MLP-Mixer block on [T tokens × D channels]: token mixing along T, then channel mixing.
  void mixerBlock(Sequential& seq, const std::string& p, int T, int D, int tokenHidden, int channelHidden) {
    auto tok = std::make_unique<Sequential>(Dims{T, D});
    tok->add(std::make_unique<LayerNorm>(ps_, p + "norm1", Dims{T, D}));
    const bool sparseTokenMix = cfg_.pixelfly.count("blocks.token_mix.fc1") || cfg_.pixelfly.count("blocks.token_mix.fc2");
    if (!sparseTokenMix && be_.runsOnHost()) {
      tok->add(std::make_unique<TokenMixMlp>(ps_, p + "token_mix", T, D, tokenHidden));
    } else {  // Linears along the token axis: [T, D] → [D, T] and back
      tok->add(std::make_unique<Transpose>(Dims{T, D}));
      tok->add(linear(p + "token_mix.fc1", "blocks.token_mix.fc1", D, T, tokenHidden));
      tok->add(std::make_unique<Gelu>(Dims{D, tokenHidden}));
      tok->add(linear(p + "token_mix.fc2", "blocks.token_mix.fc2", D, tokenHidden, T));
      tok->add(std::make_unique<Transpose>(Dims{D, T}));
    }
    seq.add(std::make_unique<Residual>(std::move(tok)))->part = "token_mix";
    mlp(seq, p, "channel_mix", T, D, channelHidden);
  }

  // Pre-norm transformer block: attention then MLP, each residual.
  // Block `index` of the model (its attention core's low-rank projection, when there is one).
  void transformerBlock(Sequential& seq, const std::string& p, int index, int T, int D, int heads, int hidden, bool causal) {
    if (heads <= 0 || D % heads != 0) throw std::invalid_argument("heads: " + str(heads) + " must be positive and divide dim " + str(D));
    if (D / heads > 256) throw std::invalid_argument("heads: head dimension " + str(D / heads) + " is above the attention kernels' 256");
    auto att = std::make_unique<Sequential>(Dims{T, D});
    att->add(std::make_unique<LayerNorm>(ps_, p + "norm1", Dims{T, D}));
    att->add(std::make_unique<Attention>(Dims{T, D}, heads, causal, attentionLayout(T, causal),
                                         linear(p + "attn.qkv", "blocks.attn.qkv", T, D, 3 * D),
                                         linear(p + "attn.proj", "blocks.attn.proj", T, D, D), lowRankTerm(index, D / heads, causal)));
    // The core is the part "attention" of its own (modules.h); the rest of the block is this part.
    seq.add(std::make_unique<Residual>(std::move(att)))->part = "attn_proj";
    mlp(seq, p, "mlp", T, D, hidden);
  }

 private:
  // The score layout every attention core of the model shares, checked once.
  BsrIndex attentionLayout(int T, bool causal) const {
    const BsrIndex& ix = cfg_.attention;
    if (ix.block == 0) throw std::invalid_argument("attention: the model has no score layout (core/attention.ts builds it)");
    const kernels::BsrLayout view{ix.block, ix.blockRows, ix.blockCols, ix.nnz, ix.rowPtr.data(), ix.colIdx.data(),
                                  ix.colPtr.data(), ix.rowIdx.data(), ix.tBlock.data()};
    const std::string err = kernels::validateAttentionLayout(view, T, causal);
    if (!err.empty()) throw std::invalid_argument("attention layout (T " + str(T) + "): " + err);
    return ix;
  }

  // The low-rank term of block `index`'s attention core, or null (no features asked for).
  std::unique_ptr<LowRankTerm> lowRankTerm(int index, int headDim, bool causal) const {
    const int m = cfg_.attentionFeatures;
    if (m <= 0) return nullptr;
    const size_t per = static_cast<size_t>(m / 2) * headDim;
    if (cfg_.attentionProjection.size() < (static_cast<size_t>(index) + 1) * per)
      throw std::invalid_argument("attention.projection: " + str(static_cast<int>(cfg_.attentionProjection.size())) + " values, block " + str(index) +
                                  " needs " + str(static_cast<int>((index + 1) * per)));
    const float* w = cfg_.attentionProjection.data() + index * per;
    return be_.lowRankTerm(std::vector<float>(w, w + per), m, headDim, cfg_.attention, causal);
  }

  void mlp(Sequential& seq, const std::string& p, const std::string& what, int T, int D, int hidden) {
    auto m = std::make_unique<Sequential>(Dims{T, D});
    m->add(std::make_unique<LayerNorm>(ps_, p + "norm2", Dims{T, D}));
    m->add(linear(p + what + ".fc1", "blocks." + what + ".fc1", T, D, hidden));
    m->add(std::make_unique<Gelu>(Dims{T, hidden}));
    m->add(linear(p + what + ".fc2", "blocks." + what + ".fc2", T, hidden, D));
    seq.add(std::make_unique<Residual>(std::move(m)))->part = what;
  }

  ParamStore& ps_;
  const ModelConfig& cfg_;
  Backend& be_;
};

void requirePositive(const char* name, int v) {
  if (v <= 0) throw std::invalid_argument(std::string(name) + ": must be a positive integer, got " + str(v));
}

// Image → patch tokens → patch_embed, shared by Mixer and ViT. Returns the token count.
int patchStem(Sequential& seq, Builder& b, ParamStore&, const ModelConfig& c) {
  requirePositive("channels", c.channels);
  requirePositive("patch", c.patch);
  if (c.height % c.patch || c.width % c.patch)
    throw std::invalid_argument("patch: " + str(c.patch) + " must divide the image size " + str(c.height) + "×" + str(c.width));
  auto* pf = seq.add(std::make_unique<Patchify>(c.channels, c.height, c.width, c.patch));
  pf->part = "patch_embed";
  seq.add(b.linear("patch_embed", "patch_embed", pf->out.T, pf->out.D, c.dim))->part = "patch_embed";
  return pf->out.T;
}

std::unique_ptr<Sequential> build(const ModelConfig& c, ParamStore& ps, Backend& be) {
  Builder b(ps, c, be);
  std::unique_ptr<Sequential> net;
  if (c.kind == "mlp") {
    requirePositive("features", c.features);
    net = std::make_unique<Sequential>(Dims{1, c.features});
    int width = c.features;
    for (size_t i = 0; i < c.hidden.size(); i++) {
      const std::string n = "fc" + str(static_cast<int>(i) + 1);
      net->add(b.linear(n, n, 1, width, c.hidden[i]))->part = n;
      net->add(std::make_unique<Gelu>(Dims{1, c.hidden[i]}))->part = n;
      width = c.hidden[i];
    }
    net->add(b.linear("head", "head", 1, width, c.classes))->part = "head";
  } else if (c.kind == "mixer" || c.kind == "vit") {
    net = std::make_unique<Sequential>(Dims{1, c.channels * c.height * c.width});
    int T = patchStem(*net, b, ps, c);
    const bool cls = c.kind == "vit" && c.pool == "cls";
    if (c.kind == "vit") {
      if (cls) net->add(std::make_unique<ClsToken>(ps, "cls_token", Dims{T++, c.dim}))->part = "patch_embed";
      net->add(std::make_unique<PosEmbedding>(ps, "pos_embed", Dims{T, c.dim}))->part = "patch_embed";
    }
    for (int i = 0; i < c.depth; i++) {
      const std::string p = "blocks." + str(i) + ".";
      if (c.kind == "mixer") b.mixerBlock(*net, p, T, c.dim, c.tokenHidden, c.channelHidden);
      else b.transformerBlock(*net, p, i, T, c.dim, c.heads, c.mlpHidden, false);
    }
    net->add(std::make_unique<LayerNorm>(ps, "norm", Dims{T, c.dim}))->part = "head";
    net->add(std::make_unique<Pool>(Dims{T, c.dim}, cls))->part = "head";
    net->add(b.linear("head", "head", 1, c.dim, c.classes))->part = "head";
  } else if (c.kind == "gpt") {
    requirePositive("vocab", c.vocab);
    requirePositive("context", c.context);
    net = std::make_unique<Sequential>(Dims{c.context, 1});
    net->add(std::make_unique<TokenPosEmbedding>(ps, "embed", c.vocab, c.context, c.dim))->part = "embedding";
    for (int i = 0; i < c.depth; i++) b.transformerBlock(*net, "blocks." + str(i) + ".", i, c.context, c.dim, c.heads, c.mlpHidden, true);
    net->add(std::make_unique<LayerNorm>(ps, "norm", Dims{c.context, c.dim}))->part = "head";
    net->add(b.linear("head", "head", c.context, c.dim, c.vocab))->part = "head";
  } else if (c.kind == "probe") {
    // One layer alone, for gradient checks and the PyTorch cross-checks.
    const int T = c.probeT, D = c.dim;
    const std::string& l = c.probeLayer;
    const int inD = l == "embedding" ? 1 : (l == "linear" || l == "pixelfly") ? c.features : D;
    net = std::make_unique<Sequential>(Dims{T, inD});
    if (l == "linear" || l == "pixelfly") net->add(b.linear("layer", "layer", T, c.features, c.classes));
    else if (l == "gelu") net->add(std::make_unique<Gelu>(Dims{T, D}));
    else if (l == "layernorm") net->add(std::make_unique<LayerNorm>(ps, "layer", Dims{T, D}));
    else if (l == "transpose") net->add(std::make_unique<Transpose>(Dims{T, D}));
    else if (l == "pool_mean" || l == "pool_cls") net->add(std::make_unique<Pool>(Dims{T, D}, l == "pool_cls"));
    else if (l == "cls_pos") {
      net->add(std::make_unique<ClsToken>(ps, "cls_token", Dims{T, D}));
      net->add(std::make_unique<PosEmbedding>(ps, "pos_embed", Dims{T + 1, D}));
    } else if (l == "embedding") net->add(std::make_unique<TokenPosEmbedding>(ps, "embed", c.vocab, T, D));
    else if (l == "patchify") {
      net = std::make_unique<Sequential>(Dims{1, c.channels * c.height * c.width});
      net->add(std::make_unique<Patchify>(c.channels, c.height, c.width, c.patch));
    } else if (l == "mixer_block") b.mixerBlock(*net, "block.", T, D, c.tokenHidden, c.channelHidden);
    else if (l == "transformer_block") b.transformerBlock(*net, "block.", 0, T, D, c.heads, c.mlpHidden, c.causal);
    else throw std::invalid_argument("probe layer: unknown '" + l + "'");
  } else {
    throw std::invalid_argument("kind: unknown model kind '" + c.kind + "' (expected mlp, mixer, vit or gpt)");
  }
  return net;
}

}  // namespace

Model::Model(const ModelConfig& cfg, const TrainConfig& train, uint64_t seed, std::shared_ptr<Backend> be)
    : be_(std::move(be)), cfg_(cfg), train_(train), sampler_(seed ^ 0x5eed0da7a0d3e5ull) {
  if (cfg.kind != "probe") {
    requirePositive("dim", cfg.dim);
    if (cfg.kind != "gpt") requirePositive("classes", cfg.classes);
  }
  if (train.batch <= 0) throw std::invalid_argument("batch: must be a positive integer, got " + str(train.batch));
  net_ = build(cfg_, ps_, *be_);
  net_->timeParts();
  ps_.allocate(*be_);
  Rng rng(seed);
  net_->init(ps_, rng);
  ps_.push();
}

template <class T>
const T* Model::stage(const std::vector<T>& host, Buffer<T>& dev) {
  if (be_->runsOnHost()) return host.data();
  T* d = dev.resize(*be_, host.size());
  be_->toDevice(d, host.data(), host.size() * sizeof(T));
  return d;
}

void Model::checkDataset(const Dataset& d) const {
  if (cfg_.kind == "probe") throw std::invalid_argument("dataset: probe models do not train");
  if (languageModel()) {
    if (d.kind != Dataset::Kind::Tokens)
      throw std::invalid_argument("dataset '" + d.name + "': a gpt model needs a token dataset (a text corpus)");
    if (d.classes > cfg_.vocab)
      throw std::invalid_argument("dataset '" + d.name + "': vocabulary of " + str(d.classes) + " symbols exceeds the model's vocab " +
                                  str(cfg_.vocab));
    if (d.train.n < cfg_.context + 1 || d.test.n < cfg_.context + 1)
      throw std::invalid_argument("dataset '" + d.name + "': each split needs more than context (" + str(cfg_.context) + ") tokens");
    return;
  }
  if (d.kind != Dataset::Kind::Classification)
    throw std::invalid_argument("dataset '" + d.name + "': a " + cfg_.kind + " model needs a classification dataset");
  const int want = static_cast<int>(net_->in.size());
  if (d.features != want)
    throw std::invalid_argument("dataset '" + d.name + "': samples have " + str(d.features) + " values but the model's input takes " +
                                str(want));
  if (d.classes > cfg_.classes)
    throw std::invalid_argument("dataset '" + d.name + "': " + str(d.classes) + " classes but the model's head has " + str(cfg_.classes));
  if (d.train.n == 0 || d.test.n == 0) throw std::invalid_argument("dataset '" + d.name + "': empty train or test split");
}

double Model::learningRate(int64_t step) const {
  if (step < train_.warmupSteps) return train_.lr * static_cast<double>(step + 1) / static_cast<double>(train_.warmupSteps);
  const double span = static_cast<double>(std::max<int64_t>(1, train_.totalSteps - train_.warmupSteps));
  const double progress = std::min(1.0, static_cast<double>(step - train_.warmupSteps) / span);
  const double minLr = train_.lr * train_.minLrRatio;
  return minLr + (train_.lr - minLr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

StepResult Model::trainStep(const Dataset& d) {
  StepResult r;
  const auto t0 = Clock::now();
  const int B = train_.batch;
  const int rowsPerSample = net_->out.T;
  bx_.resize(static_cast<size_t>(B) * net_->in.size());
  by_.resize(static_cast<size_t>(B) * rowsPerSample);
  sampler_.next(d, B, cfg_.context, bx_.data(), by_.data());
  r.dataMs = msSince(t0);

  Backend& be = *be_;
  Ctx ctx{&be, &ps_, &r.parts};
  auto t = Clock::now();
  const float* x = stage(bx_, x_);
  const int32_t* targets = stage(by_, y_);
  const float* logits = net_->forward(ctx, x, B);
  const int rows = B * rowsPerSample, classes = net_->out.D;
  float* dlogits = dlogits_.resize(be, static_cast<size_t>(rows) * classes);
  r.loss = be.softmaxCrossEntropy(rows, classes, logits, targets, dlogits, nullptr);
  r.forwardMs = msSince(t);

  t = Clock::now();
  ps_.zeroGrad();
  net_->backward(ctx, dlogits, nullptr, B);
  be.sync();
  r.backwardMs = msSince(t);

  t = Clock::now();
  const int64_t n = static_cast<int64_t>(ps_.total());
  r.gradNorm = std::sqrt(be.sumOfSquares(ps_.live(ParamStore::kGrads), n));
  const float clip = train_.clipNorm > 0 && r.gradNorm > train_.clipNorm ? static_cast<float>(train_.clipNorm / r.gradNorm) : 1.0f;

  r.lr = learningRate(step_);
  step_++;
  const float lr = static_cast<float>(r.lr), b1 = static_cast<float>(train_.beta1), b2 = static_cast<float>(train_.beta2);
  const float c1 = static_cast<float>(1.0 - std::pow(train_.beta1, static_cast<double>(step_)));
  const float c2 = static_cast<float>(1.0 - std::pow(train_.beta2, static_cast<double>(step_)));
  const float eps = static_cast<float>(train_.eps);
  float* p = ps_.live(ParamStore::kParams);
  const float* g = ps_.live(ParamStore::kGrads);
  float* m = ps_.live(ParamStore::kAdamM);
  float* v = ps_.live(ParamStore::kAdamV);
  for (const ParamInfo& info : ps_.infos()) {
    const float decay = info.decay ? 1.0f - lr * static_cast<float>(train_.weightDecay) : 1.0f;
    const size_t o = info.offset;
    be.adamw(static_cast<int64_t>(info.size), p + o, g + o, m + o, v + o, {lr, b1, b2, c1, c2, eps, decay, clip});
  }
  be.sync();
  r.optimizerMs = msSince(t);
  r.totalMs = msSince(t0);
  r.step = step_;
  r.epoch = sampler_.epochProgress(d);
  return r;
}

EvalResult Model::evaluate(const Dataset& d, bool testSplit, int64_t maxSamples) {
  const Split& s = d.split(testSplit);
  Backend& be = *be_;
  Ctx ctx{&be, &ps_};
  EvalResult res;
  double lossSum = 0.0;
  int64_t correct = 0;
  const int B = std::max(train_.batch, 128);
  const int T = net_->out.T, classes = net_->out.D;
  if (languageModel()) {
    // Non-overlapping windows over the split; every position predicts its next token.
    const int ctxLen = cfg_.context;
    int64_t windows = (s.n - 1) / ctxLen;
    if (maxSamples > 0) windows = std::min(windows, std::max<int64_t>(1, maxSamples / ctxLen));
    for (int64_t w0 = 0; w0 < windows; w0 += B) {
      const int nb = static_cast<int>(std::min<int64_t>(B, windows - w0));
      bx_.resize(static_cast<size_t>(nb) * ctxLen);
      by_.resize(static_cast<size_t>(nb) * ctxLen);
      for (int b = 0; b < nb; b++)
        for (int t = 0; t < ctxLen; t++) {
          const int64_t at = (w0 + b) * ctxLen + t;
          bx_[static_cast<size_t>(b) * ctxLen + t] = static_cast<float>(s.tokens[at]);
          by_[static_cast<size_t>(b) * ctxLen + t] = s.tokens[at + 1];
        }
      const float* logits = net_->forward(ctx, stage(bx_, x_), nb);
      lossSum += be.softmaxCrossEntropy(nb * T, classes, logits, stage(by_, y_), nullptr, nullptr) * nb * T;
      res.samples += static_cast<int64_t>(nb) * T;
    }
    res.loss = res.samples ? lossSum / res.samples : 0.0;
    return res;
  }
  const int64_t n = maxSamples > 0 ? std::min(maxSamples, s.n) : s.n;
  for (int64_t i0 = 0; i0 < n; i0 += B) {
    const int nb = static_cast<int>(std::min<int64_t>(B, n - i0));
    bx_.resize(static_cast<size_t>(nb) * d.features);
    by_.resize(nb);
    for (int b = 0; b < nb; b++) {
      d.sample(s, i0 + b, &bx_[static_cast<size_t>(b) * d.features]);
      by_[b] = s.labels[i0 + b];
    }
    const float* logits = net_->forward(ctx, stage(bx_, x_), nb);
    int64_t right = 0;
    lossSum += be.softmaxCrossEntropy(nb, classes, logits, stage(by_, y_), nullptr, &right) * nb;
    correct += right;
    res.samples += nb;
  }
  res.loss = res.samples ? lossSum / res.samples : 0.0;
  res.accuracy = res.samples ? static_cast<double>(correct) / res.samples : 0.0;
  return res;
}

void Model::probe(const std::vector<float>& x, int B, const std::vector<float>* dy, std::vector<float>* y,
                  std::vector<float>* dx) {
  Backend& be = *be_;
  Ctx ctx{&be, &ps_};
  const float* out = net_->forward(ctx, stage(x, x_), B);
  y->resize(static_cast<size_t>(B) * net_->out.size());
  be.toHost(y->data(), out, y->size() * sizeof(float));
  if (!dy) return;
  ps_.zeroGrad();
  dx->assign(static_cast<size_t>(B) * net_->in.size(), 0.0f);
  Buffer<float> dyDev, dxDev;
  const float* g = stage(*dy, dyDev);
  if (cfg_.probeLayer == "embedding") {  // token ids have no gradient
    net_->backward(ctx, g, nullptr, B);
  } else {
    float* d = be.runsOnHost() ? dx->data() : dxDev.resize(be, dx->size());
    net_->backward(ctx, g, d, B);
    if (!be.runsOnHost()) be.toHost(dx->data(), d, dx->size() * sizeof(float));
  }
  ps_.pull(true);
}

}  // namespace pixelfly
