#include "network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace dendra {

namespace {

/** Σ_j u_j² · w_j in float64 (the per-sample crossbar read power before vRead²), portable. */
double weightedSquaresPortable(const float* u, const double* w, int64_t n) {
  double a[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) {
      const double x = u[j + l];
      a[l] += x * x * w[j + l];
    }
  double sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  for (; j < n; ++j) {
    const double x = u[j];
    sum += x * x * w[j];
  }
  return sum;
}

#ifdef DENDRA_X86_DISPATCH
/** The same with AVX2/FMA: 16 inputs per step in four float64 accumulators. */
__attribute__((target("avx2,fma"))) double weightedSquaresAvx2(const float* u, const double* w, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(u + j));
    const __m256d x1 = _mm256_cvtps_pd(_mm_loadu_ps(u + j + 4));
    const __m256d x2 = _mm256_cvtps_pd(_mm_loadu_ps(u + j + 8));
    const __m256d x3 = _mm256_cvtps_pd(_mm_loadu_ps(u + j + 12));
    a0 = _mm256_fmadd_pd(_mm256_mul_pd(x0, x0), _mm256_loadu_pd(w + j), a0);
    a1 = _mm256_fmadd_pd(_mm256_mul_pd(x1, x1), _mm256_loadu_pd(w + j + 4), a1);
    a2 = _mm256_fmadd_pd(_mm256_mul_pd(x2, x2), _mm256_loadu_pd(w + j + 8), a2);
    a3 = _mm256_fmadd_pd(_mm256_mul_pd(x3, x3), _mm256_loadu_pd(w + j + 12), a3);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; j < n; ++j) {
    const double x = u[j];
    sum += x * x * w[j];
  }
  return sum;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 conversion intrinsics (false positive)
#pragma GCC diagnostic ignored "-Wuninitialized"
/** The same with AVX-512: 32 inputs per step in four float64 accumulators of 8 lanes. */
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))) double weightedSquaresAvx512(const float* u,
                                                                                                   const double* w,
                                                                                                   int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m512d x0 = _mm512_cvtps_pd(_mm256_loadu_ps(u + j));
    const __m512d x1 = _mm512_cvtps_pd(_mm256_loadu_ps(u + j + 8));
    const __m512d x2 = _mm512_cvtps_pd(_mm256_loadu_ps(u + j + 16));
    const __m512d x3 = _mm512_cvtps_pd(_mm256_loadu_ps(u + j + 24));
    a0 = _mm512_fmadd_pd(_mm512_mul_pd(x0, x0), _mm512_loadu_pd(w + j), a0);
    a1 = _mm512_fmadd_pd(_mm512_mul_pd(x1, x1), _mm512_loadu_pd(w + j + 8), a1);
    a2 = _mm512_fmadd_pd(_mm512_mul_pd(x2, x2), _mm512_loadu_pd(w + j + 16), a2);
    a3 = _mm512_fmadd_pd(_mm512_mul_pd(x3, x3), _mm512_loadu_pd(w + j + 24), a3);
  }
  double sum = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
  for (; j < n; ++j) {
    const double x = u[j];
    sum += x * x * w[j];
  }
  return sum;
}
#pragma GCC diagnostic pop
#endif

// Rough single-core throughput target per spawned thread: below this much work a thread costs more than it saves.
constexpr double kMinFlopsPerThread = 4.0e6;

float toConductance(double g) { return static_cast<float>(std::min(g, static_cast<double>(std::numeric_limits<float>::max()))); }

/**
 * The conductances the tiles see: first-order IR drop of an R-row array with wire resistance r per segment,
 * G_eff(i, j) = G / (1 + G * r * (j + 1 + R - i)).
 */
std::vector<float> irDrop(const ArraySpec& a, double r) {
  std::vector<float> eff(a.conductance.size());
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j) {
      const size_t cell = static_cast<size_t>(i * a.cols + j);
      const double g = a.conductance[cell];
      eff[cell] = static_cast<float>(g / (1.0 + g * r * static_cast<double>(j + 1 + a.rows - i)));
    }
  return eff;
}

/**
 * Integer path epilogue over `rows` rows: each exact sum c becomes v = c · scale (current / vRead), or with an
 * ADC the code round(clamp(c · codeScale)) times fromCode; added into acc at the tile's outputs. The products
 * are formed in double and rounded once to float, so a current exactly at an ADC decision boundary (common:
 * level currents and the ADC's full scale are commensurate) lands exactly on it and rounds half away from
 * zero, the periphery's rule. Branch-free inner loops, built per instruction set below.
 */
template <bool Quantise, bool Contiguous>
inline __attribute__((always_inline)) void intEpilogueRows(const int32_t* c, int64_t ldc, int64_t rows, int64_t m,
                                                           double scale, const periphery::Adc* adc, double codeScale,
                                                           const int32_t* oi, float* acc, int64_t ldAcc) {
  const float fromCode = Quantise ? adc->fromCode : 0.0f;
  const float lo = Quantise ? -adc->levels : 0.0f, hi = Quantise ? adc->levels : 0.0f;
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t* ci = c + i * ldc;
    float* ai = acc + i * ldAcc;
    float* dst = Contiguous ? ai + oi[0] : ai;
    for (int64_t j = 0; j < m; ++j) {
      float v;
      if (Quantise) {
        float code = static_cast<float>(static_cast<double>(ci[j]) * codeScale);
        code = code > lo ? code : lo;
        code = code < hi ? code : hi;
        v = periphery::roundHalfAway(code) * fromCode;
      } else {
        v = static_cast<float>(static_cast<double>(ci[j]) * scale);
      }
      if (Contiguous)
        dst[j] += v;
      else
        ai[oi[j]] += v;
    }
  }
}

