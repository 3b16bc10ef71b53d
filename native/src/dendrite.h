// Dendrite devices (Li et al., Nat. Nanotechnol. 15, 776, 2020), the C++ mirror of common/dendrite.ts:
// the normalised I-V i(v), the transfer y = F·ε·H(z/F) and the device's energy factor.
#pragma once

#include <cmath>
#include <cstdint>

namespace dendra {

enum class DendriteKind : int32_t { Exponential = 0, ThresholdLinear = 1 };

/** A layer's dendrites (NativeDendrites); count == 0: a point-neuron layer. */
struct DendriteSpec {
  int32_t count = 0;
  DendriteKind kind = DendriteKind::Exponential;
  double alpha = 0.0;       // 50·n/(1 − n)
  double onOffRatio = 1.0;  // R >= 1
  double ratio = 1.0;       // a = voltage / onVoltage > 0
  double threshold = 1.0;   // threshold-linear switching voltage, normalised, (0, 1]
  bool rectify = false;
  double variation = 0.0;   // σ of each device's factor ε ~ N(1, σ²), clamped at 0
  double fullScale = 1.0;   // F > 0
  double biasScale = 1.0;   // κ
  double energyUnit = 0.0;  // onVoltage · onCurrent · time (J)
  bool bypass = false;      // the same network without dendrite devices
  bool active() const { return count > 0; }
};

namespace dendrite {

/** i(v) for v >= 0; expm1Alpha = e^α − 1 (precomputed). */
inline double current(const DendriteSpec& d, double expm1Alpha, double v) {
  if (d.kind == DendriteKind::ThresholdLinear) return v >= d.threshold ? v : v / d.onOffRatio;
  if (v >= 1.0) return v;
  const double phi = d.alpha < 1e-9 ? v : std::expm1(d.alpha * v) / expm1Alpha;
  return v / d.onOffRatio + (1.0 - 1.0 / d.onOffRatio) * phi;
}

/**
 * One dendrite: its output y (weight units) for branch signal z, and in power += (a|u|)·i(a|u|)·ε, the
 * device's V·I in units of onVoltage·onCurrent. NaN in, NaN out (power unchanged).
 */
inline float transfer(const DendriteSpec& d, double expm1Alpha, float z, float eps, double& power) {
  const double u = static_cast<double>(z) / d.fullScale;
  if (d.rectify && u < 0.0) return 0.0f;
  if (std::isnan(u)) return z;
  const double v = d.ratio * std::fabs(u);
  const double i = current(d, expm1Alpha, v);
  power += v * i * eps;
  const double h = i / d.ratio;
  return static_cast<float>(d.fullScale * eps * (u < 0.0 ? -h : h));
}

}  // namespace dendrite
}  // namespace dendra
