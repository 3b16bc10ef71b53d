#include "engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "../periphery.h"
#include "activation.h"

namespace dendra::train {

namespace {

constexpr int64_t kEvalChunk = 512;  // rows per forward chunk in evaluate() / forward()

float sign(float v) { return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); }

}  // namespace

Engine::Engine(NetDef def, Params params)
    : def_(std::move(def)), params_(std::move(params)), rng_(def_.seed), mm_(gemm::selectKernel(), def_.threads) {
  const bool avx2 = hasAvx2(mm_.kernel());
  work_.resize(def_.layers.size());
  int64_t maxOut = 1;
  for (size_t li = 0; li < def_.layers.size(); ++li) {
    const LayerDef& L = def_.layers[li];
    Work& w = work_[li];
    maxOut = std::max<int64_t>(maxOut, L.out);
    w.groups = L.dendrites.active() ? L.dendrites.count : 1;
    w.perm.resize(static_cast<size_t>(L.in));
    std::iota(w.perm.begin(), w.perm.end(), 0);
    w.start.assign(static_cast<size_t>(w.groups) + 1, 0);
    if (L.dendrites.active()) {
      const std::vector<int32_t>& b = L.dendrites.branchOf;
      std::stable_sort(w.perm.begin(), w.perm.end(), [&](int32_t x, int32_t y) { return b[x] < b[y]; });
      for (int32_t i = 0; i < L.in; ++i) ++w.start[static_cast<size_t>(b[i]) + 1];
      for (int32_t g = 0; g < w.groups; ++g) w.start[g + 1] += w.start[g];
      w.consts = dendrite::constants(L.dendrites.device);
      w.consts.avx2 = avx2;
    } else {
      w.start[1] = L.in;
    }
    w.packed.resize(static_cast<size_t>(w.groups));
    w.packedT.resize(static_cast<size_t>(w.groups));
    if (L.hardware.hasStuck() || L.hardware.programError()) w.wEff.resize(static_cast<size_t>(L.in) * L.out);
  }
  ones_.assign(static_cast<size_t>(maxOut), 1.0f);
  scratch_.assign(static_cast<size_t>(maxOut), 0.0);
}

void Engine::ensure(int64_t batch) {
  if (batch <= capacity_) return;
  const int64_t rows = (batch + gemm::kMR - 1) / gemm::kMR * gemm::kMR;
  for (size_t li = 0; li < def_.layers.size(); ++li) {
    const LayerDef& L = def_.layers[li];
    Work& w = work_[li];
    const size_t in = static_cast<size_t>(rows) * L.in;
    const size_t out = static_cast<size_t>(rows) * L.out;
    const size_t zs = out * static_cast<size_t>(w.groups);
    if (L.hardware.dacBits > 0) w.xq.resize(in);
    if (L.hardware.readNoise()) w.x2.resize(std::max(in, zs));
    w.z.resize(zs);
    w.dz.resize(zs);
    w.pre.resize(out);
    w.out.resize(out);
    w.dpre.resize(out);
    w.dout.resize(out);
    w.xT.resize(in);
  }
  capacity_ = rows;
}

void Engine::setVariation(const Draw& draw) {
  for (size_t li = 0; li < def_.layers.size(); ++li) {
    const LayerDef& L = def_.layers[li];
    Work& w = work_[li];
    w.eps.clear();
    if (!L.dendrites.active()) continue;
    const double sigma = L.dendrites.device.variation;
    if (draw.drawVariation && sigma > 0.0) {
      w.eps.resize(static_cast<size_t>(w.groups) * L.out);
      for (float& e : w.eps) e = static_cast<float>(std::max(0.0, 1.0 + sigma * rng_.normal()));
    } else if (!draw.drawVariation && draw.eps && li < draw.eps->size() && !(*draw.eps)[li].empty()) {
      w.eps = (*draw.eps)[li];
    }
  }
}

