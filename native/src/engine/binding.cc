// JS API of the engine (wrapped by native/engine.ts). Arguments are checked and copied into C++
// structs on the JS thread; building, training and evaluating run on libuv's worker threads
// (binding_util.h's Worker, as every binding's calls) and resolve promises. A model runs one call at a time (a second concurrent call is refused).
#include <omp.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "addon_area.h"
#include "binding_util.h"
#include "cuda/backend_cuda.h"
#include "kernels/kernels.h"
#include "model.h"

namespace pixelfly {

namespace {

// ---------------------------------------------------------------- argument helpers

[[noreturn]] void typeError(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }

Napi::Value field(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) typeError(o.Env(), where + "." + key + ": missing");
  return v;
}

double num(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = field(o, key, where);
  if (!v.IsNumber()) typeError(o.Env(), where + "." + key + ": must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int integer(const Napi::Object& o, const char* key, const std::string& where, int def = INT32_MIN) {
  Napi::Value v = o.Get(key);
  if ((v.IsUndefined() || v.IsNull()) && def != INT32_MIN) return def;
  const double d = num(o, key, where);
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < -2147483648.0 || d > 2147483647.0)
    typeError(o.Env(), where + "." + key + ": must be an integer, got " + std::to_string(d));
  return static_cast<int>(d);
}

double numOr(const Napi::Object& o, const char* key, const std::string& where, double def) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() || v.IsNull() ? def : num(o, key, where);
}

std::string text(const Napi::Object& o, const char* key, const std::string& where, const char* def = nullptr) {
  Napi::Value v = o.Get(key);
  if ((v.IsUndefined() || v.IsNull()) && def) return def;
  if (!field(o, key, where).IsString()) typeError(o.Env(), where + "." + key + ": must be a string");
  return v.As<Napi::String>().Utf8Value();
}

template <typename T, napi_typedarray_type Kind>
std::vector<T> typedArray(const Napi::Value& v, const std::string& what, const char* typeName) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind)
    typeError(v.Env(), what + ": must be a " + typeName);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int32_t> int32s(const Napi::Object& o, const char* key, const std::string& where) {
  return typedArray<int32_t, napi_int32_array>(field(o, key, where), where + "." + key, "Int32Array");
}

std::vector<float> floats(const Napi::Value& v, const std::string& what) {
  return typedArray<float, napi_float32_array>(v, what, "Float32Array");
}

Napi::Float32Array toJs(Napi::Env env, const float* p, size_t n) {
  auto a = Napi::Float32Array::New(env, n);
  std::copy(p, p + n, a.Data());
  return a;
}

// ---------------------------------------------------------------- config parsing

BsrIndex parseIndex(const Napi::Object& o, const std::string& where) {
  BsrIndex ix;
  ix.block = integer(o, "block", where);
  ix.blockRows = integer(o, "blockRows", where);
  ix.blockCols = integer(o, "blockCols", where);
  ix.nnz = integer(o, "nnz", where);
  ix.rowPtr = int32s(o, "rowPtr", where);
  ix.colIdx = int32s(o, "colIdx", where);
  ix.colPtr = int32s(o, "colPtr", where);
  ix.rowIdx = int32s(o, "rowIdx", where);
  ix.tBlock = int32s(o, "tBlock", where);
  return ix;
}

PixelflyConfig parsePixelfly(const Napi::Object& o, const std::string& where) {
  PixelflyConfig pc;
  pc.rank = integer(o, "rank", where);
  pc.index = parseIndex(o, where);
  return pc;
}

