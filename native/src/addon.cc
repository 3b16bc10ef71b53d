// Module init: exports { Chip, PulseChip, kernel(), placeTiles(), Trainer, trainGradients() }.
#include <napi.h>

#include "chip.h"
#include "gemm.h"
#include "placement.h"
#include "pulse_chip.h"
#include "train/binding.h"

namespace {

Napi::Value kernel(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dendra::gemm::selectKernel().name);
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("Chip", dendra::Chip::define(env));
  exports.Set("PulseChip", dendra::PulseChipWrap::define(env));
  exports.Set("kernel", Napi::Function::New<kernel>(env, "kernel"));
  exports.Set("placeTiles", Napi::Function::New<dendra::placeTiles>(env, "placeTiles"));
  exports.Set("Trainer", dendra::train::Trainer::define(env));
  exports.Set("trainGradients", Napi::Function::New<dendra::train::trainGradients>(env, "trainGradients"));
  return exports;
}

}  // namespace

NODE_API_MODULE(dendra_native, init)
