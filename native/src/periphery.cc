#include "periphery.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace dendra::periphery {

float dacRow(const float* x, int64_t n, int32_t bits, float* u) {
  // s = max |x|, taken on the bit patterns: for non-negative floats the integer order is the float order
  // (and a NaN sorts above Infinity, so a row holding NaN gets a NaN scale). An integer max vectorises.
  uint32_t maxBits = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof b);
    b &= 0x7FFFFFFFu;
    maxBits = b > maxBits ? b : maxBits;
  }
  float s;
  std::memcpy(&s, &maxBits, sizeof s);

  if (maxBits == 0) {  // all-zero row: the crossbar output is zero
    std::fill(u, u + n, 0.0f);
    return 0.0f;
  }
  if (!std::isfinite(s)) {  // a row holding +-Infinity or NaN has no usable scale
    std::fill(u, u + n, std::numeric_limits<float>::quiet_NaN());
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float q = static_cast<float>((int32_t{1} << (bits - 1)) - 1);
  const float invQ = static_cast<float>(1.0 / static_cast<double>(q));
  // Branch-free so it vectorises: clamp with selects (a NaN maps to -q, keeping the int conversion
  // defined), and add (v0 - v0), which is 0 for finite v0 and NaN when the input was NaN.
  for (int64_t j = 0; j < n; ++j) {
    const float v0 = x[j] / s * q;
    float v = v0 > -q ? v0 : -q;
    v = v < q ? v : q;
    u[j] = roundHalfAway(v) * invQ + (v0 - v0);
  }
  return s;
}

namespace {

/** dacRowCodes' body, inlined into each instruction-set build below (branch-free loops that vectorise). */
inline __attribute__((always_inline)) float dacCodesBody(const float* x, int64_t n, int32_t bits, float* u,
                                                         int16_t* codes) {
  uint32_t maxBits = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof b);
    b &= 0x7FFFFFFFu;
    maxBits = b > maxBits ? b : maxBits;
  }
  float s;
  std::memcpy(&s, &maxBits, sizeof s);
  if (maxBits == 0 || !std::isfinite(s)) {  // all-zero row, or a row without a usable scale (as dacRow)
    std::fill(u, u + n, maxBits == 0 ? 0.0f : std::numeric_limits<float>::quiet_NaN());
    std::fill(codes, codes + n, int16_t{0});
    return maxBits == 0 ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float q = static_cast<float>((int32_t{1} << (bits - 1)) - 1);
  const float invQ = static_cast<float>(1.0 / static_cast<double>(q));
  for (int64_t j = 0; j < n; ++j) {  // the same operations as dacRow (s finite: no NaN here)
    float v = x[j] / s * q;
    v = v > -q ? v : -q;
    v = v < q ? v : q;
    const int32_t code = static_cast<int32_t>(v + std::copysign(0.49999997f, v));
    u[j] = static_cast<float>(code) * invQ;
    codes[j] = static_cast<int16_t>(code);
  }
  return s;
}

float dacCodesPortable(const float* x, int64_t n, int32_t bits, float* u, int16_t* codes) {
  return dacCodesBody(x, n, bits, u, codes);
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
__attribute__((target("avx2,fma"))) float dacCodesAvx2(const float* x, int64_t n, int32_t bits, float* u,
                                                       int16_t* codes) {
  return dacCodesBody(x, n, bits, u, codes);
}
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))) float dacCodesAvx512(
    const float* x, int64_t n, int32_t bits, float* u, int16_t* codes) {
  return dacCodesBody(x, n, bits, u, codes);
}
#endif

}  // namespace

float dacRowCodes(const float* x, int64_t n, int32_t bits, float* u, int16_t* codes) {
  return dacCodesPortable(x, n, bits, u, codes);
}

DacCodesFn dacCodesFor(cpu::Isa isa) {
#ifdef DENDRA_X86_DISPATCH
  if (isa >= cpu::Isa::Avx512) return &dacCodesAvx512;
  if (isa == cpu::Isa::Avx2) return &dacCodesAvx2;
#endif
  (void)isa;
  return &dacCodesPortable;
}

Adc makeAdc(int32_t bits, double fullScale, double vRead) {
  const double levels = static_cast<double>((int32_t{1} << (bits - 1)) - 1);
  const double step = fullScale / levels;
  Adc a;
  a.toCode = static_cast<float>(vRead / step);
  a.fromCode = static_cast<float>(step / vRead);
  a.levels = static_cast<float>(levels);
  return a;
}

void adcInPlace(const Adc& a, float* p, int64_t n) {
  // Constants in locals (p may not alias them) and no branches: the loop vectorises. A NaN maps to lo in
  // the clamp (keeping the int conversion defined) and comes back through the (c0 - c0) term.
  const float toCode = a.toCode, fromCode = a.fromCode, lo = -a.levels, hi = a.levels;
  for (int64_t j = 0; j < n; ++j) {
    const float c0 = p[j] * toCode;
    float code = c0 > lo ? c0 : lo;
    code = code < hi ? code : hi;
    p[j] = roundHalfAway(code) * fromCode + (c0 - c0);
  }
}

void activate(float* y, int64_t n, Activation act, float alpha, float beta) {
  switch (act) {
    case Activation::None:
      break;
    case Activation::Relu:
      for (int64_t j = 0; j < n; ++j) y[j] = y[j] > 0.0f ? y[j] : 0.0f;
      break;
    case Activation::LeakyRelu:
      for (int64_t j = 0; j < n; ++j) y[j] = y[j] < 0.0f ? alpha * y[j] : y[j];
      break;
    case Activation::Sigmoid:
      for (int64_t j = 0; j < n; ++j) y[j] = 1.0f / (1.0f + std::exp(-y[j]));
      break;
    case Activation::Tanh:
      for (int64_t j = 0; j < n; ++j) y[j] = std::tanh(y[j]);
      break;
    case Activation::Clip:
      for (int64_t j = 0; j < n; ++j) y[j] = std::min(std::max(y[j], alpha), beta);
      break;
    case Activation::ThresholdSoma:
      for (int64_t j = 0; j < n; ++j) {
        const float s = 2.0f / (1.0f + std::exp(-(y[j] / beta - alpha))) - 1.0f;
        y[j] = s > 0.0f ? beta * s : (std::isnan(s) ? s : 0.0f);
      }
      break;
  }
}

void applyHead(float* y, int64_t n, Head head) {
  if (head == Head::None || n <= 0) return;
  float mx = y[0];
  for (int64_t j = 1; j < n; ++j) mx = std::max(mx, y[j]);
  double sum = 0.0;
  if (head == Head::Softmax) {
    for (int64_t j = 0; j < n; ++j) {
      y[j] = std::exp(y[j] - mx);
      sum += y[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < n; ++j) y[j] *= inv;
  } else {
    for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(y[j] - mx));
    const float logSum = static_cast<float>(std::log(sum));
    for (int64_t j = 0; j < n; ++j) y[j] = (y[j] - mx) - logSum;
  }
}

void finishRow(float* y, int64_t n, float s, const float* outScale, const float* bias, Activation act, float alpha,
               float beta, Head head) {
  for (int64_t j = 0; j < n; ++j) y[j] = y[j] * s * outScale[j] + bias[j];
  activate(y, n, act, alpha, beta);
  applyHead(y, n, head);
}

}  // namespace dendra::periphery
