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

// Work per thread chunk: elementwise loops by elements, per-row loops by rows.
constexpr int64_t kGrainElems = 16384;
constexpr int64_t kGrainRows = 32;

// The entry of a part in a step's timings (parts appear in model order; "" counts as "other").
PartTime& partOf(PartTimes& parts, const std::string& name) {
  const std::string n = name.empty() ? "other" : name;
  for (auto& p : parts)
    if (p.name == n) return p;
  parts.push_back({n, 0, 0});
  return parts.back();
}

size_t rowsOf(int B, const Dims& d) { return static_cast<size_t>(B) * static_cast<size_t>(d.T); }

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

const float* Sequential::forward(Ctx& c, const float* x, int B) {
  const bool timed = timeParts_ && c.parts;
  for (auto& m : mods_) {
    const auto t0 = timed ? Clock::now() : Clock::time_point{};
    x = m->forward(c, x, B);
    if (timed) partOf(*c.parts, m->part).forwardMs += msSince(t0);
  }
  return x;
}

void Sequential::backward(Ctx& c, const float* dy, float* dx, int B) {
  for (size_t i = mods_.size(); i-- > 0;) {
    float* target = dx;
    if (i > 0) {
      auto& g = grads_[i - 1];
      g.resize(static_cast<size_t>(B) * mods_[i]->in.size());
      target = g.data();
    }
    const bool timed = timeParts_ && c.parts;
    const auto t0 = timed ? Clock::now() : Clock::time_point{};
    mods_[i]->backward(c, dy, target, B);
    if (timed) partOf(*c.parts, mods_[i]->part).backwardMs += msSince(t0);
    dy = target;
  }
}

Residual::Residual(std::unique_ptr<Sequential> body) : body_(std::move(body)) { in = out = body_->in; }

const float* Residual::forward(Ctx& c, const float* x, int B) {
  const float* f = body_->forward(c, x, B);
  float* y = outBuf(B);
  pw::parallelRanges(static_cast<int64_t>(B) * out.size(), kGrainElems,
                     [&](int64_t i0, int64_t i1) { pw::add(x + i0, f + i0, y + i0, i1 - i0); });
  return y;
}

void Residual::backward(Ctx& c, const float* dy, float* dx, int B) {
  const size_t n = static_cast<size_t>(B) * in.size();
  if (!dx) {  // the body still needs its parameter gradients
    scratch_.resize(n);
    dx = scratch_.data();
  }
  body_->backward(c, dy, dx, B);
  pw::parallelRanges(static_cast<int64_t>(n), kGrainElems, [&](int64_t i0, int64_t i1) { pw::addTo(dx + i0, dy + i0, i1 - i0); });
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
  uniformInit(ps.data(w_), static_cast<size_t>(outF_) * inF_, bound, rng);
  if (bias_) uniformInit(ps.data(b_), outF_, bound, rng);
}

const float* Linear::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(B);
  c.be->denseForward(static_cast<int>(rowsOf(B, in)), inF_, outF_, x, c.ps->data(w_), bias_ ? c.ps->data(b_) : nullptr, y,
                     false);
  return y;
}

void Linear::backward(Ctx& c, const float* dy, float* dx, int B) {
  const int M = static_cast<int>(rowsOf(B, in));
  c.be->denseBackwardWeight(M, inF_, outF_, dy, x_, c.ps->grad(w_), true);
  if (bias_) c.be->biasGrad(M, outF_, dy, c.ps->grad(b_), true);
  if (dx) c.be->denseBackwardInput(M, inF_, outF_, dy, c.ps->data(w_), dx, false);
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
  float* w = ps.data(w_);
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
    truncatedSvdFactors(d.data(), outF_, inF_, cfg_.rank, rng, ps.data(u_), ps.data(v_));
    // The gate is an nn.Linear(in, 1).
    const float gb = 1.0f / std::sqrt(static_cast<float>(inF_));
    uniformInit(ps.data(gw_), inF_, gb, rng);
    uniformInit(ps.data(gb_), 1, gb, rng);
  }
  // SparseLRLinear.reset_parameters: bias bound uses fan_in = out_features.
  uniformInit(ps.data(b_), outF_, 1.0f / std::sqrt(static_cast<float>(outF_)), rng);
}

