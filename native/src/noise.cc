#include "noise.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace dendra::noise {

namespace {

// Polynomials (Cephes logf / sinf / cosf), accurate to a few float ulps on their ranges. Both kernels
// evaluate the same formulas, so they agree to rounding (the AVX2 one fuses multiply-adds).
constexpr float kSqrtHalf = 0.707106781186547524f;
constexpr float kLog0 = 7.0376836292E-2f, kLog1 = -1.1514610310E-1f, kLog2 = 1.1676998740E-1f,
                kLog3 = -1.2420140846E-1f, kLog4 = 1.4249322787E-1f, kLog5 = -1.6668057665E-1f,
                kLog6 = 2.0000714765E-1f, kLog7 = -2.4999993993E-1f, kLog8 = 3.3333331174E-1f;
constexpr float kLn2Lo = -2.12194440e-4f, kLn2Hi = 0.693359375f;
constexpr float kSin0 = -1.9515295891E-4f, kSin1 = 8.3321608736E-3f, kSin2 = -1.6666654611E-1f;
constexpr float kCos0 = 2.443315711809948E-5f, kCos1 = -1.388731625493765E-3f, kCos2 = 4.166664568298827E-2f;
// Angle within a quadrant from 22 bits f: y = (f + 0.5) * (pi/2) / 2^22 - pi/4, in (-pi/4, pi/4).
constexpr float kAngleScale = 1.5707963267948966f / 4194304.0f;
constexpr float kAngleOffset = 1.5707963267948966f / 8388608.0f - 0.7853981633974483f;

/** ln(u) for u in (0, 1], u a normal float. */
inline float logUnit(float u) {
  uint32_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  int32_t e = static_cast<int32_t>(bits >> 23) - 126;
  const uint32_t mb = (bits & 0x007FFFFFu) | 0x3F000000u;  // mantissa in [0.5, 1)
  float m;
  std::memcpy(&m, &mb, sizeof m);
  float x;
  if (m < kSqrtHalf) {
    e -= 1;
    x = m + m - 1.0f;
  } else {
    x = m - 1.0f;
  }
  const float z = x * x;
  float y = ((((((((kLog0 * x + kLog1) * x + kLog2) * x + kLog3) * x + kLog4) * x + kLog5) * x + kLog6) * x + kLog7) *
                 x +
             kLog8) *
            x * z;
  const float fe = static_cast<float>(e);
  y += kLn2Lo * fe;
  y += -0.5f * z;
  return x + y + kLn2Hi * fe;
}

/** The two normals of one 64-bit word. */
inline void normals(uint64_t w, float& z0, float& z1) {
  const uint32_t hi = static_cast<uint32_t>(w >> 32);
  const uint32_t lo = static_cast<uint32_t>(w);
  const float u1 = static_cast<float>(static_cast<int32_t>(hi >> 1)) * 0x1p-31f + 0x1p-32f;  // (0, 1]
  const float l = logUnit(u1);
  const float r = std::sqrt(l < 0.0f ? -2.0f * l : 0.0f);
  const uint32_t q = lo >> 30;
  const float y = static_cast<float>(static_cast<int32_t>(lo & 0x3FFFFFu)) * kAngleScale + kAngleOffset;
  const float z = y * y;
  const float s = ((kSin0 * z + kSin1) * z + kSin2) * z * y + y;
  const float c = ((kCos0 * z + kCos1) * z + kCos2) * z * z - 0.5f * z + 1.0f;
  // rotate (cos y, sin y) by q quarter turns
  float x0 = (q & 1u) ? s : c;
  float x1 = (q & 1u) ? c : s;
  if ((q + 1u) & 2u) x0 = -x0;  // q = 1, 2
  if (q & 2u) x1 = -x1;         // q = 2, 3
  z0 = r * x0;
  z1 = r * x1;
}

void addScalar(uint64_t key, uint64_t counter, float* c, const float* s, int64_t half) {
  uint64_t x = key + (counter + 1) * kGolden;
  for (int64_t p = 0; p < half; ++p, x += kGolden) {
    float z0, z1;
    normals(mix64(x), z0, z1);
    c[p] += std::sqrt(s[p]) * z0;
    c[p + half] += std::sqrt(s[p + half]) * z1;
  }
}

#ifdef DENDRA_X86_DISPATCH

#define DENDRA_AVX2 __attribute__((target("avx2,fma")))

/** a * b (mod 2^64) per 64-bit lane, b a constant. */
DENDRA_AVX2 inline __m256i mul64(__m256i a, __m256i bLo, __m256i bHi) {
  const __m256i lo = _mm256_mul_epu32(a, bLo);
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), bLo), _mm256_mul_epu32(a, bHi));
  return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

DENDRA_AVX2 inline __m256i mix64x4(__m256i z) {
  const __m256i c1Lo = _mm256_set1_epi64x(0xBF58476D1CE4E5B9ull & 0xFFFFFFFFull);
  const __m256i c1Hi = _mm256_set1_epi64x(0xBF58476D1CE4E5B9ull >> 32);
  const __m256i c2Lo = _mm256_set1_epi64x(0x94D049BB133111EBull & 0xFFFFFFFFull);
  const __m256i c2Hi = _mm256_set1_epi64x(0x94D049BB133111EBull >> 32);
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), c1Lo, c1Hi);
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), c2Lo, c2Hi);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

