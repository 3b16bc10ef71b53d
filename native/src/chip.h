// The JS class `Chip`: constructed from a NativeProgram, runs batches synchronously or on a worker.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>

#include "network.h"

namespace dendra {

class Chip : public Napi::ObjectWrap<Chip> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit Chip(const Napi::CallbackInfo& info);

 private:
  Napi::Value runSync(const Napi::CallbackInfo& info);
  Napi::Value run(const Napi::CallbackInfo& info);
  Napi::Value release(const Napi::CallbackInfo& info);
  Napi::Value conductances(const Napi::CallbackInfo& info);
  Napi::Value lastRunCrossbarPower(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value inFeatures(const Napi::CallbackInfo& info);
  Napi::Value outFeatures(const Napi::CallbackInfo& info);

  /** The network, or throws `dendra native: chip was released`. */
  std::shared_ptr<Network> network(Napi::Env env) const;

  std::shared_ptr<Network> net_;  // shared with in-flight workers so release() during run() is safe
  int32_t inFeatures_ = 0;
  int32_t outFeatures_ = 0;
  double lastPower_ = 0.0;  // crossbar read power (W) summed over the samples of the last completed run

  friend class RunWorker;
};

}  // namespace dendra
