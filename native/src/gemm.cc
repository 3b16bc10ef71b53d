#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace dendra::gemm {

namespace {

// Portable micro-kernel; the compiler vectorises the inner j loop with whatever the baseline ISA offers.
void microScalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  float acc[kMR][kNR];
  for (int64_t i = 0; i < kMR; ++i)
    for (int64_t j = 0; j < kNR; ++j) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
  for (int64_t p = 0; p < kc; ++p) {
    const float* bp = b + p * kNR;
    const float* ap = a + p * kMR;
    for (int64_t i = 0; i < kMR; ++i) {
      const float ai = ap[i];
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] += ai * bp[j];
    }
  }
  for (int64_t i = 0; i < kMR; ++i)
    for (int64_t j = 0; j < kNR; ++j) c[i * ldc + j] = acc[i][j];
}

#ifdef DENDRA_X86_DISPATCH

#define DENDRA_ROW(i)                                  \
  {                                                    \
    const __m256 ai = _mm256_broadcast_ss(ap + (i));   \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);        \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);        \
  }

#define DENDRA_STEP(ap, bp)                            \
  {                                                    \
    const __m256 b0 = _mm256_load_ps(bp);              \
    const __m256 b1 = _mm256_load_ps((bp) + 8);        \
    DENDRA_ROW(0) DENDRA_ROW(1) DENDRA_ROW(2)          \
    DENDRA_ROW(3) DENDRA_ROW(4) DENDRA_ROW(5)          \
  }

__attribute__((target("avx2,fma"))) void microAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                   bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

  int64_t p = 0;
  for (; p + 4 <= kc; p += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kNR), _MM_HINT_T0);
    {
      const float* ap = a;
      DENDRA_STEP(ap, b)
    }
    {
      const float* ap = a + kMR;
      DENDRA_STEP(ap, b + kNR)
    }
    {
      const float* ap = a + 2 * kMR;
      DENDRA_STEP(ap, b + 2 * kNR)
    }
    {
      const float* ap = a + 3 * kMR;
      DENDRA_STEP(ap, b + 3 * kNR)
    }
    a += 4 * kMR;
    b += 4 * kNR;
  }
  for (; p < kc; ++p) {
    const float* ap = a;
    DENDRA_STEP(ap, b)
    a += kMR;
    b += kNR;
  }

#define DENDRA_STORE(i)                                                              \
  {                                                                                  \
    float* ci = c + (i) * ldc;                                                       \
    if (accumulate) {                                                                \
      c##i##0 = _mm256_add_ps(c##i##0, _mm256_loadu_ps(ci));                         \
      c##i##1 = _mm256_add_ps(c##i##1, _mm256_loadu_ps(ci + 8));                     \
    }                                                                                \
    _mm256_storeu_ps(ci, c##i##0);                                                   \
    _mm256_storeu_ps(ci + 8, c##i##1);                                               \
  }
  DENDRA_STORE(0) DENDRA_STORE(1) DENDRA_STORE(2) DENDRA_STORE(3) DENDRA_STORE(4) DENDRA_STORE(5)
#undef DENDRA_STORE
}

#undef DENDRA_STEP
#undef DENDRA_ROW

template <int NP>
__attribute__((target("avx2,fma"))) void rowAvx2Impl(int64_t kc, const float* a, const float* b, int64_t stride,
                                                      float* c, bool accumulate) {
  __m256 acc[2 * NP];
  for (int q = 0; q < 2 * NP; ++q) acc[q] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 ap = _mm256_broadcast_ss(a + p * kMR);
    const float* bp = b + p * kNR;
    for (int q = 0; q < NP; ++q) {
      acc[2 * q] = _mm256_fmadd_ps(ap, _mm256_load_ps(bp + q * stride), acc[2 * q]);
      acc[2 * q + 1] = _mm256_fmadd_ps(ap, _mm256_load_ps(bp + q * stride + 8), acc[2 * q + 1]);
    }
  }
  for (int q = 0; q < 2 * NP; ++q) {
    float* cq = c + q * 8;
    if (accumulate) acc[q] = _mm256_add_ps(acc[q], _mm256_loadu_ps(cq));
    _mm256_storeu_ps(cq, acc[q]);
  }
}

__attribute__((target("avx2,fma"))) void rowAvx2(int64_t kc, const float* a, const float* b, int64_t stride, float* c,
                                                 int64_t np, bool accumulate) {
  switch (np) {
    case 1: rowAvx2Impl<1>(kc, a, b, stride, c, accumulate); break;
    case 2: rowAvx2Impl<2>(kc, a, b, stride, c, accumulate); break;
    case 3: rowAvx2Impl<3>(kc, a, b, stride, c, accumulate); break;
    default: rowAvx2Impl<4>(kc, a, b, stride, c, accumulate); break;
  }
}

#endif  // DENDRA_X86_DISPATCH

/**
 * Gathers rows [0, rows) x k-range [p0, p0+kc) of A into micro-panels of kMR rows (zero-padded rows);
 * Square: each element squared (the read-noise variance GEMM).
 */
