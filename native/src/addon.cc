// Module init: exports { Chip, PulseChip, kernel(), kernels(), placeTiles(), Trainer, trainGradients(), dendriteSums() }.
#include <napi.h>

#include <stdexcept>
#include <string>

#include "chip.h"
#include "cpu.h"
#include "gemm.h"
#include "placement.h"
#include "pulse_chip.h"
#include "train/binding.h"

namespace {

/** The kernel a program without `kernel` runs: DENDRA_KERNEL, else the best this CPU has. */
Napi::Value kernel(const Napi::CallbackInfo& info) {
  try {
    return Napi::String::New(info.Env(), dendra::cpu::name(dendra::cpu::requested()));
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(info.Env(), std::string("dendra native: ") + e.what());
  }
}

/** Every kernel this CPU can run, lowest first (each can be forced with program.kernel or DENDRA_KERNEL). */
Napi::Value kernels(const Napi::CallbackInfo& info) {
  const auto list = dendra::cpu::available();
  auto out = Napi::Array::New(info.Env(), list.size());
  for (size_t i = 0; i < list.size(); ++i) out.Set(static_cast<uint32_t>(i), dendra::cpu::name(list[i]));
  return out;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("Chip", dendra::Chip::define(env));
  exports.Set("PulseChip", dendra::PulseChipWrap::define(env));
  exports.Set("kernel", Napi::Function::New<kernel>(env, "kernel"));
  exports.Set("kernels", Napi::Function::New<kernels>(env, "kernels"));
  exports.Set("placeTiles", Napi::Function::New<dendra::placeTiles>(env, "placeTiles"));
  exports.Set("Trainer", dendra::train::Trainer::define(env));
  exports.Set("trainGradients", Napi::Function::New<dendra::train::trainGradients>(env, "trainGradients"));
  exports.Set("dendriteSums", Napi::Function::New<dendra::train::dendriteSums>(env, "dendriteSums"));
  return exports;
}

}  // namespace

NODE_API_MODULE(dendra_native, init)