const float* PixelflyLinear::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  const int M = static_cast<int>(rowsOf(B, in));
  const int r = cfg_.rank;
  float* y = outBuf(B);
  const float* bias = c.ps->data(b_);
  if (r == 0) {
    c.be->bsrForward(shape(), M, x, c.ps->data(w_), bias, y, false);
    return y;
  }
  // y = (1 − g)·s + g·l + bias with s = x·Wᵀ and l = (x·V)·Uᵀ = h·Uᵀ, never materialising l:
  //  - in ≤ out: y = (g∘h)·Uᵀ + bias, then y += ((1 − g)∘x)·Wᵀ: two products write y and no extra
  //    pass reads it; (1 − g)∘x is kept, the sparse weight's gradient needs it again;
  //  - in > out: y = s, then one row pass applies the gate, the bias and + (g∘h)·Uᵀ (a (1 − g)∘x
  //    copy would cost more than that pass over the narrower y).
  h_.resize(static_cast<size_t>(M) * r);
  hs_.resize(static_cast<size_t>(M) * r);
  g_.resize(M);
  const bool scaleX = inF_ <= outF_;
  scaled_.resize(scaleX ? static_cast<size_t>(M) * inF_ : 0);
  const float* U = c.ps->data(u_);
  c.be->denseForward(M, inF_, r, x, c.ps->data(v_), nullptr, h_.data(), false);
  if (!scaleX) {
    c.be->bsrForward(shape(), M, x, c.ps->data(w_), nullptr, y, false);
    ut_.resize(static_cast<size_t>(r) * outF_);
    for (int j = 0; j < outF_; j++)
      for (int k = 0; k < r; k++) ut_[static_cast<size_t>(k) * outF_ + j] = U[static_cast<size_t>(j) * r + k];
  }
  const float* gw = c.ps->data(gw_);
  const float gb = *c.ps->data(gb_);
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    const int a = static_cast<int>(m0), b = static_cast<int>(m1);
    pw::pixelflyGate(x, inF_, gw, gb, h_.data(), r, g_.data(), hs_.data(), scaleX ? scaled_.data() : nullptr, a, b);
    if (!scaleX) pw::pixelflyLerpRows(y, outF_, g_.data(), bias, hs_.data(), ut_.data(), r, a, b);
  });
  if (scaleX) {
    c.be->denseForward(M, r, outF_, hs_.data(), U, bias, y, false);
    c.be->bsrForward(shape(), M, scaled_.data(), c.ps->data(w_), nullptr, y, true);
  }
  return y;
}