template <bool Square>
void packA(int64_t rows, const float* x, int64_t ldx, const int32_t* gather, int64_t p0, int64_t kc, float* apack) {
  const int64_t panels = (rows + kMR - 1) / kMR;
  for (int64_t ir = 0; ir < panels; ++ir) {
    float* dst = apack + ir * kc * kMR;
    for (int64_t i = 0; i < kMR; ++i) {
      const int64_t row = ir * kMR + i;
      if (row >= rows) {
        for (int64_t p = 0; p < kc; ++p) dst[p * kMR + i] = 0.0f;
        continue;
      }
      const float* src = x + row * ldx;
      if (gather) {
        const int32_t* g = gather + p0;
        for (int64_t p = 0; p < kc; ++p) {
          const float v = src[g[p]];
          dst[p * kMR + i] = Square ? v * v : v;
        }
      } else {
        const float* s = src + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * kMR + i] = Square ? s[p] * s[p] : s[p];
      }
    }
  }
}

}  // namespace

Kernel selectKernel() {
  // DENDRA_NATIVE_KERNEL=scalar forces the portable kernel (to test it on an AVX2 machine).
  const char* force = std::getenv("DENDRA_NATIVE_KERNEL");
  if (force && std::strcmp(force, "scalar") == 0) return Kernel{"scalar", &microScalar, nullptr};
#ifdef DENDRA_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernel{"avx2-fma", &microAvx2, &rowAvx2};
#endif
  return Kernel{"scalar", &microScalar, nullptr};
}

PackedMatrix allocatePacked(int64_t k, int64_t m) {
  PackedMatrix pm;
  pm.k = k;
  pm.m = m;
  pm.panels = (m + kNR - 1) / kNR;
  pm.data.assign(static_cast<size_t>(pm.panels * k * kNR), 0.0f);
  return pm;
}

PackedMatrix pack(const float* w, int64_t k, int64_t m) {
  PackedMatrix pm = allocatePacked(k, m);
  for (int64_t j = 0; j < pm.panels; ++j) {
    float* panel = pm.data.data() + j * k * kNR;
    const int64_t c0 = j * kNR;
    const int64_t nc = std::min(kNR, m - c0);
    for (int64_t p = 0; p < k; ++p) std::memcpy(panel + p * kNR, w + p * m + c0, static_cast<size_t>(nc) * sizeof(float));
  }
  return pm;
}

void squarePacked(const float* apack, float* out, int64_t rows, int64_t k) {
  const int64_t n = (rows + kMR - 1) / kMR * kMR * k;
  for (int64_t i = 0; i < n; ++i) out[i] = apack[i] * apack[i];
}

void multiply(const Kernel& kernel, int64_t rows, const float* x, int64_t ldx, const int32_t* gather,
              const PackedMatrix& w, float* c, int64_t ldc, float* apack, bool reusePackedA, bool squareA) {
  if (rows <= 0) return;
  const int64_t k = w.k;
  const int64_t kBlocks = (k + kKC - 1) / kKC;
  const int64_t kcBlock = (k + kBlocks - 1) / kBlocks;  // balanced K blocks, each <= kKC
  // Full micro-panels go through the 6x16 kernel; the rows of a trailing partial micro-panel go through the
  // row kernel (when there is one) instead of computing zero-padded rows.
  const int64_t partialRows = kernel.row ? rows % kMR : 0;
  const int64_t fullPanels = rows / kMR + (partialRows == 0 && rows % kMR != 0 ? 1 : 0);
  const int64_t panelStride = k * kNR;
  for (int64_t p0 = 0; p0 < k; p0 += kcBlock) {
    const int64_t kc = std::min(kcBlock, k - p0);
    const bool accumulate = p0 > 0;
    if (!(reusePackedA && kBlocks == 1)) {
      if (squareA)
        packA<true>(rows, x, ldx, gather, p0, kc, apack);
      else
        packA<false>(rows, x, ldx, gather, p0, kc, apack);
    }
    for (int64_t j = 0; j < w.panels; ++j) {
      const float* b = w.data.data() + j * panelStride + p0 * kNR;
      float* cj = c + j * kNR;
      for (int64_t ir = 0; ir < fullPanels; ++ir)
        kernel.micro(kc, apack + ir * kc * kMR, b, cj + ir * kMR * ldc, ldc, accumulate);
    }
    if (partialRows > 0) {
      const int64_t r0 = fullPanels * kMR;
      const float* a = apack + fullPanels * kc * kMR;
      for (int64_t j = 0; j < w.panels; j += kRowPanels) {
        const int64_t np = std::min(kRowPanels, w.panels - j);
        const float* b = w.data.data() + j * panelStride + p0 * kNR;
        for (int64_t i = 0; i < partialRows; ++i)
          kernel.row(kc, a + i, b, panelStride, c + (r0 + i) * ldc + j * kNR, np, accumulate);
      }
    }
  }
}

}  // namespace dendra::gemm