void Engine::forwardLayer(size_t li, const float* input, int64_t batch, const Draw& draw, const float* measuredOut,
                          bool drawWeights) {
  const LayerDef& L = def_.layers[li];
  const HardwareDef& hw = L.hardware;
  Work& w = work_[li];
  const int64_t in = L.in, out = L.out, groups = w.groups, ldz = groups * out;
  w.input = input;

  // DAC: per-row abs-max scaling and quantisation (the simulator's), kept in weight units.
  const float* a = input;
  if (hw.dacBits > 0) {
    for (int64_t s = 0; s < batch; ++s) {
      float* u = w.xq.data() + s * in;
      const float scale = periphery::dacRow(input + s * in, in, hw.dacBits, u);
      for (int64_t i = 0; i < in; ++i) u[i] *= scale;
    }
    a = w.xq.data();
  }
  w.applied = a;

  // W̃: stuck cells at their values, programming error on the healthy ones (one draw for the whole pass).
  const std::vector<float>& W = params_.weight[li];
  const float* wt = W.data();
  const bool programNoise = draw.noise && hw.programError();
  if (!drawWeights && programNoise) {
    wt = w.wEff.data();  // the draw of this pass's first chunk
  } else if (hw.hasStuck() || programNoise) {
    const size_t n = W.size();
    for (size_t k = 0; k < n; ++k) {
      if (hw.hasStuck() && hw.stuck[k]) {
        w.wEff[k] = hw.stuckValue[k];
      } else if (programNoise) {
        const double sd = hw.programSigma + hw.programRelative * std::fabs(W[k]);
        w.wEff[k] = static_cast<float>(W[k] + sd * rng_.normal());
      } else {
        w.wEff[k] = W[k];
      }
    }
    wt = w.wEff.data();
  }
  w.weights = wt;

  // Branch (or plain) sums z [batch × groups × out].
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t k = w.start[g + 1] - w.start[g];
    const int32_t* rows = w.perm.data() + w.start[g];
    if (groups == 1)
      packStrided(w.packed[0], wt, in, out, out, def_.threads);
    else
      packRows(w.packed[g], wt, out, rows, k, out, def_.threads);
    mm_.run(batch, a, in, groups == 1 ? nullptr : rows, w.packed[g], Target{w.z.data() + g * out, ldz});
  }

  // Read noise: every device read afresh, N(0, Σ_i x_i² σ(W̃_ij)²) on each sum, drawn per sample and output.
  if (draw.noise && hw.readNoise()) {
    float* var = w.x2.data();  // reused: first x², then the variances
    if (hw.readRelative > 0.0) {
      gemm::FloatBuffer sq(static_cast<size_t>(batch) * in);
      for (int64_t k = 0; k < batch * in; ++k) sq[k] = a[k] * a[k];
      std::vector<float> sigma2(W.size());
      for (size_t k = 0; k < W.size(); ++k) {
        const double sd = hw.readSigma + hw.readRelative * std::fabs(wt[k]);
        sigma2[k] = static_cast<float>(sd * sd);
      }
      if (w.packedVar.size() != static_cast<size_t>(groups)) w.packedVar.resize(static_cast<size_t>(groups));
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t k = w.start[g + 1] - w.start[g];
        const int32_t* rows = w.perm.data() + w.start[g];
        packRows(w.packedVar[g], sigma2.data(), out, rows, k, out);
        mm_.run(batch, sq.data(), in, groups == 1 ? nullptr : rows, w.packedVar[g], Target{var + g * out, ldz});
      }
    } else {
      const double s2 = hw.readSigma * hw.readSigma;
      for (int64_t s = 0; s < batch; ++s)
        for (int64_t g = 0; g < groups; ++g) {
          double sum = 0.0;
          for (int32_t p = w.start[g]; p < w.start[g + 1]; ++p) {
            const double v = a[s * in + w.perm[p]];
            sum += v * v;
          }
          std::fill(var + s * ldz + g * out, var + s * ldz + (g + 1) * out, static_cast<float>(sum * s2));
        }
    }
    for (int64_t k = 0; k < batch * ldz; ++k) w.z[k] += static_cast<float>(std::sqrt(std::max(0.0f, var[k])) * rng_.normal());
  }

  // ADC: clipping at ±adcClip, then quantisation.
  if (hw.adcClip > 0.0) {
    const float c = static_cast<float>(hw.adcClip);
    float* z = w.z.data();
    for (int64_t k = 0; k < batch * ldz; ++k) z[k] = std::min(std::max(z[k], -c), c);
    if (hw.adcBits > 0) {
      const double levels = static_cast<double>((int32_t{1} << (hw.adcBits - 1)) - 1);
      const float toCode = static_cast<float>(levels / hw.adcClip), fromCode = static_cast<float>(hw.adcClip / levels);
      for (int64_t k = 0; k < batch * ldz; ++k) z[k] = periphery::roundHalfAway(z[k] * toCode) * fromCode;
    }
  }

  // Dendrites (or the plain sum) and the bias: the soma's input; then the soma.
  const std::vector<float>& bias = params_.bias[li];
  if (L.dendrites.active()) {
    const DendriteSpec& d = L.dendrites.device;
    const float kappa = static_cast<float>(d.biasScale);
    const float* eps = nullptr;
    if (!w.eps.empty()) eps = w.eps.data();
    for (int64_t s = 0; s < batch; ++s) {
      float* y = w.pre.data() + s * out;
      for (int64_t j = 0; j < out; ++j) y[j] = kappa * bias[j];
      for (int64_t g = 0; g < groups; ++g)
        dendrite::branchRow(w.consts, w.z.data() + s * ldz + g * out, 1.0f, ones_.data(),
                            eps ? eps + g * out : ones_.data(), y, scratch_.data(), out);
    }
  } else {
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t j = 0; j < out; ++j) w.pre[s * out + j] = w.z[s * out + j] + bias[j];
  }
  if (measuredOut) {
    w.outputs = measuredOut;
  } else {
    std::memcpy(w.out.data(), w.pre.data(), static_cast<size_t>(batch * out) * sizeof(float));
    periphery::activate(w.out.data(), batch * out, L.activation, L.alpha, L.beta);
    w.outputs = w.out.data();
  }
}

