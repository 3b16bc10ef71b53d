#include "binding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "../reader.h"
#include "fit.h"
#include "read.h"

namespace dendra::train {

namespace {

Napi::Object paramsObject(Napi::Env env, const NetDef& def, const Params& p, bool transposed) {
  Napi::Object r = Napi::Object::New(env);
  Napi::Array w = Napi::Array::New(env, p.weight.size());
  Napi::Array b = Napi::Array::New(env, p.bias.size());
  for (size_t li = 0; li < p.weight.size(); ++li) {
    const LayerDef& L = def.layers[li];
    auto wa = Napi::Float32Array::New(env, p.weight[li].size());
    if (transposed) {
      const std::vector<float> t = transpose(p.weight[li].data(), L.in, L.out);
      std::memcpy(wa.Data(), t.data(), t.size() * sizeof(float));
    } else {
      std::memcpy(wa.Data(), p.weight[li].data(), p.weight[li].size() * sizeof(float));
    }
    auto ba = Napi::Float32Array::New(env, p.bias[li].size());
    std::memcpy(ba.Data(), p.bias[li].data(), p.bias[li].size() * sizeof(float));
    w.Set(static_cast<uint32_t>(li), wa);
    b.Set(static_cast<uint32_t>(li), ba);
  }
  r.Set("weight", w);
  r.Set("bias", b);
  return r;
}

Napi::Value gradientsResult(Napi::Env env, Engine& engine, const Batch& b, const PassOptions& opts, bool transposed) {
  Params grads = zerosLike(engine.params());
  Draw draw = opts.draw;
  if (!draw.drawVariation) draw.eps = &opts.eps;
  Measured measured;
  for (const auto& m : opts.measured) measured.push_back(m.data());
  BatchResult r;
  try {
    r = engine.gradients(b.x, b.labels, b.n, grads, draw, measured.empty() ? nullptr : &measured);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "gradients: out of memory");
  }
  Napi::Object o = paramsObject(env, engine.def(), grads, transposed);
  o.Set("loss", r.loss);
  o.Set("crossEntropy", r.crossEntropy);
  o.Set("correct", static_cast<double>(r.correct));
  o.Set("samples", static_cast<double>(b.n));
  return o;
}

Napi::Object fitResultObject(Napi::Env env, const FitResult& r, int64_t steps) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array loss = Napi::Array::New(env, r.loss.size());
  Napi::Array acc = Napi::Array::New(env, r.accuracy.size());
  for (size_t i = 0; i < r.loss.size(); ++i) {
    loss.Set(static_cast<uint32_t>(i), r.loss[i]);
    acc.Set(static_cast<uint32_t>(i), r.accuracy[i]);
  }
  o.Set("loss", loss);
  o.Set("accuracy", acc);
  o.Set("steps", static_cast<double>(steps));
  return o;
}

}  // namespace

Napi::Value trainGradients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ReadNet net = readNetwork(env, info[0]);
  const Batch b = readBatch(info, 1, net.def, "trainGradients");
  const PassOptions opts = readPassOptions(env, info[3], net.def, b.n, "trainGradients", true);
  try {
    Engine engine(std::move(net.def), std::move(net.params));
    return gradientsResult(env, engine, b, opts, net.transposed);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "trainGradients: out of memory");
  }
}

