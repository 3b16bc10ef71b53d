#include "dendrite.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace dendra::dendrite {

namespace {

/**
 * e^x for x in [−708, 0] (callers clamp), branch-free so the loop around it vectorises: x = k·ln2 + r,
 * |r| <= ln2/2, e^r by its Taylor series to degree 8 (relative error < 3e-10: below a float's resolution, which
 * the dendrite's output is), 2^k from the exponent bits.
 */
inline double expNonPositive(double x) {
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kRound = 6755399441055744.0;  // 1.5·2^52: adding and subtracting it rounds to an integer
  const double k = (x * kLog2e + kRound) - kRound;
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  double p = 1.0 / 40320.0;  // 1/8!
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^k: t = 2^52 + (k + 1023) holds k + 1023 in its low mantissa bits; shifted into the exponent field.
  const double t = k + (1023.0 + 4503599627370496.0);
  uint64_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits <<= 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/** e^x for x in [−87, 0] in float (callers clamp): x = k·ln2 + r, e^r to degree 6 (relative error < 2e-7). */
inline float expNonPositiveF(float x) {
  constexpr float kLog2e = 1.44269504f;
  constexpr float kLn2Hi = 0.693145751953125f;
  constexpr float kLn2Lo = 1.428606765330187e-06f;
  constexpr float kRound = 12582912.0f;  // 1.5·2^23
  const float k = (x * kLog2e + kRound) - kRound;
  const float r = (x - k * kLn2Hi) - k * kLn2Lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float t = k + (127.0f + 8388608.0f);  // 2^23 + (k + 127): k + 127 in the low mantissa bits
  uint32_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits <<= 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace

Constants constants(const DendriteSpec& d) {
  Constants c;
  c.fullScale = d.fullScale;
  c.invF = 1.0 / d.fullScale;
  c.ratio = d.ratio;
  c.maxRatio = d.maxRatio;
  c.invRatio = 1.0 / d.ratio;
  c.alpha = d.alpha;
  c.invR = 1.0 / d.onOffRatio;
  c.oneMinusInvR = 1.0 - c.invR;
  c.threshold = d.threshold;
  c.linear = d.alpha < 1e-9;
  c.expMinusAlpha = std::exp(-d.alpha);
  c.invOneMinusExpMinusAlpha = c.linear ? 1.0 : 1.0 / -std::expm1(-d.alpha);
  c.thresholdLinear = d.kind == DendriteKind::ThresholdLinear;
  c.rectify = d.rectify;
  // The ON region (common/dendrite.ts, onPoint): where the device's differential conductance reaches half its
  // ON-state conductance; the switching threshold of a threshold-linear device.
  if (c.thresholdLinear) {
    c.onAt = d.threshold;
  } else if (c.linear) {
    c.onAt = 0.0;  // i(v) = v: the ON-state conductance everywhere
  } else {
    const double slope = 0.5 - c.invR;  // (1 − 1/R)·α·e^{αv}/(e^α − 1) = 0.5 − 1/R
    c.onAt = slope <= 0.0 ? 0.0 : std::clamp(std::log(slope * std::expm1(d.alpha) / (c.oneMinusInvR * d.alpha)) / d.alpha, 0.0, 1.0);
  }
  return c;
}

namespace {

/** The loop of branchRow for one device kind (a template, so each variant is a straight, vectorisable loop). */
template <bool kThresholdLinear, bool kLinear, bool kRectify>
__attribute__((always_inline)) inline double branchLoop(const Constants& c, const float* zRaw, float scale, const float* outScale, const float* eps, float* y,
                  double* scratch, int64_t n) {
  // Locals: stores to y and scratch must not be taken to alias the constants.
  const double invF = c.invF, ratio = c.ratio, invRatio = c.invRatio, alpha = c.alpha, invR = c.invR, maxRatio = c.maxRatio;
  const double oneMinusInvR = c.oneMinusInvR, threshold = c.threshold, fullScale = c.fullScale;
  const double expMinusAlpha = c.expMinusAlpha, inv = c.invOneMinusExpMinusAlpha;
  for (int64_t j = 0; j < n; ++j) {
    const double u = static_cast<double>(zRaw[j] * scale * outScale[j]) * invF;
    const double a = std::min(std::fabs(u) * ratio, maxRatio);  // the applied voltage saturates at the rating (NaN stays)
    double i;
    if constexpr (kThresholdLinear) {
      const double off = a * invR;  // computed unconditionally: the select below is then a blend
      i = a >= threshold ? a : off;
    } else {
      // φ(v) = (e^{αv} − 1)/(e^α − 1) = (e^{α(v−1)} − e^{−α}) / (1 − e^{−α}): no overflow for any α <= 700.
      const double v = std::min(a, 1.0);
      double phi = v;
      if constexpr (!kLinear) {
        const double x = alpha * (v - 1.0);
        phi = (expNonPositive(std::max(x, -708.0)) - expMinusAlpha) * inv;
      }
      const double below = a * invR + oneMinusInvR * phi;
      i = a >= 1.0 ? a : below;
    }
    const double pass = kRectify ? (u < 0.0 ? 0.0 : 1.0) : 1.0;
    const double h = i * invRatio * pass;
    y[j] += static_cast<float>(fullScale * static_cast<double>(eps[j]) * std::copysign(h, u));  // NaN in, NaN out
    scratch[j] = a * i * static_cast<double>(eps[j]) * pass;
  }
  double power = 0.0;
  for (int64_t j = 0; j < n; ++j) power += scratch[j];
  return power;
}

/**
 * The exponential device with α >= 1 in float (8 lanes under AVX2): e^{α(v−1)} − e^{−α} loses at most ~1e-7/(αv)
 * of φ to cancellation, a share of the output far below what the ADC before it resolves. Below α = 1 the
 * double loop keeps the precision small α needs.
 */
template <bool kRectify>
__attribute__((always_inline)) inline double branchLoopFloat(const Constants& c, const float* zRaw, float scale,
                                                             const float* outScale, const float* eps, float* y,
                                                             double* scratch, int64_t n) {
  const float invF = static_cast<float>(c.invF), ratio = static_cast<float>(c.ratio), maxRatio = static_cast<float>(c.maxRatio);
  const float invRatio = static_cast<float>(c.invRatio), alpha = static_cast<float>(c.alpha);
  const float invR = static_cast<float>(c.invR), oneMinusInvR = static_cast<float>(c.oneMinusInvR);
  const float fullScale = static_cast<float>(c.fullScale), expMinusAlpha = static_cast<float>(c.expMinusAlpha);
  const float inv = static_cast<float>(c.invOneMinusExpMinusAlpha);
  float* power = reinterpret_cast<float*>(scratch);  // n floats fit in n doubles
  for (int64_t j = 0; j < n; ++j) {
    const float u = zRaw[j] * scale * outScale[j] * invF;
    const float a = std::min(std::fabs(u) * ratio, maxRatio);  // the applied voltage saturates at the rating (NaN stays)
    const float v = std::min(a, 1.0f);
    const float x = alpha * (v - 1.0f);
    const float phi = (expNonPositiveF(std::max(x, -87.0f)) - expMinusAlpha) * inv;
    const float below = a * invR + oneMinusInvR * phi;
    const float i = a >= 1.0f ? a : below;
    const float pass = kRectify ? (u < 0.0f ? 0.0f : 1.0f) : 1.0f;
    const float h = i * invRatio * pass;
    y[j] += fullScale * eps[j] * std::copysign(h, u);  // NaN in, NaN out
    power[j] = a * i * eps[j] * pass;
  }
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += power[j];
  return sum;
}

/** Every variant of branchLoop, compiled for the target of the function it is expanded in. */
#define DENDRA_BRANCH_DISPATCH                                                                              \
  if (c.thresholdLinear)                                                                                    \
    return c.rectify ? branchLoop<true, false, true>(c, zRaw, scale, outScale, eps, y, scratch, n)          \
                     : branchLoop<true, false, false>(c, zRaw, scale, outScale, eps, y, scratch, n);        \
  if (c.alpha >= 1.0)                                                                                       \
    return c.rectify ? branchLoopFloat<true>(c, zRaw, scale, outScale, eps, y, scratch, n)                  \
                     : branchLoopFloat<false>(c, zRaw, scale, outScale, eps, y, scratch, n);                \
  if (c.linear)                                                                                             \
    return c.rectify ? branchLoop<false, true, true>(c, zRaw, scale, outScale, eps, y, scratch, n)          \
                     : branchLoop<false, true, false>(c, zRaw, scale, outScale, eps, y, scratch, n);        \
  return c.rectify ? branchLoop<false, false, true>(c, zRaw, scale, outScale, eps, y, scratch, n)           \
                   : branchLoop<false, false, false>(c, zRaw, scale, outScale, eps, y, scratch, n);

double branchRowPortable(const Constants& c, const float* zRaw, float scale, const float* outScale, const float* eps,
                         float* y, double* scratch, int64_t n) {
  DENDRA_BRANCH_DISPATCH
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2,fma"))) double branchRowAvx2(const Constants& c, const float* zRaw, float scale,
                                                         const float* outScale, const float* eps, float* y,
                                                         double* scratch, int64_t n) {
  DENDRA_BRANCH_DISPATCH
}
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))) double branchRowAvx512(
    const Constants& c, const float* zRaw, float scale, const float* outScale, const float* eps, float* y,
    double* scratch, int64_t n) {
  DENDRA_BRANCH_DISPATCH
}
#define DENDRA_HAS_AVX2_DENDRITE 1
#endif

}  // namespace

double branchRow(const Constants& c, const float* zRaw, float scale, const float* outScale, const float* eps, float* y,
                 double* scratch, int64_t n) {
#ifdef DENDRA_HAS_AVX2_DENDRITE
  if (c.avx512) return branchRowAvx512(c, zRaw, scale, outScale, eps, y, scratch, n);
  if (c.avx2) return branchRowAvx2(c, zRaw, scale, outScale, eps, y, scratch, n);
#endif
  return branchRowPortable(c, zRaw, scale, outScale, eps, y, scratch, n);
}

}  // namespace dendra::dendrite
