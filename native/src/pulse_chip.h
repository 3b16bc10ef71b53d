// The JS class `PulseChip` (native/index.ts NativePulseChip): a chip whose cells change only by pulses
// (pulse_physics.h), for the board emulator and the in-situ trainer. Calls are small and synchronous.
#pragma once

#include <napi.h>

#include <memory>

#include "pulse_physics.h"

namespace dendra {

class PulseChipWrap : public Napi::ObjectWrap<PulseChipWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit PulseChipWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value pulse(const Napi::CallbackInfo& info);
  Napi::Value updateRows(const Napi::CallbackInfo& info);
  Napi::Value read(const Napi::CallbackInfo& info);
  Napi::Value infer(const Napi::CallbackInfo& info);
  Napi::Value inferTiles(const Napi::CallbackInfo& info);
  Napi::Value conductances(const Napi::CallbackInfo& info);
  Napi::Value setFactors(const Napi::CallbackInfo& info);
  Napi::Value pulseCounts(const Napi::CallbackInfo& info);
  Napi::Value pulseEnergy(const Napi::CallbackInfo& info);
  Napi::Value stuckMask(const Napi::CallbackInfo& info);
  Napi::Value totals(const Napi::CallbackInfo& info);

  std::unique_ptr<PulseChip> chip_;
};

}  // namespace dendra