Napi::Value dendriteSums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const DendriteSpec spec = readDendriteSpec(env, info[0], "dendriteSums: dendrites");
  Napi::Value zv = info[1];
  if (!zv.IsTypedArray() || zv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throwTypeError(env, "dendriteSums: z must be a Float32Array (got " + describe(zv) + ")");
  auto za = zv.As<Napi::Float32Array>();
  Napi::Value ov = info[2];
  const double outD = ov.IsNumber() ? ov.As<Napi::Number>().DoubleValue() : -1.0;
  if (!(outD >= 1.0 && outD <= 2147483647.0 && std::floor(outD) == outD))
    throwRangeError(env, "dendriteSums: outFeatures must be an integer >= 1 (got " + describe(ov) + ")");
  const int64_t out = static_cast<int64_t>(outD), count = spec.count, len = static_cast<int64_t>(za.ElementLength());
  if (len % (count * out) != 0)
    throwRangeError(env, "dendriteSums: z holds " + std::to_string(len) + " values, not a whole number of samples of " +
                             std::to_string(count) + " branches × " + std::to_string(out) + " neurons");
  const int64_t samples = len / (count * out);
  const float* eps = nullptr;
  Napi::Value ev = info[3];
  if (!ev.IsUndefined() && !ev.IsNull()) {
    if (!ev.IsTypedArray() || ev.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throwTypeError(env, "dendriteSums: eps must be a Float32Array or null (got " + describe(ev) + ")");
    auto ea = ev.As<Napi::Float32Array>();
    if (static_cast<int64_t>(ea.ElementLength()) != count * out)
      throwRangeError(env, "dendriteSums: eps holds " + std::to_string(ea.ElementLength()) + " factors for " +
                               std::to_string(count) + " branches × " + std::to_string(out) + " neurons");
    eps = ea.Data();
    for (int64_t k = 0; k < count * out; ++k)
      if (!(eps[k] >= 0.0f) || !std::isfinite(eps[k]))
        throwRangeError(env, "dendriteSums: eps[" + std::to_string(k) + "] = " + formatNumber(eps[k]) + " must be finite and >= 0");
  }
  try {
    const dendrite::Constants c = dendrite::constants(spec);
    Napi::Float32Array sums = Napi::Float32Array::New(env, static_cast<size_t>(samples * out));
    float* y = sums.Data();
    std::fill(y, y + samples * out, 0.0f);
    std::vector<float> ones(static_cast<size_t>(out), 1.0f);
    std::vector<double> scratch(static_cast<size_t>(out));
    const float* z = za.Data();
    double power = 0.0;
    for (int64_t s = 0; s < samples; ++s)
      for (int64_t g = 0; g < count; ++g)
        power += dendrite::branchRow(c, z + (s * count + g) * out, 1.0f, ones.data(), eps ? eps + g * out : ones.data(),
                                     y + s * out, scratch.data(), out);
    Napi::Object r = Napi::Object::New(env);
    r.Set("sums", sums);
    r.Set("power", power);
    return r;
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "dendriteSums: out of memory");
  }
}

/** fit() on a libuv worker, reporting progress after every minibatch. */
class FitWorker : public Napi::AsyncProgressQueueWorker<FitProgress> {
 public:
  FitWorker(Napi::Env env, Napi::Object trainer, std::shared_ptr<Trainer::State> state, std::vector<float> x,
            std::vector<int32_t> labels, FitOptions opts, Napi::Value onProgress)
      : Napi::AsyncProgressQueueWorker<FitProgress>(env, "dendra:fit"),
        deferred_(Napi::Promise::Deferred::New(env)),
        trainer_(Napi::Persistent(trainer)),
        state_(std::move(state)),
        x_(std::move(x)),
        labels_(std::move(labels)),
        opts_(opts) {
    if (onProgress.IsFunction()) progress_ = Napi::Persistent(onProgress.As<Napi::Function>());
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    try {
      const int64_t n = static_cast<int64_t>(labels_.size());
      const bool report = !progress_.IsEmpty();
      result_ = fitLoop(state_->engine, state_->optimizer, x_.data(), labels_.data(), n, opts_, [&](const FitProgress& p) {
        if (report) progress.Send(&p, 1);
      });
    } catch (const std::bad_alloc&) {
      SetError("dendra native: fit: out of memory");
    } catch (const std::exception& e) {
      SetError(std::string("dendra native: fit: ") + e.what());
    }
  }
  void OnProgress(const FitProgress* data, size_t count) override {
    Napi::Env env = Env();
    for (size_t i = 0; i < count; ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("epoch", data[i].epoch);
      o.Set("samples", static_cast<double>(data[i].samples));
      o.Set("total", static_cast<double>(data[i].total));
      o.Set("loss", data[i].loss);
      progress_.Call({o});
    }
  }
  void OnOK() override {
    state_->busy = false;
    deferred_.Resolve(fitResultObject(Env(), result_, state_->optimizer.steps()));
  }
  void OnError(const Napi::Error& e) override {
    state_->busy = false;
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference trainer_;  // keeps the JS trainer alive while the work runs
  Napi::FunctionReference progress_;
  std::shared_ptr<Trainer::State> state_;
  std::vector<float> x_;
  std::vector<int32_t> labels_;
  FitOptions opts_;
  FitResult result_;
};

Napi::Function Trainer::define(Napi::Env env) {
  return DefineClass(env, "Trainer",
                     {
                         InstanceMethod<&Trainer::gradients>("gradients"),
                         InstanceMethod<&Trainer::step>("step"),
                         InstanceMethod<&Trainer::fit>("fit"),
                         InstanceMethod<&Trainer::fitSync>("fitSync"),
                         InstanceMethod<&Trainer::evaluate>("evaluate"),
                         InstanceMethod<&Trainer::predict>("predict"),
                         InstanceMethod<&Trainer::forwardLayers>("forwardLayers"),
                         InstanceMethod<&Trainer::params>("params"),
                         InstanceMethod<&Trainer::setParams>("setParams"),
                         InstanceMethod<&Trainer::release>("release"),
                         InstanceAccessor<&Trainer::steps>("steps"),
                     });
}

Trainer::Trainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Trainer>(info) {
  Napi::Env env = info.Env();
  ReadNet net = readNetwork(env, info[0]);
  OptimizerDef od = readOptimizer(env, info[1]);
  try {
    Optimizer opt(od, net.params, net.def.threads);
    state_ = std::make_shared<State>(Engine(std::move(net.def), std::move(net.params)), std::move(opt), net.transposed);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "Trainer: out of memory");
  }
}

