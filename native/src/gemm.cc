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

#define DENDRA_AVX2 __attribute__((target("avx2,fma")))
#define DENDRA_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))

/**
 * One 6 x 16 half of a 32-column panel (b: the half's first column, row stride kNR): 12 __m256 accumulators.
 * Written as plain loops over an accumulator array: GCC then keeps every accumulator in its register
 * (a hand-unrolled form made it shuffle registers between the FMAs).
 */
DENDRA_AVX2 inline void halfAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  __m256 acc[12];
  for (int q = 0; q < 12; ++q) acc[q] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b + p * kNR);
    const __m256 b1 = _mm256_load_ps(b + p * kNR + 8);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + p * kMR + i);
      acc[2 * i] = _mm256_fmadd_ps(ai, b0, acc[2 * i]);
      acc[2 * i + 1] = _mm256_fmadd_ps(ai, b1, acc[2 * i + 1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc[2 * i] = _mm256_add_ps(acc[2 * i], _mm256_loadu_ps(ci));
      acc[2 * i + 1] = _mm256_add_ps(acc[2 * i + 1], _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, acc[2 * i]);
    _mm256_storeu_ps(ci + 8, acc[2 * i + 1]);
  }
}

DENDRA_AVX2 void microAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  halfAvx2(kc, a, b, c, ldc, accumulate);
  halfAvx2(kc, a, b + 16, c + 16, ldc, accumulate);
}

template <int NP>
DENDRA_AVX2 void rowAvx2Impl(int64_t kc, const float* a, const float* b, int64_t stride, float* c, bool accumulate) {
  constexpr int V = kNR / 8;  // __m256 per panel row
  __m256 acc[V * NP];
  for (int q = 0; q < V * NP; ++q) acc[q] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 ap = _mm256_broadcast_ss(a + p * kMR);
    const float* bp = b + p * kNR;
    for (int q = 0; q < NP; ++q)
      for (int v = 0; v < V; ++v) acc[V * q + v] = _mm256_fmadd_ps(ap, _mm256_load_ps(bp + q * stride + 8 * v), acc[V * q + v]);
  }
  for (int q = 0; q < V * NP; ++q) {
    float* cq = c + q * 8;
    if (accumulate) acc[q] = _mm256_add_ps(acc[q], _mm256_loadu_ps(cq));
    _mm256_storeu_ps(cq, acc[q]);
  }
}

DENDRA_AVX2 void rowAvx2(int64_t kc, const float* a, const float* b, int64_t stride, float* c, int64_t np,
                         bool accumulate) {
  switch (np) {
    case 1: rowAvx2Impl<1>(kc, a, b, stride, c, accumulate); break;
    default: rowAvx2Impl<2>(kc, a, b, stride, c, accumulate); break;
  }
}

// 6 x 32 with 12 __m512 accumulators: per k, two loads of B and six broadcasts of A for twelve FMAs.
DENDRA_AVX512 void microAvx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[12];
  for (int q = 0; q < 12; ++q) acc[q] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(b + p * kNR);
    const __m512 b1 = _mm512_load_ps(b + p * kNR + 16);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m512 ai = _mm512_set1_ps(a[p * kMR + i]);
      acc[2 * i] = _mm512_fmadd_ps(ai, b0, acc[2 * i]);
      acc[2 * i + 1] = _mm512_fmadd_ps(ai, b1, acc[2 * i + 1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc[2 * i] = _mm512_add_ps(acc[2 * i], _mm512_loadu_ps(ci));
      acc[2 * i + 1] = _mm512_add_ps(acc[2 * i + 1], _mm512_loadu_ps(ci + 16));
    }
    _mm512_storeu_ps(ci, acc[2 * i]);
    _mm512_storeu_ps(ci + 16, acc[2 * i + 1]);
  }
}

template <int NP>
DENDRA_AVX512 void rowAvx512Impl(int64_t kc, const float* a, const float* b, int64_t stride, float* c, bool accumulate) {
  constexpr int V = kNR / 16;  // __m512 per panel row
  __m512 acc[V * NP];
  for (int q = 0; q < V * NP; ++q) acc[q] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 ap = _mm512_set1_ps(a[p * kMR]);
    const float* bp = b + p * kNR;
    for (int q = 0; q < NP; ++q)
      for (int v = 0; v < V; ++v)
        acc[V * q + v] = _mm512_fmadd_ps(ap, _mm512_load_ps(bp + q * stride + 16 * v), acc[V * q + v]);
  }
  for (int q = 0; q < V * NP; ++q) {
    float* cq = c + q * 16;
    if (accumulate) acc[q] = _mm512_add_ps(acc[q], _mm512_loadu_ps(cq));
    _mm512_storeu_ps(cq, acc[q]);
  }
}

DENDRA_AVX512 void rowAvx512(int64_t kc, const float* a, const float* b, int64_t stride, float* c, int64_t np,
                             bool accumulate) {
  switch (np) {
    case 1: rowAvx512Impl<1>(kc, a, b, stride, c, accumulate); break;
    case 2: rowAvx512Impl<2>(kc, a, b, stride, c, accumulate); break;
    case 3: rowAvx512Impl<3>(kc, a, b, stride, c, accumulate); break;
    default: rowAvx512Impl<4>(kc, a, b, stride, c, accumulate); break;
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
    if ((ir + 1) * kMR <= rows) {  // a full micro-panel: the six rows side by side, written in order
      const float* s[kMR];
      for (int64_t i = 0; i < kMR; ++i) s[i] = x + (ir * kMR + i) * ldx;
      if (gather) {
        const int32_t* g = gather + p0;
        for (int64_t p = 0; p < kc; ++p)
          for (int64_t i = 0; i < kMR; ++i) {
            const float v = s[i][g[p]];
            dst[p * kMR + i] = Square ? v * v : v;
          }
      } else {
        for (int64_t p = 0; p < kc; ++p)
          for (int64_t i = 0; i < kMR; ++i) {
            const float v = s[i][p0 + p];
            dst[p * kMR + i] = Square ? v * v : v;
          }
      }
      continue;
    }
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

Kernel kernelFor(cpu::Isa isa) {
#ifdef DENDRA_X86_DISPATCH
  if (isa >= cpu::Isa::Avx512) return Kernel{cpu::name(isa), &microAvx512, &rowAvx512, 4, isa};
  if (isa == cpu::Isa::Avx2) return Kernel{cpu::name(isa), &microAvx2, &rowAvx2, 2, isa};
#endif
  return Kernel{cpu::name(cpu::Isa::Portable), &microScalar, nullptr, 1, cpu::Isa::Portable};
}

Kernel selectKernel() { return kernelFor(cpu::requested()); }

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
      for (int64_t j = 0; j < w.panels; j += kernel.rowPanels) {
        const int64_t np = std::min(kernel.rowPanels, w.panels - j);
        const float* b = w.data.data() + j * panelStride + p0 * kNR;
        for (int64_t i = 0; i < partialRows; ++i)
          kernel.row(kc, a + i, b, panelStride, c + (r0 + i) * ldc + j * kNR, np, accumulate);
      }
    }
  }
}

}  // namespace dendra::gemm
