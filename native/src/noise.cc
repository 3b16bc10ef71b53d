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

// r² = -2 ln(u) with u = 2^e (1 + x), x in [sqrt(1/2) - 1, sqrt(2) - 1): -2 ln(1 + x) = x * R(x), R a degree-6
// fit of -2 ln(1 + x) / x (relative error ~1e-6); angle polynomials from Cephes sinf / cosf on [-pi/4, pi/4].
// Both kernels evaluate the same formulas (the AVX2 one fuses multiply-adds and takes sqrt through rsqrt plus
// one Newton step), so they agree to a few float ulps.
constexpr float kR0 = -2.0000019073486328f, kR1 = 1.000022292137146f, kR2 = -0.6662901639938354f,
                kR3 = 0.4981948435306549f, kR4 = -0.40992650389671326f, kR5 = 0.3733574151992798f,
                kR6 = -0.237922802567482f;
constexpr float kMinus2Ln2 = -1.3862943611198906f;
constexpr float kSqrtHalf = 0.707106781186547524f;
constexpr float kSin0 = -1.9515295891E-4f, kSin1 = 8.3321608736E-3f, kSin2 = -1.6666654611E-1f;
constexpr float kCos0 = 2.443315711809948E-5f, kCos1 = -1.388731625493765E-3f, kCos2 = 4.166664568298827E-2f;
// Angle within a quadrant from 22 bits f: y = (f + 0.5) * (pi/2) / 2^22 - pi/4, in (-pi/4, pi/4).
constexpr float kAngleScale = 1.5707963267948966f / 4194304.0f;
constexpr float kAngleOffset = 1.5707963267948966f / 8388608.0f - 0.7853981633974483f;
constexpr uint32_t kSwapBit = 1u << 29, kSign0Bit = 1u << 31, kSign1Bit = 1u << 30;

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

/** Box-Muller of one pair of words: radius² and the unit vector (x, y). */
inline void boxMuller(uint32_t hi, uint32_t lo, float& r2, float& x, float& y) {
  const float u = static_cast<float>(static_cast<int32_t>(hi >> 1)) * 0x1p-31f + 0x1p-32f;  // (0, 1]
  uint32_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  int32_t e = static_cast<int32_t>(bits >> 23) - 126;
  const uint32_t mb = (bits & 0x007FFFFFu) | 0x3F000000u;  // mantissa in [0.5, 1)
  float m;
  std::memcpy(&m, &mb, sizeof m);
  float t;
  if (m < kSqrtHalf) {
    e -= 1;
    t = m + m - 1.0f;
  } else {
    t = m - 1.0f;
  }
  const float poly = (((((kR6 * t + kR5) * t + kR4) * t + kR3) * t + kR2) * t + kR1) * t + kR0;
  r2 = std::max(0.0f, static_cast<float>(e) * kMinus2Ln2 + t * poly);

  const float a = static_cast<float>(static_cast<int32_t>(lo & 0x3FFFFFu)) * kAngleScale + kAngleOffset;
  const float a2 = a * a;
  const float sn = ((kSin0 * a2 + kSin1) * a2 + kSin2) * a2 * a + a;
  const float cs = ((kCos0 * a2 + kCos1) * a2 + kCos2) * a2 * a2 + (1.0f - 0.5f * a2);
  // a uniformly random symmetry of the square (quarter turns and a reflection) spreads a over the circle
  x = (lo & kSwapBit) ? sn : cs;
  y = (lo & kSwapBit) ? cs : sn;
  if (lo & kSign0Bit) x = -x;
  if (lo & kSign1Bit) y = -y;
}

void addScalar(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t half) {
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ld;
    const float* si = s + i * ld;
    for (int64_t p = 0; p < half; p += kLanes) {
      uint32_t hi[kLanes], lo[kLanes];
      step(st[i].s, hi);
      step(st[i].s, lo);
      const int64_t n = std::min<int64_t>(kLanes, half - p);
      for (int64_t l = 0; l < n; ++l) {
        float r2, x, y;
        boxMuller(hi[l], lo[l], r2, x, y);
        ci[p + l] += std::sqrt(si[p + l] * r2) * x;
        ci[p + half + l] += std::sqrt(si[p + half + l] * r2) * y;
      }
    }
  }
}

#ifdef DENDRA_X86_DISPATCH

#define DENDRA_AVX2 __attribute__((target("avx2,fma")))

struct Vec8 {
  __m256 r2, x, y;
};

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

