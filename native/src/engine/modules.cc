#include "modules.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <omp.h>

#include "kernels/kernels.h"
#include "pointwise.h"
#include "timing.h"
#include "svd.h"

namespace pixelfly {

namespace {

namespace pw = pointwise;

// The entry of a part in a step's timings (parts appear in model order; "" counts as "other").
PartTime& partOf(PartTimes& parts, const std::string& name) {
  const std::string n = name.empty() ? "other" : name;
  for (auto& p : parts)
    if (p.name == n) return p;
  parts.push_back({n, 0, 0});
  return parts.back();
}

size_t rowsOf(int B, const Dims& d) { return static_cast<size_t>(B) * static_cast<size_t>(d.T); }

// The precision of the products a layer runs on the kernels directly (TokenMixMlp, CPU only).
kernels::Precision hostPrecision(const Backend& be) {
  return std::strcmp(be.precision(), "bf16") == 0 ? kernels::Precision::BF16 : kernels::Precision::F32;
}

// torch.nn.init.kaiming_uniform_(w, a=sqrt(5)) on a [*, fanIn] weight reduces to U(-1/√fanIn, 1/√fanIn),
// the default of nn.Linear; its bias uses the same bound.
void uniformInit(float* w, size_t n, float bound, Rng& rng) {
  for (size_t i = 0; i < n; i++) w[i] = rng.uniform(-bound, bound);
}

}  // namespace

// ---------------------------------------------------------------- Sequential / Residual

Module* Sequential::add(ModulePtr m) {
  if (!mods_.empty()) grads_.emplace_back();
  out = m->out;
  mods_.push_back(std::move(m));
  return mods_.back().get();
}

void Sequential::init(ParamStore& ps, Rng& rng) {
  for (auto& m : mods_) m->init(ps, rng);
}

// A part's time on an asynchronous backend is only its own once the work before it is done, so a
// timed step waits for the backend at each part's boundaries (free on the CPU).
const float* Sequential::forward(Ctx& c, const float* x, int B) {
  const bool timed = timeParts_ && c.parts;
  for (auto& m : mods_) {
    if (timed) c.be->sync();
    const auto t0 = timed ? Clock::now() : Clock::time_point{};
    if (timed) c.nestedMs = 0;
    x = m->forward(c, x, B);
    if (timed) {
      c.be->sync();
      partOf(*c.parts, m->part).forwardMs += msSince(t0) - c.nestedMs;
    }
  }
  return x;
}

void Sequential::backward(Ctx& c, const float* dy, float* dx, int B) {
  for (size_t i = mods_.size(); i-- > 0;) {
    float* target = i > 0 ? grads_[i - 1].resize(*c.be, static_cast<size_t>(B) * mods_[i]->in.size()) : dx;
    const bool timed = timeParts_ && c.parts;
    if (timed) c.be->sync();
    const auto t0 = timed ? Clock::now() : Clock::time_point{};
    if (timed) c.nestedMs = 0;
    mods_[i]->backward(c, dy, target, B);
    if (timed) {
      c.be->sync();
      partOf(*c.parts, mods_[i]->part).backwardMs += msSince(t0) - c.nestedMs;
    }
    dy = target;
  }
}

Residual::Residual(std::unique_ptr<Sequential> body) : body_(std::move(body)) { in = out = body_->in; }

const float* Residual::forward(Ctx& c, const float* x, int B) {
  const float* f = body_->forward(c, x, B);
  float* y = outBuf(c, B);
  c.be->add(x, f, y, static_cast<int64_t>(B) * out.size());
  return y;
}

void Residual::backward(Ctx& c, const float* dy, float* dx, int B) {
  const size_t n = static_cast<size_t>(B) * in.size();
  if (!dx) dx = scratch_.resize(*c.be, n);  // the body still needs its parameter gradients
  body_->backward(c, dy, dx, B);
  c.be->addTo(dx, dy, static_cast<int64_t>(n));
}

// ---------------------------------------------------------------- Linear

Linear::Linear(ParamStore& ps, const std::string& name, int T, int inF, int outF, bool bias)
    : inF_(inF), outF_(outF), bias_(bias) {
  in = {T, inF};
  out = {T, outF};
  w_ = ps.add(name + ".weight", {outF, inF}, true);
  b_ = bias ? ps.add(name + ".bias", {outF}, false) : 0;
}

void Linear::init(ParamStore& ps, Rng& rng) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(inF_));
  uniformInit(ps.host(w_), static_cast<size_t>(outF_) * inF_, bound, rng);
  if (bias_) uniformInit(ps.host(b_), outF_, bound, rng);
}

