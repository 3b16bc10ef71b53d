#include "chip.h"

#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "program.h"

namespace dendra {

namespace {

constexpr int64_t kMaxOutputElements = (int64_t{1} << 32) - 1;

struct BatchInput {
  const float* data = nullptr;
  int64_t batch = 0;
};

/** Validates (input: Float32Array, batch: positive integer) against the network's feature counts. */
BatchInput readBatch(const Napi::CallbackInfo& info, int64_t inF, int64_t outF, const char* method) {
  Napi::Env env = info.Env();
  const std::string m = method;
  Napi::Value input = info[0];
  if (!input.IsTypedArray() || input.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throwTypeError(env, m + ": input must be a Float32Array (got " + describe(input) + ")");
  Napi::Value b = info[1];
  if (!b.IsNumber()) throwTypeError(env, m + ": batch must be a number (got " + describe(b) + ")");
  const double bd = b.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(bd) || bd < 1.0 || bd != std::floor(bd) || bd > 9007199254740991.0)
    throwRangeError(env, m + ": batch = " + formatNumber(bd) + " must be a positive integer");
  auto arr = input.As<Napi::Float32Array>();
  const int64_t batch = static_cast<int64_t>(bd);
  const int64_t len = static_cast<int64_t>(arr.ElementLength());
  if (batch > len / inF || batch * inF != len)
    throwRangeError(env, m + ": input.length = " + std::to_string(len) + " but batch*inFeatures = " + formatNumber(bd) +
                             "*" + std::to_string(inF) + " = " + formatNumber(bd * static_cast<double>(inF)));
  if (batch > kMaxOutputElements / outF)
    throwRangeError(env, m + ": output of " + std::to_string(batch) + "*" + std::to_string(outF) + " values is too large");
  return BatchInput{arr.Data(), batch};
}

/**
 * The optional third argument of run/runSync: a Float64Array of length >= 1 that receives the run's crossbar
 * power in [0] and, where it is long enough, the dendrites' energy in [1], the somas' in [2], and the event counts
 * of RunStats in [3..8] (driven rows, driven rows of the first layer, branch signals ON, non-zero branch signals,
 * active somas, somas).
 */
Napi::Value readStats(const Napi::CallbackInfo& info, const char* method) {
  Napi::Value v = info[2];
  if (v.IsUndefined()) return v;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      v.As<Napi::Float64Array>().ElementLength() < 1)
    throwTypeError(info.Env(), std::string(method) + ": stats must be a Float64Array of length >= 1 (got " + describe(v) + ")");
  return v;
}

void writeStats(Napi::Float64Array a, const RunStats& r) {
  a[0] = r.crossbarPower;
  if (a.ElementLength() >= 2) a[1] = r.dendriteEnergy;
  if (a.ElementLength() >= 3) a[2] = r.somaEnergy;
  const double events[] = {r.rowEvents, r.inputRowEvents, r.signalsOn, r.signals, r.somasActive, r.somas};
  for (size_t k = 0; k < 6 && 3 + k < a.ElementLength(); ++k) a[3 + k] = events[k];
}

}  // namespace

