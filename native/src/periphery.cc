#include "periphery.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dendra::periphery {

float dacRow(const float* x, int64_t n, int32_t bits, float* u) {
  // s = max |x| with eight independent lanes (vectorises; NaN entries are skipped).
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) {
      const float a = std::fabs(x[i + l]);
      lane[l] = a > lane[l] ? a : lane[l];
    }
  float s = 0.0f;
  for (; i < n; ++i) s = std::fabs(x[i]) > s ? std::fabs(x[i]) : s;
  for (float l : lane) s = l > s ? l : s;

  if (!(s > 0.0f) || !std::isfinite(s)) {
    // All-zero row: the crossbar output is zero. A row holding +-Infinity has no usable scale: NaN.
    const float fill = s > 0.0f ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
    std::fill(u, u + n, fill);
    return s > 0.0f ? s : 0.0f;
  }
  const float q = static_cast<float>((int32_t{1} << (bits - 1)) - 1);
  const float invQ = static_cast<float>(1.0 / static_cast<double>(q));
  for (int64_t j = 0; j < n; ++j) {
    float v = x[j] / s * q;
    const bool nan = !(v == v);
    v = v > -q ? v : -q;  // clamp (also maps NaN to -q so the conversion below is defined)
    v = v < q ? v : q;
    const float r = roundHalfAway(v) * invQ;
    u[j] = nan ? x[j] : r;
  }
  return s;
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
  // Constants in locals: p may not alias them, which lets the loop vectorise.
  const float toCode = a.toCode, fromCode = a.fromCode, lo = -a.levels, hi = a.levels;
  for (int64_t j = 0; j < n; ++j) {
    const float in = p[j];
    float code = in * toCode;
    const bool nan = code != code;
    code = code > lo ? code : lo;  // clamp (NaN maps to lo, so the conversion in roundHalfAway is defined)
    code = code < hi ? code : hi;
    const float out = roundHalfAway(code) * fromCode;
    p[j] = nan ? in : out;
  }
}

namespace {

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

}  // namespace

void finishRow(float* y, int64_t n, float s, const float* outScale, const float* bias, Activation act, float alpha,
               float beta, Head head) {
  for (int64_t j = 0; j < n; ++j) y[j] = y[j] * s * outScale[j] + bias[j];
  activate(y, n, act, alpha, beta);
  applyHead(y, n, head);
}

}  // namespace dendra::periphery