const float* Linear::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(c, B);
  c.be->denseForward(static_cast<int>(rowsOf(B, in)), inF_, outF_, x, c.ps->data(w_), bias_ ? c.ps->data(b_) : nullptr, y,
                     false);
  return y;
}

void Linear::backward(Ctx& c, const float* dy, float* dx, int B) {
  const int M = static_cast<int>(rowsOf(B, in));
  c.be->denseBackwardWeight(M, inF_, outF_, dy, x_, c.ps->grad(w_), true);
  if (bias_) c.be->biasGrad(M, outF_, dy, c.ps->grad(b_), true);
  if (dx) c.be->denseBackwardData(M, inF_, outF_, dy, c.ps->data(w_), dx, false);
}

// ---------------------------------------------------------------- PixelflyLinear

PixelflyLinear::PixelflyLinear(ParamStore& ps, const std::string& name, int T, int inF, int outF, PixelflyConfig cfg)
    : inF_(inF), outF_(outF), cfg_(std::move(cfg)) {
  in = {T, inF};
  out = {T, outF};
  const int blk = cfg_.index.block;
  w_ = ps.add(name + ".sparse.weight", {cfg_.index.nnz, blk, blk}, true);
  if (cfg_.rank > 0) {
    v_ = ps.add(name + ".low_rank.lr_weight1", {cfg_.rank, inF}, true);
    u_ = ps.add(name + ".low_rank.lr_weight2", {outF, cfg_.rank}, true);
    gw_ = ps.add(name + ".gate.weight", {1, inF}, true);
    gb_ = ps.add(name + ".gate.bias", {1}, false);
  }
  b_ = ps.add(name + ".bias", {outF}, false);
}

void PixelflyLinear::init(ParamStore& ps, Rng& rng) {
  const BsrIndex& ix = cfg_.index;
  const int blk = ix.block;
  // Authors' BlockSparseLinear.set_weights_from_dense_init: a dense kaiming-uniform init of the
  // padded weight, each block-row scaled by sqrt(blockCols / kept blocks in that row) so the
  // output variance matches the dense layer's, then only the kept blocks are stored.
  const int ip = ix.blockCols * blk;
  std::vector<float> dense(static_cast<size_t>(ix.blockRows) * blk * ip);
  uniformInit(dense.data(), dense.size(), 1.0f / std::sqrt(static_cast<float>(ip)), rng);
  float* w = ps.host(w_);
  for (int r = 0; r < ix.blockRows; r++) {
    const int kept = ix.rowPtr[r + 1] - ix.rowPtr[r];
    if (kept == 0) continue;
    const float scale = std::sqrt(static_cast<float>(ix.blockCols) / static_cast<float>(kept));
    for (int k = ix.rowPtr[r]; k < ix.rowPtr[r + 1]; k++) {
      const int col = ix.colIdx[k];
      for (int i = 0; i < blk; i++)
        for (int j = 0; j < blk; j++) {
          // Weights in the padding never touch real activations; keep them 0 so exports are clean.
          const bool real = r * blk + i < outF_ && col * blk + j < inF_;
          w[(static_cast<size_t>(k) * blk + i) * blk + j] =
              real ? scale * dense[static_cast<size_t>(r * blk + i) * ip + col * blk + j] : 0.0f;
        }
    }
  }
  if (cfg_.rank > 0) {
    // Authors' LowRank(init='svd'): best rank-r approximation of a dense kaiming-uniform init,
    // the singular values split evenly between the two factors.
    std::vector<float> d(static_cast<size_t>(outF_) * inF_);
    uniformInit(d.data(), d.size(), 1.0f / std::sqrt(static_cast<float>(inF_)), rng);
    truncatedSvdFactors(d.data(), outF_, inF_, cfg_.rank, rng, ps.host(u_), ps.host(v_));
    // The gate is an nn.Linear(in, 1).
    const float gb = 1.0f / std::sqrt(static_cast<float>(inF_));
    uniformInit(ps.host(gw_), inF_, gb, rng);
    uniformInit(ps.host(gb_), 1, gb, rng);
  }
  // SparseLRLinear.reset_parameters: bias bound uses fan_in = out_features.
  uniformInit(ps.host(b_), outF_, 1.0f / std::sqrt(static_cast<float>(outF_)), rng);
}