void PixelflyLinear::backward(Ctx& c, const float* dy, float* dx, int B) {
  const int M = static_cast<int>(rowsOf(B, in));
  const int r = cfg_.rank;
  c.be->biasGrad(M, outF_, dy, c.ps->grad(b_), true);
  if (r == 0) {
    c.be->bsrBackwardWeight(shape(), M, dy, x_, c.ps->grad(w_), true);
    if (dx) c.be->bsrBackwardInput(shape(), M, dy, c.ps->data(w_), dx, false);
    return;
  }
  // y = s + g·(l − s) with one gate value per row, so dL/ds = (1 − g)·dy and dL/dl = g·dy are row
  // scalings of dy: scale the narrower operand instead of materialising two M×out arrays.
  //   dW_sparse = dyᵀ·((1 − g)∘x) = ((1 − g)∘dy)ᵀ·x     dx_sparse = (1 − g)∘(dy·W)
  //   dU = dyᵀ·(g∘h)                                    dh = g∘(dy·U)
  //   dz = g(1 − g)·Σ_j dy_j (l_j − s_j)   through the sigmoid (see pointwise::pixelflyMixBackward)
  if (!dx) {  // the gate's gradient still needs dy·W
    dxScratch_.resize(static_cast<size_t>(M) * inF_);
    dx = dxScratch_.data();
  }
  dh_.resize(static_cast<size_t>(M) * r);
  dz_.resize(M);
  const bool scaleX = inF_ <= outF_;  // then the forward left (1 − g)∘x in scaled_
  if (!scaleX) scaled_.resize(static_cast<size_t>(M) * outF_);
  c.be->bsrBackwardInput(shape(), M, dy, c.ps->data(w_), dx, false);
  c.be->denseBackwardInput(M, r, outF_, dy, c.ps->data(u_), dh_.data(), false);
  const float* gw = c.ps->data(gw_);
  const float* V = c.ps->data(v_);
  // Per-thread partial sums of the gate weight's gradient, added in thread order (deterministic).
  const int threads = omp_get_max_threads();
  dgwParts_.assign(static_cast<size_t>(threads) * inF_, 0.0f);
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    const int a = static_cast<int>(m0), b = static_cast<int>(m1);
    float* dgw = &dgwParts_[static_cast<size_t>(omp_get_thread_num()) * inF_];
    pw::pixelflyMixBackward(x_, inF_, gw, V, h_.data(), r, g_.data(), dx, dh_.data(), dz_.data(), dgw, a, b);
    if (!scaleX) pw::scaleRowsOneMinus(dy, outF_, g_.data(), scaled_.data(), a, b);
  });
  for (int t = 0; t < threads; t++) pw::addTo(c.ps->grad(gw_), &dgwParts_[static_cast<size_t>(t) * inF_], inF_);
  if (scaleX) c.be->bsrBackwardWeight(shape(), M, dy, scaled_.data(), c.ps->grad(w_), true);
  else c.be->bsrBackwardWeight(shape(), M, scaled_.data(), x_, c.ps->grad(w_), true);
  c.be->denseBackwardWeight(M, r, outF_, dy, hs_.data(), c.ps->grad(u_), true);
  c.be->denseBackwardWeight(M, inF_, r, dh_.data(), x_, c.ps->grad(v_), true);
  c.be->biasGrad(M, 1, dz_.data(), c.ps->grad(gb_), true);
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
  uniformInit(ps.data(w1_), static_cast<size_t>(hidden_) * T, bound1, rng);
  uniformInit(ps.data(b1_), hidden_, bound1, rng);
  uniformInit(ps.data(w2_), static_cast<size_t>(T) * hidden_, bound2, rng);
  uniformInit(ps.data(b2_), T, bound2, rng);
}

// s.p = W1·x_b + b1 and s.h = GELU(s.p), both [hidden × D].
void TokenMixMlp::hiddenActivations(Ctx& c, const float* xb, ThreadScratch& s) const {
  const int T = in.T, D = in.D, Hd = hidden_;
  const size_t n = static_cast<size_t>(Hd) * D;
  s.p.resize(n);
  s.h.resize(n);
  const float* b1 = c.ps->data(b1_);
  for (int t = 0; t < Hd; t++) std::fill(s.p.begin() + static_cast<size_t>(t) * D, s.p.begin() + static_cast<size_t>(t + 1) * D, b1[t]);
  kernels::gemm(kernels::Trans::No, kernels::Trans::No, Hd, D, T, 1.0f, c.ps->data(w1_), T, xb, D, 1.0f, s.p.data(), D);
  pw::geluForward(s.p.data(), s.h.data(), static_cast<int64_t>(n));
}

const float* TokenMixMlp::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(B);
  const int T = in.T, D = in.D;
  const size_t slice = in.size();
  const float* b2 = c.ps->data(b2_);
  scratch_.resize(omp_get_max_threads());
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    ThreadScratch& s = scratch_[omp_get_thread_num()];
    hiddenActivations(c, x + b * slice, s);
    float* yb = y + b * slice;
    for (int t = 0; t < T; t++) std::fill(yb + static_cast<size_t>(t) * D, yb + static_cast<size_t>(t + 1) * D, b2[t]);
    kernels::gemm(kernels::Trans::No, kernels::Trans::No, T, D, hidden_, 1.0f, c.ps->data(w2_), hidden_, s.h.data(), D,
                  1.0f, yb, D);
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
    kernels::gemm(Trans::No, Trans::Yes, T, Hd, D, 1.0f, dyb, D, s.h.data(), D, 1.0f, gW2, Hd);
    pw::addRowSums(dyb, T, D, gB2);
    kernels::gemm(Trans::Yes, Trans::No, Hd, D, T, 1.0f, c.ps->data(w2_), Hd, dyb, D, 0.0f, s.dh.data(), D);
    // through GELU (dp overwrites dh), then p = W1·x + b1: dW1 += dp·xᵀ, db1 += row sums, dx = W1ᵀ·dp.
    pw::geluBackward(s.p.data(), s.dh.data(), s.dh.data(), static_cast<int64_t>(Hd) * D);
    kernels::gemm(Trans::No, Trans::Yes, Hd, T, D, 1.0f, s.dh.data(), D, xb, D, 1.0f, gW1, T);
    pw::addRowSums(s.dh.data(), Hd, D, gB1);
    if (dx) kernels::gemm(Trans::Yes, Trans::No, T, D, Hd, 1.0f, c.ps->data(w1_), T, s.dh.data(), D, 0.0f, dx + b * slice, D);
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

