#include "noise.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace dendra::noise {

void seed(RowState& st, uint64_t key) {
  uint32_t* w = &st.s[0][0];
  for (int j = 0; j < 2 * kLanes; ++j) {
    const uint64_t v = streamKey(key, static_cast<uint64_t>(j));
    w[2 * j] = static_cast<uint32_t>(v);
    w[2 * j + 1] = static_cast<uint32_t>(v >> 32);
  }
  for (int l = 0; l < kLanes; ++l)
    if ((st.s[0][l] | st.s[1][l] | st.s[2][l] | st.s[3][l]) == 0) st.s[0][l] = 0x9E3779B9u;
}

namespace {

// Box-Muller with the factor 1/2 folded in: h = -ln(u) = r²/2 and the unit vector (cos, sin)(b + pi/4) =
// ((cos b - sin b), (sin b + cos b)) / sqrt(2) for b uniform in [-pi/4, pi/4), so that
//   x = sqrt(h) * (cos b - sin b),  y = sqrt(h) * (sin b + cos b)
// are two independent N(0, 1) values once each gets a random sign (the signs spread b + pi/4 over the circle).
// ln(u) = k ln 2 + ln(1 + t), t in [sqrt(1/2) - 1, sqrt(2) - 1); -ln(1 + t) = t * P(t), P a degree-5 fit
// (|error| < 2e-6); sin and cos of b by degree-5 / degree-6 fits (|error| < 1e-6). Both kernels evaluate the
// same formulas; the AVX2 one fuses multiply-adds and takes sqrt(v) as v * rsqrt(v) (the hardware estimate,
// relative error < 4e-4 on the amplitude), so the two agree to that.
constexpr float kP0 = -1.000012755393982f, kP1 = 0.4998505115509033f, kP2 = -0.33225876092910767f,
                kP3 = 0.2547248303890228f, kP4 = -0.22330033779144287f, kP5 = 0.143197163939476f;
constexpr float kMinusLn2 = -0.6931471805599453f;
constexpr uint32_t kSqrtHalfBits = 0x3F3504F3u;  // sqrt(1/2)
constexpr float kS1 = -0.16662833094596863f, kS2 = 0.008152991533279419f;
constexpr float kC1 = -0.49999895691871643f, kC2 = 0.04165629297494888f, kC3 = -0.0013597821816802025f;
// b = f * pi/2 - 3 pi/4 for f in [1, 2) built from 23 random mantissa bits
constexpr float kHalfPi = 1.5707963267948966f, kMinus3QuarterPi = -2.356194490192345f;
constexpr uint32_t kSignBit = 0x80000000u;

/** One xoshiro128+ step of all lanes. */
inline void step(uint32_t (&s)[4][kLanes], uint32_t* out) {
  for (int l = 0; l < kLanes; ++l) {
    out[l] = s[0][l] + s[3][l];
    const uint32_t t = s[1][l] << 9;
    s[2][l] ^= s[0][l];
    s[3][l] ^= s[1][l];
    s[1][l] ^= s[2][l];
    s[0][l] ^= s[3][l];
    s[2][l] ^= t;
    s[3][l] = (s[3][l] << 11) | (s[3][l] >> 21);
  }
}

inline float fromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

inline uint32_t toBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

/**
 * Box-Muller of one pair of words: h = -ln(u) (u from hi's top 31 bits, in (0, 1]) and the signed directions
 * (x, y) (b from lo's low 23 bits; x's sign from lo's bit 31, y's from hi's bit 0).
 */
inline void boxMuller(uint32_t hi, uint32_t lo, float& h, float& x, float& y) {
  const float u = static_cast<float>(static_cast<int32_t>(hi >> 1)) * 0x1p-31f + 0x1p-32f;
  const int32_t ix = static_cast<int32_t>(toBits(u) - kSqrtHalfBits);
  const int32_t k = ix >> 23;  // arithmetic: u = 2^k z, z in [sqrt(1/2), sqrt(2))
  const float t = fromBits(toBits(u) - (static_cast<uint32_t>(ix) & 0xFF800000u)) - 1.0f;
  const float poly = ((((kP5 * t + kP4) * t + kP3) * t + kP2) * t + kP1) * t + kP0;
  h = std::max(0.0f, static_cast<float>(k) * kMinusLn2 + t * poly);  // >= 0 anyway, up to rounding

  const float b = fromBits((lo & 0x007FFFFFu) | 0x3F800000u) * kHalfPi + kMinus3QuarterPi;
  const float b2 = b * b;
  const float sn = (kS2 * b2 + kS1) * (b * b2) + b;
  const float cs = ((kC3 * b2 + kC2) * b2 + kC1) * b2 + 1.0f;
  x = fromBits(toBits(cs - sn) ^ (lo & kSignBit));
  y = fromBits(toBits(sn + cs) ^ (hi << 31));
}

void addScalar(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ld;
    const float* si = s + i * ld;
    for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
      uint32_t hi[kLanes], lo[kLanes];
      step(st[i].s, hi);
      step(st[i].s, lo);
      for (int l = 0; l < kLanes; ++l) {
        float h, x, y;
        boxMuller(hi[l], lo[l], h, x, y);
        ci[j0 + l] += std::sqrt(si[j0 + l] * h) * x;
        ci[j0 + kLanes + l] += std::sqrt(si[j0 + kLanes + l] * h) * y;
      }
    }
  }
}

#ifdef DENDRA_X86_DISPATCH

#define DENDRA_AVX2 __attribute__((target("avx2,fma")))

