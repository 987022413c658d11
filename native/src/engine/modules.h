// Layers with forward and backward. Every layer sees activations as [B samples × T tokens × D
// features], row-major, and owns its output buffer; backward receives dL/d(output) and writes
// dL/d(input) (when asked) while ACCUMULATING its parameter gradients into the ParamStore.
// Layers compute only through their Backend and keep every buffer in its memory, so the same
// layers train on the CPU and, resident in device memory, on CUDA (issue 8).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "buffer.h"
#include "pixelfly_linear.h"
#include "params.h"
#include "rng.h"

namespace pixelfly {

struct Dims {
  int T = 1;  // tokens per sample
  int D = 1;  // features per token
  size_t size() const { return static_cast<size_t>(T) * static_cast<size_t>(D); }
};

// Time per part of the model in one step ("token_mix", "channel_mix", ...), in model order; a part
// that repeats (every block's token mixing) is summed.
struct PartTime {
  std::string name;
  double forwardMs = 0, backwardMs = 0;
};
using PartTimes = std::vector<PartTime>;

struct Ctx {
  Backend* be;
  ParamStore* ps;
  PartTimes* parts = nullptr;  // filled by a Sequential built with timeParts(), when not null
  // Time a module inside a timed part spent in a part of its own (the attention core inside the
  // attention block), which the enclosing part does not count again.
  double nestedMs = 0;
};

class Module {
 public:
  virtual ~Module() = default;
  Dims in, out;
  // Which part of the model this module is, for the step-time breakdown of the model's top-level
  // Sequential ("" counts as "other").
  std::string part;
  // Draws this layer's initial parameters into the ParamStore's host arrays (allocated by then).
  virtual void init(ParamStore&, Rng&) {}
  // Returns this layer's output buffer (valid until its next forward). x must stay alive until backward.
  virtual const float* forward(Ctx& c, const float* x, int B) = 0;
  // dx may be null when nobody needs the input gradient (the model's first layer).
  virtual void backward(Ctx& c, const float* dy, float* dx, int B) = 0;

 protected:
  float* outBuf(Ctx& c, int B) { return y_.resize(*c.be, static_cast<size_t>(B) * out.size()); }
  Buffer<float> y_;
  const float* x_ = nullptr;
};

using ModulePtr = std::unique_ptr<Module>;

class Sequential : public Module {
 public:
  explicit Sequential(Dims d) { in = out = d; }
  Module* add(ModulePtr m);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;
  // Time each child as its `part` into Ctx::parts (the model's top level only, so parts never nest).
  void timeParts() { timeParts_ = true; }

