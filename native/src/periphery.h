// Digital periphery of a layer: DAC on the way in, ADC per tile, scaling + bias + activation + head.
#pragma once

#include <cmath>
#include <cstdint>

#include "cpu.h"
#include "program.h"

namespace dendra::periphery {

/**
 * DAC of one input row (dacBits > 0): s = max|x|; u = round(x / s * q) / q with q = 2^(bits-1) - 1,
 * clamped to [-1, 1]. Writes u (normalised, without vRead) and returns s (0 => u is all zero).
 */
float dacRow(const float* x, int64_t n, int32_t bits, float* u);

/**
 * dacRow that also writes each input's integer code c = u * q (|c| <= q <= 127 for bits <= 8): the operand of
 * the integer crossbar GEMM. A row holding NaN or ±Infinity gets codes 0 (its scale, NaN, makes the layer's
 * outputs NaN as on the float path).
 */
float dacRowCodes(const float* x, int64_t n, int32_t bits, float* u, int16_t* codes);

/** dacRowCodes built for one instruction-set level (the same results on every level). */
using DacCodesFn = float (*)(const float* x, int64_t n, int32_t bits, float* u, int16_t* codes);
DacCodesFn dacCodesFor(cpu::Isa isa);

/**
 * Per-tile ADC constants. The GEMM yields p = I / vRead; the ADC computes
 * code = clamp(round(I / step), -L, L), I = code * step, i.e. p = code * step / vRead.
 */
struct Adc {
  float toCode = 1.0f;    // vRead / step
  float fromCode = 1.0f;  // step / vRead
  float levels = 0.0f;    // L = 2^(bits-1) - 1
};

Adc makeAdc(int32_t bits, double fullScale, double vRead);

/** Quantises n tile outputs in place (normalised units: current / vRead). NaN stays NaN. */
void adcInPlace(const Adc& a, float* p, int64_t n);

/**
 * Finishes one layer row in place: y_j = acc_j * s * outScale_j + bias_j (acc in current / vRead units),
 * then the activation, then the head over the row.
 */
void finishRow(float* y, int64_t n, float s, const float* outScale, const float* bias, Activation act, float alpha,
               float beta, Head head);

/** The activation, in place (Activation::ThresholdSoma: alpha = θ, beta = scale). */
void activate(float* y, int64_t n, Activation act, float alpha, float beta);

/** The head over one row, in place. */
void applyHead(float* y, int64_t n, Head head);

/**
 * Round half away from zero (symmetric quantiser) for |x| < 2^31 (callers clamp first):
 * trunc(x + copysign(0.5 - 2^-25, x)). Adding the float just below 0.5 keeps x = 0.49999997 at 0 while
 * exact halves still round away (the sum is a tie that rounds to the even, integral, float).
 * Branch-free, so the loops around it vectorise.
 */
inline float roundHalfAway(float x) {
  return static_cast<float>(static_cast<int32_t>(x + std::copysign(0.49999997f, x)));
}

}  // namespace dendra::periphery