void Trainer::checkIdle(Napi::Env env, const char* method) const {
  if (!state_) throw Napi::Error::New(env, std::string("dendra native: Trainer.") + method + ": the trainer was released");
  if (state_->busy) throw Napi::Error::New(env, std::string("dendra native: Trainer.") + method + ": a fit() is running on this trainer");
}

Napi::Value Trainer::gradients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "gradients");
  Engine& e = state_->engine;
  const Batch b = readBatch(info, 0, e.def(), "gradients");
  const PassOptions opts = readPassOptions(env, info[2], e.def(), b.n, "gradients", true);
  return gradientsResult(env, e, b, opts, state_->transposed);
}

Napi::Value Trainer::step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "step");
  Engine& e = state_->engine;
  const Batch b = readBatch(info, 0, e.def(), "step");
  const PassOptions opts = readPassOptions(env, info[2], e.def(), b.n, "step", true);
  Params grads = zerosLike(e.params());
  Draw draw = opts.draw;
  if (!draw.drawVariation) draw.eps = &opts.eps;
  Measured measured;
  for (const auto& m : opts.measured) measured.push_back(m.data());
  BatchResult r;
  try {
    r = e.gradients(b.x, b.labels, b.n, grads, draw, measured.empty() ? nullptr : &measured);
    state_->optimizer.step(e.params(), grads, e.def());
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "step: out of memory");
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", r.loss);
  o.Set("crossEntropy", r.crossEntropy);
  o.Set("correct", static_cast<double>(r.correct));
  o.Set("samples", static_cast<double>(b.n));
  return o;
}

Napi::Value Trainer::fit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "fit");
  const Batch b = readBatch(info, 0, state_->engine.def(), "fit");
  const FitOptions f = readFitOptions(env, info[2], "fit");
  Napi::Value cb = info[3];
  if (!cb.IsUndefined() && !cb.IsFunction()) throwTypeError(env, "fit: onProgress must be a function (got " + describe(cb) + ")");
  std::vector<float> x;
  std::vector<int32_t> labels;
  try {
    x.assign(b.x, b.x + b.n * state_->engine.inFeatures());
    labels.assign(b.labels, b.labels + b.n);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "fit: out of memory copying the samples");
  }
  state_->busy = true;
  auto* worker = new FitWorker(env, info.This().As<Napi::Object>(), state_, std::move(x), std::move(labels), f, cb);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value Trainer::fitSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "fitSync");
  const Batch b = readBatch(info, 0, state_->engine.def(), "fitSync");
  const FitOptions f = readFitOptions(env, info[2], "fitSync");
  try {
    const FitResult r = fitLoop(state_->engine, state_->optimizer, b.x, b.labels, b.n, f, [](const FitProgress&) {});
    return fitResultObject(env, r, state_->optimizer.steps());
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "fitSync: out of memory");
  }
}

Napi::Value Trainer::evaluate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "evaluate");
  Engine& e = state_->engine;
  const Batch b = readBatch(info, 0, e.def(), "evaluate");
  const PassOptions opts = readPassOptions(env, info[2], e.def(), b.n, "evaluate", false);
  Draw draw = opts.draw;
  if (!draw.drawVariation) draw.eps = &opts.eps;
  BatchResult r;
  try {
    r = e.evaluate(b.x, b.labels, b.n, draw);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "evaluate: out of memory");
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", r.crossEntropy);
  o.Set("accuracy", static_cast<double>(r.correct) / static_cast<double>(b.n));
  o.Set("correct", static_cast<double>(r.correct));
  o.Set("samples", static_cast<double>(b.n));
  return o;
}