#define DENDRA_INT_EPILOGUE(NAME, ATTR)                                                                         \
  ATTR void NAME(const int32_t* c, int64_t ldc, int64_t rows, int64_t m, double scale, const periphery::Adc* adc, \
                 double codeScale, const int32_t* oi, bool contiguous, float* acc, int64_t ldAcc) {             \
    if (adc) {                                                                                                  \
      if (contiguous)                                                                                           \
        intEpilogueRows<true, true>(c, ldc, rows, m, scale, adc, codeScale, oi, acc, ldAcc);                    \
      else                                                                                                      \
        intEpilogueRows<true, false>(c, ldc, rows, m, scale, adc, codeScale, oi, acc, ldAcc);                   \
    } else {                                                                                                    \
      if (contiguous)                                                                                           \
        intEpilogueRows<false, true>(c, ldc, rows, m, scale, adc, codeScale, oi, acc, ldAcc);                   \
      else                                                                                                      \
        intEpilogueRows<false, false>(c, ldc, rows, m, scale, adc, codeScale, oi, acc, ldAcc);                  \
    }                                                                                                           \
  }

DENDRA_INT_EPILOGUE(intEpiloguePortable, )
#ifdef DENDRA_X86_DISPATCH
DENDRA_INT_EPILOGUE(intEpilogueAvx2Generic, __attribute__((target("avx2,fma"))))
DENDRA_INT_EPILOGUE(intEpilogueAvx512Generic, __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))))

// The contiguous-output case with intrinsics (GCC does not vectorise the int → double → float chain): the same
// operations as intEpilogueRows, lane by lane, so every path gives the same floats.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 conversion intrinsics (false positive)
#pragma GCC diagnostic ignored "-Wuninitialized"
#define DENDRA_T512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))
DENDRA_T512 inline __m512 roundHalfAway512(__m512 x) {
  const __m512 half = _mm512_or_ps(_mm512_set1_ps(0.49999997f), _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
  return _mm512_cvtepi32_ps(_mm512_cvttps_epi32(_mm512_add_ps(x, half)));
}

DENDRA_T512 void intEpilogueAvx512(const int32_t* c, int64_t ldc, int64_t rows, int64_t m, double scale,
                                   const periphery::Adc* adc, double codeScale, const int32_t* oi, bool contiguous,
                                   float* acc, int64_t ldAcc) {
  if (!contiguous) return intEpilogueAvx512Generic(c, ldc, rows, m, scale, adc, codeScale, oi, contiguous, acc, ldAcc);
  const __m512d mul = _mm512_set1_pd(adc ? codeScale : scale);
  const __m512 lo = _mm512_set1_ps(adc ? -adc->levels : 0.0f), hi = _mm512_set1_ps(adc ? adc->levels : 0.0f);
  const __m512 fromCode = _mm512_set1_ps(adc ? adc->fromCode : 0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t* ci = c + i * ldc;
    float* dst = acc + i * ldAcc + oi[0];
    for (int64_t j = 0; j < m; j += 16) {
      const __mmask16 k = m - j >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (m - j)) - 1u);
      const __m512i x = _mm512_maskz_loadu_epi32(k, ci + j);
      const __m256 v0 = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(x)), mul));
      const __m256 v1 = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(x, 1)), mul));
      __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(v0), v1, 1);
      if (adc) v = _mm512_mul_ps(roundHalfAway512(_mm512_min_ps(_mm512_max_ps(v, lo), hi)), fromCode);
      _mm512_mask_storeu_ps(dst + j, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dst + j), v));
    }
  }
}
#undef DENDRA_T512
#pragma GCC diagnostic pop

#define DENDRA_T256 __attribute__((target("avx2,fma")))
DENDRA_T256 inline __m256 roundHalfAway256(__m256 x) {
  const __m256 half = _mm256_or_ps(_mm256_set1_ps(0.49999997f), _mm256_and_ps(x, _mm256_set1_ps(-0.0f)));
  return _mm256_cvtepi32_ps(_mm256_cvttps_epi32(_mm256_add_ps(x, half)));
}

DENDRA_T256 void intEpilogueAvx2(const int32_t* c, int64_t ldc, int64_t rows, int64_t m, double scale,
                                 const periphery::Adc* adc, double codeScale, const int32_t* oi, bool contiguous,
                                 float* acc, int64_t ldAcc) {
  if (!contiguous || m % 8 != 0)
    return intEpilogueAvx2Generic(c, ldc, rows, m, scale, adc, codeScale, oi, contiguous, acc, ldAcc);
  const __m256d mul = _mm256_set1_pd(adc ? codeScale : scale);
  const __m256 lo = _mm256_set1_ps(adc ? -adc->levels : 0.0f), hi = _mm256_set1_ps(adc ? adc->levels : 0.0f);
  const __m256 fromCode = _mm256_set1_ps(adc ? adc->fromCode : 0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t* ci = c + i * ldc;
    float* dst = acc + i * ldAcc + oi[0];
    for (int64_t j = 0; j < m; j += 8) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ci + j));
      const __m128 v0 = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(x)), mul));
      const __m128 v1 = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(x, 1)), mul));
      __m256 v = _mm256_insertf128_ps(_mm256_castps128_ps256(v0), v1, 1);
      if (adc) v = _mm256_mul_ps(roundHalfAway256(_mm256_min_ps(_mm256_max_ps(v, lo), hi)), fromCode);
      _mm256_storeu_ps(dst + j, _mm256_add_ps(_mm256_loadu_ps(dst + j), v));
    }
  }
}
#undef DENDRA_T256
#endif
#undef DENDRA_INT_EPILOGUE

/**
 * Float path epilogue over `rows` rows of tile currents (current / vRead): through the ADC when there is one
 * (periphery::adcInPlace's operations: NaN stays NaN), added into acc at the tile's outputs.
 */
template <bool Quantise, bool Contiguous>
inline __attribute__((always_inline)) void floatEpilogueRows(const float* c, int64_t ldc, int64_t rows, int64_t m,
                                                             const periphery::Adc* adc, const int32_t* oi, float* acc,
                                                             int64_t ldAcc) {
  const float toCode = Quantise ? adc->toCode : 0.0f, fromCode = Quantise ? adc->fromCode : 0.0f;
  const float lo = Quantise ? -adc->levels : 0.0f, hi = Quantise ? adc->levels : 0.0f;
  for (int64_t i = 0; i < rows; ++i) {
    const float* ci = c + i * ldc;
    float* ai = acc + i * ldAcc;
    float* dst = Contiguous ? ai + oi[0] : ai;
    for (int64_t j = 0; j < m; ++j) {
      float v = ci[j];
      if (Quantise) {
        const float c0 = v * toCode;
        float code = c0 > lo ? c0 : lo;
        code = code < hi ? code : hi;
        v = periphery::roundHalfAway(code) * fromCode + (c0 - c0);
      }
      if (Contiguous)
        dst[j] += v;
      else
        ai[oi[j]] += v;
    }
  }
}