const float* Gelu::forward(Ctx&, const float* x, int B) {
  x_ = x;
  float* y = outBuf(B);
  pw::parallelRanges(static_cast<int64_t>(B) * out.size(), kGrainElems,
                     [&](int64_t i0, int64_t i1) { pw::geluForward(x + i0, y + i0, i1 - i0); });
  return y;
}

void Gelu::backward(Ctx&, const float* dy, float* dx, int B) {
  if (!dx) return;
  const float* x = x_;
  pw::parallelRanges(static_cast<int64_t>(B) * in.size(), kGrainElems,
                     [&](int64_t i0, int64_t i1) { pw::geluBackward(x + i0, dy + i0, dx + i0, i1 - i0); });
}

// ---------------------------------------------------------------- LayerNorm

LayerNorm::LayerNorm(ParamStore& ps, const std::string& name, Dims d) {
  in = out = d;
  g_ = ps.add(name + ".weight", {d.D}, false);
  b_ = ps.add(name + ".bias", {d.D}, false);
}

void LayerNorm::init(ParamStore& ps, Rng&) {
  std::fill(ps.data(g_), ps.data(g_) + in.D, 1.0f);
  std::fill(ps.data(b_), ps.data(b_) + in.D, 0.0f);
}

const float* LayerNorm::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  const int M = static_cast<int>(rowsOf(B, in)), D = in.D;
  mean_.resize(M);
  rstd_.resize(M);
  float* y = outBuf(B);
  const float* g = c.ps->data(g_);
  const float* b = c.ps->data(b_);
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    pw::layerNormForward(x, D, g, b, y, mean_.data(), rstd_.data(), static_cast<int>(m0), static_cast<int>(m1));
  });
  return y;
}

void LayerNorm::backward(Ctx& c, const float* dy, float* dx, int B) {
  const int M = static_cast<int>(rowsOf(B, in)), D = in.D;
  const float* g = c.ps->data(g_);
  float* dg = c.ps->grad(g_);
  float* db = c.ps->grad(b_);
  pw::parallelRanges(D, 64, [&](int64_t c0, int64_t c1) {
    pw::layerNormParamGrads(x_, dy, M, D, mean_.data(), rstd_.data(), dg, db, static_cast<int>(c0), static_cast<int>(c1));
  });
  if (!dx) return;
  pw::parallelRanges(M, kGrainRows, [&](int64_t m0, int64_t m1) {
    pw::layerNormBackwardInput(x_, dy, D, g, mean_.data(), rstd_.data(), dx, static_cast<int>(m0), static_cast<int>(m1));
  });
}

// ---------------------------------------------------------------- Transpose

const float* Transpose::forward(Ctx&, const float* x, int B) {
  float* y = outBuf(B);
  const int T = in.T, D = in.D;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float* xb = x + static_cast<size_t>(b) * T * D;
    float* yb = y + static_cast<size_t>(b) * T * D;
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) yb[static_cast<size_t>(d) * T + t] = xb[static_cast<size_t>(t) * D + d];
  }
  return y;
}

void Transpose::backward(Ctx&, const float* dy, float* dx, int B) {
  if (!dx) return;
  const int T = in.T, D = in.D;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float* g = dy + static_cast<size_t>(b) * T * D;
    float* o = dx + static_cast<size_t>(b) * T * D;
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) o[static_cast<size_t>(t) * D + d] = g[static_cast<size_t>(d) * T + t];
  }
}