PixelflyLinearParams PixelflyLinear::params(Ctx& c) const {
  PixelflyLinearParams p;
  p.blocks = c.ps->data(w_);
  if (cfg_.rank > 0) {
    p.V = c.ps->data(v_);
    p.U = c.ps->data(u_);
    p.gw = c.ps->data(gw_);
    p.gb = c.ps->data(gb_);
  }
  p.bias = c.ps->data(b_);
  return p;
}

// (1 − g)∘dy is asked for only when in > out, where (1 − g)∘x is not: they share one buffer.
float* PixelflyLinear::Memory::get(PixelflySlot slot, size_t n) {
  const PixelflySlot at = slot == PixelflySlot::DYScaled ? PixelflySlot::Scaled : slot;
  return slots[static_cast<int>(at)].resize(*be, n);
}

const float* PixelflyLinear::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(c, B);
  mem_.be = c.be;
  pixelflyLinearForward(*c.be, shape(), static_cast<int>(rowsOf(B, in)), x, params(c), mem_, y);
  return y;
}

void PixelflyLinear::backward(Ctx& c, const float* dy, float* dx, int B) {
  PixelflyLinearGrads g;
  g.blocks = c.ps->grad(w_);
  if (cfg_.rank > 0) {
    g.V = c.ps->grad(v_);
    g.U = c.ps->grad(u_);
    g.gw = c.ps->grad(gw_);
    g.gb = c.ps->grad(gb_);
  }
  g.bias = c.ps->grad(b_);
  mem_.be = c.be;
  pixelflyLinearBackward(*c.be, shape(), static_cast<int>(rowsOf(B, in)), x_, dy, params(c), mem_, g, dx);
}

// ---------------------------------------------------------------- TokenMixMlp

TokenMixMlp::TokenMixMlp(ParamStore& ps, const std::string& name, int T, int D, int hidden) : hidden_(hidden) {
  in = out = {T, D};
  // Registered and initialised in the order of the two Linears they replace.
  w1_ = ps.add(name + ".fc1.weight", {hidden, T}, true);
  b1_ = ps.add(name + ".fc1.bias", {hidden}, false);
  w2_ = ps.add(name + ".fc2.weight", {T, hidden}, true);
  b2_ = ps.add(name + ".fc2.bias", {T}, false);
}

void TokenMixMlp::init(ParamStore& ps, Rng& rng) {
  const int T = in.T;
  const float bound1 = 1.0f / std::sqrt(static_cast<float>(T)), bound2 = 1.0f / std::sqrt(static_cast<float>(hidden_));
  uniformInit(ps.host(w1_), static_cast<size_t>(hidden_) * T, bound1, rng);
  uniformInit(ps.host(b1_), hidden_, bound1, rng);
  uniformInit(ps.host(w2_), static_cast<size_t>(T) * hidden_, bound2, rng);
  uniformInit(ps.host(b2_), T, bound2, rng);
}

// s.p = W1·x_b + b1 and s.h = GELU(s.p), both [hidden × D].
void TokenMixMlp::hiddenActivations(Ctx& c, const float* xb, ThreadScratch& s) const {
  const int T = in.T, D = in.D, Hd = hidden_;
  const size_t n = static_cast<size_t>(Hd) * D;
  s.p.resize(n);
  s.h.resize(n);
  const float* b1 = c.ps->data(b1_);
  for (int t = 0; t < Hd; t++) std::fill(s.p.begin() + static_cast<size_t>(t) * D, s.p.begin() + static_cast<size_t>(t + 1) * D, b1[t]);
  kernels::gemm(kernels::Trans::No, kernels::Trans::No, Hd, D, T, 1.0f, c.ps->data(w1_), T, xb, D, 1.0f, s.p.data(), D,
                hostPrecision(*c.be));
  pw::geluForward(s.p.data(), s.h.data(), static_cast<int64_t>(n));
}

