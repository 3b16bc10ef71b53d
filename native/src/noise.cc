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

// Box-Muller with the factor 1/2 folded in. From a 32-bit word H and 16 bits A of a second word:
//   u = (2 (H >> 1) + 1) / 2^32 in (0, 1) (31 bits; as float, so at most 1), h = -ln(u) = r² / 2;
//   b = pi/2 * (1 + F / 2^15) - 3 pi/4 in [-pi/4, pi/4) from F = the low 15 bits of A;
//   x = ±sqrt(h) (cos b - sin b),  y = ±sqrt(h) (sin b + cos b)
// i.e. r (cos, sin)(b + pi/4) with b + pi/4 spread over the circle by the two random signs (x's from A's top
// bit, y's from H's bit 0): two independent N(0, 1) values. ln(u) = k ln 2 + ln(1 + t) with t in
// [sqrt(1/2) - 1, sqrt(2) - 1): -ln(1 + t) = t P(t), P a degree-5 fit (|error| < 2e-6); sin and cos of b by
// degree-5 / degree-6 fits (|error| < 1e-6). Both kernels evaluate the same formulas; the AVX2 one fuses
// multiply-adds and takes sqrt(v) as v * rsqrt(v) (the hardware estimate: relative error < 4e-4 on the
// amplitude), so the two agree to that.
//
// Stream use per row and tile: blocks of 16 columns in pairs; a pair takes 3 steps (H of the first block,
// H of the second, then the word whose low / high 16 bits are the first / second block's A); a last odd
// block takes 2 steps (its H, then a word whose low 16 bits are its A).
constexpr float kP0 = -1.000012755393982f, kP1 = 0.4998505115509033f, kP2 = -0.33225876092910767f,
                kP3 = 0.2547248303890228f, kP4 = -0.22330033779144287f, kP5 = 0.143197163939476f;
constexpr float kMinusLn2 = -0.6931471805599453f;
constexpr uint32_t kSqrtHalfBits = 0x3F3504F3u;               // sqrt(1/2)
constexpr uint32_t kLogOffset = kSqrtHalfBits + (31u << 23);  // bits(q) - this = bits(q / 2^31) - bits(sqrt(1/2))
constexpr float kS1 = -0.16662833094596863f, kS2 = 0.008152991533279419f;
constexpr float kC1 = -0.49999895691871643f, kC2 = 0.04165629297494888f, kC3 = -0.0013597821816802025f;
constexpr float kHalfPi = 1.5707963267948966f, kMinus3QuarterPi = -2.356194490192345f;
constexpr uint32_t kSignBit = 0x80000000u;
constexpr uint32_t kAngleMask = 0x007FFF00u;  // 15 random bits at the top of the mantissa

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
 * Box-Muller of H and A (A's bits 0..14: angle, bit 15: x's sign): h = -ln(u) and the signed directions (x, y).
 */
inline void boxMuller(uint32_t hw, uint32_t a, float& h, float& x, float& y) {
  const float q = static_cast<float>(static_cast<int32_t>((hw >> 1) | 1u));  // u = q / 2^31
  const uint32_t ix = toBits(q) - kLogOffset;
  const float k = static_cast<float>(static_cast<int32_t>(ix) >> 23);  // u = 2^k z, z in [sqrt(1/2), sqrt(2))
  const float t = fromBits((ix & 0x007FFFFFu) + kSqrtHalfBits) - 1.0f;
  const float poly = ((((kP5 * t + kP4) * t + kP3) * t + kP2) * t + kP1) * t + kP0;
  h = std::max(0.0f, k * kMinusLn2 + t * poly);  // >= 0 anyway, up to rounding

  const float b = fromBits(((a << 8) & kAngleMask) | 0x3F800000u) * kHalfPi + kMinus3QuarterPi;
  const float b2 = b * b;
  const float sn = (kS2 * b2 + kS1) * (b * b2) + b;
  const float cs = ((kC3 * b2 + kC2) * b2 + kC1) * b2 + 1.0f;
  x = fromBits(toBits(cs - sn) ^ ((a << 16) & kSignBit));
  y = fromBits(toBits(sn + cs) ^ (hw << 31));
}

/** One block: 16 columns at c / s from the H words and the A half-words (shift 0: low 16 bits, 16: high). */
inline void blockScalar(const uint32_t* hw, const uint32_t* aw, int shift, float* c, const float* s) {
  for (int l = 0; l < kLanes; ++l) {
    float h, x, y;
    boxMuller(hw[l], aw[l] >> shift, h, x, y);
    c[l] += std::sqrt(s[l] * h) * x;
    c[kLanes + l] += std::sqrt(s[kLanes + l] * h) * y;
  }
}

