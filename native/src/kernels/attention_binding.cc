// JS binding of the attention cores (exports.attention), in the kernels' baton style: arguments are
// checked on the JS thread, the call runs on a libuv worker and resolves a promise. Tensors are
// contiguous [batch][T][heads][headDim] Float32Arrays (tokens-major, as the engine's activations);
// lse is [batch][heads][T]. `reference: true` runs the plain reference instead of the kernels.
#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "addon_area.h"
#include "kernels/attention.h"
#include "binding_util.h"

namespace pixelfly {
namespace kernels {
namespace {

using binding::Args;
using binding::ArgError;
using binding::OwnedLayout;

struct Problem {
  std::shared_ptr<OwnedLayout> layout;
  AttentionShape shape;
  size_t elems = 0;  // floats of one [batch][T][heads][headDim] tensor
  bool reference = false;
  int threads = 0;

  Heads in(const float* p) const { return {p, (int64_t)shape.T * rowStride(), shape.headDim, rowStride()}; }
  HeadsOut out(float* p) const { return {p, (int64_t)shape.T * rowStride(), shape.headDim, rowStride()}; }
  int64_t rowStride() const { return (int64_t)shape.heads * shape.headDim; }
};

Problem problemArgs(Args& a) {
  Problem p;
  p.shape.batch = a.integer("batch", 0, 1 << 20);
  p.shape.heads = a.integer("heads", 1, 1 << 12);
  p.shape.T = a.integer("T", 1, 1 << 22);
  p.shape.headDim = a.integer("headDim", 1, 256);
  p.shape.causal = a.boolean("causal", false);
  p.shape.scale = a.number("scale", 1.f / std::sqrt((float)p.shape.headDim));
  p.reference = a.boolean("reference", false);
  p.threads = a.has("threads") ? a.integer("threads", 1, 1024) : 0;
  p.elems = (size_t)p.shape.batch * p.shape.T * p.shape.heads * p.shape.headDim;

  Napi::Object obj = a.object("layout");
  Args la(a.fn + ": layout", obj);
  auto L = std::make_shared<OwnedLayout>();
  L->view.block = la.integer("block", 16, 128);
  L->view.blockRows = la.integer("blockRows", 1, 1 << 20);
  L->view.blockCols = la.integer("blockCols", 1, 1 << 20);
  L->view.nnz = la.integer("nnz", 0, 1 << 30);
  L->rowPtr = binding::int32Array(a, obj, "rowPtr", (size_t)L->view.blockRows + 1);
  L->colIdx = binding::int32Array(a, obj, "colIdx", (size_t)L->view.nnz);
  L->colPtr = binding::int32Array(a, obj, "colPtr", (size_t)L->view.blockCols + 1);
  L->rowIdx = binding::int32Array(a, obj, "rowIdx", (size_t)L->view.nnz);
  L->tBlock = binding::int32Array(a, obj, "tBlock", (size_t)L->view.nnz);
  L->bind();
  const std::string err = validateAttentionLayout(L->view, p.shape.T, p.shape.causal);
  if (!err.empty()) throw ArgError(a.fn + ": layout: " + err);
  p.layout = L;
  return p;
}

constexpr const char* kTensor = "batch*T*heads*headDim";

Napi::Value Forward(const Napi::CallbackInfo& info) {
  return binding::run(info, "attention.forward", [](Args& a) -> std::function<void()> {
    Problem p = problemArgs(a);
    const float* q = a.floats("q", p.elems, kTensor);
    const float* k = a.floats("k", p.elems, kTensor);
    const float* v = a.floats("v", p.elems, kTensor);
    float* o = a.floats("o", p.elems, kTensor);
    float* lse = a.floats("lse", (size_t)p.shape.batch * p.shape.heads * p.shape.T, "batch*heads*T");
    return [p, q, k, v, o, lse] {
      if (p.reference) attentionForwardReference(p.layout->view, p.shape, p.in(q), p.in(k), p.in(v), p.out(o), lse);
      else attentionForward(p.layout->view, p.shape, p.in(q), p.in(k), p.in(v), p.out(o), lse, p.threads);
    };
  });
}

Napi::Value Backward(const Napi::CallbackInfo& info) {
  return binding::run(info, "attention.backward", [](Args& a) -> std::function<void()> {
    Problem p = problemArgs(a);
    const float* q = a.floats("q", p.elems, kTensor);
    const float* k = a.floats("k", p.elems, kTensor);
    const float* v = a.floats("v", p.elems, kTensor);
    const float* dO = a.floats("dO", p.elems, kTensor);
    // The reference recomputes everything; the kernels need the forward's o and lse.
    const float* o = p.reference ? nullptr : a.floats("o", p.elems, kTensor);
    const float* lse = p.reference ? nullptr : a.floats("lse", (size_t)p.shape.batch * p.shape.heads * p.shape.T, "batch*heads*T");
    float* dq = a.floats("dq", p.elems, kTensor);
    float* dk = a.floats("dk", p.elems, kTensor);
    float* dv = a.floats("dv", p.elems, kTensor);
    return [p, q, k, v, o, lse, dO, dq, dk, dv] {
      if (p.reference)
        attentionBackwardReference(p.layout->view, p.shape, p.in(q), p.in(k), p.in(v), p.in(dO), p.out(dq), p.out(dk), p.out(dv));
      else
        attentionBackward(p.layout->view, p.shape, p.in(q), p.in(k), p.in(v), p.in(o), lse, p.in(dO), p.out(dq), p.out(dk),
                          p.out(dv), p.threads);
    };
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  Napi::Object a = Napi::Object::New(env);
  a.Set("forward", Napi::Function::New(env, Forward, "forward"));
  a.Set("backward", Napi::Function::New(env, Backward, "backward"));
  Napi::Array blocks = Napi::Array::New(env);
  uint32_t i = 0;
  for (int b : kAttentionBlocks) blocks.Set(i++, b);
  a.Set("blocks", blocks);
  exports.Set("attention", a);
}

static AddonArea area("attention", Init);

}  // namespace
}  // namespace kernels
}  // namespace pixelfly