// ---------------------------------------------------------------- Patchify

Patchify::Patchify(int C, int H, int W, int patch) : C_(C), H_(H), W_(W), p_(patch) {
  in = {1, C * H * W};
  out = {(H / patch) * (W / patch), C * patch * patch};
}

template <bool Back>
void Patchify::copy(const float* src, float* dst, int B) const {
  const int gw = W_ / p_, np = out.T, pd = out.D;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < np; t++) {
      const int py = t / gw, px = t % gw;
      for (int ch = 0; ch < C_; ch++)
        for (int i = 0; i < p_; i++)
          for (int j = 0; j < p_; j++) {
            const size_t img = static_cast<size_t>(b) * in.D + (static_cast<size_t>(ch) * H_ + py * p_ + i) * W_ + px * p_ + j;
            const size_t pat = (static_cast<size_t>(b) * np + t) * pd + (ch * p_ + i) * p_ + j;
            if (Back) dst[img] = src[pat];
            else dst[pat] = src[img];
          }
    }
  }
}

const float* Patchify::forward(Ctx&, const float* x, int B) {
  float* y = outBuf(B);
  copy<false>(x, y, B);
  return y;
}

void Patchify::backward(Ctx&, const float* dy, float* dx, int B) {
  if (dx) copy<true>(dy, dx, B);
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
  for (size_t i = 0; i < static_cast<size_t>(vocab_) * out.D; i++) ps.data(wte_)[i] = 0.02f * rng.normal();
  for (size_t i = 0; i < out.size(); i++) ps.data(wpe_)[i] = 0.02f * rng.normal();
}

const float* TokenPosEmbedding::forward(Ctx& c, const float* x, int B) {
  x_ = x;
  float* y = outBuf(B);
  const int T = out.T, D = out.D;
  const float* wte = c.ps->data(wte_);
  const float* wpe = c.ps->data(wpe_);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const int id = static_cast<int>(x[static_cast<size_t>(b) * T + t]);
      float* yr = y + (static_cast<size_t>(b) * T + t) * D;
      for (int d = 0; d < D; d++) yr[d] = wte[static_cast<size_t>(id) * D + d] + wpe[static_cast<size_t>(t) * D + d];
    }
  return y;
}

void TokenPosEmbedding::backward(Ctx& c, const float* dy, float*, int B) {
  const int T = out.T, D = out.D;
  float* gte = c.ps->grad(wte_);
  float* gpe = c.ps->grad(wpe_);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const int id = static_cast<int>(x_[static_cast<size_t>(b) * T + t]);
      const float* g = dy + (static_cast<size_t>(b) * T + t) * D;
      for (int d = 0; d < D; d++) {
        gte[static_cast<size_t>(id) * D + d] += g[d];
        gpe[static_cast<size_t>(t) * D + d] += g[d];
      }
    }
}

ClsToken::ClsToken(ParamStore& ps, const std::string& name, Dims d) {
  in = d;
  out = {d.T + 1, d.D};
  cls_ = ps.add(name, {1, 1, d.D}, false);
}

void ClsToken::init(ParamStore& ps, Rng& rng) {
  for (int i = 0; i < in.D; i++) ps.data(cls_)[i] = 0.02f * rng.normal();
}

const float* ClsToken::forward(Ctx& c, const float* x, int B) {
  float* y = outBuf(B);
  const size_t D = in.D, n = in.size();
  for (int b = 0; b < B; b++) {
    std::memcpy(y + b * (n + D), c.ps->data(cls_), sizeof(float) * D);
    std::memcpy(y + b * (n + D) + D, x + b * n, sizeof(float) * n);
  }
  return y;
}

void ClsToken::backward(Ctx& c, const float* dy, float* dx, int B) {
  const size_t D = in.D, n = in.size();
  float* g = c.ps->grad(cls_);
  for (int b = 0; b < B; b++) {
    for (size_t d = 0; d < D; d++) g[d] += dy[b * (n + D) + d];
    if (dx) std::memcpy(dx + b * n, dy + b * (n + D) + D, sizeof(float) * n);
  }
}