void Engine::backwardLayer(size_t li, int64_t batch, Params& grads, bool fromOutputs) {
  const LayerDef& L = def_.layers[li];
  const HardwareDef& hw = L.hardware;
  Work& w = work_[li];
  const int64_t in = L.in, out = L.out, groups = w.groups, ldz = groups * out;
  const double invB = 1.0 / static_cast<double>(batch);

  // dLoss/dOut (w.dout) → dLoss/dPre through the soma; the soma penalty adds λ_s·sign(out)/B.
  // (not on the last layer: its outputs are the logits the loss sees)
  const bool last = li + 1 == def_.layers.size();
  const float somaPenalty = last ? 0.0f : static_cast<float>(def_.penalty.soma * invB);
  const int64_t cells = batch * out;
  if (somaPenalty > 0.0f)
    for (int64_t k = 0; k < cells; ++k) w.dout[k] += somaPenalty * sign(w.outputs[k]);
  // One loop per activation (the switch outside, so each loop vectorises).
  auto apply = [&](auto slope) {
    const float* src = fromOutputs ? w.outputs : w.pre.data();
    for (int64_t k = 0; k < cells; ++k) w.dpre[k] = w.dout[k] * slope(src[k]);
  };
  const Activation act = L.activation;
  const float alpha = L.alpha, beta = L.beta;
  if (act == Activation::None)
    std::memcpy(w.dpre.data(), w.dout.data(), static_cast<size_t>(cells) * sizeof(float));
  else if (act == Activation::Relu)
    apply([](float v) { return v > 0.0f ? 1.0f : 0.0f; });  // pre > 0 ⇔ out > 0
  else if (fromOutputs)
    apply([&](float v) { return slopeFromOutput(act, alpha, beta, v); });
  else
    apply([&](float v) { return slopeFromInput(act, alpha, beta, v); });

  // Bias gradient (the bias enters as κ·b in a dendritic layer), summed over the rows in order.
  std::vector<float>& gb = grads.bias[li];
  const double kappa = L.dendrites.active() ? L.dendrites.device.biasScale : 1.0;
  std::vector<double> colSum(static_cast<size_t>(out), 0.0);
  for (int64_t s = 0; s < batch; ++s) {
    const float* row = w.dpre.data() + s * out;
    for (int64_t j = 0; j < out; ++j) colSum[static_cast<size_t>(j)] += row[j];
  }
  for (int64_t j = 0; j < out; ++j) gb[j] = static_cast<float>(colSum[static_cast<size_t>(j)] * kappa);

  // dLoss/dz: through the dendrites (ε·H'(z/F)), plus the branch penalty λ_b·sign(z)/(F·B); none past the ADC's clip.
  if (L.dendrites.active()) {
    const double F = L.dendrites.device.fullScale, invF = 1.0 / F;
    const float branchPenalty = static_cast<float>(def_.penalty.branch * invB * invF);
    const float* eps = w.eps.empty() ? nullptr : w.eps.data();
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t g = 0; g < groups; ++g) {
        const float* z = w.z.data() + s * ldz + g * out;
        float* dz = w.dz.data() + s * ldz + g * out;
        const float* dp = w.dpre.data() + s * out;
        for (int64_t j = 0; j < out; ++j) {
          const double e = eps ? eps[g * out + j] : 1.0;
          float v = static_cast<float>(dp[j] * e * dendriteSlope(w.consts, z[j] * invF));
          if (branchPenalty > 0.0f && !(L.dendrites.device.rectify && z[j] < 0.0f)) v += branchPenalty * sign(z[j]);
          dz[j] = v;
        }
      }
  } else {
    std::memcpy(w.dz.data(), w.dpre.data(), static_cast<size_t>(batch * out) * sizeof(float));
  }
  if (hw.adcClip > 0.0) {
    const float c = static_cast<float>(hw.adcClip);
    for (int64_t k = 0; k < batch * ldz; ++k)
      if (!(std::fabs(w.z[k]) < c)) w.dz[k] = 0.0f;
  }

  // dW = Aᵀ · dz per group (A: what multiplied W̃, after the DAC), rows back to their inputs.
  const float* a = w.applied;
  constexpr int64_t kTile = 16;  // transpose in tiles: both sides stay in cache
  for (int64_t r0 = 0; r0 < in; r0 += kTile)
    for (int64_t s0 = 0; s0 < batch; s0 += kTile) {
      const int64_t r1 = std::min(in, r0 + kTile), s1 = std::min(batch, s0 + kTile);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = w.perm[r];
        float* dst = w.xT.data() + r * batch;
        for (int64_t s = s0; s < s1; ++s) dst[s] = a[s * in + i];
      }
    }
  std::vector<float>& gw = grads.weight[li];
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t k = w.start[g + 1] - w.start[g];
    if (k == 0) continue;
    packStrided(w.packedDz, w.dz.data() + g * out, batch, out, ldz);
    mm_.run(k, w.xT.data() + w.start[g] * batch, batch, nullptr, w.packedDz,
            Target{gw.data(), out, groups == 1 ? nullptr : w.perm.data() + w.start[g]});
  }
  if (hw.hasStuck())
    for (size_t k = 0; k < gw.size(); ++k)
      if (hw.stuck[k]) gw[k] = 0.0f;

  // dLoss/dInput = dz · W̃ᵀ per group, into the previous layer's dout (straight through its DAC).
  if (li == 0) return;
  float* dx = work_[li - 1].dout.data();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t k = w.start[g + 1] - w.start[g];
    if (k == 0) continue;
    const int32_t* rows = w.perm.data() + w.start[g];
    packTransposedRows(w.packedT[g], w.weights, out, rows, out, k, def_.threads);
    mm_.run(batch, w.dz.data() + g * out, ldz, nullptr, w.packedT[g], Target{dx, in, nullptr, groups == 1 ? nullptr : rows});
  }
}

