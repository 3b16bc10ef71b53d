#include "pulse_chip.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "program.h"
#include "reader.h"

namespace dendra {

namespace {

PulseChipConfig readConfig(Napi::Env env, Napi::Value v) {
  Reader rd(env);
  const std::string path = "pulseChip";
  Napi::Object o = rd.object(v, path);
  PulseChipConfig c;
  c.rows = static_cast<int32_t>(rd.integer(o, "rows", path + ".rows", 1, 1 << 16));
  c.cols = static_cast<int32_t>(rd.integer(o, "cols", path + ".cols", 1, 1 << 16));
  c.count = static_cast<int32_t>(rd.integer(o, "count", path + ".count", 1, 1 << 20));
  c.gmin = rd.number(o, "gmin", path + ".gmin");
  c.gmax = rd.number(o, "gmax", path + ".gmax");
  if (!(c.gmin >= 0 && c.gmax > c.gmin)) throwRangeError(env, path + ": need 0 <= gmin < gmax (got " + formatNumber(c.gmin) + ", " + formatNumber(c.gmax) + ")");
  c.readSigma = rd.number(o, "readSigma", path + ".readSigma");
  c.readRelative = rd.number(o, "readRelative", path + ".readRelative");
  if (c.readSigma < 0 || c.readRelative < 0) throwRangeError(env, path + ": read noise must be >= 0");
  c.seed = static_cast<uint32_t>(rd.integer(o, "seed", path + ".seed", 0, 4294967295LL));
  Napi::Object p = rd.object(o.Get("pulse"), path + ".pulse");
  const std::string pp = path + ".pulse";
  c.pulse.slope = rd.number(p, "slope", pp + ".slope");
  c.pulse.offset = rd.number(p, "offset", pp + ".offset");
  c.pulse.gateLo = rd.number(p, "gateLo", pp + ".gateLo");
  c.pulse.gateHi = rd.number(p, "gateHi", pp + ".gateHi");
  c.pulse.threshold = rd.number(p, "threshold", pp + ".threshold");
  c.pulse.scale = rd.number(p, "scale", pp + ".scale");
  c.pulse.noise = rd.number(p, "noise", pp + ".noise");
  c.pulse.variation = rd.number(p, "variation", pp + ".variation");
  if (!(c.pulse.gateHi >= c.pulse.gateLo)) throwRangeError(env, pp + ": gateHi must be >= gateLo");
  if (!(c.pulse.scale > 0)) throwRangeError(env, pp + ".scale must be > 0");
  if (c.pulse.noise < 0 || c.pulse.variation < 0 || c.pulse.threshold < 0) throwRangeError(env, pp + ": noise, variation and threshold must be >= 0");
  c.stuck.resize(static_cast<size_t>(c.count));
  Napi::Value sv = o.Get("stuck");
  if (!sv.IsUndefined()) {
    if (!sv.IsArray()) throwTypeError(env, path + ".stuck must be an array (got " + describe(sv) + ")");
    Napi::Array arr = sv.As<Napi::Array>();
    if (arr.Length() > static_cast<uint32_t>(c.count)) throwRangeError(env, path + ".stuck has more entries than the chip has arrays");
    const int64_t cells = static_cast<int64_t>(c.rows) * c.cols;
    for (uint32_t a = 0; a < arr.Length(); ++a) {
      const std::string ap = path + ".stuck[" + std::to_string(a) + "]";
      Napi::Object e = rd.object(arr.Get(a), ap);
      std::vector<int32_t> idx = rd.ints(e, "cells", ap + ".cells");
      std::vector<float> g = rd.floats(e, "conductance", ap + ".conductance");
      rd.length(ap + ".conductance", g.size(), idx.size(), "one per stuck cell");
      rd.indices(ap + ".cells", idx, cells, "the array's rows*cols cells");
      for (size_t i = 0; i < g.size(); ++i) {
        if (!std::isfinite(g[i]) || g[i] < 0) throwRangeError(env, ap + ".conductance[" + std::to_string(i) + "] must be finite and >= 0");
        c.stuck[a].push_back(StuckCell{idx[i], g[i]});
      }
    }
  }
  return c;
}

int32_t arrayArg(const Napi::CallbackInfo& info, size_t i, const char* method) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) throwTypeError(info.Env(), std::string(method) + ": array must be a number (got " + describe(v) + ")");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d == std::floor(d) && std::fabs(d) < 2147483647.0)) throwRangeError(info.Env(), std::string(method) + ": array = " + formatNumber(d) + " must be an integer");
  return static_cast<int32_t>(d);
}

double numberArg(const Napi::CallbackInfo& info, size_t i, const std::string& what) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) throwTypeError(info.Env(), what + " must be a number (got " + describe(v) + ")");
  return v.As<Napi::Number>().DoubleValue();
}

template <typename T>
Napi::TypedArrayOf<T> typedArg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want, const std::string& what) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want)
    throwTypeError(info.Env(), what + " must be a " + typedArrayName(want) + " (got " + describe(v) + ")");
  return v.As<Napi::TypedArrayOf<T>>();
}