/** Runs the network on a libuv worker thread; resolves a Promise with a new Float32Array. */
class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, Napi::Object chip, std::shared_ptr<Network> net, std::vector<float> input, int64_t batch,
            uint64_t run, Napi::Value stats)
      : Napi::AsyncWorker(env, "dendra:run"),
        deferred_(Napi::Promise::Deferred::New(env)),
        chip_(Napi::Persistent(chip)),
        net_(std::move(net)),
        input_(std::move(input)),
        batch_(batch),
        run_(run) {
    if (!stats.IsUndefined()) stats_ = Napi::Persistent(stats.As<Napi::Object>());
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      output_.resize(static_cast<size_t>(batch_) * static_cast<size_t>(net_->outFeatures()));
      power_ = net_->forward(input_.data(), output_.data(), batch_, run_);
    } catch (const std::bad_alloc&) {
      SetError("dendra native: run: out of memory");
    } catch (const std::exception& e) {
      SetError(std::string("dendra native: run: ") + e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    auto result = Napi::Float32Array::New(env, output_.size());
    if (!output_.empty()) std::memcpy(result.Data(), output_.data(), output_.size() * sizeof(float));
    // On the main thread, just before the promise resolves: the caller's continuation reads this run's value.
    Chip::Unwrap(chip_.Value())->lastPower_ = power_.crossbarPower;
    if (!stats_.IsEmpty()) writeStats(stats_.Value().As<Napi::Float64Array>(), power_);
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference chip_;  // keeps the JS chip alive while the work runs
  Napi::ObjectReference stats_;  // the caller's Float64Array, or empty
  std::shared_ptr<Network> net_;
  std::vector<float> input_;
  std::vector<float> output_;
  int64_t batch_;
  uint64_t run_;  // numbered at call time, so concurrent runs keep the call order's noise
  RunStats power_;
};

Napi::Function Chip::define(Napi::Env env) {
  return DefineClass(env, "Chip",
                     {
                         InstanceMethod<&Chip::runSync>("runSync"),
                         InstanceMethod<&Chip::run>("run"),
                         InstanceMethod<&Chip::release>("release"),
                         InstanceMethod<&Chip::conductances>("conductances"),
                         InstanceMethod<&Chip::lastRunCrossbarPower>("lastRunCrossbarPower"),
                         InstanceMethod<&Chip::info>("info"),
                         InstanceAccessor<&Chip::inFeatures>("inFeatures"),
                         InstanceAccessor<&Chip::outFeatures>("outFeatures"),
                     });
}

Chip::Chip(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Chip>(info) {
  Napi::Env env = info.Env();
  try {
    net_ = std::make_shared<Network>(readProgram(env, info[0]));
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "out of memory while building the network (program too large)");
  } catch (const std::length_error&) {
    throwRangeError(env, "program too large");
  }
  inFeatures_ = net_->inFeatures();
  outFeatures_ = net_->outFeatures();
}

std::shared_ptr<Network> Chip::network(Napi::Env env) const {
  if (!net_) throw Napi::Error::New(env, "dendra native: chip was released");
  return net_;
}

Napi::Value Chip::runSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Network> net = network(env);
  const BatchInput in = readBatch(info, inFeatures_, outFeatures_, "runSync");
  Napi::Value stats = readStats(info, "runSync");
  const size_t n = static_cast<size_t>(in.batch) * static_cast<size_t>(outFeatures_);
  auto out = Napi::Float32Array::New(env, n);
  try {
    const RunStats r = net->forward(in.data, out.Data(), in.batch, net->beginRun());
    lastPower_ = r.crossbarPower;
    if (!stats.IsUndefined()) writeStats(stats.As<Napi::Float64Array>(), r);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "runSync: out of memory");
  } catch (const std::system_error& e) {
    throw Napi::Error::New(env, std::string("dendra native: runSync: ") + e.what());
  }
  return out;
}

Napi::Value Chip::run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Network> net = network(env);
  const BatchInput in = readBatch(info, inFeatures_, outFeatures_, "run");
  Napi::Value stats = readStats(info, "run");
  std::vector<float> copy;
  try {
    copy.assign(in.data, in.data + in.batch * inFeatures_);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "run: out of memory copying the input");
  }
  const uint64_t runIndex = net->beginRun();
  auto* worker =
      new RunWorker(env, info.This().As<Napi::Object>(), std::move(net), std::move(copy), in.batch, runIndex, stats);
  Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself after OnOK / OnError
  return promise;
}

Napi::Value Chip::conductances(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Network> net = network(env);
  Napi::Value v = info[0];
  if (!v.IsNumber()) throwTypeError(env, "conductances: array must be a number (got " + describe(v) + ")");
  const double d = v.As<Napi::Number>().DoubleValue();
  const double n = static_cast<double>(net->arrayCount());
  if (!(d >= 0.0 && d < n && d == std::floor(d)))
    throwRangeError(env, "conductances: array = " + formatNumber(d) + " must be an integer in [0, " +
                             formatNumber(n - 1) + "]" + (n == 0 ? " (the program has no arrays)" : ""));
  const std::vector<float>& g = net->array(static_cast<size_t>(d)).conductance;
  auto out = Napi::Float32Array::New(env, g.size());
  if (!g.empty()) std::memcpy(out.Data(), g.data(), g.size() * sizeof(float));
  return out;
}

Napi::Value Chip::lastRunCrossbarPower(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), lastPower_);
}

Napi::Value Chip::info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Network> net = network(env);
  const Network::Info i = net->info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernel", net->kernelName());
  o.Set("memoryBytes", static_cast<double>(i.memoryBytes));
  o.Set("tiles", static_cast<double>(i.tiles));
  o.Set("integerTiles", static_cast<double>(i.integerTiles));
  o.Set("exactTiles", static_cast<double>(i.exactTiles));
  return o;
}

Napi::Value Chip::release(const Napi::CallbackInfo& info) {
  net_.reset();  // in-flight workers keep their own reference
  return info.Env().Undefined();
}

Napi::Value Chip::inFeatures(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), inFeatures_); }

Napi::Value Chip::outFeatures(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), outFeatures_); }

}  // namespace dendra