ModelConfig parseModel(const Napi::Object& o) {
  const std::string w = "model";
  ModelConfig c;
  c.kind = text(o, "kind", w);
  c.features = integer(o, "features", w, 0);
  c.channels = integer(o, "channels", w, 0);
  c.height = integer(o, "height", w, 0);
  c.width = integer(o, "width", w, 0);
  c.patch = integer(o, "patch", w, 0);
  c.vocab = integer(o, "vocab", w, 0);
  c.context = integer(o, "context", w, 0);
  c.dim = integer(o, "dim", w, 0);
  c.depth = integer(o, "depth", w, 0);
  c.heads = integer(o, "heads", w, 0);
  c.tokenHidden = integer(o, "tokenHidden", w, 0);
  c.channelHidden = integer(o, "channelHidden", w, 0);
  c.mlpHidden = integer(o, "mlpHidden", w, 0);
  c.classes = integer(o, "classes", w, 0);
  c.pool = text(o, "pool", w, "mean");
  c.probeLayer = text(o, "probeLayer", w, "");
  c.probeT = integer(o, "probeT", w, 1);
  c.causal = o.Get("causal").ToBoolean();
  Napi::Value hidden = o.Get("hidden");
  if (hidden.IsArray()) {
    auto a = hidden.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsNumber()) typeError(o.Env(), "model.hidden[" + std::to_string(i) + "]: must be a number");
      c.hidden.push_back(v.As<Napi::Number>().Int32Value());
    }
  }
  Napi::Value attention = o.Get("attention");
  if (attention.IsObject()) c.attention = parseIndex(attention.As<Napi::Object>(), "model.attention");
  c.attentionFeatures = integer(o, "attentionFeatures", w, 0);
  if (c.attentionFeatures > 0) c.attentionProjection = floats(o.Get("attentionProjection"), w + ".attentionProjection");
  Napi::Value px = o.Get("pixelfly");
  if (px.IsObject()) {
    auto layers = px.As<Napi::Object>();
    Napi::Array names = layers.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value l = layers.Get(name);
      if (!l.IsObject()) typeError(o.Env(), "model.pixelfly." + name + ": must be an object");
      c.pixelfly[name] = parsePixelfly(l.As<Napi::Object>(), "model.pixelfly." + name);
    }
  }
  return c;
}

TrainConfig parseTrain(const Napi::Object& o) {
  const std::string w = "train";
  TrainConfig t;
  t.batch = integer(o, "batch", w, t.batch);
  t.lr = numOr(o, "lr", w, t.lr);
  t.minLrRatio = numOr(o, "minLrRatio", w, t.minLrRatio);
  t.weightDecay = numOr(o, "weightDecay", w, t.weightDecay);
  t.beta1 = numOr(o, "beta1", w, t.beta1);
  t.beta2 = numOr(o, "beta2", w, t.beta2);
  t.eps = numOr(o, "eps", w, t.eps);
  t.warmupSteps = static_cast<int64_t>(numOr(o, "warmupSteps", w, 0));
  t.totalSteps = static_cast<int64_t>(numOr(o, "totalSteps", w, static_cast<double>(t.totalSteps)));
  t.clipNorm = numOr(o, "clipNorm", w, t.clipNorm);
  return t;
}

void setWorkerThreads(int threads) {
  // OpenMP's thread count is per calling thread: set it on the worker that runs the job.
  omp_set_num_threads(threads);
  kernels::setThreads(threads);
}

int checkedThreads(Napi::Env env, const Napi::Object& o) {
  const int t = integer(o, "threads", "options", 1);
  if (t < 1 || t > 256) typeError(env, "options.threads: must be between 1 and 256, got " + std::to_string(t));
  return t;
}

// ---------------------------------------------------------------- Dataset