template <typename T, typename A>
A copyOut(Napi::Env env, const std::vector<T>& v) {
  A out = A::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(T));
  return out;
}

}  // namespace

Napi::Function PulseChipWrap::define(Napi::Env env) {
  return DefineClass(env, "PulseChip",
                     {
                         InstanceMethod<&PulseChipWrap::pulse>("pulse"),
                         InstanceMethod<&PulseChipWrap::updateRows>("updateRows"),
                         InstanceMethod<&PulseChipWrap::read>("read"),
                         InstanceMethod<&PulseChipWrap::infer>("infer"),
                         InstanceMethod<&PulseChipWrap::inferTiles>("inferTiles"),
                         InstanceMethod<&PulseChipWrap::conductances>("conductances"),
                         InstanceMethod<&PulseChipWrap::setFactors>("setFactors"),
                         InstanceMethod<&PulseChipWrap::pulseCounts>("pulseCounts"),
                         InstanceMethod<&PulseChipWrap::pulseEnergy>("pulseEnergy"),
                         InstanceMethod<&PulseChipWrap::stuckMask>("stuckMask"),
                         InstanceMethod<&PulseChipWrap::totals>("totals"),
                     });
}

PulseChipWrap::PulseChipWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PulseChipWrap>(info) {
  Napi::Env env = info.Env();
  PulseChipConfig cfg = readConfig(env, info[0]);
  try {
    chip_ = std::make_unique<PulseChip>(std::move(cfg));
  } catch (const PulseArgumentError& e) {
    throwRangeError(env, std::string("pulseChip: ") + e.what());
  }
}

// Every method: PulseArgumentError → RangeError naming the method; std::bad_alloc → RangeError.
#define DENDRA_PULSE_GUARD(method, body)                                                        \
  try {                                                                                         \
    body                                                                                        \
  } catch (const PulseArgumentError& e) {                                                       \
    throwRangeError(info.Env(), std::string(method) + ": " + e.what());                         \
  } catch (const std::bad_alloc&) {                                                             \
    throwRangeError(info.Env(), std::string(method) + ": out of memory");                       \
  }

Napi::Value PulseChipWrap::pulse(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "pulse");
  auto row = typedArg<int32_t>(info, 1, napi_int32_array, "pulse: row");
  auto col = typedArg<int32_t>(info, 2, napi_int32_array, "pulse: col");
  auto amp = typedArg<float>(info, 3, napi_float32_array, "pulse: amplitude");
  auto gate = typedArg<float>(info, 4, napi_float32_array, "pulse: gate");
  const double width = numberArg(info, 5, "pulse: width");
  const size_t n = row.ElementLength();
  if (col.ElementLength() != n || amp.ElementLength() != n || gate.ElementLength() != n)
    throwRangeError(info.Env(), "pulse: row, col, amplitude and gate must have the same length");
  DENDRA_PULSE_GUARD("pulse", { chip_->pulse(a, row.Data(), col.Data(), amp.Data(), gate.Data(), n, width); })
  return info.Env().Undefined();
}

Napi::Value PulseChipWrap::updateRows(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "updateRows");
  auto rows = typedArg<int32_t>(info, 1, napi_int32_array, "updateRows: rows");
  auto gates = typedArg<float>(info, 2, napi_float32_array, "updateRows: gates");
  auto reset = typedArg<uint8_t>(info, 3, napi_uint8_array, "updateRows: reset");
  const double setAmp = numberArg(info, 4, "updateRows: setAmplitude");
  const double resetAmp = numberArg(info, 5, "updateRows: resetAmplitude");
  const double width = numberArg(info, 6, "updateRows: width");
  const size_t want = rows.ElementLength() * static_cast<size_t>(chip_->cols());
  if (gates.ElementLength() != want || reset.ElementLength() != want)
    throwRangeError(info.Env(), "updateRows: gates and reset must hold rows.length × cols = " + std::to_string(want) + " values (got " +
                                    std::to_string(gates.ElementLength()) + " and " + std::to_string(reset.ElementLength()) + ")");
  double applied = 0;
  DENDRA_PULSE_GUARD("updateRows", { applied = chip_->updateRows(a, rows.Data(), rows.ElementLength(), gates.Data(), reset.Data(), setAmp, resetAmp, width); })
  return Napi::Number::New(info.Env(), applied);
}

Napi::Value PulseChipWrap::read(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "read");
  int32_t r[4];
  const char* names[4] = {"row", "col", "rows", "cols"};
  for (int i = 0; i < 4; ++i) {
    const double d = numberArg(info, static_cast<size_t>(i + 1), std::string("read: ") + names[i]);
    if (!(d == std::floor(d) && std::fabs(d) < 1e9)) throwRangeError(info.Env(), std::string("read: ") + names[i] + " must be an integer");
    r[i] = static_cast<int32_t>(d);
  }
  std::vector<float> g;
  DENDRA_PULSE_GUARD("read", { g = chip_->read(a, r[0], r[1], r[2], r[3]); })
  return copyOut<float, Napi::Float32Array>(info.Env(), g);
}