#define DENDRA_FLOAT_EPILOGUE(NAME, ATTR)                                                                          \
  ATTR void NAME(const float* c, int64_t ldc, int64_t rows, int64_t m, const periphery::Adc* adc, const int32_t* oi, \
                 bool contiguous, float* acc, int64_t ldAcc) {                                                     \
    if (adc) {                                                                                                     \
      if (contiguous)                                                                                              \
        floatEpilogueRows<true, true>(c, ldc, rows, m, adc, oi, acc, ldAcc);                                       \
      else                                                                                                         \
        floatEpilogueRows<true, false>(c, ldc, rows, m, adc, oi, acc, ldAcc);                                      \
    } else {                                                                                                       \
      if (contiguous)                                                                                              \
        floatEpilogueRows<false, true>(c, ldc, rows, m, adc, oi, acc, ldAcc);                                      \
      else                                                                                                         \
        floatEpilogueRows<false, false>(c, ldc, rows, m, adc, oi, acc, ldAcc);                                     \
    }                                                                                                              \
  }

DENDRA_FLOAT_EPILOGUE(floatEpiloguePortable, )
#ifdef DENDRA_X86_DISPATCH
DENDRA_FLOAT_EPILOGUE(floatEpilogueAvx2, __attribute__((target("avx2,fma"))))
DENDRA_FLOAT_EPILOGUE(floatEpilogueAvx512, __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))))
#endif
#undef DENDRA_FLOAT_EPILOGUE

/** int32 sums × scale → float currents (the integer path with read noise, before the noise and the ADC). */
inline __attribute__((always_inline)) void intToFloatBody(const int32_t* c, float* out, int64_t n, double scale) {
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(static_cast<double>(c[j]) * scale);
}
void intToFloatPortable(const int32_t* c, float* out, int64_t n, double scale) { intToFloatBody(c, out, n, scale); }
#ifdef DENDRA_X86_DISPATCH
__attribute__((target("avx2,fma"))) void intToFloatAvx2(const int32_t* c, float* out, int64_t n, double scale) {
  intToFloatBody(c, out, n, scale);
}
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))) void intToFloatAvx512(const int32_t* c, float* out,
                                                                                           int64_t n, double scale) {
  intToFloatBody(c, out, n, scale);
}
#endif

/**
 * Subnormal floats flushed to zero (FTZ) and read as zero (DAZ) while a forward pass runs on this thread, as
 * onnxruntime does: trained weights and activations often hold subnormals, which cost x86 cores ~100 cycles
 * each. The caller's MXCSR comes back on exit (the JS main thread runs the sync path and V8 needs IEEE
 * subnormals).
 */
class FlushDenormals {
 public:
#ifdef DENDRA_X86_DISPATCH
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// The largest DAC resolution the integer path takes: codes up to 127 in magnitude.
constexpr int32_t kMaxIntDacBits = 8;

}  // namespace

void Network::prepareReadPower(Layer& layer) const {
  const LayerSpec& ls = layer.spec;
  layer.rowPower.assign(static_cast<size_t>(ls.inFeatures), 0.0);
  layer.rowDrives.assign(static_cast<size_t>(ls.inFeatures), 0.0f);
  for (const TileSpec& ts : ls.tiles)
    for (size_t p = 0; p < ts.inputIndex.size(); ++p)
      layer.rowDrives[static_cast<size_t>(ts.inputIndex[p])] += ts.rowNeg[p] != ts.rowPos[p] ? 2.0f : 1.0f;
  for (const TileSpec& ts : ls.tiles) {
    const ArraySpec& arr = arrays_[static_cast<size_t>(ts.array)];
    const size_t k = ts.inputIndex.size();
    // Σ_c G of a physical row: every cell of the row sits between the driven row and a virtual-ground column.
    auto rowSum = [&](int32_t row) {
      const float* g = arr.conductance.data() + static_cast<int64_t>(row) * arr.cols;
      double sum = 0.0;
      for (int64_t c = 0; c < arr.cols; ++c) sum += g[c];
      return sum;
    };
    // Driven rows: rowPos[p] with +v, and rowNeg[p] with −v where it is another row (pairs on rows).
    std::vector<int32_t> drives(static_cast<size_t>(arr.rows), 0);
    bool shared = false;
    for (size_t p = 0; p < k; ++p) {
      shared |= ++drives[static_cast<size_t>(ts.rowPos[p])] > 1;
      if (ts.rowNeg[p] != ts.rowPos[p]) shared |= ++drives[static_cast<size_t>(ts.rowNeg[p])] > 1;
    }
    if (!shared) {
      for (size_t p = 0; p < k; ++p)
        layer.rowPower[static_cast<size_t>(ts.inputIndex[p])] +=
            rowSum(ts.rowPos[p]) + (ts.rowNeg[p] != ts.rowPos[p] ? rowSum(ts.rowNeg[p]) : 0.0);
      continue;
    }
    SharedRows sr;
    std::vector<int32_t> slotOf(static_cast<size_t>(arr.rows), -1);
    auto drive = [&](int32_t input, int32_t row, float sign) {
      int32_t& slot = slotOf[static_cast<size_t>(row)];
      if (slot < 0) {
        slot = static_cast<int32_t>(sr.rowSum.size());
        sr.rowSum.push_back(rowSum(row));
      }
      sr.input.push_back(input);
      sr.slot.push_back(slot);
      sr.sign.push_back(sign);
    };
    for (size_t p = 0; p < k; ++p) {
      drive(ts.inputIndex[p], ts.rowPos[p], 1.0f);
      if (ts.rowNeg[p] != ts.rowPos[p]) drive(ts.inputIndex[p], ts.rowNeg[p], -1.0f);
    }
    layer.sharedRows.push_back(std::move(sr));
  }
}