 private:
  bool timeParts_ = false;
  std::vector<ModulePtr> mods_;
  std::vector<Buffer<float>> grads_;  // dL/d(output of module i), i < n-1
};

// y = x + body(x)
class Residual : public Module {
 public:
  explicit Residual(std::unique_ptr<Sequential> body);
  void init(ParamStore& ps, Rng& rng) override { body_->init(ps, rng); }
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  std::unique_ptr<Sequential> body_;
  Buffer<float> scratch_;
};

// nn.Linear over the last axis: y = x·Wᵀ + b, W is [out, in].
class Linear : public Module {
 public:
  Linear(ParamStore& ps, const std::string& name, int T, int inF, int outF, bool bias = true);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  int inF_, outF_;
  size_t w_, b_;
  bool bias_;
};

struct PixelflyConfig {
  BsrIndex index;
  int rank = 0;  // 0 = block-sparse only (no low-rank term, no gate)
};

// The authors' SparseLRLinear: y = lerp(sparse(x), lowrank(x), sigmoid(gate(x))) + bias, where
// sparse = block-sparse W in the flat block butterfly layout, lowrank(x) = (x·V)·Uᵀ with V given as
// lr_weight1 [rank, in] and U as lr_weight2 [out, rank], gate = Linear(in → 1) per token.
class PixelflyLinear : public Module {
 public:
  PixelflyLinear(ParamStore& ps, const std::string& name, int T, int inF, int outF, PixelflyConfig cfg);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  int inF_, outF_;
  PixelflyConfig cfg_;
  size_t w_, v_ = 0, u_ = 0, gw_ = 0, gb_ = 0, b_;
  PixelflyLinearShape shape() const { return {{&cfg_.index, outF_, inF_}, cfg_.rank}; }
  PixelflyLinearParams params(Ctx& c) const;
  // The layer's arrays (pixelfly_linear.h's slots), kept between steps so they are allocated once.
  struct Memory final : PixelflyMemory {
    Backend* be = nullptr;
    Buffer<float> slots[kPixelflySlots];
    float* get(PixelflySlot slot, size_t n) override;
  } mem_;
};

// MLP-Mixer's dense token-mixing MLP, fused per sample: y_b = W2·GELU(W1·x_b + b1) + b2 on each
// sample's [T × D] slice, with W1 [hidden, T] and W2 [T, hidden] (the parameters of the two
// nn.Linear layers timm applies along the token axis, same names). Transposing to [D × T] and
// running two Linears streams [B × D × hidden] activations through memory five times per step
// for ~1 flop per byte; here one sample's hidden activations (hidden × D) stay in L2 between
// the products, and the backward recomputes them instead of saving them. CPU backend only: it
// calls the kernels directly, single-threaded per sample, with the samples spread over threads.
class TokenMixMlp : public Module {
 public:
  TokenMixMlp(ParamStore& ps, const std::string& name, int T, int D, int hidden);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  int hidden_;
  size_t w1_, b1_, w2_, b2_;
  // hidden activations of one sample: pre-GELU, post-GELU and its gradient; then per-thread
  // gradient partials [w1 | b1 | w2 | b2], summed in thread order so results do not depend on timing.
  struct ThreadScratch {
    std::vector<float> p, h, dh, grads;
  };
  std::vector<ThreadScratch> scratch_;
  void hiddenActivations(Ctx& c, const float* xb, ThreadScratch& s) const;
};

class Gelu : public Module {  // exact (erf) GELU, as torch.nn.GELU()
 public:
  explicit Gelu(Dims d) { in = out = d; }
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;
};

class LayerNorm : public Module {
 public:
  LayerNorm(ParamStore& ps, const std::string& name, Dims d);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  size_t g_, b_;
  Buffer<float> mean_, rstd_;
};

// [B, T, D] -> [B, D, T]: MLP-Mixer's token mixing runs a Linear along the token axis.
class Transpose : public Module {
 public:
  explicit Transpose(Dims d) {
    in = d;
    out = {d.D, d.T};
  }
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;
};

// Image [C, H, W] (one row per sample) -> [patches, C·p·p], patches row-major over the grid and
// each patch vector ordered (c, i, j) like a Conv2d kernel, so patch_embed exports as Conv2d.
class Patchify : public Module {
 public:
  Patchify(int C, int H, int W, int patch);
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  int C_, H_, W_, p_;
};

// Token ids (stored exactly as floats, [B, T, 1]) -> token embedding + learned position embedding.
class TokenPosEmbedding : public Module {
 public:
  TokenPosEmbedding(ParamStore& ps, const std::string& name, int vocab, int T, int dim);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  int vocab_;
  size_t wte_, wpe_;
};

// Prepends a learned class token: [B, T, D] -> [B, T+1, D] (ViT).
class ClsToken : public Module {
 public:
  ClsToken(ParamStore& ps, const std::string& name, Dims d);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  size_t cls_;
};

// Adds a learned [T, D] position embedding (ViT).
class PosEmbedding : public Module {
 public:
  PosEmbedding(ParamStore& ps, const std::string& name, Dims d);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  size_t pos_;
};

// Multi-head self-attention; qkv: D -> 3D (q | k | v, heads contiguous within each), proj: D -> D.
// Either projection may be dense or Pixelfly. The core between them (scores, softmax, weighted
// values) runs over the kept blocks of `layout`, the T×T score layout core/attention.ts built
// (Pixelfly attention, or every block for dense attention); in a timed step it is the part
// "attention" and the rest of the block (LayerNorm, qkv, proj) the part "attn_proj".
class Attention : public Module {
 public:
  // lowRank: Pixelfly attention's low-rank term (Backend::lowRankTerm), or null for the sparse part alone.
  Attention(Dims d, int heads, bool causal, BsrIndex layout, ModulePtr qkv, ModulePtr proj, std::unique_ptr<LowRankTerm> lowRank);
  void init(ParamStore& ps, Rng& rng) override;
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  int heads_;
  bool causal_;
  BsrIndex layout_;  // owned here: the CUDA backend keys its device copy by this address
  ModulePtr qkv_, proj_;
  std::unique_ptr<LowRankTerm> lowRank_;
  const float* qkvOut_ = nullptr;
  Buffer<float> lse_, ctx_, dctx_, dqkv_, dsparse_, dlse_, dqkvLowRank_;
  AttentionCore core(int B) const { return {&layout_, B, in.T, in.D, heads_, causal_}; }
};

// [B, T, D] -> [B, 1, D]: mean over tokens, or token 0 (the class token).
class Pool : public Module {
 public:
  Pool(Dims d, bool first) : first_(first) {
    in = d;
    out = {1, d.D};
  }
  const float* forward(Ctx& c, const float* x, int B) override;
  void backward(Ctx& c, const float* dy, float* dx, int B) override;

 private:
  bool first_;
};

}  // namespace pixelfly