class JsDataset : public Napi::ObjectWrap<JsDataset> {
 public:
  // Leaked on purpose: a static FunctionReference would be destroyed after Node's environment.
  static Napi::FunctionReference* ctor;
  static void Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "EngineDataset", {InstanceMethod("info", &JsDataset::Info)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
  }
  explicit JsDataset(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsDataset>(info) {
    if (info.Length() < 1 || !info[0].IsObject()) typeError(info.Env(), "dataset: expected a description object");
    auto o = info[0].As<Napi::Object>();
    const std::string w = "dataset";
    d_ = std::make_shared<Dataset>();
    d_->name = text(o, "name", w);
    const std::string kind = text(o, "kind", w);
    d_->classes = integer(o, "classes", w);
    if (d_->classes < 1) typeError(info.Env(), w + ".classes: must be ≥ 1");
    if (kind == "tokens") {
      d_->kind = Dataset::Kind::Tokens;
      d_->train.tokens = int32s(o, "trainTokens", w);
      d_->test.tokens = int32s(o, "testTokens", w);
      for (Split* s : {&d_->train, &d_->test}) {
        s->n = static_cast<int64_t>(s->tokens.size());
        for (int32_t t : s->tokens)
          if (t < 0 || t >= d_->classes) typeError(info.Env(), w + ": token id " + std::to_string(t) + " outside vocabulary 0.." + std::to_string(d_->classes - 1));
      }
      return;
    }
    if (kind != "classification") typeError(info.Env(), w + ".kind: must be 'classification' or 'tokens', got '" + kind + "'");
    d_->features = integer(o, "features", w);
    if (d_->features < 1) typeError(info.Env(), w + ".features: must be ≥ 1");
    d_->scale = static_cast<float>(numOr(o, "scale", w, 1.0));
    d_->shift = static_cast<float>(numOr(o, "shift", w, 0.0));
    loadSplit(o, "train", d_->train);
    loadSplit(o, "test", d_->test);
  }
  std::shared_ptr<const Dataset> dataset() const { return d_; }

 private:
  void loadSplit(const Napi::Object& o, const std::string& which, Split& s) {
    const std::string w = "dataset." + which;
    Napi::Value x = field(o, (which + "X").c_str(), "dataset");
    if (x.IsTypedArray() && x.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array)
      s.xBytes = typedArray<uint8_t, napi_uint8_array>(x, w + "X", "Uint8Array");
    else
      s.xFloats = floats(x, w + "X (Uint8Array or Float32Array)");
    s.labels = int32s(o, (which + "Y").c_str(), "dataset");
    const size_t values = s.xBytes.size() + s.xFloats.size();
    s.n = static_cast<int64_t>(s.labels.size());
    if (values != s.labels.size() * static_cast<size_t>(d_->features))
      typeError(o.Env(), w + "X: " + std::to_string(values) + " values is not " + std::to_string(s.labels.size()) +
                             " labels × " + std::to_string(d_->features) + " features");
    for (int32_t y : s.labels)
      if (y < 0 || y >= d_->classes) typeError(o.Env(), w + "Y: label " + std::to_string(y) + " outside 0.." + std::to_string(d_->classes - 1));
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    auto o = Napi::Object::New(info.Env());
    o.Set("name", d_->name);
    o.Set("kind", d_->kind == Dataset::Kind::Tokens ? "tokens" : "classification");
    o.Set("features", d_->features);
    o.Set("classes", d_->classes);
    o.Set("train", static_cast<double>(d_->train.n));
    o.Set("test", static_cast<double>(d_->test.n));
    return o;
  }
  std::shared_ptr<Dataset> d_;
};
Napi::FunctionReference* JsDataset::ctor;

// ---------------------------------------------------------------- Model

class JsModel;

// Runs `work` off the JS thread and resolves with `result(env)`; errors reject with their message.
Napi::Object stepToJs(Napi::Env env, const StepResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("step", static_cast<double>(r.step));
  o.Set("epoch", r.epoch);
  o.Set("loss", r.loss);
  o.Set("lr", r.lr);
  o.Set("gradNorm", r.gradNorm);
  auto ms = Napi::Object::New(env);
  ms.Set("data", r.dataMs);
  ms.Set("forward", r.forwardMs);
  ms.Set("backward", r.backwardMs);
  ms.Set("optimizer", r.optimizerMs);
  ms.Set("total", r.totalMs);
  auto parts = Napi::Array::New(env, r.parts.size());
  for (size_t i = 0; i < r.parts.size(); i++) {
    auto p = Napi::Object::New(env);
    p.Set("name", r.parts[i].name);
    p.Set("forward", r.parts[i].forwardMs);
    p.Set("backward", r.parts[i].backwardMs);
    parts.Set(static_cast<uint32_t>(i), p);
  }
  ms.Set("parts", parts);
  o.Set("ms", ms);
  return o;
}

class JsModel : public Napi::ObjectWrap<JsModel> {
 public:
  // Leaked on purpose: a static FunctionReference would be destroyed after Node's environment.
  static Napi::FunctionReference* ctor;
  static void Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "EngineModel",
                                   {InstanceMethod("trainSteps", &JsModel::TrainSteps), InstanceMethod("evaluate", &JsModel::Evaluate),
                                    InstanceMethod("paramInfo", &JsModel::ParamInfo), InstanceMethod("getState", &JsModel::GetState),
                                    InstanceMethod("setState", &JsModel::SetState), InstanceMethod("probe", &JsModel::Probe),
                                    InstanceMethod("dims", &JsModel::DimsInfo)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
  }
  // Constructed only by createModel, with the built model in an External.
  explicit JsModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsModel>(info) {
    if (info.Length() != 2 || !info[0].IsExternal()) typeError(info.Env(), "EngineModel: use createModel()");
    auto* holder = info[0].As<Napi::External<std::unique_ptr<Model>>>().Data();
    model_ = std::move(*holder);
    threads_ = info[1].As<Napi::Number>().Int32Value();
  }