double Network::readPower(const Layer& layer, const float* u) const {
  double sum = weightedSquares_(u, layer.rowPower.data(), layer.spec.inFeatures);
  for (const SharedRows& sr : layer.sharedRows) {
    thread_local std::vector<double> v;
    v.assign(sr.rowSum.size(), 0.0);
    for (size_t d = 0; d < sr.input.size(); ++d) v[static_cast<size_t>(sr.slot[d])] += sr.sign[d] * static_cast<double>(u[sr.input[d]]);
    for (size_t r = 0; r < v.size(); ++r) sum += v[r] * v[r] * sr.rowSum[r];
  }
  return sum * layer.spec.vRead * layer.spec.vRead;
}

void Network::programCells(const Physics& ph) {
  const bool error = ph.programError();
  const bool drift = ph.drift();
  if (!error && !drift) return;
  const double logAge = drift ? std::log(ph.time / ph.driftT0) : 0.0;
  const double fixedFactor = drift ? std::exp(-std::max(0.0, ph.driftNu) * logAge) : 1.0;  // when driftNuSigma == 0
  for (ArraySpec& a : arrays_) {
    const size_t n = a.conductance.size();
    for (size_t cell = 0; cell < n; ++cell) {
      if (a.isStuck(cell)) continue;  // stuck cells sit exactly at their conductance
      double g = a.conductance[cell];
      if (error) {
        const double sigma = ph.programSigma + ph.programRelative * g;
        g = std::max(0.0, g + sigma * rng_.normal());
      }
      if (drift) {
        if (ph.driftNuSigma > 0.0) {
          const double nu = std::max(0.0, ph.driftNu + ph.driftNuSigma * rng_.normal());
          g *= std::exp(-nu * logAge);
        } else {
          g *= fixedFactor;
        }
      }
      a.conductance[cell] = toConductance(g);
    }
  }
}

void Network::makeIntegerTile(Tile& tile, const TileSpec& ts, const ArraySpec& arr, const float* g, int32_t dacBits) const {
  const int64_t k = static_cast<int64_t>(ts.inputIndex.size());
  const int64_t m = static_cast<int64_t>(ts.outputIndex.size());
  std::vector<double> wd(static_cast<size_t>(k * m));
  double maxAbs = 0.0;
  for (int64_t p = 0; p < k; ++p) {
    const float* pos = g + static_cast<int64_t>(ts.rowPos[p]) * arr.cols;
    const float* neg = g + static_cast<int64_t>(ts.rowNeg[p]) * arr.cols;
    for (int64_t c = 0; c < m; ++c) {
      const double v = static_cast<double>(pos[ts.colPos[c]]) - neg[ts.colNeg[c]];
      wd[static_cast<size_t>(p * m + c)] = v;
      maxAbs = std::max(maxAbs, std::fabs(v));
    }
  }
  // |Σ_p code_p · w_p| <= k · q · wMax must stay below 2^31 (q <= 127): the bound on the 16-bit weights.
  const double q = static_cast<double>((int32_t{1} << (dacBits - 1)) - 1);
  const double wMax = std::min(32767.0, std::floor(2147483647.0 / (std::max<double>(1.0, static_cast<double>(k)) * q)));
  // Exact: every G+ − G− a whole number of level steps (the conductances sit on the device's levels; the
  // tolerance covers their float32 storage only).
  const double step = physics_.levelStep;
  bool exact = step > 0.0 && maxAbs / step <= wMax;
  if (exact)
    for (double v : wd) {
      const double n = std::round(v / step);
      if (std::fabs(v - n * step) > 1e-4 * step) {
        exact = false;
        break;
      }
    }
  // Otherwise fixed point: unit maxAbs / wMax, so |error| <= maxAbs / (2 wMax) per weight (docs/performance.md).
  const double unit = exact ? step : (maxAbs > 0.0 ? maxAbs / wMax : 1.0);
  std::vector<int16_t> wi(wd.size());
  for (size_t i = 0; i < wd.size(); ++i)
    wi[i] = static_cast<int16_t>(std::clamp(std::round(wd[i] / unit), -wMax, wMax));
  // Exact level differences within ±127 on a CPU with VNNI: the 8-bit kernel (twice the products per instruction).
  if (exact && maxAbs / step <= 127.5 && igemm::has8(kernel_.isa)) {
    tile.wq8 = igemm::pack8(wi.data(), k, m);
    tile.use8 = true;
  } else {
    tile.wq = igemm::pack(wi.data(), k, m);
  }
  tile.intScale = unit / q;
  tile.exactLevels = exact;
}

Network::Info Network::info() const {
  Info r;
  for (const ArraySpec& a : arrays_) r.memoryBytes += a.conductance.size() * sizeof(float) + a.stuck.size();
  for (const Layer& l : layers_) {
    for (const Tile& t : l.tiles) {
      r.memoryBytes += (t.weff.data.size() + t.var.data.size()) * sizeof(float) + t.wq.bytes() + t.wq8.bytes();
      ++r.tiles;
      if (l.intPath) ++r.integerTiles;
      if (l.intPath && t.exactLevels) ++r.exactTiles;
    }
    r.memoryBytes += l.eps.size() * sizeof(float) + l.rowPower.size() * sizeof(double);
  }
  std::lock_guard<std::mutex> lock(poolMutex_);
  for (const auto& s : pool_)
    r.memoryBytes += (s->act[0].size() + s->act[1].size() + s->u.size() + s->c.size() + s->apack.size() +
                      s->cvar.size() + s->apack2.size() + s->branch.size()) * sizeof(float) +
                     s->noise.size() * sizeof(noise::RowState) + s->scale.size() * sizeof(float) +
                     s->dendritePower.size() * sizeof(double) + s->codes.size() * sizeof(int16_t) +
                     (s->ci.size() + s->capack.size()) * sizeof(int32_t);
  return r;
}