const float* TokenMixMlp::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(c, B);
  const int T = in.T, D = in.D;
  const size_t slice = in.size();
  const float* b2 = c.ps->data(b2_);
  const kernels::Precision prec = hostPrecision(*c.be);
  scratch_.resize(omp_get_max_threads());
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    ThreadScratch& s = scratch_[omp_get_thread_num()];
    hiddenActivations(c, x + b * slice, s);
    float* yb = y + b * slice;
    for (int t = 0; t < T; t++) std::fill(yb + static_cast<size_t>(t) * D, yb + static_cast<size_t>(t + 1) * D, b2[t]);
    kernels::gemm(kernels::Trans::No, kernels::Trans::No, T, D, hidden_, 1.0f, c.ps->data(w2_), hidden_, s.h.data(), D,
                  1.0f, yb, D, prec);
  }
  return y;
}

void TokenMixMlp::backward(Ctx& c, const float* dy, float* dx, int B) {
  const int T = in.T, D = in.D, Hd = hidden_;
  const size_t slice = in.size(), nW1 = static_cast<size_t>(Hd) * T;
  const size_t nGrads = 2 * nW1 + Hd + T;  // w1 | b1 | w2 | b2
  const int threads = omp_get_max_threads();
  scratch_.resize(threads);
  for (auto& s : scratch_) s.grads.assign(nGrads, 0.0f);
  using kernels::Trans;
  const kernels::Precision prec = hostPrecision(*c.be);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    ThreadScratch& s = scratch_[omp_get_thread_num()];
    float* gW1 = s.grads.data();
    float* gB1 = gW1 + nW1;
    float* gW2 = gB1 + Hd;
    float* gB2 = gW2 + nW1;
    const float* xb = x_ + b * slice;
    const float* dyb = dy + b * slice;
    hiddenActivations(c, xb, s);
    s.dh.resize(static_cast<size_t>(Hd) * D);
    // y = W2·h + b2: dW2 += dy·hᵀ, db2 += row sums of dy, dh = W2ᵀ·dy.
    kernels::gemm(Trans::No, Trans::Yes, T, Hd, D, 1.0f, dyb, D, s.h.data(), D, 1.0f, gW2, Hd, prec);
    pw::addRowSums(dyb, T, D, gB2);
    kernels::gemm(Trans::Yes, Trans::No, Hd, D, T, 1.0f, c.ps->data(w2_), Hd, dyb, D, 0.0f, s.dh.data(), D, prec);
    // through GELU (dp overwrites dh), then p = W1·x + b1: dW1 += dp·xᵀ, db1 += row sums, dx = W1ᵀ·dp.
    pw::geluBackward(s.p.data(), s.dh.data(), s.dh.data(), static_cast<int64_t>(Hd) * D);
    kernels::gemm(Trans::No, Trans::Yes, Hd, T, D, 1.0f, s.dh.data(), D, xb, D, 1.0f, gW1, T, prec);
    pw::addRowSums(s.dh.data(), Hd, D, gB1);
    if (dx) kernels::gemm(Trans::Yes, Trans::No, T, D, Hd, 1.0f, c.ps->data(w1_), T, s.dh.data(), D, 0.0f, dx + b * slice, D, prec);
  }
  float* grads[] = {c.ps->grad(w1_), c.ps->grad(b1_), c.ps->grad(w2_), c.ps->grad(b2_)};
  const size_t sizes[] = {nW1, static_cast<size_t>(Hd), nW1, static_cast<size_t>(T)};
  for (const auto& s : scratch_) {
    const float* g = s.grads.data();
    for (int k = 0; k < 4; k++) {
      pw::addTo(grads[k], g, static_cast<int64_t>(sizes[k]));
      g += sizes[k];
    }
  }
}

// ---------------------------------------------------------------- GELU

const float* Gelu::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(c, B);
  c.be->geluForward(x, y, static_cast<int64_t>(B) * out.size());
  return y;
}

void Gelu::backward(Ctx& c, const float* dy, float* dx, int B) {
  if (dx) c.be->geluBackward(x_, dy, dx, static_cast<int64_t>(B) * in.size());
}

// ---------------------------------------------------------------- LayerNorm

LayerNorm::LayerNorm(ParamStore& ps, const std::string& name, Dims d) {
  in = out = d;
  g_ = ps.add(name + ".weight", {d.D}, false);
  b_ = ps.add(name + ".bias", {d.D}, false);
}