BatchResult Engine::loss(const float* out, const int32_t* labels, int64_t batch, float* grad) const {
  const int64_t m = outFeatures();
  const double t = def_.logitScale;
  BatchResult r;
  std::vector<double> p(static_cast<size_t>(m));
  for (int64_t s = 0; s < batch; ++s) {
    const float* o = out + s * m;
    double mx = -INFINITY;
    int64_t best = 0;
    for (int64_t j = 0; j < m; ++j) {
      mx = std::max(mx, t * o[j]);
      if (o[j] > o[best]) best = j;
    }
    if (best == labels[s]) ++r.correct;
    double sum = 0.0;
    for (int64_t j = 0; j < m; ++j) sum += p[j] = std::exp(t * o[j] - mx);
    r.crossEntropy += -(t * o[labels[s]] - mx - std::log(sum));
    if (grad)
      for (int64_t j = 0; j < m; ++j)
        grad[s * m + j] = static_cast<float>(t * (p[j] / sum - (j == labels[s] ? 1.0 : 0.0)) / static_cast<double>(batch));
  }
  r.crossEntropy /= static_cast<double>(batch);
  r.loss = r.crossEntropy;
  return r;
}

BatchResult Engine::gradients(const float* x, const int32_t* labels, int64_t batch, Params& grads, const Draw& draw,
                              const Measured* measured) {
  ensure(batch);
  const size_t n = def_.layers.size();
  setVariation(draw);  // one chip for the whole batch
  const float* input = x;
  for (size_t li = 0; li < n; ++li) {
    forwardLayer(li, input, batch, draw, measured ? (*measured)[li] : nullptr, true);
    input = work_[li].outputs;
  }
  BatchResult r = loss(work_[n - 1].outputs, labels, batch, work_[n - 1].dout.data());
  // The activity penalty's value (its gradient is added in backwardLayer).
  double penalty = 0.0;
  for (size_t li = 0; li < n; ++li) {
    const LayerDef& L = def_.layers[li];
    const Work& w = work_[li];
    if (def_.penalty.soma > 0.0 && li + 1 < n) {
      double sum = 0.0;
      for (int64_t k = 0; k < batch * L.out; ++k) sum += std::fabs(w.outputs[k]);
      penalty += def_.penalty.soma * sum;
    }
    if (def_.penalty.branch > 0.0 && L.dendrites.active()) {
      const double invF = 1.0 / L.dendrites.device.fullScale;
      const bool rectify = L.dendrites.device.rectify;
      double sum = 0.0;
      for (int64_t k = 0; k < batch * L.out * w.groups; ++k)
        if (!(rectify && w.z[k] < 0.0f)) sum += std::fabs(w.z[k]) * invF;
      penalty += def_.penalty.branch * sum;
    }
  }
  r.loss = r.crossEntropy + penalty / static_cast<double>(batch);
  for (size_t li = n; li-- > 0;) backwardLayer(li, batch, grads, measured != nullptr);
  return r;
}

