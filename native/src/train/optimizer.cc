#include "optimizer.h"

#include <cmath>
#include <cstring>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "../gemm.h"
#include "matmul.h"
#include "parallel.h"

namespace dendra::train {

Optimizer::Optimizer(OptimizerDef def, const Params& shape, int32_t threads)
    : def_(std::move(def)), threads_(threads < 1 ? 1 : threads), avx2_(hasAvx2(gemm::selectKernel())) {
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

namespace {

/**
 * Flush-to-zero and denormals-are-zero on this thread while it lives (x86). The moments of a parameter whose gradient
 * stops (a dead unit, a pixel that is always 0) decay geometrically through the subnormal range, and every load or
 * result there costs a microcode assist (~100 cycles): training on random-pixel inputs, Adam took 2/3 of a step (the MNIST
 * bench has few such moments). What flushing changes is below
 * 1.2e-38 in a moment, i.e. nothing a float parameter can see (its update divides by √v + ε, ε ≥ 1e-8).
 */
class FlushDenormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  FlushDenormals() : csr_(_mm_getcsr()) { _mm_setcsr(csr_ | 0x8040u); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(csr_); }

 private:
  unsigned csr_;
#endif
};

/** The three update rules over n parameters (float state; the loops vectorise). */
template <int kKind>
__attribute__((always_inline)) inline void updateLoop(float* __restrict p, const float* __restrict g, float* __restrict s1,
                                                      float* __restrict s2, size_t n, float lr, float a, float b,
                                                      float invC1, float invC2, float eps) {
  if constexpr (kKind == 0) {  // SGD: a = μ
    for (size_t k = 0; k < n; ++k) {
      const float v = a * s1[k] + g[k];
      s1[k] = v;
      p[k] -= lr * v;
    }
  } else if constexpr (kKind == 1) {  // RMSprop: a = ρ
    for (size_t k = 0; k < n; ++k) {
      const float s = a * s2[k] + (1.0f - a) * g[k] * g[k];
      s2[k] = s;
      p[k] -= lr * g[k] / (std::sqrt(s) + eps);
    }
  } else {  // Adam: a = β1, b = β2
    for (size_t k = 0; k < n; ++k) {
      const float m = a * s1[k] + (1.0f - a) * g[k];
      const float v = b * s2[k] + (1.0f - b) * g[k] * g[k];
      s1[k] = m;
      s2[k] = v;
      p[k] -= lr * (m * invC1) / (std::sqrt(v * invC2) + eps);
    }
  }
}

#define DENDRA_UPDATE_DISPATCH                                                          \
  switch (kind) {                                                                       \
    case 0: updateLoop<0>(p, g, s1, s2, n, lr, a, b, invC1, invC2, eps); break;         \
    case 1: updateLoop<1>(p, g, s1, s2, n, lr, a, b, invC1, invC2, eps); break;         \
    default: updateLoop<2>(p, g, s1, s2, n, lr, a, b, invC1, invC2, eps); break;        \
  }

void updatePortable(int kind, float* p, const float* g, float* s1, float* s2, size_t n, float lr, float a, float b,
                    float invC1, float invC2, float eps) {
  DENDRA_UPDATE_DISPATCH
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2,fma"))) void updateAvx2(int kind, float* p, const float* g, float* s1, float* s2, size_t n,
                                                    float lr, float a, float b, float invC1, float invC2, float eps) {
  DENDRA_UPDATE_DISPATCH
}
#define DENDRA_HAS_AVX2_UPDATE 1
#endif

}  // namespace

void Optimizer::update(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& s1,
                       std::vector<float>& s2, double lr, double c1, double c2) const {
  const int kind = static_cast<int>(def_.kind);
  const float a = static_cast<float>(def_.kind == OptimizerKind::Sgd ? def_.momentum
                                     : def_.kind == OptimizerKind::RmsProp ? def_.rho : def_.beta1);
  const float b = static_cast<float>(def_.beta2);
  const float invC1 = static_cast<float>(1.0 / c1), invC2 = static_cast<float>(1.0 / c2);
  const float eps = static_cast<float>(def_.epsilon);
  // Split over the threads (each range a contiguous run of parameters; the updates are independent).
  parallelFor(threads_, static_cast<int64_t>(p.size()), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    const size_t o = static_cast<size_t>(begin), n = static_cast<size_t>(end - begin);
    const FlushDenormals flush;
#ifdef DENDRA_HAS_AVX2_UPDATE
    if (avx2_) {
      updateAvx2(kind, p.data() + o, g.data() + o, s1.data() + o, s2.data() + o, n, static_cast<float>(lr), a, b, invC1,
                 invC2, eps);
      return;
    }
#endif
    updatePortable(kind, p.data() + o, g.data() + o, s1.data() + o, s2.data() + o, n, static_cast<float>(lr), a, b,
                   invC1, invC2, eps);
  });
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