void LayerNorm::init(ParamStore& ps, Rng&) {
  std::fill(ps.host(g_), ps.host(g_) + in.D, 1.0f);
  std::fill(ps.host(b_), ps.host(b_) + in.D, 0.0f);
}

const float* LayerNorm::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  const int M = static_cast<int>(rowsOf(B, in));
  float* y = outBuf(c, B);
  c.be->layerNormForward(M, in.D, x, c.ps->data(g_), c.ps->data(b_), y, mean_.resize(*c.be, M), rstd_.resize(*c.be, M));
  return y;
}

void LayerNorm::backward(Ctx& c, const float* dy, float* dx, int B) {
  c.be->layerNormBackward(static_cast<int>(rowsOf(B, in)), in.D, x_, dy, c.ps->data(g_), mean_.data(), rstd_.data(), dx,
                          c.ps->grad(g_), c.ps->grad(b_));
}

// ---------------------------------------------------------------- Transpose

const float* Transpose::forward(Ctx& c, const float* x, int B) {
  float* y = outBuf(c, B);
  c.be->transpose(B, in.T, in.D, x, y);
  return y;
}

void Transpose::backward(Ctx& c, const float* dy, float* dx, int B) {
  if (dx) c.be->transpose(B, out.T, out.D, dy, dx);
}

// ---------------------------------------------------------------- Patchify

Patchify::Patchify(int C, int H, int W, int patch) : C_(C), H_(H), W_(W), p_(patch) {
  in = {1, C * H * W};
  out = {(H / patch) * (W / patch), C * patch * patch};
}

const float* Patchify::forward(Ctx& c, const float* x, int B) {
  float* y = outBuf(c, B);
  c.be->patchify(B, C_, H_, W_, p_, x, y, false);
  return y;
}

void Patchify::backward(Ctx& c, const float* dy, float* dx, int B) {
  if (dx) c.be->patchify(B, C_, H_, W_, p_, dy, dx, true);
}

// ---------------------------------------------------------------- embeddings

TokenPosEmbedding::TokenPosEmbedding(ParamStore& ps, const std::string& name, int vocab, int T, int dim) : vocab_(vocab) {
  in = {T, 1};
  out = {T, dim};
  wte_ = ps.add(name + ".wte.weight", {vocab, dim}, false);
  wpe_ = ps.add(name + ".wpe.weight", {T, dim}, false);
}

void TokenPosEmbedding::init(ParamStore& ps, Rng& rng) {
  // GPT-2 style N(0, 0.02).
  for (size_t i = 0; i < static_cast<size_t>(vocab_) * out.D; i++) ps.host(wte_)[i] = 0.02f * rng.normal();
  for (size_t i = 0; i < out.size(); i++) ps.host(wpe_)[i] = 0.02f * rng.normal();
}

const float* TokenPosEmbedding::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(c, B);
  c.be->tokenPosEmbeddingForward(B, out.T, out.D, x, c.ps->data(wte_), c.ps->data(wpe_), y);
  return y;
}

void TokenPosEmbedding::backward(Ctx& c, const float* dy, float*, int B) {
  c.be->tokenPosEmbeddingBackward(B, out.T, out.D, x_, dy, c.ps->grad(wte_), c.ps->grad(wpe_));
}

ClsToken::ClsToken(ParamStore& ps, const std::string& name, Dims d) {
  in = d;
  out = {d.T + 1, d.D};
  cls_ = ps.add(name, {1, 1, d.D}, false);
}

void ClsToken::init(ParamStore& ps, Rng& rng) {
  for (int i = 0; i < in.D; i++) ps.host(cls_)[i] = 0.02f * rng.normal();
}

const float* ClsToken::forward(Ctx& c, const float* x, int B) {
  float* y = outBuf(c, B);
  c.be->clsTokenForward(B, in.T, in.D, c.ps->data(cls_), x, y);
  return y;
}

void ClsToken::backward(Ctx& c, const float* dy, float* dx, int B) {
  c.be->clsTokenBackward(B, in.T, in.D, dy, c.ps->grad(cls_), dx);
}

PosEmbedding::PosEmbedding(ParamStore& ps, const std::string& name, Dims d) {
  in = out = d;
  pos_ = ps.add(name, {1, d.T, d.D}, false);
}

void PosEmbedding::init(ParamStore& ps, Rng& rng) {
  for (size_t i = 0; i < in.size(); i++) ps.host(pos_)[i] = 0.02f * rng.normal();
}