Network::Network(Program program)
    : arrays_(std::move(program.arrays)),
      physics_(program.physics),
      readNoise_(program.physics.readNoise()),
      noiseKernel_(noise::kernelFor(program.isa)),
      noiseSeed_(noise::mix64(noise::mix64(program.seed) ^ 0x726561642D6E6F69ull)),
      threads_(program.threads),
      workers_(program.threads - 1),
      kernel_(gemm::kernelFor(program.isa)),
      ikernel_(igemm::kernelFor(program.isa)),
      dacCodes_(periphery::dacCodesFor(program.isa)),
      rng_(program.seed) {
  intEpilogue_ = &intEpiloguePortable;
  floatEpilogue_ = &floatEpiloguePortable;
  intToFloat_ = &intToFloatPortable;
#ifdef DENDRA_X86_DISPATCH
  if (program.isa >= cpu::Isa::Avx512) {
    intEpilogue_ = &intEpilogueAvx512;
    floatEpilogue_ = &floatEpilogueAvx512;
    intToFloat_ = &intToFloatAvx512;
  } else if (program.isa == cpu::Isa::Avx2) {
    intEpilogue_ = &intEpilogueAvx2;
    floatEpilogue_ = &floatEpilogueAvx2;
    intToFloat_ = &intToFloatAvx2;
  }
#endif
  weightedSquares_ = &weightedSquaresPortable;
#ifdef DENDRA_X86_DISPATCH
  if (kernel_.isa >= cpu::Isa::Avx512)
    weightedSquares_ = &weightedSquaresAvx512;
  else if (kernel_.isa >= cpu::Isa::Avx2)
    weightedSquares_ = &weightedSquaresAvx2;
#endif
  programCells(physics_);  // the constructor is the only user of rng_ so far: no lock needed

  // IR drop: the effective conductances of every array, computed once.
  std::vector<std::vector<float>> effective;
  if (physics_.irDrop()) {
    effective.reserve(arrays_.size());
    for (const ArraySpec& a : arrays_) effective.push_back(irDrop(a, physics_.wireResistance));
  }
  const double readSigma = physics_.readSigma, readRelative = physics_.readRelative;
  auto variance = [&](double g) {
    const double sd = readSigma + readRelative * g;
    return sd * sd;
  };

  double flopsPerRow = 0.0;
  layers_.reserve(program.layers.size());
  for (LayerSpec& spec : program.layers) {
    Layer layer;
    layer.spec = std::move(spec);
    const LayerSpec& ls = layer.spec;
    maxIn_ = std::max<int64_t>(maxIn_, ls.inFeatures);
    maxOut_ = std::max<int64_t>(maxOut_, ls.outFeatures);
    layer.intPath = ls.dacBits >= 1 && ls.dacBits <= kMaxIntDacBits;
    anyIntPath_ |= layer.intPath;
    layer.tiles.reserve(ls.tiles.size());
    for (const TileSpec& ts : ls.tiles) {
      const ArraySpec& arr = arrays_[static_cast<size_t>(ts.array)];
      const int64_t k = static_cast<int64_t>(ts.inputIndex.size());
      const int64_t m = static_cast<int64_t>(ts.outputIndex.size());
      Tile tile;
      const float* g = effective.empty() ? arr.conductance.data() : effective[static_cast<size_t>(ts.array)].data();
      if (layer.intPath) {
        makeIntegerTile(tile, ts, arr, g, ls.dacBits);
      } else {
        tile.weff = gemm::allocatePacked(k, m);
        for (int64_t p = 0; p < k; ++p) {
          const float* pos = g + static_cast<int64_t>(ts.rowPos[p]) * arr.cols;
          const float* neg = g + static_cast<int64_t>(ts.rowNeg[p]) * arr.cols;
          for (int64_t c = 0; c < m; ++c)
            tile.weff.at(p, c) = static_cast<float>(static_cast<double>(pos[ts.colPos[c]]) - neg[ts.colNeg[c]]);
        }
      }
      if (readNoise_) {
        // Variance of the (r, c) current per volt²: both devices of the pair, from the held conductances.
        tile.var = gemm::allocatePacked(k, m);
        const float* h = arr.conductance.data();
        for (int64_t p = 0; p < k; ++p) {
          const float* pos = h + static_cast<int64_t>(ts.rowPos[p]) * arr.cols;
          const float* neg = h + static_cast<int64_t>(ts.rowNeg[p]) * arr.cols;
          for (int64_t c = 0; c < m; ++c)
            tile.var.at(p, c) = static_cast<float>(variance(pos[ts.colPos[c]]) + variance(neg[ts.colNeg[c]]));
        }
        flopsPerRow += 2.0 * static_cast<double>(k) * static_cast<double>(m) + 30.0 * static_cast<double>(m);
      }
      // Inputs o0, o0 + 1, ...: read the input rows in place from o0 (no gather).
      tile.gatherInput = false;
      tile.inputOffset = k > 0 ? ts.inputIndex[0] : 0;
      for (int64_t p = 0; p < k; ++p)
        if (ts.inputIndex[p] != tile.inputOffset + p) {
          tile.gatherInput = true;
          tile.inputOffset = 0;
          break;
        }
      tile.contiguousOutput = true;
      for (int64_t c = 0; c < m; ++c)
        if (ts.outputIndex[c] != ts.outputIndex[0] + c) {
          tile.contiguousOutput = false;
          break;
        }
      tile.quantiseOutput = ls.adcBits > 0;
      if (tile.quantiseOutput) {
        tile.adc = periphery::makeAdc(ls.adcBits, ts.adcFullScale, ls.vRead);
        // ADC code per unit of the integer sum: (intStep / q) · vRead / (fullScale / L), in double
        const double levels = static_cast<double>((int32_t{1} << (ls.adcBits - 1)) - 1);
        tile.codeScale = tile.intScale * ls.vRead / (ts.adcFullScale / levels);
      }
      maxPaddedCols_ = std::max(maxPaddedCols_, layer.intPath ? tile.intCols() : tile.weff.paddedCols());
      flopsPerRow += 2.0 * static_cast<double>(k) * static_cast<double>(m);
      layer.tiles.push_back(std::move(tile));
    }
    // Group tiles by identical inputIndex so one packed (gathered) input block serves all of them.
    const size_t nt = ls.tiles.size();
    layer.inputGroup.assign(nt, 0);
    for (size_t i = 0; i < nt; ++i) {
      layer.inputGroup[i] = i;
      for (size_t j = 0; j < i; ++j)
        if (layer.inputGroup[j] == j && ls.tiles[j].inputIndex == ls.tiles[i].inputIndex) {
          layer.inputGroup[i] = j;
          break;
        }
    }
    layer.order.resize(nt);
    for (size_t i = 0; i < nt; ++i) layer.order[i] = i;
    std::stable_sort(layer.order.begin(), layer.order.end(),
                     [&](size_t a, size_t b) { return layer.inputGroup[a] < layer.inputGroup[b]; });
    // Dendritic layers run branch by branch (each branch's dendrites apply as soon as its tiles are done, so
    // only one branch's partial sums are held): tiles grouped by branch, in the order above within a branch.
    if (ls.dendrites.active())
      std::stable_sort(layer.order.begin(), layer.order.end(),
                       [&](size_t a, size_t b) { return ls.tiles[a].branch < ls.tiles[b].branch; });
    flopsPerRow += 8.0 * ls.outFeatures;
    if (ls.dendrites.active()) {
      const DendriteSpec& d = ls.dendrites;
      layer.consts = dendrite::constants(d);
      layer.consts.avx2 = kernel_.isa >= cpu::Isa::Avx2;  // the same CPU check as the GEMM's
      layer.consts.avx512 = kernel_.isa >= cpu::Isa::Avx512;
      layer.eps.assign(static_cast<size_t>(d.count) * static_cast<size_t>(ls.outFeatures), 1.0f);
      if (d.variation > 0.0)  // device-to-device variation, drawn once per chip (constructor only: no lock)
        for (float& e : layer.eps) e = static_cast<float>(std::max(0.0, 1.0 + d.variation * rng_.normal()));
      maxBranchOut_ = std::max<int64_t>(maxBranchOut_, static_cast<int64_t>(d.count) * ls.outFeatures);
      flopsPerRow += 30.0 * static_cast<double>(d.count) * ls.outFeatures;
    }
    prepareReadPower(layer);
    layers_.push_back(std::move(layer));
  }
  const int64_t widest = std::max({maxIn_, maxOut_, maxPaddedCols_, int64_t{1}});
  blockRows_ = std::clamp(kBlockBudget / widest / gemm::kMR * gemm::kMR, gemm::kMR, kMaxBlockRows);
  const double rows = std::ceil(kMinFlopsPerThread / std::max(1.0, flopsPerRow));
  minRowsPerThread_ = std::max<int64_t>(gemm::kMR, static_cast<int64_t>(std::min(rows, 1.0e9)));
}

