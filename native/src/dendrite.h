// Dendrite devices (Li et al., Nat. Nanotechnol. 15, 776, 2020), the C++ mirror of common/dendrite.ts:
// the normalised I-V i(v), the transfer y = F·ε·H(z/F) and the device's energy factor, over a row of neurons.
#pragma once

#include <cstdint>
#include <limits>

namespace dendra {

enum class DendriteKind : int32_t { Exponential = 0, ThresholdLinear = 1 };

/** A layer's dendrites (NativeDendrites); count == 0: a point-neuron layer. */
struct DendriteSpec {
  int32_t count = 0;
  DendriteKind kind = DendriteKind::Exponential;
  double alpha = 0.0;       // 50·n/(1 − n)
  double onOffRatio = 1.0;  // R >= 1
  double ratio = 1.0;       // a = voltage / onVoltage > 0
  double maxRatio = std::numeric_limits<double>::infinity();  // maxVoltage / onVoltage: the applied voltage's ceiling
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

/** Constants of one layer's devices, precomputed once. */
struct Constants {
  double invF = 1.0, fullScale = 1.0, ratio = 1.0, invRatio = 1.0, maxRatio = 1.0;
  double alpha = 0.0, invR = 1.0, oneMinusInvR = 0.0, threshold = 1.0;
  double expMinusAlpha = 1.0, invOneMinusExpMinusAlpha = 1.0;  // e^−α and 1/(1 − e^−α)
  bool linear = true;       // α ≈ 0: φ(v) = v
  bool thresholdLinear = false;
  bool rectify = false;
  double onAt = 1.0;        // normalised voltage from which a signal counts as ON (onPoint in common/dendrite.ts)
  bool avx2 = false;        // run the AVX2/FMA build of the loop (set when the CPU has it)
  bool avx512 = false;      // run the AVX-512 build (16 float lanes; set when the session's kernels are avx512+)
};

Constants constants(const DendriteSpec& d);

/**
 * One branch of a row of n neurons: for each neuron j with branch signal z_j = zRaw[j] · scale · outScale[j]
 * (weight units), adds the dendrite's output F · ε_j · H(z_j / F) to y[j] (the applied voltage saturates at the
 * device's rating: a·|u| is taken at most maxRatio, so no signal drives a device beyond its maxVoltage) and returns Σ_j (a|u|)·i(a|u|)·ε_j,
 * the devices' V·I in units of onVoltage·onCurrent. `scratch` holds n doubles. A NaN signal passes as NaN.
 */
double branchRow(const Constants& c, const float* zRaw, float scale, const float* outScale, const float* eps, float* y,
                 double* scratch, int64_t n);

}  // namespace dendrite
}  // namespace dendra