DENDRA_AVX2 void addAvx2(uint64_t key, uint64_t counter, float* c, const float* s, int64_t half) {
  const uint64_t x0 = key + (counter + 1) * kGolden;
  __m256i xa = _mm256_setr_epi64x(static_cast<long long>(x0), static_cast<long long>(x0 + kGolden),
                                  static_cast<long long>(x0 + 2 * kGolden), static_cast<long long>(x0 + 3 * kGolden));
  __m256i xb = _mm256_add_epi64(xa, _mm256_set1_epi64x(static_cast<long long>(4 * kGolden)));
  const __m256i step = _mm256_set1_epi64x(static_cast<long long>(8 * kGolden));
  const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);

  const __m256i mantMask = _mm256_set1_epi32(0x007FFFFF), half32 = _mm256_set1_epi32(0x3F000000);
  const __m256i bias = _mm256_set1_epi32(126), angleMask = _mm256_set1_epi32(0x3FFFFF);
  const __m256i one32 = _mm256_set1_epi32(1), two32 = _mm256_set1_epi32(2);
  const __m256 one = _mm256_set1_ps(1.0f), sqrtHalf = _mm256_set1_ps(kSqrtHalf), zero = _mm256_setzero_ps();

  int64_t p = 0;
  for (; p + 8 <= half; p += 8) {
    const __m256i wa = _mm256_permutevar8x32_epi32(mix64x4(xa), split);  // lo0..lo3 hi0..hi3
    const __m256i wb = _mm256_permutevar8x32_epi32(mix64x4(xb), split);
    xa = _mm256_add_epi64(xa, step);
    xb = _mm256_add_epi64(xb, step);
    const __m256i lo = _mm256_permute2x128_si256(wa, wb, 0x20);
    const __m256i hi = _mm256_permute2x128_si256(wa, wb, 0x31);

    // radius r = sqrt(-2 ln u1)
    const __m256 u1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(hi, 1)), _mm256_set1_ps(0x1p-31f),
                                      _mm256_set1_ps(0x1p-32f));
    const __m256i bits = _mm256_castps_si256(u1);
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), bias);
    const __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, mantMask), half32));
    const __m256 small = _mm256_cmp_ps(m, sqrtHalf, _CMP_LT_OQ);
    e = _mm256_add_epi32(e, _mm256_castps_si256(small));  // -1 where small
    const __m256 x = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(small, m)), one);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(kLog0);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog1));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog2));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog3));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog4));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog5));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog6));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog7));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kLog8));
    y = _mm256_mul_ps(_mm256_mul_ps(y, x), z);
    const __m256 fe = _mm256_cvtepi32_ps(e);
    y = _mm256_fmadd_ps(fe, _mm256_set1_ps(kLn2Lo), y);
    y = _mm256_fmadd_ps(z, _mm256_set1_ps(-0.5f), y);
    const __m256 ln = _mm256_fmadd_ps(fe, _mm256_set1_ps(kLn2Hi), _mm256_add_ps(x, y));
    const __m256 r = _mm256_sqrt_ps(_mm256_max_ps(_mm256_mul_ps(ln, _mm256_set1_ps(-2.0f)), zero));

    // (cos, sin) of a uniform angle: quadrant q and y in (-pi/4, pi/4)
    const __m256i q = _mm256_srli_epi32(lo, 30);
    const __m256 a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(lo, angleMask)), _mm256_set1_ps(kAngleScale),
                                     _mm256_set1_ps(kAngleOffset));
    const __m256 a2 = _mm256_mul_ps(a, a);
    __m256 sn = _mm256_fmadd_ps(_mm256_set1_ps(kSin0), a2, _mm256_set1_ps(kSin1));
    sn = _mm256_fmadd_ps(sn, a2, _mm256_set1_ps(kSin2));
    sn = _mm256_fmadd_ps(_mm256_mul_ps(sn, a2), a, a);
    __m256 cs = _mm256_fmadd_ps(_mm256_set1_ps(kCos0), a2, _mm256_set1_ps(kCos1));
    cs = _mm256_fmadd_ps(cs, a2, _mm256_set1_ps(kCos2));
    cs = _mm256_fmadd_ps(_mm256_mul_ps(cs, a2), a2, _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), a2, one));
    const __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, one32), one32));
    __m256 v0 = _mm256_blendv_ps(cs, sn, swap);
    __m256 v1 = _mm256_blendv_ps(sn, cs, swap);
    v0 = _mm256_xor_ps(v0, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(q, one32), two32), 30)));
    v1 = _mm256_xor_ps(v1, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(q, two32), 30)));

    float* c0 = c + p;
    float* c1 = c + p + half;
    const __m256 sd0 = _mm256_sqrt_ps(_mm256_loadu_ps(s + p));
    const __m256 sd1 = _mm256_sqrt_ps(_mm256_loadu_ps(s + p + half));
    _mm256_storeu_ps(c0, _mm256_fmadd_ps(sd0, _mm256_mul_ps(r, v0), _mm256_loadu_ps(c0)));
    _mm256_storeu_ps(c1, _mm256_fmadd_ps(sd1, _mm256_mul_ps(r, v1), _mm256_loadu_ps(c1)));
  }
  if (p < half) {
    // the last pairs through the scalar formulas (same counters, so a pair's values never depend on the batch)
    const int64_t rest = half - p;
    uint64_t x = key + (counter + p + 1) * kGolden;
    for (int64_t i = 0; i < rest; ++i, x += kGolden) {
      float z0, z1;
      normals(mix64(x), z0, z1);
      c[p + i] += std::sqrt(s[p + i]) * z0;
      c[p + i + half] += std::sqrt(s[p + i + half]) * z1;
    }
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
