// Derivatives for the backward pass: the soma's (every activation dendra supports, program.h) and the
// dendrite device's dH/du (common/dendrite.ts dendriteSlope, on the simulator's precomputed constants).
#pragma once

#include <cmath>

#include "../dendrite.h"
#include "../program.h"

namespace dendra::train {

/** d act(x)/dx at the soma input x (ThresholdSoma: alpha = θ, beta = scale). */
inline float slopeFromInput(Activation act, float alpha, float beta, float x) {
  switch (act) {
    case Activation::None: return 1.0f;
    case Activation::Relu: return x > 0.0f ? 1.0f : 0.0f;
    case Activation::LeakyRelu: return x > 0.0f ? 1.0f : alpha;
    case Activation::Sigmoid: {
      const float s = 1.0f / (1.0f + std::exp(-x));
      return s * (1.0f - s);
    }
    case Activation::Tanh: {
      const float t = std::tanh(x);
      return 1.0f - t * t;
    }
    case Activation::Clip: return x > alpha && x < beta ? 1.0f : 0.0f;
    case Activation::ThresholdSoma: {
      // y = β·max(2σ(x/β − θ) − 1, 0): dy/dx = 2σ(1 − σ) where 2σ − 1 > 0.
      const float s = 1.0f / (1.0f + std::exp(-(x / beta - alpha)));
      return 2.0f * s - 1.0f > 0.0f ? 2.0f * s * (1.0f - s) : 0.0f;
    }
  }
  return 1.0f;
}

/** The same slope from the activation's output y (what a chip reports), for the backward of measured passes. */
inline float slopeFromOutput(Activation act, float alpha, float beta, float y) {
  switch (act) {
    case Activation::None: return 1.0f;
    case Activation::Relu: return y > 0.0f ? 1.0f : 0.0f;
    case Activation::LeakyRelu: return y > 0.0f ? 1.0f : alpha;
    case Activation::Sigmoid: return y * (1.0f - y);
    case Activation::Tanh: return 1.0f - y * y;
    case Activation::Clip: return y > alpha && y < beta ? 1.0f : 0.0f;
    case Activation::ThresholdSoma: {
      if (!(y > 0.0f)) return 0.0f;
      const float s = 0.5f * (y / beta + 1.0f);  // y = β(2σ − 1)
      return 2.0f * s * (1.0f - s);
    }
  }
  return 1.0f;
}

/** dH/du of the layer's dendrite device at the normalised branch signal u (a rectified negative signal: 0). */
inline double dendriteSlope(const dendrite::Constants& c, double u) {
  if (c.rectify && u < 0.0) return 0.0;
  const double v = c.ratio * std::fabs(u);
  if (c.thresholdLinear) return v >= c.threshold ? 1.0 : c.invR;
  if (v >= 1.0) return 1.0;
  if (c.linear) return 1.0;  // i(v) = v/R + (1 − 1/R)·v
  // φ'(v) = α e^{αv}/(e^α − 1) = α e^{α(v−1)}/(1 − e^{−α})
  return c.invR + c.oneMinusInvR * c.alpha * std::exp(c.alpha * (v - 1.0)) * c.invOneMinusExpMinusAlpha;
}

}  // namespace dendra::train
