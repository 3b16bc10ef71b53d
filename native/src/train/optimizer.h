// Optimizers for the training engine, each as its paper states the update (per parameter θ, gradient g, step t):
//   SGD with momentum (Polyak 1964; the form of Sutskever et al. 2013 / PyTorch): v ← μ·v + g;  θ ← θ − η·v
//   RMSprop (Tieleman & Hinton 2012, lecture 6.5): s ← ρ·s + (1 − ρ)·g²;  θ ← θ − η·g / (√s + ε)
//   Adam (Kingma & Ba 2015, Algorithm 1): m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
//        θ ← θ − η·m̂ / (√v̂ + ε),  m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)
// The step η is constant or falls linearly: η_t = η·(1 − (t − 1)/T) over T steps.
#pragma once

#include <cstdint>
#include <vector>

#include "net.h"

namespace dendra::train {

enum class OptimizerKind : int32_t { Sgd = 0, RmsProp = 1, Adam = 2 };

struct OptimizerDef {
  OptimizerKind kind = OptimizerKind::Adam;
  double learningRate = 1e-3;
  double momentum = 0.0;  // SGD
  double rho = 0.9;       // RMSprop
  double beta1 = 0.9, beta2 = 0.999;  // Adam
  double epsilon = 1e-8;  // RMSprop, Adam
  bool linearDecay = false;
  int64_t totalSteps = 0;  // T of the linear decay (> 0 when linearDecay)
};

class Optimizer {
 public:
  /** threads: how many threads share an update (large layers only). */
  Optimizer(OptimizerDef def, const Params& shape, int32_t threads = 1);

  /**
   * One update of every parameter from grads; then the parameters of stuck cells (per layer, `stuck` with
   * their `stuckValue`) are set back to those values.
   */
  void step(Params& params, const Params& grads, const NetDef& net);

  int64_t steps() const { return steps_; }
  /** The step size the next update uses. */
  double learningRate() const;
  const OptimizerDef& def() const { return def_; }

 private:
  void update(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& s1, std::vector<float>& s2,
              double lr, double c1, double c2) const;

  OptimizerDef def_;
  int32_t threads_ = 1;
  bool avx2_ = false;  // run the AVX2/FMA build of the update loops (the CPU check of the GEMM kernel)
  int64_t steps_ = 0;
  Params first_, second_;  // momentum / running squares, per parameter
};

}  // namespace dendra::train
