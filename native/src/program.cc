#include "program.h"
#include "reader.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace dendra {

void throwTypeError(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, "dendra native: " + message);
}

void throwRangeError(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, "dendra native: " + message);
}

std::string formatNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, res.ptr);
}

namespace {

float toFloatSaturating(double d) {
  constexpr double maxf = static_cast<double>(std::numeric_limits<float>::max());
  if (d > maxf) return std::numeric_limits<float>::infinity();
  if (d < -maxf) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

ArraySpec readArray(Reader& rd, Napi::Value v, const std::string& path) {
  Napi::Object o = rd.object(v, path);
  ArraySpec a;
  a.rows = static_cast<int32_t>(rd.integer(o, "rows", path + ".rows", 1, kMaxDim));
  a.cols = static_cast<int32_t>(rd.integer(o, "cols", path + ".cols", 1, kMaxDim));
  a.conductance = rd.floats(o, "conductance", path + ".conductance");
  const uint64_t cells = static_cast<uint64_t>(a.rows) * static_cast<uint64_t>(a.cols);
  rd.length(path + ".conductance", a.conductance.size(), cells, "rows*cols = " + std::to_string(cells));
  for (size_t i = 0; i < a.conductance.size(); ++i) {
    const float g = a.conductance[i];
    if (!std::isfinite(g) || g < 0.0f)
      throwRangeError(rd.env(), path + ".conductance[" + std::to_string(i) + "] = " + formatNumber(g) +
                                    " must be finite and >= 0 (siemens)");
  }
  if (!o.Get("stuck").IsUndefined()) {
    auto st = rd.typed<uint8_t>(o, "stuck", path + ".stuck", napi_uint8_array);
    a.stuck.assign(st.Data(), st.Data() + st.ElementLength());
    rd.length(path + ".stuck", a.stuck.size(), cells, "rows*cols = " + std::to_string(cells));
    for (size_t i = 0; i < a.stuck.size(); ++i)
      if (a.stuck[i] > kStuckOff)
        throwRangeError(rd.env(), path + ".stuck[" + std::to_string(i) + "] = " + std::to_string(a.stuck[i]) +
                                      " must be 0 (healthy), 1 (stuck ON) or 2 (stuck OFF)");
  }
  return a;
}

Physics readPhysics(Reader& rd, Napi::Value v, const std::string& path) {
  Physics ph;
  if (v.IsUndefined()) return ph;  // absent: ideal devices
  Napi::Object o = rd.object(v, path);
  auto field = [&](const char* key, double& out, bool positive = false) {
    const std::string fp = path + "." + key;
    out = rd.number(o, key, fp);
    if (positive ? !(out > 0.0) : !(out >= 0.0))
      throwRangeError(rd.env(), fp + " = " + formatNumber(out) + (positive ? " must be > 0" : " must be >= 0"));
  };
  field("programSigma", ph.programSigma);
  field("programRelative", ph.programRelative);
  field("readSigma", ph.readSigma);
  field("readRelative", ph.readRelative);
  field("driftNu", ph.driftNu);
  field("driftNuSigma", ph.driftNuSigma);
  field("driftT0", ph.driftT0, true);
  field("time", ph.time);
  field("wireResistance", ph.wireResistance);
  if (!o.Get("levelStep").IsUndefined()) field("levelStep", ph.levelStep);  // optional (older callers omit it)
  return ph;
}

TileSpec readTile(Reader& rd, Napi::Value v, const std::string& path, const LayerSpec& layer,
                  const std::string& layerPath, const std::vector<ArraySpec>& arrays) {
  Napi::Object o = rd.object(v, path);
  TileSpec t;
  if (arrays.empty()) throwRangeError(rd.env(), path + ".array: the program has no arrays");
  t.array = static_cast<int32_t>(rd.integer(o, "array", path + ".array", 0, static_cast<int64_t>(arrays.size()) - 1));
  const ArraySpec& arr = arrays[static_cast<size_t>(t.array)];

  t.inputIndex = rd.ints(o, "inputIndex", path + ".inputIndex");
  t.rowPos = rd.ints(o, "rowPos", path + ".rowPos");
  t.rowNeg = rd.ints(o, "rowNeg", path + ".rowNeg");
  t.outputIndex = rd.ints(o, "outputIndex", path + ".outputIndex");
  t.colPos = rd.ints(o, "colPos", path + ".colPos");
  t.colNeg = rd.ints(o, "colNeg", path + ".colNeg");

  const size_t k = t.inputIndex.size();
  const size_t m = t.outputIndex.size();
  if (k == 0) throwRangeError(rd.env(), path + ".inputIndex is empty (a tile needs at least one input)");
  if (m == 0) throwRangeError(rd.env(), path + ".outputIndex is empty (a tile needs at least one output)");
  rd.length(path + ".rowPos", t.rowPos.size(), k, "inputIndex.length");
  rd.length(path + ".rowNeg", t.rowNeg.size(), k, "inputIndex.length");
  rd.length(path + ".colPos", t.colPos.size(), m, "outputIndex.length");
  rd.length(path + ".colNeg", t.colNeg.size(), m, "outputIndex.length");
  if (static_cast<uint64_t>(k) * static_cast<uint64_t>(m) > static_cast<uint64_t>(kMaxTileCells))
    throwRangeError(rd.env(), path + " is too large: " + std::to_string(k) + " inputs x " + std::to_string(m) +
                                  " outputs exceeds " + std::to_string(kMaxTileCells) + " cells");

  const std::string arrName = "array " + std::to_string(t.array);
  rd.indices(path + ".inputIndex", t.inputIndex, layer.inFeatures,
             "[0, " + std::to_string(layer.inFeatures) + ") (" + layerPath + ".inFeatures)");
  rd.indices(path + ".outputIndex", t.outputIndex, layer.outFeatures,
             "[0, " + std::to_string(layer.outFeatures) + ") (" + layerPath + ".outFeatures)");
  const std::string rowsWhat = arrName + " (" + std::to_string(arr.rows) + " rows)";
  const std::string colsWhat = arrName + " (" + std::to_string(arr.cols) + " cols)";
  rd.indices(path + ".rowPos", t.rowPos, arr.rows, rowsWhat);
  rd.indices(path + ".rowNeg", t.rowNeg, arr.rows, rowsWhat);
  rd.indices(path + ".colPos", t.colPos, arr.cols, colsWhat);
  rd.indices(path + ".colNeg", t.colNeg, arr.cols, colsWhat);

  if (layer.dendrites.active()) {
    t.branch = static_cast<int32_t>(rd.integer(o, "branch", path + ".branch", 0, layer.dendrites.count - 1));
  } else if (!o.Get("branch").IsUndefined()) {
    t.branch = static_cast<int32_t>(rd.integer(o, "branch", path + ".branch", 0, 0));
  }
  t.adcFullScale = rd.number(o, "adcFullScale", path + ".adcFullScale");
  if (layer.adcBits > 0 && !(t.adcFullScale > 0.0))
    throwRangeError(rd.env(), path + ".adcFullScale = " + formatNumber(t.adcFullScale) + " must be > 0 (" +
                                  layerPath + ".adcBits = " + std::to_string(layer.adcBits) + ")");
  return t;
}

void readBits(Reader& rd, Napi::Object o, const char* key, const std::string& path, int32_t& out) {
  out = static_cast<int32_t>(rd.integer(o, key, path, 0, kMaxBits));
  if (out == 1)
    throwRangeError(rd.env(), path + " = 1 is not supported: a signed 1-bit converter has no nonzero level "
                                     "(use 0 for ideal, or 2..16)");
}

DendriteSpec readDendrites(Reader& rd, Napi::Value v, const std::string& path, int32_t inFeatures) {
  DendriteSpec d;
  if (v.IsUndefined()) return d;
  Napi::Object o = rd.object(v, path);
  auto positive = [&](const char* key, double lo, bool inclusive) {
    const std::string fp = path + "." + key;
    const double x = rd.number(o, key, fp);
    if (inclusive ? !(x >= lo) : !(x > lo))
      throwRangeError(rd.env(), fp + " = " + formatNumber(x) + " must be " + (inclusive ? ">= " : "> ") + formatNumber(lo));
    return x;
  };
  d.count = static_cast<int32_t>(rd.integer(o, "count", path + ".count", 1, inFeatures));
  d.kind = static_cast<DendriteKind>(rd.integer(o, "kind", path + ".kind", 0, 1));
  d.alpha = positive("alpha", 0.0, true);
  d.onOffRatio = positive("onOffRatio", 1.0, true);
  d.ratio = positive("ratio", 0.0, false);
  d.threshold = positive("threshold", 0.0, false);
  d.variation = positive("variation", 0.0, true);
  d.fullScale = positive("fullScale", 0.0, false);
  d.biasScale = rd.number(o, "biasScale", path + ".biasScale");
  d.energyUnit = positive("energyUnit", 0.0, true);
  if (o.Has("maxRatio") && !o.Get("maxRatio").IsUndefined()) d.maxRatio = positive("maxRatio", 0.0, false);  // +Infinity: no ceiling
  d.rectify = rd.boolean(o, "rectify", path + ".rectify");
  d.bypass = rd.boolean(o, "bypass", path + ".bypass");
  if (d.alpha > 700.0) throwRangeError(rd.env(), path + ".alpha = " + formatNumber(d.alpha) + " must be <= 700 (e^alpha overflows)");
  if (d.threshold > 1.0) throwRangeError(rd.env(), path + ".threshold = " + formatNumber(d.threshold) + " must be <= 1");
  if (!std::isfinite(d.biasScale)) throwRangeError(rd.env(), path + ".biasScale = " + formatNumber(d.biasScale) + " must be finite");
  for (double x : {d.onOffRatio, d.ratio, d.variation, d.fullScale, d.energyUnit})
    if (!std::isfinite(x)) throwRangeError(rd.env(), path + ": every field must be finite");
  return d;
}

LayerSpec readLayer(Reader& rd, Napi::Value v, const std::string& path, const std::vector<ArraySpec>& arrays,
                    const LayerSpec* prev, const std::string& prevPath) {
  Napi::Object o = rd.object(v, path);
  LayerSpec l;
  l.inFeatures = static_cast<int32_t>(rd.integer(o, "inFeatures", path + ".inFeatures", 1, kMaxDim));
  if (prev && prev->outFeatures != l.inFeatures)
    throwRangeError(rd.env(), path + ".inFeatures = " + std::to_string(l.inFeatures) + " does not match " + prevPath +
                                  ".outFeatures = " + std::to_string(prev->outFeatures));
  l.outFeatures = static_cast<int32_t>(rd.integer(o, "outFeatures", path + ".outFeatures", 1, kMaxDim));
  l.vRead = rd.number(o, "vRead", path + ".vRead");
  if (!(l.vRead > 0.0)) throwRangeError(rd.env(), path + ".vRead = " + formatNumber(l.vRead) + " must be > 0 (volts)");
  readBits(rd, o, "dacBits", path + ".dacBits", l.dacBits);
  readBits(rd, o, "adcBits", path + ".adcBits", l.adcBits);

  l.activation = static_cast<Activation>(rd.integer(o, "activation", path + ".activation", 0, 6));
  l.alpha = toFloatSaturating(rd.number(o, "alpha", path + ".alpha"));
  l.beta = toFloatSaturating(rd.number(o, "beta", path + ".beta"));
  if (l.activation == Activation::Clip && l.alpha > l.beta)
    throwRangeError(rd.env(), path + ": Clip min (alpha = " + formatNumber(l.alpha) + ") > max (beta = " +
                                  formatNumber(l.beta) + ")");
  if (l.activation == Activation::ThresholdSoma && !(l.beta > 0.0f && std::isfinite(l.beta)))
    throwRangeError(rd.env(), path + ": the threshold soma's scale (beta = " + formatNumber(l.beta) + ") must be > 0");
  l.head = static_cast<Head>(rd.integer(o, "head", path + ".head", 0, 2));
  l.dendrites = readDendrites(rd, o.Get("dendrites"), path + ".dendrites", l.inFeatures);
  if (!o.Get("soma").IsUndefined()) {
    Napi::Object so = rd.object(o.Get("soma"), path + ".soma");
    l.somaFullScale = rd.number(so, "fullScale", path + ".soma.fullScale");
    l.somaEnergy = rd.number(so, "energy", path + ".soma.energy");
    if (!(l.somaFullScale > 0.0) || !std::isfinite(l.somaFullScale))
      throwRangeError(rd.env(), path + ".soma.fullScale = " + formatNumber(l.somaFullScale) + " must be finite and > 0");
    if (!(l.somaEnergy >= 0.0) || !std::isfinite(l.somaEnergy))
      throwRangeError(rd.env(), path + ".soma.energy = " + formatNumber(l.somaEnergy) + " must be finite and >= 0");
  }

  l.outScale = rd.floats(o, "outScale", path + ".outScale");
  rd.length(path + ".outScale", l.outScale.size(), static_cast<size_t>(l.outFeatures), path + ".outFeatures");
  rd.finite(path + ".outScale", l.outScale);
  l.bias = rd.floats(o, "bias", path + ".bias");
  rd.length(path + ".bias", l.bias.size(), static_cast<size_t>(l.outFeatures), path + ".outFeatures");
  rd.finite(path + ".bias", l.bias);

  Napi::Array tiles = rd.array(o, "tiles", path + ".tiles");
  const uint32_t n = tiles.Length();
  l.tiles.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    const std::string tp = path + ".tiles[" + std::to_string(i) + "]";
    l.tiles.push_back(readTile(rd, tiles.Get(i), tp, l, path, arrays));
  }
  return l;
}

}  // namespace