std::vector<std::unique_ptr<Network::Scratch>> Network::acquire(size_t count) {
  std::vector<std::unique_ptr<Scratch>> out;
  out.reserve(count);
  {
    std::lock_guard<std::mutex> lock(poolMutex_);
    while (out.size() < count && !pool_.empty()) {
      out.push_back(std::move(pool_.back()));
      pool_.pop_back();
    }
  }
  while (out.size() < count) {
    auto s = std::make_unique<Scratch>();
    const size_t block = static_cast<size_t>(blockRows_);
    const size_t paddedRows = block;  // blockRows_ is a multiple of kMR
    s->act[0].resize(block * static_cast<size_t>(maxOut_));
    s->act[1].resize(block * static_cast<size_t>(maxOut_));
    s->u.resize(block * static_cast<size_t>(maxIn_));
    s->c.resize(paddedRows * static_cast<size_t>(maxPaddedCols_));
    s->apack.resize(gemm::packBufferSize(blockRows_));
    if (readNoise_) {
      s->cvar.resize(paddedRows * static_cast<size_t>(maxPaddedCols_));
      s->apack2.resize(gemm::packBufferSize(blockRows_));
      s->noise.resize(block);
    }
    s->scale.resize(block);
    if (anyIntPath_) {
      s->codes.resize(block * static_cast<size_t>(maxIn_));
      s->ci.resize(paddedRows * static_cast<size_t>(maxPaddedCols_));
      s->capack.resize(igemm::packBufferSize(blockRows_));
      if (readNoise_) s->c.resize(paddedRows * static_cast<size_t>(maxPaddedCols_));
    }
    if (maxBranchOut_ > 0) {
      s->branch.resize(block * static_cast<size_t>(maxOut_));
      s->branchPower.resize(block);
      s->dendritePower.resize(static_cast<size_t>(maxOut_));
    }
    out.push_back(std::move(s));
  }
  return out;
}

void Network::giveBack(std::vector<std::unique_ptr<Scratch>>& scratches) {
  std::lock_guard<std::mutex> lock(poolMutex_);
  for (auto& s : scratches) pool_.push_back(std::move(s));
  scratches.clear();
}

RunStats Network::forward(const float* in, float* out, int64_t batch, uint64_t run) {
  if (batch <= 0) return {};
  const int64_t inF = inFeatures();
  const int64_t outF = outFeatures();

  int64_t workers = std::min<int64_t>(threads_, (batch + minRowsPerThread_ - 1) / minRowsPerThread_);
  workers = std::max<int64_t>(1, workers);
  int64_t chunk = (batch + workers - 1) / workers;
  chunk = (chunk + gemm::kMR - 1) / gemm::kMR * gemm::kMR;
  workers = (batch + chunk - 1) / chunk;

  const uint64_t runKey = noise::streamKey(noiseSeed_, run);
  auto scratches = acquire(static_cast<size_t>(workers));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  std::vector<RunStats> power(static_cast<size_t>(workers));
  struct Job {
    Network* net;
    const float* in;
    float* out;
    int64_t batch, chunk, inF, outF;
    uint64_t runKey;
    std::vector<std::unique_ptr<Scratch>>* scratches;
    std::vector<std::exception_ptr>* errors;
    std::vector<RunStats>* power;
  } job{this, in, out, batch, chunk, inF, outF, runKey, &scratches, &errors, &power};
  workers_.run(workers, [](void* ctx, int64_t t) {
    const Job& j = *static_cast<const Job*>(ctx);
    FlushDenormals ftz;
    try {
      const int64_t r0 = t * j.chunk;
      const int64_t rows = std::min(j.chunk, j.batch - r0);
      (*j.power)[static_cast<size_t>(t)] = j.net->forwardRows(j.in + r0 * j.inF, j.out + r0 * j.outF, rows, r0, j.runKey,
                                                             *(*j.scratches)[static_cast<size_t>(t)]);
    } catch (...) {
      (*j.errors)[static_cast<size_t>(t)] = std::current_exception();
    }
  }, &job);
  giveBack(scratches);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  RunStats total;
  for (const RunStats& p : power) total += p;
  return total;
}