PosEmbedding::PosEmbedding(ParamStore& ps, const std::string& name, Dims d) {
  in = out = d;
  pos_ = ps.add(name, {1, d.T, d.D}, false);
}

void PosEmbedding::init(ParamStore& ps, Rng& rng) {
  for (size_t i = 0; i < in.size(); i++) ps.data(pos_)[i] = 0.02f * rng.normal();
}

const float* PosEmbedding::forward(Ctx& c, const float* x, int B) {
  float* y = outBuf(B);
  const size_t n = in.size();
  const float* p = c.ps->data(pos_);
  for (int b = 0; b < B; b++)
    for (size_t i = 0; i < n; i++) y[b * n + i] = x[b * n + i] + p[i];
  return y;
}

void PosEmbedding::backward(Ctx& c, const float* dy, float* dx, int B) {
  const size_t n = in.size();
  float* g = c.ps->grad(pos_);
  for (int b = 0; b < B; b++)
    for (size_t i = 0; i < n; i++) {
      g[i] += dy[b * n + i];
      if (dx) dx[b * n + i] = dy[b * n + i];
    }
}

// ---------------------------------------------------------------- Attention

Attention::Attention(Dims d, int heads, bool causal, ModulePtr qkv, ModulePtr proj)
    : heads_(heads), causal_(causal), qkv_(std::move(qkv)), proj_(std::move(proj)) {
  in = out = d;
}

void Attention::init(ParamStore& ps, Rng& rng) {
  qkv_->init(ps, rng);
  proj_->init(ps, rng);
}

const float* Attention::forward(Ctx& c, const float* x, int B) {
  const int T = in.T, D = in.D, H = heads_, hd = D / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  qkvOut_ = qkv_->forward(c, x, B);
  att_.resize(static_cast<size_t>(B) * H * T * T);
  ctx_.resize(static_cast<size_t>(B) * T * D);
  const float* q = qkvOut_;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * H; bh++) {
    const int b = bh / H, h = bh % H;
    const float* base = q + static_cast<size_t>(b) * T * 3 * D;
    float* a = &att_[static_cast<size_t>(bh) * T * T];
    for (int i = 0; i < T; i++) {
      const float* qi = base + static_cast<size_t>(i) * 3 * D + h * hd;
      const int jEnd = causal_ ? i + 1 : T;
      float mx = -INFINITY;
      for (int j = 0; j < jEnd; j++) {
        const float* kj = base + static_cast<size_t>(j) * 3 * D + D + h * hd;
        float s = 0.0f;
        for (int e = 0; e < hd; e++) s += qi[e] * kj[e];
        s *= scale;
        a[static_cast<size_t>(i) * T + j] = s;
        mx = std::max(mx, s);
      }
      float sum = 0.0f;
      for (int j = 0; j < jEnd; j++) {
        const float e = std::exp(a[static_cast<size_t>(i) * T + j] - mx);
        a[static_cast<size_t>(i) * T + j] = e;
        sum += e;
      }
      for (int j = 0; j < T; j++) a[static_cast<size_t>(i) * T + j] = j < jEnd ? a[static_cast<size_t>(i) * T + j] / sum : 0.0f;
      float* ci = &ctx_[(static_cast<size_t>(b) * T + i) * D + h * hd];
      for (int e = 0; e < hd; e++) ci[e] = 0.0f;
      for (int j = 0; j < jEnd; j++) {
        const float p = a[static_cast<size_t>(i) * T + j];
        const float* vj = base + static_cast<size_t>(j) * 3 * D + 2 * D + h * hd;
        for (int e = 0; e < hd; e++) ci[e] += p * vj[e];
      }
    }
  }
  return proj_->forward(c, ctx_.data(), B);
}