DENDRA_AVX2 inline __m256i stepAvx2(__m256i& s0, __m256i& s1, __m256i& s2, __m256i& s3) {
  const __m256i out = _mm256_add_epi32(s0, s3);
  const __m256i t = _mm256_slli_epi32(s1, 9);
  s2 = _mm256_xor_si256(s2, s0);
  s3 = _mm256_xor_si256(s3, s1);
  s1 = _mm256_xor_si256(s1, s2);
  s0 = _mm256_xor_si256(s0, s3);
  s2 = _mm256_xor_si256(s2, t);
  s3 = _mm256_or_si256(_mm256_slli_epi32(s3, 11), _mm256_srli_epi32(s3, 21));
  return out;
}

/** One step's 16 columns at c / s: 8 Box-Muller pairs, x to c[0, 8), y to c[8, 16). */
DENDRA_AVX2 inline void blockAvx2(__m256i hi, __m256i lo, float* c, const float* s) {
  const __m256 u = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(hi, 1)), _mm256_set1_ps(0x1p-31f),
                                   _mm256_set1_ps(0x1p-32f));
  const __m256i ix = _mm256_sub_epi32(_mm256_castps_si256(u), _mm256_set1_epi32(static_cast<int>(kSqrtHalfBits)));
  const __m256 t = _mm256_sub_ps(
      _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(u),
                                           _mm256_and_si256(ix, _mm256_set1_epi32(static_cast<int>(0xFF800000u))))),
      _mm256_set1_ps(1.0f));
  const __m256 t2 = _mm256_mul_ps(t, t);  // Estrin: a shorter dependency chain than Horner
  const __m256 p01 = _mm256_fmadd_ps(_mm256_set1_ps(kP1), t, _mm256_set1_ps(kP0));
  const __m256 p23 = _mm256_fmadd_ps(_mm256_set1_ps(kP3), t, _mm256_set1_ps(kP2));
  const __m256 p45 = _mm256_fmadd_ps(_mm256_set1_ps(kP5), t, _mm256_set1_ps(kP4));
  const __m256 poly = _mm256_fmadd_ps(_mm256_fmadd_ps(p45, t2, p23), t2, p01);
  // h >= 0: t * poly >= 0 for k = 0 (t <= 0), and k ln 2 outweighs ln(1 + t) for k < 0
  const __m256 h = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srai_epi32(ix, 23)), _mm256_set1_ps(kMinusLn2),
                                   _mm256_mul_ps(t, poly));

  const __m256 b = _mm256_fmadd_ps(
      _mm256_castsi256_ps(
          _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x3F800000))),
      _mm256_set1_ps(kHalfPi), _mm256_set1_ps(kMinus3QuarterPi));
  const __m256 b2 = _mm256_mul_ps(b, b);
  const __m256 sn = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(kS2), b2, _mm256_set1_ps(kS1)), _mm256_mul_ps(b, b2), b);
  __m256 cs = _mm256_fmadd_ps(_mm256_set1_ps(kC3), b2, _mm256_set1_ps(kC2));
  cs = _mm256_fmadd_ps(cs, b2, _mm256_set1_ps(kC1));
  cs = _mm256_fmadd_ps(cs, b2, _mm256_set1_ps(1.0f));
  const __m256 x = _mm256_xor_ps(_mm256_sub_ps(cs, sn),
                                 _mm256_castsi256_ps(_mm256_and_si256(lo, _mm256_set1_epi32(static_cast<int>(kSignBit)))));
  const __m256 y = _mm256_xor_ps(_mm256_add_ps(sn, cs), _mm256_castsi256_ps(_mm256_slli_epi32(hi, 31)));

  // c + sqrt(var * h) * dir with sqrt(v) = v * rsqrt(v) (0 stays 0)
  const __m256 v0 = _mm256_mul_ps(_mm256_loadu_ps(s), h);
  const __m256 v1 = _mm256_mul_ps(_mm256_loadu_ps(s + kLanes), h);
  const __m256 g0 = _mm256_rsqrt_ps(_mm256_max_ps(v0, _mm256_set1_ps(FLT_MIN)));
  const __m256 g1 = _mm256_rsqrt_ps(_mm256_max_ps(v1, _mm256_set1_ps(FLT_MIN)));
  _mm256_storeu_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(v0, x), g0, _mm256_loadu_ps(c)));
  _mm256_storeu_ps(c + kLanes, _mm256_fmadd_ps(_mm256_mul_ps(v1, y), g1, _mm256_loadu_ps(c + kLanes)));
}

DENDRA_AVX2 void addAvx2(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ld;
    const float* si = s + i * ld;
    __m256i s0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[0]));
    __m256i s1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[1]));
    __m256i s2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[2]));
    __m256i s3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[3]));
    for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
      const __m256i hi = stepAvx2(s0, s1, s2, s3);
      const __m256i lo = stepAvx2(s0, s1, s2, s3);
      blockAvx2(hi, lo, ci + j0, si + j0);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[0]), s0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[1]), s1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[2]), s2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[3]), s3);
  }
}

#undef DENDRA_AVX2

#endif  // DENDRA_X86_DISPATCH

}  // namespace

Kernel selectKernel() {
  const char* force = std::getenv("DENDRA_NATIVE_KERNEL");
  if (force && std::strcmp(force, "scalar") == 0) return Kernel{"scalar", &addScalar};
#ifdef DENDRA_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernel{"avx2-fma", &addAvx2};
#endif
  return Kernel{"scalar", &addScalar};
}

}  // namespace dendra::noise
