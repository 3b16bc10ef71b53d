#include "binding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <numeric>
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
std::vector<float> transpose(const float* a, int64_t rows, int64_t cols) {
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
  s.kind = static_cast<DendriteKind>(rd.integer(o, "kind", path + ".kind", 0, 1));
  s.alpha = optionalNumber(rd, o, "alpha", path + ".alpha", 0.0, 0.0, 700.0);
  s.onOffRatio = optionalNumber(rd, o, "onOffRatio", path + ".onOffRatio", 1.0, 1.0, 1e30);
  s.ratio = optionalNumber(rd, o, "ratio", path + ".ratio", 1.0, 0.0, 1e30, false);
  s.threshold = optionalNumber(rd, o, "threshold", path + ".threshold", 1.0, 0.0, 1.0, false);
  s.variation = optionalNumber(rd, o, "variation", path + ".variation", 0.0, 0.0, 1e3);
  s.fullScale = optionalNumber(rd, o, "fullScale", path + ".fullScale", 1.0, 0.0, 1e30, false);
  s.biasScale = optionalNumber(rd, o, "biasScale", path + ".biasScale", 1.0, -1e30, 1e30);
  s.rectify = o.Get("rectify").IsUndefined() ? false : rd.boolean(o, "rectify", path + ".rectify");
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

struct ReadNet {
  NetDef def;
  Params params;
  bool transposed = false;
};

/** The network object of native/index.ts NativeTrainNetwork, validated. */
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
      w = transpose(w.data(), L.out, L.in);
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

struct Batch {
  const float* x = nullptr;
  const int32_t* labels = nullptr;
  int64_t n = 0;
};

/** (x: Float32Array, labels: Int32Array) at info[at], info[at + 1], checked against the network. */
Batch readBatch(const Napi::CallbackInfo& info, size_t at, const NetDef& def, const std::string& method, bool needLabels = true) {
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

struct PassOptions {
  Draw draw;
  std::vector<std::vector<float>> eps;
  std::vector<std::vector<float>> measured;  // per layer, [batch × out] (empty: none)
};

/** options = { noise?, variation?, eps?, measured? } of gradients / evaluate / predict. */
PassOptions readPassOptions(Napi::Env env, Napi::Value v, const NetDef& def, int64_t batch, bool transposed,
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
  (void)transposed;
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

Params zerosLike(const Params& p) {
  Params g;
  for (const auto& w : p.weight) g.weight.emplace_back(w.size(), 0.0f);
  for (const auto& b : p.bias) g.bias.emplace_back(b.size(), 0.0f);
  return g;
}

/** The gradients of one batch as the JS result object. */
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

struct FitOptions {
  int32_t epochs = 1;
  int64_t batch = 32;
  Draw draw;  // noise / variation per minibatch
};

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

struct FitProgress {
  int32_t epoch = 0;
  int64_t samples = 0;  // done so far, over all epochs
  int64_t total = 0;
  double loss = 0.0;    // mean loss of the minibatches of this epoch so far
};

struct FitResult {
  std::vector<double> loss, accuracy;  // per epoch, over the minibatches as they trained
};

/** Epochs of seeded minibatches (Fisher–Yates per epoch from the engine's RNG), one optimizer step per minibatch. */
template <typename OnProgress>
FitResult fitLoop(Engine& engine, Optimizer& opt, const float* x, const int32_t* labels, int64_t n, const FitOptions& f,
                  OnProgress&& progress) {
  FitResult res;
  const int64_t inF = engine.inFeatures();
  const int64_t batch = std::min(f.batch, n);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> xb(static_cast<size_t>(batch * inF));
  std::vector<int32_t> lb(static_cast<size_t>(batch));
  Params grads = zerosLike(engine.params());
  FitProgress p;
  p.total = static_cast<int64_t>(f.epochs) * n;
  for (int32_t e = 0; e < f.epochs; ++e) {
    for (int64_t i = n - 1; i > 0; --i) {
      const int64_t j = static_cast<int64_t>(engine.rng().uniform() * static_cast<double>(i + 1));
      std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(std::min(j, i))]);
    }
    double lossSum = 0.0;
    int64_t correct = 0;
    for (int64_t s0 = 0; s0 < n; s0 += batch) {
      const int64_t nb = std::min(batch, n - s0);
      for (int64_t k = 0; k < nb; ++k) {
        const int32_t s = order[static_cast<size_t>(s0 + k)];
        std::memcpy(xb.data() + k * inF, x + static_cast<int64_t>(s) * inF, static_cast<size_t>(inF) * sizeof(float));
        lb[static_cast<size_t>(k)] = labels[s];
      }
      const BatchResult r = engine.gradients(xb.data(), lb.data(), nb, grads, f.draw);
      opt.step(engine.params(), grads, engine.def());
      lossSum += r.loss * static_cast<double>(nb);
      correct += r.correct;
      p.epoch = e + 1;
      p.samples += nb;
      p.loss = lossSum / static_cast<double>(s0 + nb);
      progress(p);
    }
    res.loss.push_back(lossSum / static_cast<double>(n));
    res.accuracy.push_back(static_cast<double>(correct) / static_cast<double>(n));
  }
  return res;
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
  const PassOptions opts = readPassOptions(env, info[3], net.def, b.n, net.transposed, "trainGradients", true);
  try {
    Engine engine(std::move(net.def), std::move(net.params));
    return gradientsResult(env, engine, b, opts, net.transposed);
  } catch (const std::bad_alloc&) {
    throwRangeError(env, "trainGradients: out of memory");
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
  const PassOptions opts = readPassOptions(env, info[2], e.def(), b.n, state_->transposed, "gradients", true);
  return gradientsResult(env, e, b, opts, state_->transposed);
}

Napi::Value Trainer::step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env, "step");
  Engine& e = state_->engine;
  const Batch b = readBatch(info, 0, e.def(), "step");
  const PassOptions opts = readPassOptions(env, info[2], e.def(), b.n, state_->transposed, "step", true);
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
  const PassOptions opts = readPassOptions(env, info[2], e.def(), b.n, state_->transposed, "evaluate", false);
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
  const PassOptions opts = readPassOptions(env, info[1], e.def(), b.n, state_->transposed, "predict", false);
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
  const PassOptions opts = readPassOptions(env, info[1], e.def(), b.n, state_->transposed, "forwardLayers", false);
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
