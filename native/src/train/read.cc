#include "read.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../reader.h"

namespace dendra::train {

namespace {

constexpr int64_t kMaxSamples = int64_t{1} << 31;

/** An optional finite number >= lo (and <= hi) in o[key], default when absent. */
double optionalNumber(Reader& rd, Napi::Object o, const char* key, const std::string& path, double def, double lo,
                      double hi, bool loInclusive = true) {
  if (o.Get(key).IsUndefined()) return def;
  const double d = rd.number(o, key, path);
  if ((loInclusive ? !(d >= lo) : !(d > lo)) || d > hi)
    throwRangeError(rd.env(), path + " = " + formatNumber(d) + " must be in " + (loInclusive ? "[" : "(") +
                                  formatNumber(lo) + ", " + formatNumber(hi) + "]");
  return d;
}

int64_t optionalInteger(Reader& rd, Napi::Object o, const char* key, const std::string& path, int64_t def, int64_t lo,
                        int64_t hi) {
  if (o.Get(key).IsUndefined()) return def;
  return rd.integer(o, key, path, lo, hi);
}

/** [rows × cols] row-major → [cols × rows]. */
std::vector<float> transposeRows(const float* a, int64_t rows, int64_t cols) {
  std::vector<float> t(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = a[r * cols + c];
  return t;
}
template <typename T>
std::vector<T> transposeOf(const std::vector<T>& a, int64_t rows, int64_t cols) {
  std::vector<T> t(a.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = a[static_cast<size_t>(r * cols + c)];
  return t;
}

void readDendriteDevice(Reader& rd, Napi::Object o, const std::string& path, DendriteSpec& s) {
  s.kind = static_cast<DendriteKind>(rd.integer(o, "kind", path + ".kind", 0, 1));
  s.alpha = optionalNumber(rd, o, "alpha", path + ".alpha", 0.0, 0.0, 700.0);
  s.onOffRatio = optionalNumber(rd, o, "onOffRatio", path + ".onOffRatio", 1.0, 1.0, 1e30);
  s.ratio = optionalNumber(rd, o, "ratio", path + ".ratio", 1.0, 0.0, 1e30, false);
  s.maxRatio = optionalNumber(rd, o, "maxRatio", path + ".maxRatio", std::numeric_limits<double>::infinity(), 0.0,
                              std::numeric_limits<double>::infinity(), false);  // the rating: the voltage saturates
  s.threshold = optionalNumber(rd, o, "threshold", path + ".threshold", 1.0, 0.0, 1.0, false);
  s.variation = optionalNumber(rd, o, "variation", path + ".variation", 0.0, 0.0, 1e3);
  s.fullScale = optionalNumber(rd, o, "fullScale", path + ".fullScale", 1.0, 0.0, 1e30, false);
  s.biasScale = optionalNumber(rd, o, "biasScale", path + ".biasScale", 1.0, -1e30, 1e30);
  s.rectify = o.Get("rectify").IsUndefined() ? false : rd.boolean(o, "rectify", path + ".rectify");
}

DendriteDef readDendrites(Reader& rd, Napi::Value v, const std::string& path, int32_t in) {
  DendriteDef d;
  if (v.IsUndefined()) return d;
  Napi::Object o = rd.object(v, path);
  DendriteSpec& s = d.device;
  d.count = static_cast<int32_t>(rd.integer(o, "count", path + ".count", 1, in));
  s.count = d.count;
  d.branchOf = rd.ints(o, "branchOf", path + ".branchOf");
  rd.length(path + ".branchOf", d.branchOf.size(), static_cast<size_t>(in), "inFeatures");
  rd.indices(path + ".branchOf", d.branchOf, d.count, "[0, " + std::to_string(d.count) + ") (count)");
  readDendriteDevice(rd, o, path, s);
  return d;
}

HardwareDef readHardware(Reader& rd, Napi::Value v, const std::string& path, int64_t cells) {
  HardwareDef h;
  if (v.IsUndefined()) return h;
  Napi::Object o = rd.object(v, path);
  if (!o.Get("stuck").IsUndefined()) {
    auto st = rd.typed<uint8_t>(o, "stuck", path + ".stuck", napi_uint8_array);
    h.stuck.assign(st.Data(), st.Data() + st.ElementLength());
    rd.length(path + ".stuck", h.stuck.size(), static_cast<size_t>(cells), "inFeatures*outFeatures");
    h.stuckValue = rd.floats(o, "stuckValue", path + ".stuckValue");
    rd.length(path + ".stuckValue", h.stuckValue.size(), static_cast<size_t>(cells), "inFeatures*outFeatures");
    rd.finite(path + ".stuckValue", h.stuckValue);
  } else if (!o.Get("stuckValue").IsUndefined()) {
    throwTypeError(rd.env(), path + ".stuckValue needs " + path + ".stuck (the mask of stuck weights)");
  }
  h.programSigma = optionalNumber(rd, o, "programSigma", path + ".programSigma", 0.0, 0.0, 1e30);
  h.programRelative = optionalNumber(rd, o, "programRelative", path + ".programRelative", 0.0, 0.0, 1e30);
  h.readSigma = optionalNumber(rd, o, "readSigma", path + ".readSigma", 0.0, 0.0, 1e30);
  h.readRelative = optionalNumber(rd, o, "readRelative", path + ".readRelative", 0.0, 0.0, 1e30);
  h.adcClip = optionalNumber(rd, o, "adcClip", path + ".adcClip", 0.0, 0.0, 1e30);
  h.adcBits = static_cast<int32_t>(optionalInteger(rd, o, "adcBits", path + ".adcBits", 0, 0, kMaxBits));
  h.dacBits = static_cast<int32_t>(optionalInteger(rd, o, "dacBits", path + ".dacBits", 0, 0, kMaxBits));
  if (h.adcBits == 1 || h.dacBits == 1)
    throwRangeError(rd.env(), path + ": adcBits and dacBits must be 0 (off) or 2.." + std::to_string(kMaxBits) + " (signed)");
  if (h.adcBits > 0 && !(h.adcClip > 0.0))
    throwRangeError(rd.env(), path + ".adcBits = " + std::to_string(h.adcBits) + " needs adcClip > 0 (the ADC's full scale)");
  return h;
}

}  // namespace

DendriteSpec readDendriteSpec(Napi::Env env, Napi::Value v, const std::string& path) {
  Reader rd(env);
  Napi::Object o = rd.object(v, path);
  DendriteSpec s;
  s.count = static_cast<int32_t>(rd.integer(o, "count", path + ".count", 1, std::numeric_limits<int32_t>::max()));
  readDendriteDevice(rd, o, path, s);
  return s;
}

std::vector<float> transpose(const float* a, int64_t rows, int64_t cols) { return transposeRows(a, rows, cols); }

ReadNet readNetwork(Napi::Env env, Napi::Value v) {
  Reader rd(env);
  const std::string root = "network";
  Napi::Object o = rd.object(v, root);
  ReadNet r;
  if (!o.Get("layout").IsUndefined()) {
    Napi::Value l = o.Get("layout");
    const std::string s = l.IsString() ? l.As<Napi::String>().Utf8Value() : "";
    if (s != "in-out" && s != "out-in")
      throwTypeError(env, root + ".layout must be 'in-out' or 'out-in' (got " + (l.IsString() ? "'" + s + "'" : describe(l)) + ")");
    r.transposed = s == "out-in";
  }
  r.def.threads = static_cast<int32_t>(rd.integer(o, "threads", root + ".threads", 1, kMaxThreads));
  r.def.seed = static_cast<uint64_t>(rd.integer(o, "seed", root + ".seed", 0, 4294967295LL));
  r.def.logitScale = optionalNumber(rd, o, "logitScale", root + ".logitScale", 1.0, 0.0, 1e30, false);
  if (!o.Get("penalty").IsUndefined()) {
    Napi::Object p = rd.object(o.Get("penalty"), root + ".penalty");
    r.def.penalty.soma = optionalNumber(rd, p, "soma", root + ".penalty.soma", 0.0, 0.0, 1e30);
    r.def.penalty.branch = optionalNumber(rd, p, "branch", root + ".penalty.branch", 0.0, 0.0, 1e30);
  }
  Napi::Array layers = rd.array(o, "layers", root + ".layers");
  if (layers.Length() == 0) throwRangeError(env, root + ".layers is empty (a network needs at least one layer)");
  for (uint32_t li = 0; li < layers.Length(); ++li) {
    const std::string path = root + ".layers[" + std::to_string(li) + "]";
    Napi::Object lo = rd.object(layers.Get(li), path);
    LayerDef L;
    L.in = static_cast<int32_t>(rd.integer(lo, "inFeatures", path + ".inFeatures", 1, kMaxDim));
    L.out = static_cast<int32_t>(rd.integer(lo, "outFeatures", path + ".outFeatures", 1, kMaxDim));
    if (li > 0 && r.def.layers.back().out != L.in)
      throwRangeError(env, path + ".inFeatures = " + std::to_string(L.in) + " does not match the previous layer's outFeatures = " +
                               std::to_string(r.def.layers.back().out));
    const int64_t cells = static_cast<int64_t>(L.in) * L.out;
    if (cells > kMaxTileCells)
      throwRangeError(env, path + " is too large: " + std::to_string(L.in) + " x " + std::to_string(L.out) + " weights");
    std::vector<float> w = rd.floats(lo, "weight", path + ".weight");
    rd.length(path + ".weight", w.size(), static_cast<size_t>(cells), "inFeatures*outFeatures");
    rd.finite(path + ".weight", w);
    std::vector<float> b = rd.floats(lo, "bias", path + ".bias");
    rd.length(path + ".bias", b.size(), static_cast<size_t>(L.out), "outFeatures");
    rd.finite(path + ".bias", b);
    L.activation = static_cast<Activation>(rd.integer(lo, "activation", path + ".activation", 0, 6));
    L.alpha = static_cast<float>(optionalNumber(rd, lo, "alpha", path + ".alpha", 0.0, -1e30, 1e30));
    L.beta = static_cast<float>(optionalNumber(rd, lo, "beta", path + ".beta", 0.0, -1e30, 1e30));
    if (L.activation == Activation::ThresholdSoma && !(L.beta > 0.0f))
      throwRangeError(env, path + ".beta = " + formatNumber(L.beta) + " must be > 0 (the threshold soma's scale)");
    if (L.activation == Activation::Clip && !(L.alpha <= L.beta))
      throwRangeError(env, path + ": clip needs alpha (min) <= beta (max)");
    L.dendrites = readDendrites(rd, lo.Get("dendrites"), path + ".dendrites", L.in);
    L.hardware = readHardware(rd, lo.Get("hardware"), path + ".hardware", cells);
    if (r.transposed) {  // [out × in] → the engine's [in × out]
      w = transposeRows(w.data(), L.out, L.in);
      if (L.hardware.hasStuck()) {
        L.hardware.stuck = transposeOf(L.hardware.stuck, L.out, L.in);
        L.hardware.stuckValue = transposeOf(L.hardware.stuckValue, L.out, L.in);
      }
    }
    if (L.hardware.hasStuck())
      for (size_t k = 0; k < w.size(); ++k)
        if (L.hardware.stuck[k]) w[k] = L.hardware.stuckValue[k];
    r.params.weight.push_back(std::move(w));
    r.params.bias.push_back(std::move(b));
    r.def.layers.push_back(std::move(L));
  }
  return r;
}

Batch readBatch(const Napi::CallbackInfo& info, size_t at, const NetDef& def, const std::string& method, bool needLabels) {
  Napi::Env env = info.Env();
  Napi::Value xv = info[at];
  if (!xv.IsTypedArray() || xv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throwTypeError(env, method + ": x must be a Float32Array (got " + describe(xv) + ")");
  auto xa = xv.As<Napi::Float32Array>();
  const int64_t inF = def.layers.front().in, outF = def.layers.back().out;
  const int64_t len = static_cast<int64_t>(xa.ElementLength());
  if (len == 0 || len % inF != 0)
    throwRangeError(env, method + ": x holds " + std::to_string(len) + " values, not a whole number (>= 1) of samples of " +
                             std::to_string(inF) + " features");
  Batch b;
  b.x = xa.Data();
  b.n = len / inF;
  if (b.n > kMaxSamples) throwRangeError(env, method + ": too many samples (" + std::to_string(b.n) + ")");
  if (!needLabels) return b;
  for (int64_t k = 0; k < len; ++k)
    if (!std::isfinite(b.x[k]))
      throwRangeError(env, method + ": x[" + std::to_string(k) + "] (sample " + std::to_string(k / inF) + ", feature " +
                               std::to_string(k % inF) + ") = " + formatNumber(b.x[k]) + " must be finite");
  Napi::Value lv = info[at + 1];
  if (!lv.IsTypedArray() || lv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throwTypeError(env, method + ": labels must be an Int32Array (got " + describe(lv) + ")");
  auto la = lv.As<Napi::Int32Array>();
  if (static_cast<int64_t>(la.ElementLength()) != b.n)
    throwRangeError(env, method + ": " + std::to_string(la.ElementLength()) + " labels for " + std::to_string(b.n) + " samples");
  const int32_t* lab = la.Data();
  for (int64_t s = 0; s < b.n; ++s)
    if (lab[s] < 0 || lab[s] >= outF)
      throwRangeError(env, method + ": labels[" + std::to_string(s) + "] = " + std::to_string(lab[s]) +
                               " is not a class of the network's " + std::to_string(outF) + " outputs");
  b.labels = la.Data();
  return b;
}

namespace {

/** options.eps: per layer a Float32Array [count × out] or null (ε = 1). */
std::vector<std::vector<float>> readEps(Reader& rd, Napi::Object o, const NetDef& def, const std::string& path) {
  std::vector<std::vector<float>> eps(def.layers.size());
  if (o.Get("eps").IsUndefined()) return eps;
  Napi::Array a = rd.array(o, "eps", path);
  if (a.Length() != def.layers.size())
    throwRangeError(rd.env(), path + " has " + std::to_string(a.Length()) + " entries for " + std::to_string(def.layers.size()) + " layers");
  for (uint32_t li = 0; li < a.Length(); ++li) {
    Napi::Value v = a.Get(li);
    if (v.IsNull() || v.IsUndefined()) continue;
    const std::string p = path + "[" + std::to_string(li) + "]";
    const LayerDef& L = def.layers[li];
    if (!L.dendrites.active()) throwRangeError(rd.env(), p + ": layer " + std::to_string(li) + " has no dendrites (give null)");
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throwTypeError(rd.env(), p + " must be a Float32Array or null (got " + describe(v) + ")");
    auto f = v.As<Napi::Float32Array>();
    eps[li].assign(f.Data(), f.Data() + f.ElementLength());
    rd.length(p, eps[li].size(), static_cast<size_t>(L.dendrites.count) * L.out, "count*outFeatures");
    for (size_t k = 0; k < eps[li].size(); ++k)
      if (!(eps[li][k] >= 0.0f) || !std::isfinite(eps[li][k]))
        throwRangeError(rd.env(), p + "[" + std::to_string(k) + "] = " + formatNumber(eps[li][k]) + " must be finite and >= 0");
  }
  return eps;
}

}  // namespace

PassOptions readPassOptions(Napi::Env env, Napi::Value v, const NetDef& def, int64_t batch,
                            const std::string& method, bool allowMeasured) {
  PassOptions p;
  if (v.IsUndefined()) return p;
  Reader rd(env);
  const std::string path = method + ": options";
  Napi::Object o = rd.object(v, path);
  p.draw.noise = o.Get("noise").IsUndefined() ? false : rd.boolean(o, "noise", path + ".noise");
  p.draw.drawVariation = o.Get("variation").IsUndefined() ? false : rd.boolean(o, "variation", path + ".variation");
  p.eps = readEps(rd, o, def, path + ".eps");
  if (p.draw.drawVariation && !o.Get("eps").IsUndefined())
    throwTypeError(env, path + ": give either variation (draw ε) or eps (given ε), not both");
  if (!o.Get("measured").IsUndefined()) {
    if (!allowMeasured) throwTypeError(env, path + ".measured is only for gradients");
    Napi::Array a = rd.array(o, "measured", path + ".measured");
    if (a.Length() != def.layers.size())
      throwRangeError(env, path + ".measured has " + std::to_string(a.Length()) + " entries for " +
                               std::to_string(def.layers.size()) + " layers (one per layer: its outputs)");
    for (uint32_t li = 0; li < a.Length(); ++li) {
      const std::string pp = path + ".measured[" + std::to_string(li) + "]";
      Napi::Value m = a.Get(li);
      if (!m.IsTypedArray() || m.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throwTypeError(env, pp + " must be a Float32Array (got " + describe(m) + ")");
      auto f = m.As<Napi::Float32Array>();
      std::vector<float> vals(f.Data(), f.Data() + f.ElementLength());
      rd.length(pp, vals.size(), static_cast<size_t>(batch) * def.layers[li].out, "batch*outFeatures");
      rd.finite(pp, vals);
      p.measured.push_back(std::move(vals));
    }
    if (p.draw.noise || p.draw.drawVariation)
      throwTypeError(env, path + ": measured passes draw nothing (noise and variation must be off)");
  }
  return p;
}

OptimizerDef readOptimizer(Napi::Env env, Napi::Value v) {
  OptimizerDef d;
  if (v.IsUndefined()) return d;
  Reader rd(env);
  const std::string path = "optimizer";
  Napi::Object o = rd.object(v, path);
  Napi::Value k = o.Get("kind");
  const std::string kind = k.IsString() ? k.As<Napi::String>().Utf8Value() : "";
  if (kind == "sgd") d.kind = OptimizerKind::Sgd;
  else if (kind == "rmsprop") d.kind = OptimizerKind::RmsProp;
  else if (kind == "adam") d.kind = OptimizerKind::Adam;
  else throwTypeError(env, path + ".kind must be 'sgd', 'rmsprop' or 'adam' (got " + (k.IsString() ? "'" + kind + "'" : describe(k)) + ")");
  d.learningRate = optionalNumber(rd, o, "learningRate", path + ".learningRate", 1e-3, 0.0, 1e30, false);
  d.momentum = optionalNumber(rd, o, "momentum", path + ".momentum", 0.0, 0.0, 1.0);
  if (d.momentum >= 1.0) throwRangeError(env, path + ".momentum = 1 must be < 1");
  d.rho = optionalNumber(rd, o, "rho", path + ".rho", 0.9, 0.0, 1.0);
  d.beta1 = optionalNumber(rd, o, "beta1", path + ".beta1", 0.9, 0.0, 1.0);
  d.beta2 = optionalNumber(rd, o, "beta2", path + ".beta2", 0.999, 0.0, 1.0);
  if (d.rho >= 1.0 || d.beta1 >= 1.0 || d.beta2 >= 1.0) throwRangeError(env, path + ": rho, beta1 and beta2 must be < 1");
  d.epsilon = optionalNumber(rd, o, "epsilon", path + ".epsilon", 1e-8, 0.0, 1e30);
  if (!o.Get("schedule").IsUndefined()) {
    Napi::Value s = o.Get("schedule");
    const std::string sc = s.IsString() ? s.As<Napi::String>().Utf8Value() : "";
    if (sc == "linear") d.linearDecay = true;
    else if (sc != "constant") throwTypeError(env, path + ".schedule must be 'constant' or 'linear' (got " + describe(s) + ")");
  }
  if (d.linearDecay) d.totalSteps = rd.integer(o, "totalSteps", path + ".totalSteps", 1, int64_t{1} << 50);
  return d;
}

FitOptions readFitOptions(Napi::Env env, Napi::Value v, const std::string& method) {
  FitOptions f;
  if (v.IsUndefined()) return f;
  Reader rd(env);
  const std::string path = method + ": options";
  Napi::Object o = rd.object(v, path);
  f.epochs = static_cast<int32_t>(optionalInteger(rd, o, "epochs", path + ".epochs", 1, 0, 1 << 20));
  f.batch = optionalInteger(rd, o, "batch", path + ".batch", 32, 1, 1 << 20);
  f.draw.noise = o.Get("noise").IsUndefined() ? false : rd.boolean(o, "noise", path + ".noise");
  f.draw.drawVariation = o.Get("variation").IsUndefined() ? false : rd.boolean(o, "variation", path + ".variation");
  return f;
}

}  // namespace dendra::train