const float* PosEmbedding::forward(Ctx& c, const float* x, int B) {
  float* y = outBuf(c, B);
  c.be->posEmbeddingForward(B, static_cast<int64_t>(in.size()), x, c.ps->data(pos_), y);
  return y;
}

void PosEmbedding::backward(Ctx& c, const float* dy, float* dx, int B) {
  c.be->posEmbeddingBackward(B, static_cast<int64_t>(in.size()), dy, c.ps->grad(pos_), dx);
}

// ---------------------------------------------------------------- Attention

namespace {

// Times `work` as the part `name` of a timed step (nested in the part of the enclosing block, which
// then does not count it); untimed calls just run it.
template <class Work>
void nestedPart(Ctx& c, const char* name, bool backward, Work work) {
  if (!c.parts) return work();
  c.be->sync();
  const auto t0 = Clock::now();
  work();
  c.be->sync();
  const double ms = msSince(t0);
  PartTime& p = partOf(*c.parts, name);
  (backward ? p.backwardMs : p.forwardMs) += ms;
  c.nestedMs += ms;
}

}  // namespace

Attention::Attention(Dims d, int heads, bool causal, BsrIndex layout, ModulePtr qkv, ModulePtr proj, std::unique_ptr<LowRankTerm> lowRank)
    : heads_(heads), causal_(causal), layout_(std::move(layout)), qkv_(std::move(qkv)), proj_(std::move(proj)), lowRank_(std::move(lowRank)) {
  in = out = d;
}

void Attention::init(ParamStore& ps, Rng& rng) {
  qkv_->init(ps, rng);
  proj_->init(ps, rng);
}

const float* Attention::forward(Ctx& c, const float* x, int B) {
  const int T = in.T, D = in.D;
  qkvOut_ = qkv_->forward(c, x, B);
  float* lse = lse_.resize(*c.be, static_cast<size_t>(B) * heads_ * T);
  float* ctx = ctx_.resize(*c.be, static_cast<size_t>(B) * T * D);
  nestedPart(c, "attention", false, [&] {
    c.be->attentionForward(core(B), qkvOut_, ctx, lse);
    if (lowRank_) lowRank_->forward(core(B), qkvOut_, lse, ctx);
  });
  return proj_->forward(c, ctx, B);
}

void Attention::backward(Ctx& c, const float* dy, float* dx, int B) {
  const int T = in.T, D = in.D;
  float* dctx = dctx_.resize(*c.be, static_cast<size_t>(B) * T * D);
  proj_->backward(c, dy, dctx, B);
  float* dqkv = dqkv_.resize(*c.be, static_cast<size_t>(B) * T * 3 * D);
  nestedPart(c, "attention", true, [&] {
    if (!lowRank_) {
      c.be->attentionBackward(core(B), qkvOut_, ctx_.data(), lse_.data(), dctx, dqkv, nullptr);
      return;
    }
    // The low-rank term first: it gives the sparse part's output and lse their gradients, and its
    // own q, k, v gradients, which are added to the kernels' (they overwrite dqkv).
    const size_t n = static_cast<size_t>(B) * T * 3 * D;
    float* dS = dsparse_.resize(*c.be, static_cast<size_t>(B) * T * D);
    float* dl = dlse_.resize(*c.be, static_cast<size_t>(B) * heads_ * T);
    float* dLow = dqkvLowRank_.resize(*c.be, n);
    c.be->zero(dLow, n * sizeof(float));
    lowRank_->backward(core(B), qkvOut_, dctx, dS, dl, dLow);
    c.be->attentionBackward(core(B), qkvOut_, lowRank_->sparseOut(), lse_.data(), dS, dqkv, dl);
    c.be->addTo(dqkv, dLow, static_cast<int64_t>(n));
  });
  qkv_->backward(c, dqkv, dx, B);
}

// ---------------------------------------------------------------- Pool

const float* Pool::forward(Ctx& c, const float* x, int B) {
  float* y = outBuf(c, B);
  c.be->poolForward(B, in.T, in.D, first_, x, y);
  return y;
}

void Pool::backward(Ctx& c, const float* dy, float* dx, int B) {
  if (dx) c.be->poolBackward(B, in.T, in.D, first_, dy, dx);
}

}  // namespace pixelfly