void addScalar(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t cols) {
  const int64_t nb = cols / kBlock;
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ld;
    const float* si = s + i * ld;
    uint32_t h0[kLanes], h1[kLanes], a[kLanes];
    int64_t j = 0;
    for (; j + 2 <= nb; j += 2) {
      step(st[i].s, h0);
      step(st[i].s, h1);
      step(st[i].s, a);
      blockScalar(h0, a, 0, ci + j * kBlock, si + j * kBlock);
      blockScalar(h1, a, 16, ci + (j + 1) * kBlock, si + (j + 1) * kBlock);
    }
    if (j < nb) {
      step(st[i].s, h0);
      step(st[i].s, a);
      blockScalar(h0, a, 0, ci + j * kBlock, si + j * kBlock);
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

/** One block: 8 Box-Muller pairs, x to c[0, 8), y to c[8, 16). High: A in the high 16 bits of aw. */
template <bool High>
DENDRA_AVX2 inline void blockAvx2(__m256i hw, __m256i aw, float* c, const float* s) {
  const __m256 q = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_srli_epi32(hw, 1), _mm256_set1_epi32(1)));
  const __m256i ix = _mm256_sub_epi32(_mm256_castps_si256(q), _mm256_set1_epi32(static_cast<int>(kLogOffset)));
  const __m256 t = _mm256_sub_ps(
      _mm256_castsi256_ps(_mm256_add_epi32(_mm256_and_si256(ix, _mm256_set1_epi32(0x007FFFFF)),
                                           _mm256_set1_epi32(static_cast<int>(kSqrtHalfBits)))),
      _mm256_set1_ps(1.0f));
  __m256 poly = _mm256_fmadd_ps(_mm256_set1_ps(kP5), t, _mm256_set1_ps(kP4));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kP3));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kP2));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kP1));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kP0));
  // h >= 0: t * poly >= 0 for k = 0 (t <= 0), and -k ln 2 outweighs ln(1 + t) for k < 0
  const __m256 h = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srai_epi32(ix, 23)), _mm256_set1_ps(kMinusLn2),
                                   _mm256_mul_ps(t, poly));

  const __m256i mant = High ? _mm256_srli_epi32(aw, 8) : _mm256_slli_epi32(aw, 8);
  const __m256i sign0 = High ? aw : _mm256_slli_epi32(aw, 16);
  const __m256 b = _mm256_fmadd_ps(
      _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(mant, _mm256_set1_epi32(static_cast<int>(kAngleMask))),
                                          _mm256_set1_epi32(0x3F800000))),
      _mm256_set1_ps(kHalfPi), _mm256_set1_ps(kMinus3QuarterPi));
  const __m256 b2 = _mm256_mul_ps(b, b);
  const __m256 sn = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(kS2), b2, _mm256_set1_ps(kS1)), _mm256_mul_ps(b, b2), b);
  __m256 cs = _mm256_fmadd_ps(_mm256_set1_ps(kC3), b2, _mm256_set1_ps(kC2));
  cs = _mm256_fmadd_ps(cs, b2, _mm256_set1_ps(kC1));
  cs = _mm256_fmadd_ps(cs, b2, _mm256_set1_ps(1.0f));
  const __m256 x = _mm256_xor_ps(
      _mm256_sub_ps(cs, sn), _mm256_castsi256_ps(_mm256_and_si256(sign0, _mm256_set1_epi32(static_cast<int>(kSignBit)))));
  const __m256 y = _mm256_xor_ps(_mm256_add_ps(sn, cs), _mm256_castsi256_ps(_mm256_slli_epi32(hw, 31)));

  // c + sqrt(var * h) * dir with sqrt(v) = v * rsqrt(v) (0 stays 0)
  const __m256 v0 = _mm256_mul_ps(_mm256_loadu_ps(s), h);
  const __m256 v1 = _mm256_mul_ps(_mm256_loadu_ps(s + kLanes), h);
  const __m256 g0 = _mm256_rsqrt_ps(_mm256_max_ps(v0, _mm256_set1_ps(FLT_MIN)));
  const __m256 g1 = _mm256_rsqrt_ps(_mm256_max_ps(v1, _mm256_set1_ps(FLT_MIN)));
  _mm256_storeu_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(v0, x), g0, _mm256_loadu_ps(c)));
  _mm256_storeu_ps(c + kLanes, _mm256_fmadd_ps(_mm256_mul_ps(v1, y), g1, _mm256_loadu_ps(c + kLanes)));
}

