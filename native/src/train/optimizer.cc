#include "optimizer.h"

#include <cmath>
#include <utility>

namespace dendra::train {

Optimizer::Optimizer(OptimizerDef def, const Params& shape) : def_(std::move(def)) {
  auto zeros = [](const std::vector<std::vector<float>>& v) {
    std::vector<std::vector<float>> out;
    out.reserve(v.size());
    for (const auto& a : v) out.emplace_back(a.size(), 0.0f);
    return out;
  };
  first_.weight = zeros(shape.weight);
  first_.bias = zeros(shape.bias);
  if (def_.kind != OptimizerKind::Sgd) {
    second_.weight = zeros(shape.weight);
    second_.bias = zeros(shape.bias);
  }
}

double Optimizer::learningRate() const {
  if (!def_.linearDecay || def_.totalSteps <= 0) return def_.learningRate;
  const double f = 1.0 - static_cast<double>(steps_) / static_cast<double>(def_.totalSteps);
  return def_.learningRate * (f > 0.0 ? f : 0.0);
}

void Optimizer::update(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& s1,
                       std::vector<float>& s2, double lr, double c1, double c2) const {
  const size_t n = p.size();
  switch (def_.kind) {
    case OptimizerKind::Sgd: {
      const float mu = static_cast<float>(def_.momentum), eta = static_cast<float>(lr);
      for (size_t k = 0; k < n; ++k) {
        s1[k] = mu * s1[k] + g[k];
        p[k] -= eta * s1[k];
      }
      break;
    }
    case OptimizerKind::RmsProp: {
      const double rho = def_.rho, eps = def_.epsilon;
      for (size_t k = 0; k < n; ++k) {
        const double gk = g[k];
        const double s = rho * s2[k] + (1.0 - rho) * gk * gk;
        s2[k] = static_cast<float>(s);
        p[k] = static_cast<float>(p[k] - lr * gk / (std::sqrt(s) + eps));
      }
      break;
    }
    case OptimizerKind::Adam: {
      const double b1 = def_.beta1, b2 = def_.beta2, eps = def_.epsilon;
      for (size_t k = 0; k < n; ++k) {
        const double gk = g[k];
        const double m = b1 * s1[k] + (1.0 - b1) * gk;
        const double v = b2 * s2[k] + (1.0 - b2) * gk * gk;
        s1[k] = static_cast<float>(m);
        s2[k] = static_cast<float>(v);
        p[k] = static_cast<float>(p[k] - lr * (m / c1) / (std::sqrt(v / c2) + eps));
      }
      break;
    }
  }
}

void Optimizer::step(Params& params, const Params& grads, const NetDef& net) {
  const double lr = learningRate();
  ++steps_;
  const double t = static_cast<double>(steps_);
  const double c1 = 1.0 - std::pow(def_.beta1, t), c2 = 1.0 - std::pow(def_.beta2, t);
  for (size_t li = 0; li < params.weight.size(); ++li) {
    const bool second = def_.kind != OptimizerKind::Sgd;  // SGD reads no second moment
    update(params.weight[li], grads.weight[li], first_.weight[li], second ? second_.weight[li] : first_.weight[li], lr, c1, c2);
    update(params.bias[li], grads.bias[li], first_.bias[li], second ? second_.bias[li] : first_.bias[li], lr, c1, c2);
    const HardwareDef& hw = net.layers[li].hardware;
    if (hw.hasStuck())
      for (size_t k = 0; k < hw.stuck.size(); ++k)
        if (hw.stuck[k]) params.weight[li][k] = hw.stuckValue[k];
  }
}

}  // namespace dendra::train