void Attention::backward(Ctx& c, const float* dy, float* dx, int B) {
  const int T = in.T, D = in.D, H = heads_, hd = D / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  dctx_.resize(static_cast<size_t>(B) * T * D);
  proj_->backward(c, dy, dctx_.data(), B);
  dqkv_.assign(static_cast<size_t>(B) * T * 3 * D, 0.0f);
  const float* q = qkvOut_;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * H; bh++) {
    const int b = bh / H, h = bh % H;
    const float* base = q + static_cast<size_t>(b) * T * 3 * D;
    float* dbase = &dqkv_[static_cast<size_t>(b) * T * 3 * D];
    const float* a = &att_[static_cast<size_t>(bh) * T * T];
    std::vector<float> dp(T);
    for (int i = 0; i < T; i++) {
      const int jEnd = causal_ ? i + 1 : T;
      const float* dci = &dctx_[(static_cast<size_t>(b) * T + i) * D + h * hd];
      // dP = dCtx·Vᵀ and dV += Pᵀ·dCtx
      float dot = 0.0f;
      for (int j = 0; j < jEnd; j++) {
        const float* vj = base + static_cast<size_t>(j) * 3 * D + 2 * D + h * hd;
        float* dvj = dbase + static_cast<size_t>(j) * 3 * D + 2 * D + h * hd;
        const float p = a[static_cast<size_t>(i) * T + j];
        float s = 0.0f;
        for (int e = 0; e < hd; e++) {
          s += dci[e] * vj[e];
          dvj[e] += p * dci[e];
        }
        dp[j] = s;
        dot += s * p;
      }
      // Softmax backward, then through the scaled dot products.
      const float* qi = base + static_cast<size_t>(i) * 3 * D + h * hd;
      float* dqi = dbase + static_cast<size_t>(i) * 3 * D + h * hd;
      for (int j = 0; j < jEnd; j++) {
        const float ds = a[static_cast<size_t>(i) * T + j] * (dp[j] - dot) * scale;
        const float* kj = base + static_cast<size_t>(j) * 3 * D + D + h * hd;
        float* dkj = dbase + static_cast<size_t>(j) * 3 * D + D + h * hd;
        for (int e = 0; e < hd; e++) {
          dqi[e] += ds * kj[e];
          dkj[e] += ds * qi[e];
        }
      }
    }
  }
  qkv_->backward(c, dqkv_.data(), dx, B);
}

// ---------------------------------------------------------------- Pool

const float* Pool::forward(Ctx&, const float* x, int B) {
  float* y = outBuf(B);
  const int T = in.T, D = in.D;
  for (int b = 0; b < B; b++) {
    float* yb = y + static_cast<size_t>(b) * D;
    const float* xb = x + static_cast<size_t>(b) * T * D;
    if (first_) {
      std::memcpy(yb, xb, sizeof(float) * D);
      continue;
    }
    for (int d = 0; d < D; d++) yb[d] = 0.0f;
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) yb[d] += xb[static_cast<size_t>(t) * D + d];
    for (int d = 0; d < D; d++) yb[d] /= static_cast<float>(T);
  }
  return y;
}

void Pool::backward(Ctx&, const float* dy, float* dx, int B) {
  if (!dx) return;
  const int T = in.T, D = in.D;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int d = 0; d < D; d++) {
        const float g = dy[static_cast<size_t>(b) * D + d];
        dx[(static_cast<size_t>(b) * T + t) * D + d] = first_ ? (t == 0 ? g : 0.0f) : g / static_cast<float>(T);
      }
}

// ---------------------------------------------------------------- loss

double softmaxCrossEntropy(const float* logits, const int32_t* targets, int rows, int classes, float* dlogits,
                           int64_t* correct) {
  double loss = 0.0;
  int64_t right = 0;
  for (int r = 0; r < rows; r++) {
    const float* z = logits + static_cast<size_t>(r) * classes;
    int arg = 0;
    float mx = z[0];
    for (int k = 1; k < classes; k++)
      if (z[k] > mx) mx = z[k], arg = k;
    double sum = 0.0;
    for (int k = 0; k < classes; k++) sum += std::exp(static_cast<double>(z[k] - mx));
    const int t = targets[r];
    loss += std::log(sum) - (z[t] - mx);
    if (arg == t) right++;
    if (dlogits) {
      float* g = dlogits + static_cast<size_t>(r) * classes;
      for (int k = 0; k < classes; k++)
        g[k] = static_cast<float>(std::exp(static_cast<double>(z[k] - mx)) / sum / rows) - (k == t ? 1.0f / rows : 0.0f);
    }
  }
  if (correct) *correct = right;
  return loss / rows;
}

}  // namespace pixelfly