 private:
  void claim(Napi::Env env) {
    bool expected = false;
    if (!busy_.compare_exchange_strong(expected, true))
      throw Napi::Error::New(env, "model is busy with another call; await it first");
  }
  std::shared_ptr<const Dataset> datasetArg(const Napi::CallbackInfo& info, size_t i) {
    if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(JsDataset::ctor->Value()))
      typeError(info.Env(), "dataset: expected an EngineDataset from createDataset()");
    auto d = JsDataset::Unwrap(info[i].As<Napi::Object>())->dataset();
    try {
      model_->checkDataset(*d);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return d;
  }

  Napi::Value TrainSteps(const Napi::CallbackInfo& info) {
    auto d = datasetArg(info, 0);
    const int steps = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 1;
    if (steps < 1) typeError(info.Env(), "steps: must be ≥ 1");
    claim(info.Env());
    auto results = std::make_shared<std::vector<StepResult>>();
    Model* m = model_.get();
    const int threads = threads_;
    binding::Worker::Options o;
    o.result = [results](Napi::Env env) -> Napi::Value {
      auto a = Napi::Array::New(env, results->size());
      for (size_t i = 0; i < results->size(); i++) a.Set(static_cast<uint32_t>(i), stepToJs(env, (*results)[i]));
      return a;
    };
    o.done = [this] { busy_ = false; };
    o.owner = Value();
    return binding::Worker::queue(
        info.Env(), "trainSteps",
        [m, d, steps, results, threads] {
          setWorkerThreads(threads);
          for (int i = 0; i < steps; i++) {
            results->push_back(m->trainStep(*d));
            if (!std::isfinite(results->back().loss))
              throw std::runtime_error("training diverged: loss is " + std::to_string(results->back().loss) + " at step " +
                                       std::to_string(results->back().step) + " (lower the learning rate)");
          }
        },
        std::move(o));
  }

  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    auto d = datasetArg(info, 0);
    const bool test = !(info.Length() > 1 && info[1].IsString() && info[1].As<Napi::String>().Utf8Value() == "train");
    const double maxSamples = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
    claim(info.Env());
    auto res = std::make_shared<EvalResult>();
    Model* m = model_.get();
    const int threads = threads_;
    binding::Worker::Options o;
    o.result = [res, lm = model_->languageModel()](Napi::Env env) -> Napi::Value {
      auto r = Napi::Object::New(env);
      r.Set("loss", res->loss);
      r.Set("samples", static_cast<double>(res->samples));
      if (lm) r.Set("perplexity", std::exp(res->loss));
      else r.Set("accuracy", res->accuracy);
      return r;
    };
    o.done = [this] { busy_ = false; };
    o.owner = Value();
    return binding::Worker::queue(
        info.Env(), "evaluate",
        [m, d, test, maxSamples, res, threads] {
          setWorkerThreads(threads);
          *res = m->evaluate(*d, test, static_cast<int64_t>(maxSamples));
        },
        std::move(o));
  }

  Napi::Value ParamInfo(const Napi::CallbackInfo& info) {
    const auto& infos = model_->params().infos();
    auto a = Napi::Array::New(info.Env(), infos.size());
    for (size_t i = 0; i < infos.size(); i++) {
      auto o = Napi::Object::New(info.Env());
      o.Set("name", infos[i].name);
      auto shape = Napi::Array::New(info.Env(), infos[i].shape.size());
      for (size_t k = 0; k < infos[i].shape.size(); k++) shape.Set(static_cast<uint32_t>(k), infos[i].shape[k]);
      o.Set("shape", shape);
      o.Set("offset", static_cast<double>(infos[i].offset));
      o.Set("size", static_cast<double>(infos[i].size));
      o.Set("decay", infos[i].decay);
      a.Set(static_cast<uint32_t>(i), o);
    }
    return a;
  }

  Napi::Value DimsInfo(const Napi::CallbackInfo& info) {
    auto o = Napi::Object::New(info.Env());
    o.Set("inT", model_->inputDims().T);
    o.Set("inD", model_->inputDims().D);
    o.Set("outT", model_->outputDims().T);
    o.Set("outD", model_->outputDims().D);
    o.Set("params", static_cast<double>(model_->params().total()));
    return o;
  }