RunStats Network::forwardRows(const float* in, float* out, int64_t rows, int64_t row0, uint64_t runKey, Scratch& s) const {
  RunStats stats;
  double& power = stats.crossbarPower;
  const size_t nLayers = layers_.size();
  const int64_t inF0 = layers_.front().spec.inFeatures;
  const int64_t outLast = layers_.back().spec.outFeatures;
  for (int64_t r0 = 0; r0 < rows; r0 += blockRows_) {
    const int64_t nr = std::min(blockRows_, rows - r0);
    const float* x = in + r0 * inF0;
    if (readNoise_)  // each sample's stream, keyed by its row in the whole batch (not by thread or block)
      for (int64_t i = 0; i < nr; ++i)
        noise::seed(s.noise[static_cast<size_t>(i)], noise::streamKey(runKey, static_cast<uint64_t>(row0 + r0 + i)));
    for (size_t li = 0; li < nLayers; ++li) {
      const Layer& layer = layers_[li];
      const LayerSpec& ls = layer.spec;
      const int64_t inF = ls.inFeatures;
      const int64_t outF = ls.outFeatures;
      float* acc = li + 1 == nLayers ? out + r0 * outLast : s.act[li % 2].data();

      // DAC: per-row abs-max scaling + quantisation (or the raw input when dacBits == 0).
      const float* u = x;
      if (layer.intPath) {
        for (int64_t i = 0; i < nr; ++i)
          s.scale[i] = dacCodes_(x + i * inF, inF, ls.dacBits, s.u.data() + i * inF, s.codes.data() + i * inF);
        u = s.u.data();
      } else if (ls.dacBits > 0) {
        for (int64_t i = 0; i < nr; ++i) s.scale[i] = periphery::dacRow(x + i * inF, inF, ls.dacBits, s.u.data() + i * inF);
        u = s.u.data();
      } else {
        std::fill(s.scale.begin(), s.scale.begin() + nr, 1.0f);
      }
      // Crossbar read power of each sample (the only data-dependent energy term).
      // and its driven rows: a row whose input is zero is not driven (event-driven rows).
      for (int64_t i = 0; i < nr; ++i) {
        const float* ui = u + i * inF;
        const double p = readPower(layer, ui);
        if (std::isfinite(p)) power += p;
        double events = 0.0;
        for (int64_t j = 0; j < inF; ++j) events += ui[j] != 0.0f ? layer.rowDrives[static_cast<size_t>(j)] : 0.0f;
        stats.rowEvents += events;
        if (li == 0) stats.inputRowEvents += events;
      }

      const bool dendritic = ls.dendrites.active();
      int32_t branch = 0;  // dendritic: the branch whose partial sums s.branch holds
      if (dendritic)
        dendriticBegin(layer, s, nr, acc);
      else
        std::fill(acc, acc + nr * outF, 0.0f);
      size_t packedGroup = static_cast<size_t>(-1);    // input group whose gathered block is in s.apack
      size_t packedGroup8 = static_cast<size_t>(-1);   // ... whose 8-bit codes are in s.capack
      size_t packedGroupSq = static_cast<size_t>(-1);  // ... whose squared block is in s.apack2
      for (const size_t ti : layer.order) {
        const Tile& tile = layer.tiles[ti];
        const TileSpec& ts = ls.tiles[ti];
        if (dendritic)
          for (; branch < ts.branch; ++branch) dendriticBranch(layer, s, nr, branch, acc, stats);
        const int32_t* gather = tile.gatherInput ? ts.inputIndex.data() : nullptr;
        const size_t group = layer.inputGroup[ti];
        if (layer.intPath) {
          // Integer crossbar: DAC codes × wq, exact int32 sums; then current / vRead = sum · intScale.
          const int64_t ldc = tile.intCols();
          const int64_t m = tile.intM();
          if (tile.use8) {
            igemm::multiply8(nr, s.codes.data() + tile.inputOffset, inF, gather, tile.wq8, s.ci.data(), ldc,
                             s.capack.data(), group == packedGroup8);
            packedGroup8 = tile.wq8.quads <= igemm::kKCP ? group : static_cast<size_t>(-1);
            packedGroup = static_cast<size_t>(-1);
          } else {
            igemm::multiply(ikernel_, nr, s.codes.data() + tile.inputOffset, inF, gather, tile.wq, s.ci.data(), ldc,
                            s.capack.data(), group == packedGroup);
            packedGroup = tile.wq.pairs <= igemm::kKCP ? group : static_cast<size_t>(-1);
            packedGroup8 = static_cast<size_t>(-1);
          }
          float* dst = dendritic ? s.branch.data() : acc;
          const int64_t ldDst = outF;
          if (!readNoise_) {  // fused: scale, ADC, add into the layer's (or branch's) outputs
            intEpilogue_(s.ci.data(), ldc, nr, m, tile.intScale, tile.quantiseOutput ? &tile.adc : nullptr,
                         tile.codeScale, ts.outputIndex.data(), tile.contiguousOutput, dst, ldDst);
            continue;
          }
          intToFloat_(s.ci.data(), s.c.data(), nr * ldc, tile.intScale);
          // S = (u∘u)·Var in float (the squared DAC outputs packed once per input group when k fits one K block)
          const bool one = tile.var.k <= gemm::kKC;
          gemm::multiply(kernel_, nr, u + tile.inputOffset, inF, gather, tile.var, s.cvar.data(), ldc, s.apack2.data(),
                         one && group == packedGroupSq, true);
          packedGroupSq = one ? group : static_cast<size_t>(-1);
        } else {
          const int64_t ldc = tile.weff.paddedCols();
          gemm::multiply(kernel_, nr, u + tile.inputOffset, inF, gather, tile.weff, s.c.data(), ldc, s.apack.data(),
                         group == packedGroup);
          packedGroup = tile.weff.k <= gemm::kKC ? group : static_cast<size_t>(-1);
        }
        const int64_t ldc = layer.intPath ? tile.intCols() : tile.weff.paddedCols();
        const int64_t m = layer.intPath ? tile.intM() : tile.weff.m;
        if (readNoise_ && !layer.intPath) {
          // S = (u∘u)·Var: the variance of each output current (in (current / vRead)² units)
          if (tile.var.k <= gemm::kKC) {
            // s.apack holds this tile's packed A (one K block): square it once per input group
            if (layer.inputGroup[ti] != packedGroupSq) gemm::squarePacked(s.apack.data(), s.apack2.data(), nr, tile.var.k);
            packedGroupSq = layer.inputGroup[ti];
            gemm::multiply(kernel_, nr, u, inF, nullptr, tile.var, s.cvar.data(), ldc, s.apack2.data(), true);
          } else {
            gemm::multiply(kernel_, nr, u + tile.inputOffset, inF, gather, tile.var, s.cvar.data(), ldc,
                           s.apack2.data(), false, true);
            packedGroupSq = static_cast<size_t>(-1);
          }
        }
        if (readNoise_)  // I += sqrt(S) * N(0, 1), before the ADC
          noiseKernel_.add(s.noise.data(), nr, s.c.data(), s.cvar.data(), ldc, ldc);
        floatEpilogue_(s.c.data(), ldc, nr, m, tile.quantiseOutput ? &tile.adc : nullptr, ts.outputIndex.data(),
                       tile.contiguousOutput, dendritic ? s.branch.data() : acc, outF);
      }

      if (dendritic) {
        for (; branch < ls.dendrites.count; ++branch) dendriticBranch(layer, s, nr, branch, acc, stats);
        dendriticFinish(layer, s, nr, acc, stats);
      } else {
        for (int64_t i = 0; i < nr; ++i) {
          float* y = acc + i * outF;
          const float sc = s.scale[i];
          for (int64_t j = 0; j < outF; ++j) y[j] = y[j] * sc * ls.outScale[j] + ls.bias[j];
          periphery::activate(y, outF, ls.activation, ls.alpha, ls.beta);
        }
      }
      for (int64_t i = 0; i < nr; ++i) {
        float* y = acc + i * outF;
        if (ls.somaEnergy > 0.0) {
          // A soma saturates at its rated current: its output is bounded by ±somaFullScale, and its energy is its
          // output current (onCurrent · |y| / somaFullScale <= onCurrent) over the integration time.
          const float full = static_cast<float>(ls.somaFullScale);
          double sum = 0.0;
          int64_t active = 0;
          for (int64_t j = 0; j < outF; ++j) {
            y[j] = std::clamp(y[j], -full, full);  // NaN stays NaN
            const double a = std::fabs(static_cast<double>(y[j]));
            sum += a;
            active += a > 0.01 * ls.somaFullScale ? 1 : 0;
          }
          const double e = sum / ls.somaFullScale * ls.somaEnergy;
          if (std::isfinite(e)) stats.somaEnergy += e;
          stats.somasActive += static_cast<double>(active);
          stats.somas += static_cast<double>(outF);
        }
        periphery::applyHead(y, outF, ls.head);
      }
      x = acc;
    }
  }
  return stats;
}

