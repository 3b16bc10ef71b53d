// The training engine's JS surface (typed in native/index.ts): trainGradients() (the one-step primitive) and
// the class Trainer (weights + optimizer state; gradients, steps, fit off the main thread with progress, evaluate).
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "engine.h"
#include "optimizer.h"

namespace dendra::train {

/** trainGradients(network, x, labels, options?) → { loss, crossEntropy, correct, weight[], bias[] } (sync). */
Napi::Value trainGradients(const Napi::CallbackInfo& info);

/**
 * dendriteSums(dendrites, z, outFeatures, eps?) → { sums, power } (sync): per sample s and neuron j,
 * Σ_b F·ε_bj·H(z[s][b][j] / F) of branch sums z [samples × count × out] (Trainer.forwardLayers' `branch` layout),
 * and Σ of the devices' V·I (units of onVoltage·onCurrent). The transfer the forward applies, for a caller that
 * tries many full scales on one set of branch sums (dendrite calibration).
 */
Napi::Value dendriteSums(const Napi::CallbackInfo& info);

class Trainer : public Napi::ObjectWrap<Trainer> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit Trainer(const Napi::CallbackInfo& info);

 private:
  Napi::Value gradients(const Napi::CallbackInfo& info);
  Napi::Value step(const Napi::CallbackInfo& info);
  Napi::Value fit(const Napi::CallbackInfo& info);
  Napi::Value fitSync(const Napi::CallbackInfo& info);
  Napi::Value evaluate(const Napi::CallbackInfo& info);
  Napi::Value predict(const Napi::CallbackInfo& info);
  Napi::Value forwardLayers(const Napi::CallbackInfo& info);
  Napi::Value params(const Napi::CallbackInfo& info);
  Napi::Value setParams(const Napi::CallbackInfo& info);
  Napi::Value steps(const Napi::CallbackInfo& info);
  Napi::Value release(const Napi::CallbackInfo& info);

  /** Throws while a fit() runs on a worker (the engine is not shared between threads). */
  void checkIdle(Napi::Env env, const char* method) const;

  struct State {
    Engine engine;
    Optimizer optimizer;
    bool transposed;  // weights handed and returned [out × in]
    std::atomic<bool> busy{false};
    State(Engine e, Optimizer o, bool t) : engine(std::move(e)), optimizer(std::move(o)), transposed(t) {}
  };
  std::shared_ptr<State> state_;

  friend class FitWorker;
};

}  // namespace dendra::train