  // Everything a checkpoint needs, copied out (small next to a training step).
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    if (busy_) throw Napi::Error::New(info.Env(), "model is busy with another call; await it first");
    Napi::Env env = info.Env();
    auto o = Napi::Object::New(env);
    auto& ps = model_->params();
    try {
      ps.pull(false);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    o.Set("params", toJs(env, ps.hostArray(ParamStore::kParams).data(), ps.total()));
    o.Set("adamM", toJs(env, ps.hostArray(ParamStore::kAdamM).data(), ps.total()));
    o.Set("adamV", toJs(env, ps.hostArray(ParamStore::kAdamV).data(), ps.total()));
    o.Set("step", static_cast<double>(model_->step()));
    const Sampler::State st = model_->sampler().state();
    auto rng = Napi::Array::New(env, 4);
    for (uint32_t i = 0; i < 4; i++) rng.Set(i, Napi::BigInt::New(env, st.rng[i]));
    o.Set("samplerRng", rng);
    o.Set("samplerEpoch", static_cast<double>(st.epoch));
    o.Set("samplerPos", static_cast<double>(st.pos));
    auto order = Napi::Float64Array::New(env, st.order.size());
    for (size_t i = 0; i < st.order.size(); i++) order[i] = static_cast<double>(st.order[i]);
    o.Set("samplerOrder", order);
    return o;
  }

  Napi::Value SetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (busy_) throw Napi::Error::New(env, "model is busy with another call; await it first");
    if (info.Length() < 1 || !info[0].IsObject()) typeError(env, "state: expected an object");
    auto o = info[0].As<Napi::Object>();
    auto& ps = model_->params();
    const size_t n = ps.total();
    // Every array is read and checked before any is changed, so a bad state changes nothing.
    std::vector<std::pair<ParamStore::Array, std::vector<float>>> loaded;
    auto load = [&](const char* key, ParamStore::Array a, bool required) {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined() && !required) return;
      std::vector<float> src = floats(v, std::string("state.") + key);
      if (src.size() != n)
        typeError(env, std::string("state.") + key + ": " + std::to_string(src.size()) + " values, the model has " + std::to_string(n));
      loaded.emplace_back(a, std::move(src));
    };
    load("params", ParamStore::kParams, true);
    load("adamM", ParamStore::kAdamM, false);
    load("adamV", ParamStore::kAdamV, false);
    try {
      ps.pull(false);  // the arrays the state leaves out keep the backend's values
      for (auto& [a, src] : loaded) std::copy(src.begin(), src.end(), ps.hostArray(a).begin());
      ps.push();
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    if (o.Has("step")) model_->setStep(static_cast<int64_t>(num(o, "step", "state")));
    Napi::Value rng = o.Get("samplerRng");
    if (rng.IsArray()) {
      Sampler::State st;
      auto a = rng.As<Napi::Array>();
      if (a.Length() != 4) typeError(env, "state.samplerRng: expected 4 BigInts");
      for (uint32_t i = 0; i < 4; i++) {
        bool lossless = true;
        if (!a.Get(i).IsBigInt()) typeError(env, "state.samplerRng: expected 4 BigInts");
        st.rng[i] = a.Get(i).As<Napi::BigInt>().Uint64Value(&lossless);
      }
      st.epoch = static_cast<int64_t>(num(o, "samplerEpoch", "state"));
      st.pos = static_cast<int64_t>(num(o, "samplerPos", "state"));
      Napi::Value ord = field(o, "samplerOrder", "state");
      if (!ord.IsTypedArray() || ord.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        typeError(env, "state.samplerOrder: must be a Float64Array");
      auto oa = ord.As<Napi::Float64Array>();
      for (size_t i = 0; i < oa.ElementLength(); i++) st.order.push_back(static_cast<int64_t>(oa[i]));
      model_->sampler().setState(st);
    }
    return env.Undefined();
  }

  // Test hook (synchronous, small layers only): probe(x, batch, dy?) -> {y, dx?, grad?}.
  Napi::Value Probe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (busy_) throw Napi::Error::New(env, "model is busy with another call; await it first");
    std::vector<float> x = floats(info[0], "x");
    const int B = info[1].As<Napi::Number>().Int32Value();
    if (B < 1 || x.size() != static_cast<size_t>(B) * model_->inputDims().size())
      typeError(env, "x: expected batch × " + std::to_string(model_->inputDims().size()) + " values");
    std::vector<float> dy, dx;
    const bool back = info.Length() > 2 && info[2].IsTypedArray();
    const size_t outN = static_cast<size_t>(B) * model_->outputDims().size();
    if (back) {
      dy = floats(info[2], "dy");
      if (dy.size() != outN) typeError(env, "dy: expected " + std::to_string(outN) + " values");
    }
    setWorkerThreads(threads_);
    std::vector<float> y;
    try {
      model_->probe(x, B, back ? &dy : nullptr, &y, &dx);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    auto o = Napi::Object::New(env);
    o.Set("y", toJs(env, y.data(), outN));
    if (back) {
      o.Set("dx", toJs(env, dx.data(), dx.size()));
      o.Set("grad", toJs(env, model_->params().hostArray(ParamStore::kGrads).data(), model_->params().total()));
    }
    return o;
  }

  std::unique_ptr<Model> model_;
  int threads_ = 1;
  std::atomic<bool> busy_{false};
};
Napi::FunctionReference* JsModel::ctor;