DENDRA_AVX2 inline Vec8 boxMullerAvx2(__m256i hi, __m256i lo) {
  const __m256 u = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(hi, 1)), _mm256_set1_ps(0x1p-31f),
                                   _mm256_set1_ps(0x1p-32f));
  const __m256i bits = _mm256_castps_si256(u);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126));
  const __m256 m = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x3F000000)));
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(kSqrtHalf), _CMP_LT_OQ);
  e = _mm256_add_epi32(e, _mm256_castps_si256(small));  // -1 where small
  const __m256 t = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(small, m)), _mm256_set1_ps(1.0f));
  __m256 poly = _mm256_fmadd_ps(_mm256_set1_ps(kR6), t, _mm256_set1_ps(kR5));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kR4));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kR3));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kR2));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kR1));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kR0));
  Vec8 v;
  v.r2 = _mm256_max_ps(_mm256_fmadd_ps(t, poly, _mm256_mul_ps(_mm256_cvtepi32_ps(e), _mm256_set1_ps(kMinus2Ln2))),
                       _mm256_setzero_ps());

  const __m256 a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(lo, _mm256_set1_epi32(0x3FFFFF))),
                                   _mm256_set1_ps(kAngleScale), _mm256_set1_ps(kAngleOffset));
  const __m256 a2 = _mm256_mul_ps(a, a);
  __m256 sn = _mm256_fmadd_ps(_mm256_set1_ps(kSin0), a2, _mm256_set1_ps(kSin1));
  sn = _mm256_fmadd_ps(sn, a2, _mm256_set1_ps(kSin2));
  sn = _mm256_fmadd_ps(_mm256_mul_ps(sn, a2), a, a);
  __m256 cs = _mm256_fmadd_ps(_mm256_set1_ps(kCos0), a2, _mm256_set1_ps(kCos1));
  cs = _mm256_fmadd_ps(cs, a2, _mm256_set1_ps(kCos2));
  cs = _mm256_fmadd_ps(_mm256_mul_ps(cs, a2), a2, _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), a2, _mm256_set1_ps(1.0f)));
  const __m256 swap = _mm256_castsi256_ps(_mm256_slli_epi32(lo, 2));  // blendv reads bit 29 moved to the top
  const __m256 sign0 = _mm256_castsi256_ps(_mm256_and_si256(lo, _mm256_set1_epi32(static_cast<int>(kSign0Bit))));
  const __m256 sign1 = _mm256_castsi256_ps(
      _mm256_and_si256(_mm256_slli_epi32(lo, 1), _mm256_set1_epi32(static_cast<int>(kSign0Bit))));
  v.x = _mm256_xor_ps(_mm256_blendv_ps(cs, sn, swap), sign0);
  v.y = _mm256_xor_ps(_mm256_blendv_ps(sn, cs, swap), sign1);
  return v;
}

/** c + sqrt(var * r2) * dir, sqrt through rsqrt and one Newton step (0 stays 0). */
DENDRA_AVX2 inline __m256 addScaled(__m256 c, __m256 var, __m256 r2, __m256 dir) {
  const __m256 x = _mm256_mul_ps(var, r2);
  const __m256 y = _mm256_rsqrt_ps(_mm256_max_ps(x, _mm256_set1_ps(FLT_MIN)));
  const __m256 h = _mm256_mul_ps(x, y);  // ~ sqrt(x)
  const __m256 k = _mm256_fnmadd_ps(_mm256_mul_ps(h, y), _mm256_set1_ps(0.5f), _mm256_set1_ps(1.5f));
  return _mm256_fmadd_ps(_mm256_mul_ps(h, dir), k, c);
}

DENDRA_AVX2 void addAvx2(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t half) {
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ld;
    const float* si = s + i * ld;
    __m256i s0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[0]));
    __m256i s1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[1]));
    __m256i s2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[2]));
    __m256i s3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[3]));
    int64_t p = 0;
    for (; p + kLanes <= half; p += kLanes) {
      const __m256i hi = stepAvx2(s0, s1, s2, s3);
      const __m256i lo = stepAvx2(s0, s1, s2, s3);
      const Vec8 v = boxMullerAvx2(hi, lo);
      float* c0 = ci + p;
      float* c1 = ci + p + half;
      _mm256_storeu_ps(c0, addScaled(_mm256_loadu_ps(c0), _mm256_loadu_ps(si + p), v.r2, v.x));
      _mm256_storeu_ps(c1, addScaled(_mm256_loadu_ps(c1), _mm256_loadu_ps(si + p + half), v.r2, v.y));
    }
    if (p < half) {  // a partial step: through buffers (the two halves of c may be closer than 8 floats)
      const int64_t n = half - p;
      alignas(32) float b[4][kLanes] = {};
      for (int64_t l = 0; l < n; ++l) {
        b[0][l] = ci[p + l];
        b[1][l] = si[p + l];
        b[2][l] = ci[p + half + l];
        b[3][l] = si[p + half + l];
      }
      const __m256i hi = stepAvx2(s0, s1, s2, s3);
      const __m256i lo = stepAvx2(s0, s1, s2, s3);
      const Vec8 v = boxMullerAvx2(hi, lo);
      _mm256_store_ps(b[0], addScaled(_mm256_load_ps(b[0]), _mm256_load_ps(b[1]), v.r2, v.x));
      _mm256_store_ps(b[2], addScaled(_mm256_load_ps(b[2]), _mm256_load_ps(b[3]), v.r2, v.y));
      for (int64_t l = 0; l < n; ++l) {
        ci[p + l] = b[0][l];
        ci[p + half + l] = b[2][l];
      }
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