void Network::dendriticBegin(const Layer& layer, Scratch& s, int64_t nr, float* acc) const {
  const LayerSpec& ls = layer.spec;
  const int64_t outF = ls.outFeatures;
  const float kappa = ls.dendrites.bypass ? 1.0f : static_cast<float>(ls.dendrites.biasScale);
  for (int64_t i = 0; i < nr; ++i)
    for (int64_t j = 0; j < outF; ++j) acc[i * outF + j] = kappa * ls.bias[j];
  std::fill(s.branch.data(), s.branch.data() + nr * outF, 0.0f);
  std::fill(s.branchPower.begin(), s.branchPower.begin() + nr, 0.0);
}

void Network::dendriticBranch(const Layer& layer, Scratch& s, int64_t nr, int32_t b, float* acc, RunStats& stats) const {
  const LayerSpec& ls = layer.spec;
  const DendriteSpec& d = ls.dendrites;
  const int64_t outF = ls.outFeatures;
  for (int64_t i = 0; i < nr; ++i) {
    const float* zb = s.branch.data() + i * outF;
    float* y = acc + i * outF;
    const float sc = s.scale[i];
    if (d.bypass) {
      for (int64_t j = 0; j < outF; ++j) y[j] += zb[j] * sc * ls.outScale[j];
    } else {  // Σ over the row's dendrites of (a|u|)·i(a|u|)·ε, branch by branch
      s.branchPower[static_cast<size_t>(i)] +=
          dendrite::branchRow(layer.consts, zb, sc, ls.outScale.data(), layer.eps.data() + static_cast<int64_t>(b) * outF,
                              y, s.dendritePower.data(), outF);
      // Branch signals in the ON region (the applied voltage saturates at the rating, as in branchRow).
      const double onAt = layer.consts.onAt;
      for (int64_t j = 0; j < outF; ++j) {
        const double u = static_cast<double>(zb[j] * sc * ls.outScale[j]) * layer.consts.invF;
        if (!(u != 0.0) || (d.rectify && u < 0.0)) continue;
        stats.signals += 1.0;
        if (std::min(std::fabs(u) * layer.consts.ratio, layer.consts.maxRatio) >= onAt) stats.signalsOn += 1.0;
      }
    }
  }
  std::fill(s.branch.data(), s.branch.data() + nr * outF, 0.0f);
}

void Network::dendriticFinish(const Layer& layer, Scratch& s, int64_t nr, float* acc, RunStats& stats) const {
  const LayerSpec& ls = layer.spec;
  const int64_t outF = ls.outFeatures;
  for (int64_t i = 0; i < nr; ++i) {
    const double e = s.branchPower[static_cast<size_t>(i)] * ls.dendrites.energyUnit;
    if (std::isfinite(e)) stats.dendriteEnergy += e;
    periphery::activate(acc + i * outF, outF, ls.activation, ls.alpha, ls.beta);
  }
}

}  // namespace dendra