Napi::Value Trainer::predict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "predict");
  Engine& e = state_->engine;
  const Batch b = readBatch(info, 0, e.def(), "predict", false);
  const PassOptions opts = readPassOptions(env, info[1], e.def(), b.n, "predict", false);
  Draw draw = opts.draw;
  if (!draw.drawVariation) draw.eps = &opts.eps;
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(b.n * e.outFeatures()));
  try {
    e.forward(b.x, b.n, out.Data(), draw);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "predict: out of memory");
  }
  return out;
}

Napi::Value Trainer::forwardLayers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "forwardLayers");
  Engine& e = state_->engine;
  const Batch b = readBatch(info, 0, e.def(), "forwardLayers", false);
  const PassOptions opts = readPassOptions(env, info[1], e.def(), b.n, "forwardLayers", false);
  Draw draw = opts.draw;
  if (!draw.drawVariation) draw.eps = &opts.eps;
  std::vector<std::vector<float>> outputs, pre, branch;
  try {
    e.forwardLayers(b.x, b.n, draw, outputs, pre, branch);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "forwardLayers: out of memory");
  }
  auto toArray = [&](const std::vector<std::vector<float>>& v, bool nullWhenEmpty) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if (nullWhenEmpty && v[i].empty()) {
        a.Set(static_cast<uint32_t>(i), env.Null());
        continue;
      }
      auto f = Napi::Float32Array::New(env, v[i].size());
      if (!v[i].empty()) std::memcpy(f.Data(), v[i].data(), v[i].size() * sizeof(float));
      a.Set(static_cast<uint32_t>(i), f);
    }
    return a;
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("outputs", toArray(outputs, false));
  o.Set("pre", toArray(pre, false));
  o.Set("branch", toArray(branch, true));
  return o;
}

Napi::Value Trainer::params(const Napi::CallbackInfo& info) {
  checkIdle(info.Env(), "params");
  return paramsObject(info.Env(), state_->engine.def(), state_->engine.params(), state_->transposed);
}

Napi::Value Trainer::setParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "setParams");
  Reader rd(env);
  Engine& e = state_->engine;
  Napi::Object o = rd.object(info[0], "setParams: params");
  Napi::Array w = rd.array(o, "weight", "setParams: params.weight");
  Napi::Array b = rd.array(o, "bias", "setParams: params.bias");
  const size_t n = e.def().layers.size();
  if (w.Length() != n || b.Length() != n)
    throwRangeError(env, "setParams: params.weight and params.bias need one entry per layer (" + std::to_string(n) + ")");
  Params p;
  for (uint32_t li = 0; li < n; ++li) {
    const LayerDef& L = e.def().layers[li];
    Napi::Object holder = Napi::Object::New(env);
    holder.Set("w", w.Get(li));
    holder.Set("b", b.Get(li));
    const std::string wp = "setParams: params.weight[" + std::to_string(li) + "]";
    const std::string bp = "setParams: params.bias[" + std::to_string(li) + "]";
    std::vector<float> wv = rd.floats(holder, "w", wp);
    rd.length(wp, wv.size(), static_cast<size_t>(L.in) * L.out, "inFeatures*outFeatures");
    rd.finite(wp, wv);
    std::vector<float> bv = rd.floats(holder, "b", bp);
    rd.length(bp, bv.size(), static_cast<size_t>(L.out), "outFeatures");
    rd.finite(bp, bv);
    if (state_->transposed) wv = transpose(wv.data(), L.out, L.in);
    if (L.hardware.hasStuck())
      for (size_t k = 0; k < wv.size(); ++k)
        if (L.hardware.stuck[k]) wv[k] = L.hardware.stuckValue[k];
    p.weight.push_back(std::move(wv));
    p.bias.push_back(std::move(bv));
  }
  e.params() = std::move(p);
  return env.Undefined();
}

Napi::Value Trainer::release(const Napi::CallbackInfo& info) {
  state_.reset();  // a running fit keeps its own reference until it settles
  return info.Env().Undefined();
}

Napi::Value Trainer::steps(const Napi::CallbackInfo& info) {
  checkIdle(info.Env(), "steps");
  return Napi::Number::New(info.Env(), static_cast<double>(state_->optimizer.steps()));
}

}  // namespace dendra::train