DENDRA_AVX2 void addAvx2(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t cols) {
  const int64_t nb = cols / kBlock;
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ld;
    const float* si = s + i * ld;
    __m256i s0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[0]));
    __m256i s1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[1]));
    __m256i s2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[2]));
    __m256i s3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[i].s[3]));
    int64_t j = 0;
    for (; j + 2 <= nb; j += 2) {
      const __m256i h0 = stepAvx2(s0, s1, s2, s3);
      const __m256i h1 = stepAvx2(s0, s1, s2, s3);
      const __m256i a = stepAvx2(s0, s1, s2, s3);
      blockAvx2<false>(h0, a, ci + j * kBlock, si + j * kBlock);
      blockAvx2<true>(h1, a, ci + (j + 1) * kBlock, si + (j + 1) * kBlock);
    }
    if (j < nb) {
      const __m256i h0 = stepAvx2(s0, s1, s2, s3);
      const __m256i a = stepAvx2(s0, s1, s2, s3);
      blockAvx2<false>(h0, a, ci + j * kBlock, si + j * kBlock);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[0]), s0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[1]), s1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[2]), s2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(st[i].s[3]), s3);
  }
}

#undef DENDRA_AVX2

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 intrinsics (false positive)
#pragma GCC diagnostic ignored "-Wuninitialized"
#define DENDRA_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))

/** Two rows' lanes side by side: row a in the low 256 bits, row b in the high. */
DENDRA_AVX512 inline __m512i pair(const uint32_t* a, const uint32_t* b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256(reinterpret_cast<const __m256i*>(a))),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(b)), 1);
}
DENDRA_AVX512 inline void unpair(__m512i v, uint32_t* a, uint32_t* b) {
  _mm256_store_si256(reinterpret_cast<__m256i*>(a), _mm512_castsi512_si256(v));
  _mm256_store_si256(reinterpret_cast<__m256i*>(b), _mm512_extracti64x4_epi64(v, 1));
}
DENDRA_AVX512 inline __m512 pairF(const float* a, const float* b) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a)), _mm256_loadu_ps(b), 1);
}
DENDRA_AVX512 inline void unpairF(__m512 v, float* a, float* b) {
  _mm256_storeu_ps(a, _mm512_castps512_ps256(v));
  _mm256_storeu_ps(b, _mm512_extractf32x8_ps(v, 1));
}
/** The AVX2 kernel's hardware estimate, lane for lane (rsqrtps on each half), so both kernels agree bit for bit. */
DENDRA_AVX512 inline __m512 rsqrtAsAvx2(__m512 v) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_rsqrt_ps(_mm512_castps512_ps256(v))),
                            _mm256_rsqrt_ps(_mm512_extractf32x8_ps(v, 1)), 1);
}

DENDRA_AVX512 inline __m512i step512(__m512i& s0, __m512i& s1, __m512i& s2, __m512i& s3) {
  const __m512i out = _mm512_add_epi32(s0, s3);
  const __m512i t = _mm512_slli_epi32(s1, 9);
  s2 = _mm512_xor_si512(s2, s0);
  s3 = _mm512_xor_si512(s3, s1);
  s1 = _mm512_xor_si512(s1, s2);
  s0 = _mm512_xor_si512(s0, s3);
  s2 = _mm512_xor_si512(s2, t);
  s3 = _mm512_or_si512(_mm512_slli_epi32(s3, 11), _mm512_srli_epi32(s3, 21));
  return out;
}