void Engine::forward(const float* x, int64_t batch, float* out, const Draw& draw) {
  const size_t n = def_.layers.size();
  const int64_t inF = inFeatures(), outF = outFeatures();
  setVariation(draw);  // one chip for every chunk
  for (int64_t r0 = 0; r0 < batch; r0 += kEvalChunk) {
    const int64_t nr = std::min(kEvalChunk, batch - r0);
    ensure(nr);
    const float* input = x + r0 * inF;
    for (size_t li = 0; li < n; ++li) {
      forwardLayer(li, input, nr, draw, nullptr, r0 == 0);
      input = work_[li].outputs;
    }
    std::memcpy(out + r0 * outF, input, static_cast<size_t>(nr * outF) * sizeof(float));
  }
}

void Engine::forwardLayers(const float* x, int64_t batch, const Draw& draw, std::vector<std::vector<float>>& outputs,
                           std::vector<std::vector<float>>& pre, std::vector<std::vector<float>>& branch) {
  const size_t n = def_.layers.size();
  const int64_t inF = inFeatures();
  outputs.assign(n, {});
  pre.assign(n, {});
  branch.assign(n, {});
  for (size_t li = 0; li < n; ++li) {
    const LayerDef& L = def_.layers[li];
    outputs[li].resize(static_cast<size_t>(batch) * L.out);
    pre[li].resize(static_cast<size_t>(batch) * L.out);
    if (L.dendrites.active()) branch[li].resize(static_cast<size_t>(batch) * L.out * L.dendrites.count);
  }
  setVariation(draw);  // one chip for every chunk
  for (int64_t r0 = 0; r0 < batch; r0 += kEvalChunk) {
    const int64_t nr = std::min(kEvalChunk, batch - r0);
    ensure(nr);
    const float* input = x + r0 * inF;
    for (size_t li = 0; li < n; ++li) {
      forwardLayer(li, input, nr, draw, nullptr, r0 == 0);
      const Work& w = work_[li];
      const int64_t out = def_.layers[li].out;
      std::memcpy(outputs[li].data() + r0 * out, w.outputs, static_cast<size_t>(nr * out) * sizeof(float));
      std::memcpy(pre[li].data() + r0 * out, w.pre.data(), static_cast<size_t>(nr * out) * sizeof(float));
      if (!branch[li].empty())
        std::memcpy(branch[li].data() + r0 * out * w.groups, w.z.data(), static_cast<size_t>(nr * out * w.groups) * sizeof(float));
      input = w.outputs;
    }
  }
}

BatchResult Engine::evaluate(const float* x, const int32_t* labels, int64_t batch, const Draw& draw) {
  const int64_t outF = outFeatures();
  std::vector<float> out(static_cast<size_t>(batch * outF));
  forward(x, batch, out.data(), draw);
  return loss(out.data(), labels, batch, nullptr);
}

}  // namespace dendra::train