Napi::Value PulseChipWrap::infer(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "infer");
  auto rows = typedArg<int32_t>(info, 1, napi_int32_array, "infer: rows");
  auto cols = typedArg<int32_t>(info, 2, napi_int32_array, "infer: cols");
  auto v = typedArg<float>(info, 3, napi_float32_array, "infer: voltages");
  const double batch = numberArg(info, 4, "infer: batch");
  if (!(batch >= 1 && batch == std::floor(batch) && batch < 1e9)) throwRangeError(info.Env(), "infer: batch must be a positive integer");
  if (static_cast<double>(v.ElementLength()) != batch * static_cast<double>(rows.ElementLength()))
    throwRangeError(info.Env(), "infer: voltages must hold batch × rows.length values");
  std::vector<float> out;
  DENDRA_PULSE_GUARD("infer", { out = chip_->infer(a, rows.Data(), rows.ElementLength(), cols.Data(), cols.ElementLength(), v.Data(), static_cast<int64_t>(batch)); })
  return copyOut<float, Napi::Float32Array>(info.Env(), out);
}

Napi::Value PulseChipWrap::inferTiles(const Napi::CallbackInfo& info) {
  auto arrays = typedArg<int32_t>(info, 0, napi_int32_array, "inferTiles: arrays");
  auto rowCounts = typedArg<int32_t>(info, 1, napi_int32_array, "inferTiles: rowCounts");
  auto rows = typedArg<int32_t>(info, 2, napi_int32_array, "inferTiles: rows");
  auto colCounts = typedArg<int32_t>(info, 3, napi_int32_array, "inferTiles: colCounts");
  auto cols = typedArg<int32_t>(info, 4, napi_int32_array, "inferTiles: cols");
  auto v = typedArg<float>(info, 5, napi_float32_array, "inferTiles: voltages");
  const double batch = numberArg(info, 6, "inferTiles: batch");
  const double threads = numberArg(info, 7, "inferTiles: threads");
  if (!(batch >= 1 && batch == std::floor(batch) && batch < 1e9)) throwRangeError(info.Env(), "inferTiles: batch must be a positive integer");
  if (!(threads >= 1 && threads <= 256 && threads == std::floor(threads))) throwRangeError(info.Env(), "inferTiles: threads must be an integer from 1 to 256");
  if (arrays.ElementLength() == 0 || rowCounts.ElementLength() != arrays.ElementLength() || colCounts.ElementLength() != arrays.ElementLength())
    throwRangeError(info.Env(), "inferTiles: arrays, rowCounts and colCounts must be non-empty and of one length");
  std::vector<float> out;
  DENDRA_PULSE_GUARD("inferTiles", {
    out = chip_->inferTiles(arrays.Data(), arrays.ElementLength(), rowCounts.Data(), rows.Data(), rows.ElementLength(), colCounts.Data(),
                            cols.Data(), cols.ElementLength(), v.Data(), v.ElementLength(), static_cast<int64_t>(batch), static_cast<int32_t>(threads));
  })
  return copyOut<float, Napi::Float32Array>(info.Env(), out);
}

Napi::Value PulseChipWrap::conductances(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "conductances");
  std::vector<float> g;
  DENDRA_PULSE_GUARD("conductances", { g = chip_->conductances(a); })
  return copyOut<float, Napi::Float32Array>(info.Env(), g);
}

Napi::Value PulseChipWrap::setFactors(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "setFactors");
  std::vector<float> g;
  DENDRA_PULSE_GUARD("setFactors", { g = chip_->setFactors(a); })
  return copyOut<float, Napi::Float32Array>(info.Env(), g);
}

Napi::Value PulseChipWrap::pulseCounts(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "pulseCounts");
  std::vector<uint32_t> g;
  DENDRA_PULSE_GUARD("pulseCounts", { g = chip_->pulseCounts(a); })
  return copyOut<uint32_t, Napi::Uint32Array>(info.Env(), g);
}

Napi::Value PulseChipWrap::pulseEnergy(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "pulseEnergy");
  std::vector<double> g;
  DENDRA_PULSE_GUARD("pulseEnergy", { g = chip_->pulseEnergy(a); })
  return copyOut<double, Napi::Float64Array>(info.Env(), g);
}

Napi::Value PulseChipWrap::stuckMask(const Napi::CallbackInfo& info) {
  const int32_t a = arrayArg(info, 0, "stuckMask");
  std::vector<uint8_t> g;
  DENDRA_PULSE_GUARD("stuckMask", { g = chip_->stuckMask(a); })
  return copyOut<uint8_t, Napi::Uint8Array>(info.Env(), g);
}

Napi::Value PulseChipWrap::totals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const PulseTotals& t = chip_->totals();
  Napi::Object o = Napi::Object::New(env);
  o.Set("pulses", t.pulses);
  o.Set("cellPulses", t.cellPulses);
  o.Set("reads", t.reads);
  o.Set("energy", t.energy);
  return o;
}

}  // namespace dendra