std::string describe(Napi::Value v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return "boolean";
  if (v.IsNumber()) return "number " + formatNumber(v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "string";
  if (v.IsSymbol()) return "symbol";
  if (v.IsFunction()) return "function";
  if (v.IsArray()) return "Array";
  if (v.IsTypedArray()) return typedArrayName(v.As<Napi::TypedArray>().TypedArrayType());
  if (v.IsArrayBuffer()) return "ArrayBuffer";
  if (v.IsDataView()) return "DataView";
  if (v.IsBuffer()) return "Buffer";
  napi_valuetype t = v.Type();
  if (t == napi_bigint) return "bigint";
  return "object";
}

Program readProgram(Napi::Env env, Napi::Value value) {
  Reader rd(env);
  Napi::Object o = rd.object(value, "program");
  Program p;

  Napi::Array arrays = rd.array(o, "arrays", "program.arrays");
  const uint32_t na = arrays.Length();
  p.arrays.reserve(na);
  for (uint32_t i = 0; i < na; ++i)
    p.arrays.push_back(readArray(rd, arrays.Get(i), "arrays[" + std::to_string(i) + "]"));

  Napi::Array layers = rd.array(o, "layers", "program.layers");
  const uint32_t nl = layers.Length();
  if (nl == 0) throwRangeError(env, "program.layers is empty (at least one layer is required)");
  p.layers.reserve(nl);
  for (uint32_t i = 0; i < nl; ++i) {
    const std::string lp = "layers[" + std::to_string(i) + "]";
    const LayerSpec* prev = i > 0 ? &p.layers[i - 1] : nullptr;
    p.layers.push_back(readLayer(rd, layers.Get(i), lp, p.arrays, prev, "layers[" + std::to_string(i - 1) + "]"));
  }

  p.threads = static_cast<int32_t>(rd.integer(o, "threads", "program.threads", 1, kMaxThreads));
  p.seed = static_cast<uint32_t>(rd.integer(o, "seed", "program.seed", 0, 0xFFFFFFFFll));
  p.physics = readPhysics(rd, o.Get("physics"), "physics");
  // The kernels: program.kernel ('portable', 'avx2', 'avx512', 'vnni' or 'auto'), else DENDRA_KERNEL, else the
  // best this CPU has.
  Napi::Value k = o.Get("kernel");
  std::string kernel;
  if (!k.IsUndefined()) {
    if (!k.IsString()) throwTypeError(env, "program.kernel must be a string (got " + describe(k) + ")");
    kernel = k.As<Napi::String>().Utf8Value();
  }
  try {
    p.isa = cpu::resolve(kernel);
  } catch (const std::invalid_argument& e) {
    throwRangeError(env, e.what());
  }
  return p;
}

}  // namespace dendra