/** blockAvx2 for two rows at once (a: row i, b: row i + 1), the same operations in the same order. */
template <bool High>
DENDRA_AVX512 inline void block512(__m512i hw, __m512i aw, float* ca, float* cb, const float* sa, const float* sb) {
  const __m512 q = _mm512_cvtepi32_ps(_mm512_or_si512(_mm512_srli_epi32(hw, 1), _mm512_set1_epi32(1)));
  const __m512i ix = _mm512_sub_epi32(_mm512_castps_si512(q), _mm512_set1_epi32(static_cast<int>(kLogOffset)));
  const __m512 t = _mm512_sub_ps(
      _mm512_castsi512_ps(_mm512_add_epi32(_mm512_and_si512(ix, _mm512_set1_epi32(0x007FFFFF)),
                                           _mm512_set1_epi32(static_cast<int>(kSqrtHalfBits)))),
      _mm512_set1_ps(1.0f));
  __m512 poly = _mm512_fmadd_ps(_mm512_set1_ps(kP5), t, _mm512_set1_ps(kP4));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kP3));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kP2));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kP1));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kP0));
  const __m512 h = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srai_epi32(ix, 23)), _mm512_set1_ps(kMinusLn2),
                                   _mm512_mul_ps(t, poly));
  const __m512i mant = High ? _mm512_srli_epi32(aw, 8) : _mm512_slli_epi32(aw, 8);
  const __m512i sign0 = High ? aw : _mm512_slli_epi32(aw, 16);
  const __m512 b = _mm512_fmadd_ps(
      _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(mant, _mm512_set1_epi32(static_cast<int>(kAngleMask))),
                                          _mm512_set1_epi32(0x3F800000))),
      _mm512_set1_ps(kHalfPi), _mm512_set1_ps(kMinus3QuarterPi));
  const __m512 b2 = _mm512_mul_ps(b, b);
  const __m512 sn = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(kS2), b2, _mm512_set1_ps(kS1)), _mm512_mul_ps(b, b2), b);
  __m512 cs = _mm512_fmadd_ps(_mm512_set1_ps(kC3), b2, _mm512_set1_ps(kC2));
  cs = _mm512_fmadd_ps(cs, b2, _mm512_set1_ps(kC1));
  cs = _mm512_fmadd_ps(cs, b2, _mm512_set1_ps(1.0f));
  const __m512 x = _mm512_xor_ps(
      _mm512_sub_ps(cs, sn), _mm512_castsi512_ps(_mm512_and_si512(sign0, _mm512_set1_epi32(static_cast<int>(kSignBit)))));
  const __m512 y = _mm512_xor_ps(_mm512_add_ps(sn, cs), _mm512_castsi512_ps(_mm512_slli_epi32(hw, 31)));

  const __m512 v0 = _mm512_mul_ps(pairF(sa, sb), h);
  const __m512 v1 = _mm512_mul_ps(pairF(sa + kLanes, sb + kLanes), h);
  const __m512 g0 = rsqrtAsAvx2(_mm512_max_ps(v0, _mm512_set1_ps(FLT_MIN)));
  const __m512 g1 = rsqrtAsAvx2(_mm512_max_ps(v1, _mm512_set1_ps(FLT_MIN)));
  unpairF(_mm512_fmadd_ps(_mm512_mul_ps(v0, x), g0, pairF(ca, cb)), ca, cb);
  unpairF(_mm512_fmadd_ps(_mm512_mul_ps(v1, y), g1, pairF(ca + kLanes, cb + kLanes)), ca + kLanes, cb + kLanes);
}

/** addAvx2 two rows at a time (each row keeps its own stream; a last odd row goes through addAvx2). */
DENDRA_AVX512 void addAvx512(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t cols) {
  const int64_t nb = cols / kBlock;
  int64_t i = 0;
  for (; i + 2 <= rows; i += 2) {
    float* ca = c + i * ld;
    float* cb = ca + ld;
    const float* sa = s + i * ld;
    const float* sb = sa + ld;
    __m512i s0 = pair(st[i].s[0], st[i + 1].s[0]);
    __m512i s1 = pair(st[i].s[1], st[i + 1].s[1]);
    __m512i s2 = pair(st[i].s[2], st[i + 1].s[2]);
    __m512i s3 = pair(st[i].s[3], st[i + 1].s[3]);
    int64_t j = 0;
    for (; j + 2 <= nb; j += 2) {
      const __m512i h0 = step512(s0, s1, s2, s3);
      const __m512i h1 = step512(s0, s1, s2, s3);
      const __m512i a = step512(s0, s1, s2, s3);
      block512<false>(h0, a, ca + j * kBlock, cb + j * kBlock, sa + j * kBlock, sb + j * kBlock);
      block512<true>(h1, a, ca + (j + 1) * kBlock, cb + (j + 1) * kBlock, sa + (j + 1) * kBlock, sb + (j + 1) * kBlock);
    }
    if (j < nb) {
      const __m512i h0 = step512(s0, s1, s2, s3);
      const __m512i a = step512(s0, s1, s2, s3);
      block512<false>(h0, a, ca + j * kBlock, cb + j * kBlock, sa + j * kBlock, sb + j * kBlock);
    }
    unpair(s0, st[i].s[0], st[i + 1].s[0]);
    unpair(s1, st[i].s[1], st[i + 1].s[1]);
    unpair(s2, st[i].s[2], st[i + 1].s[2]);
    unpair(s3, st[i].s[3], st[i + 1].s[3]);
  }
  if (i < rows) addAvx2(st + i, rows - i, c + i * ld, s + i * ld, ld, cols);
}

#undef DENDRA_AVX512
#pragma GCC diagnostic pop

#endif  // DENDRA_X86_DISPATCH

}  // namespace

Kernel kernelFor(cpu::Isa isa) {
#ifdef DENDRA_X86_DISPATCH
  if (isa >= cpu::Isa::Avx512) return Kernel{"avx512", &addAvx512};
  if (isa >= cpu::Isa::Avx2) return Kernel{"avx2", &addAvx2};
#endif
  (void)isa;
  return Kernel{"portable", &addScalar};
}

}  // namespace dendra::noise