// createModel({model, train, seed, threads}) -> Promise<EngineModel>
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) typeError(env, "createModel: expected {model, train, seed, threads}");
  auto o = info[0].As<Napi::Object>();
  Napi::Value mv = field(o, "model", "options");
  if (!mv.IsObject()) typeError(env, "options.model: must be an object");
  const ModelConfig mc = parseModel(mv.As<Napi::Object>());
  Napi::Value tv = o.Get("train");
  const TrainConfig tc = tv.IsObject() ? parseTrain(tv.As<Napi::Object>()) : TrainConfig{};
  const double seed = numOr(o, "seed", "options", 0);
  const int threads = checkedThreads(env, o);
  // Compute backend (issue 8): options.backend, else $PIXELFLY_BACKEND, else CUDA when a GPU is usable.
  // The name is resolved here so a bad or unavailable one is a TypeError; the backend itself (a CUDA
  // stream and its memory) is created off the JS thread with the model.
  std::string backend, precision = "fp32";
  try {
    Napi::Value bv = o.Get("backend");
    backend = resolveBackendName(bv.IsString() ? bv.As<Napi::String>().Utf8Value() : defaultBackendName());
    Napi::Value pv = o.Get("precision");
    if (!pv.IsUndefined() && !pv.IsString()) throw std::invalid_argument("precision: must be 'fp32', 'bf16' or 'fp16'");
    if (pv.IsString()) precision = pv.As<Napi::String>().Utf8Value();
    checkPrecision(backend, precision);
  } catch (const std::exception& e) {
    typeError(env, std::string("options.") + e.what());
  }
  auto built = std::make_shared<std::unique_ptr<Model>>();
  binding::Worker::Options done;
  done.result = [built, threads](Napi::Env e) -> Napi::Value {
    return JsModel::ctor->New({Napi::External<std::unique_ptr<Model>>::New(e, built.get()), Napi::Number::New(e, threads)});
  };
  return binding::Worker::queue(
      env, "createModel",
      [mc, tc, seed, threads, built, backend, precision] {
        setWorkerThreads(threads);
        *built = std::make_unique<Model>(mc, tc, static_cast<uint64_t>(seed), createBackend(backend, precision));
      },
      std::move(done));
}

Napi::Value CreateDataset(const Napi::CallbackInfo& info) {
  return JsDataset::ctor->New({info.Length() > 0 ? info[0] : info.Env().Undefined()});
}

void InitEngine(Napi::Env env, Napi::Object exports) {
  JsDataset::Init(env);
  JsModel::Init(env);
  auto engine = Napi::Object::New(env);
  engine.Set("createModel", Napi::Function::New(env, CreateModel));
  engine.Set("createDataset", Napi::Function::New(env, CreateDataset));
  std::string backend = "cpu";  // what a model without options.backend runs on
  try {
    backend = resolveBackendName(defaultBackendName());
  } catch (const std::exception&) {
    // A bad $PIXELFLY_BACKEND: createModel reports it, naming the variable's value.
  }
  engine.Set("backend", backend);
  // resolveBackend(name?) -> "cpu" | "cuda": what createModel would run on (throws like it).
  engine.Set("resolveBackend", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    try {
      const std::string want = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : defaultBackendName();
      return Napi::String::New(info.Env(), resolveBackendName(want));
    } catch (const std::exception& e) {
      typeError(info.Env(), e.what());
    }
  }));
  exports.Set("engine", engine);
}

static AddonArea area("engine", InitEngine);

}  // namespace

}  // namespace pixelfly
