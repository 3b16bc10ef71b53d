#include "igemm.h"

#include <algorithm>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace dendra::igemm {

namespace {

inline int32_t lo16(int32_t w) { return static_cast<int16_t>(static_cast<uint32_t>(w) & 0xFFFFu); }
inline int32_t hi16(int32_t w) { return static_cast<int16_t>(static_cast<uint32_t>(w) >> 16); }

void microPortable(int64_t kp, const int32_t* a, const int32_t* b, int32_t* c, int64_t ldc, bool accumulate) {
  int32_t acc[kMR][kNR];
  for (int64_t i = 0; i < kMR; ++i)
    for (int64_t j = 0; j < kNR; ++j) acc[i][j] = accumulate ? c[i * ldc + j] : 0;
  for (int64_t p = 0; p < kp; ++p) {
    const int32_t* bp = b + p * kNR;
    for (int64_t i = 0; i < kMR; ++i) {
      const int32_t al = lo16(a[p * kMR + i]), ah = hi16(a[p * kMR + i]);
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] += al * lo16(bp[j]) + ah * hi16(bp[j]);
    }
  }
  for (int64_t i = 0; i < kMR; ++i)
    for (int64_t j = 0; j < kNR; ++j) c[i * ldc + j] = acc[i][j];
}

#ifdef DENDRA_X86_DISPATCH

#define DENDRA_AVX2 __attribute__((target("avx2,fma")))
#define DENDRA_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))
#define DENDRA_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

/** One 6 x 16 half of a panel with __m256: vpmaddwd + vpaddd. */
DENDRA_AVX2 inline void halfAvx2(int64_t kp, const int32_t* a, const int32_t* b, int32_t* c, int64_t ldc, bool accumulate) {
  __m256i acc[12];
  for (int q = 0; q < 12; ++q) acc[q] = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int64_t p = 0; p < kp; ++p) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + p * kNR));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + p * kNR + 8));
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m256i ai = _mm256_set1_epi32(a[p * kMR + i]);
      acc[2 * i] = _mm256_add_epi32(acc[2 * i], _mm256_madd_epi16(ai, b0));
      acc[2 * i + 1] = _mm256_add_epi32(acc[2 * i + 1], _mm256_madd_epi16(ai, b1));
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    __m256i* ci = reinterpret_cast<__m256i*>(c + i * ldc);
    if (accumulate) {
      acc[2 * i] = _mm256_add_epi32(acc[2 * i], _mm256_loadu_si256(ci));
      acc[2 * i + 1] = _mm256_add_epi32(acc[2 * i + 1], _mm256_loadu_si256(ci + 1));
    }
    _mm256_storeu_si256(ci, acc[2 * i]);
    _mm256_storeu_si256(ci + 1, acc[2 * i + 1]);
  }
}

DENDRA_AVX2 void microAvx2(int64_t kp, const int32_t* a, const int32_t* b, int32_t* c, int64_t ldc, bool accumulate) {
  halfAvx2(kp, a, b, c, ldc, accumulate);
  halfAvx2(kp, a, b + 16, c + 16, ldc, accumulate);
}

// The 6 x 32 step with __m512i; STEP(acc, a, b) is vpdpwssd (vnni) or vpmaddwd + vpaddd (avx512).
#define DENDRA_MICRO512(STEP)                                                      \
  __m512i acc[12];                                                                 \
  for (int q = 0; q < 12; ++q) acc[q] = _mm512_setzero_si512();                    \
  _Pragma("GCC unroll 4") for (int64_t p = 0; p < kp; ++p) {                       \
    const __m512i b0 = _mm512_load_si512(b + p * kNR);                             \
    const __m512i b1 = _mm512_load_si512(b + p * kNR + 16);                        \
    _Pragma("GCC unroll 6") for (int i = 0; i < 6; ++i) {                          \
      const __m512i ai = _mm512_set1_epi32(a[p * kMR + i]);                        \
      acc[2 * i] = STEP(acc[2 * i], ai, b0);                                       \
      acc[2 * i + 1] = STEP(acc[2 * i + 1], ai, b1);                               \
    }                                                                              \
  }                                                                                \
  for (int i = 0; i < 6; ++i) {                                                    \
    int32_t* ci = c + i * ldc;                                                     \
    if (accumulate) {                                                              \
      acc[2 * i] = _mm512_add_epi32(acc[2 * i], _mm512_loadu_si512(ci));           \
      acc[2 * i + 1] = _mm512_add_epi32(acc[2 * i + 1], _mm512_loadu_si512(ci + 16)); \
    }                                                                              \
    _mm512_storeu_si512(ci, acc[2 * i]);                                           \
    _mm512_storeu_si512(ci + 16, acc[2 * i + 1]);                                  \
  }

#define DENDRA_MADD512(acc, a, b) _mm512_add_epi32((acc), _mm512_madd_epi16((a), (b)))
#define DENDRA_DPWSSD512(acc, a, b) _mm512_dpwssd_epi32((acc), (a), (b))

DENDRA_AVX512 void microAvx512(int64_t kp, const int32_t* a, const int32_t* b, int32_t* c, int64_t ldc, bool accumulate) {
  DENDRA_MICRO512(DENDRA_MADD512)
}

DENDRA_VNNI void microVnni(int64_t kp, const int32_t* a, const int32_t* b, int32_t* c, int64_t ldc, bool accumulate) {
  DENDRA_MICRO512(DENDRA_DPWSSD512)
}

#undef DENDRA_MICRO512
#undef DENDRA_MADD512
#undef DENDRA_DPWSSD512


/** 6 x 32 with vpdpbusd: per quad of k, two loads of B and six broadcasts of A for twelve dot products. */
DENDRA_VNNI void micro8Vnni(int64_t kq, const int32_t* a, const int32_t* b, int32_t* c, int64_t ldc, const int32_t* bias,
                            bool accumulate) {
  __m512i acc[12];
  for (int i = 0; i < 6; ++i) {
    if (accumulate) {
      acc[2 * i] = _mm512_loadu_si512(c + i * ldc);
      acc[2 * i + 1] = _mm512_loadu_si512(c + i * ldc + 16);
    } else {
      acc[2 * i] = _mm512_loadu_si512(bias);
      acc[2 * i + 1] = _mm512_loadu_si512(bias + 16);
    }
  }
#pragma GCC unroll 4
  for (int64_t p = 0; p < kq; ++p) {
    const __m512i b0 = _mm512_load_si512(b + p * kNR);
    const __m512i b1 = _mm512_load_si512(b + p * kNR + 16);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m512i ai = _mm512_set1_epi32(a[p * kMR + i]);
      acc[2 * i] = _mm512_dpbusd_epi32(acc[2 * i], ai, b0);
      acc[2 * i + 1] = _mm512_dpbusd_epi32(acc[2 * i + 1], ai, b1);
    }
  }
  for (int i = 0; i < 6; ++i) {
    _mm512_storeu_si512(c + i * ldc, acc[2 * i]);
    _mm512_storeu_si512(c + i * ldc + 16, acc[2 * i + 1]);
  }
}

#endif  // DENDRA_X86_DISPATCH

inline uint32_t word(int16_t lo, int16_t hi) {
  return static_cast<uint32_t>(static_cast<uint16_t>(lo)) | (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16);
}

/** Gathers rows [0, rows) and pairs [g0, g0 + kp) of A into micro-panels of kMR rows (zero-padded). */
void packA(int64_t rows, const int16_t* x, int64_t ldx, const int32_t* gather, int64_t k, int64_t g0, int64_t kp,
           int32_t* apack) {
  const int64_t panels = (rows + kMR - 1) / kMR;
  for (int64_t ir = 0; ir < panels; ++ir) {
    int32_t* dst = apack + ir * kp * kMR;
    for (int64_t i = 0; i < kMR; ++i) {
      const int64_t row = ir * kMR + i;
      if (row >= rows) {
        for (int64_t g = 0; g < kp; ++g) dst[g * kMR + i] = 0;
        continue;
      }
      const int16_t* src = x + row * ldx;
      if (!gather && 2 * (g0 + kp) <= k) {  // contiguous codes: each pair is one (unaligned) 32-bit word
        const int16_t* s2 = src + 2 * g0;
        for (int64_t g = 0; g < kp; ++g) {
          int32_t v;
          std::memcpy(&v, s2 + 2 * g, sizeof v);
          dst[g * kMR + i] = v;
        }
        continue;
      }
      for (int64_t g = 0; g < kp; ++g) {
        const int64_t p = 2 * (g0 + g);
        const int16_t v0 = gather ? src[gather[p]] : src[p];
        const int16_t v1 = p + 1 < k ? (gather ? src[gather[p + 1]] : src[p + 1]) : int16_t{0};
        dst[g * kMR + i] = static_cast<int32_t>(word(v0, v1));
      }
    }
  }
}

inline uint32_t byte(int16_t v, int shift) { return static_cast<uint32_t>(static_cast<uint8_t>(v)) << shift; }

/** Gathers rows [0, rows) and quads [g0, g0 + kq) of A as bytes c + 128 into micro-panels of kMR rows. */
void packA8(int64_t rows, const int16_t* x, int64_t ldx, const int32_t* gather, int64_t k, int64_t g0, int64_t kq,
            int32_t* apack) {
  const int64_t panels = (rows + kMR - 1) / kMR;
  for (int64_t ir = 0; ir < panels; ++ir) {
    int32_t* dst = apack + ir * kq * kMR;
    for (int64_t i = 0; i < kMR; ++i) {
      const int64_t row = ir * kMR + i;
      const int16_t* src = row < rows ? x + row * ldx : nullptr;
      for (int64_t g = 0; g < kq; ++g) {
        uint32_t wv = 0;
        for (int q = 0; q < 4; ++q) {
          const int64_t p = 4 * (g0 + g) + q;
          const int16_t code = src && p < k ? (gather ? src[gather[p]] : src[p]) : int16_t{0};
          wv |= byte(static_cast<int16_t>(code + 128), 8 * q);
        }
        dst[g * kMR + i] = static_cast<int32_t>(wv);
      }
    }
  }
}

}  // namespace

bool has8(cpu::Isa isa) {
#ifdef DENDRA_X86_DISPATCH
  return isa == cpu::Isa::Vnni;
#else
  (void)isa;
  return false;
#endif
}

PackedInt8 pack8(const int16_t* w, int64_t k, int64_t m) {
  PackedInt8 pm;
  pm.k = k;
  pm.m = m;
  pm.quads = (k + 3) / 4;
  pm.panels = (m + kNR - 1) / kNR;
  pm.data.assign(static_cast<size_t>(pm.panels * pm.quads * kNR), 0);
  pm.bias.assign(static_cast<size_t>(pm.paddedCols()), 0);
  for (int64_t col = 0; col < m; ++col) {
    int32_t sum = 0;
    for (int64_t p = 0; p < k; ++p) sum += w[p * m + col];
    pm.bias[static_cast<size_t>(col)] = -128 * sum;
  }
  for (int64_t j = 0; j < pm.panels; ++j) {
    int32_t* panel = pm.data.data() + j * pm.quads * kNR;
    for (int64_t g = 0; g < pm.quads; ++g)
      for (int64_t c = 0; c < kNR && j * kNR + c < m; ++c) {
        uint32_t wv = 0;
        for (int q = 0; q < 4; ++q) {
          const int64_t p = 4 * g + q;
          if (p < k) wv |= byte(w[p * m + j * kNR + c], 8 * q);
        }
        panel[g * kNR + c] = static_cast<int32_t>(wv);
      }
  }
  return pm;
}

void multiply8(int64_t rows, const int16_t* x, int64_t ldx, const int32_t* gather, const PackedInt8& w, int32_t* c,
               int64_t ldc, int32_t* apack, bool reusePackedA) {
#ifdef DENDRA_X86_DISPATCH
  if (rows <= 0) return;
  const int64_t quads = w.quads;
  const int64_t blocks = (quads + kKCP - 1) / kKCP;
  const int64_t kqBlock = (quads + blocks - 1) / blocks;
  const int64_t panelsA = (rows + kMR - 1) / kMR;
  const int64_t panelStride = quads * kNR;
  for (int64_t g0 = 0; g0 < quads; g0 += kqBlock) {
    const int64_t kq = std::min(kqBlock, quads - g0);
    if (!(reusePackedA && blocks == 1)) packA8(rows, x, ldx, gather, w.k, g0, kq, apack);
    for (int64_t j = 0; j < w.panels; ++j) {
      const int32_t* b = w.data.data() + j * panelStride + g0 * kNR;
      for (int64_t ir = 0; ir < panelsA; ++ir)
        micro8Vnni(kq, apack + ir * kq * kMR, b, c + ir * kMR * ldc + j * kNR, ldc, w.bias.data() + j * kNR, g0 > 0);
    }
  }
#else
  (void)rows, (void)x, (void)ldx, (void)gather, (void)w, (void)c, (void)ldc, (void)apack, (void)reusePackedA;
#endif
}

Kernel kernelFor(cpu::Isa isa) {
#ifdef DENDRA_X86_DISPATCH
  if (isa == cpu::Isa::Vnni) return Kernel{"vnni", &microVnni};
  if (isa == cpu::Isa::Avx512) return Kernel{"avx512", &microAvx512};
  if (isa == cpu::Isa::Avx2) return Kernel{"avx2", &microAvx2};
#endif
  (void)isa;
  return Kernel{"portable", &microPortable};
}

PackedInt pack(const int16_t* w, int64_t k, int64_t m) {
  PackedInt pm;
  pm.k = k;
  pm.m = m;
  pm.pairs = (k + 1) / 2;
  pm.panels = (m + kNR - 1) / kNR;
  pm.data.assign(static_cast<size_t>(pm.panels * pm.pairs * kNR), 0);
  for (int64_t j = 0; j < pm.panels; ++j) {
    int32_t* panel = pm.data.data() + j * pm.pairs * kNR;
    for (int64_t g = 0; g < pm.pairs; ++g)
      for (int64_t c = 0; c < kNR && j * kNR + c < m; ++c) {
        const int64_t col = j * kNR + c;
        const int16_t v0 = w[2 * g * m + col];
        const int16_t v1 = 2 * g + 1 < k ? w[(2 * g + 1) * m + col] : int16_t{0};
        panel[g * kNR + c] = static_cast<int32_t>(word(v0, v1));
      }
  }
  return pm;
}

void multiply(const Kernel& kernel, int64_t rows, const int16_t* x, int64_t ldx, const int32_t* gather,
              const PackedInt& w, int32_t* c, int64_t ldc, int32_t* apack, bool reusePackedA) {
  if (rows <= 0) return;
  const int64_t pairs = w.pairs;
  const int64_t blocks = (pairs + kKCP - 1) / kKCP;
  const int64_t kpBlock = (pairs + blocks - 1) / blocks;
  const int64_t panelsA = (rows + kMR - 1) / kMR;
  const int64_t panelStride = pairs * kNR;
  for (int64_t g0 = 0; g0 < pairs; g0 += kpBlock) {
    const int64_t kp = std::min(kpBlock, pairs - g0);
    if (!(reusePackedA && blocks == 1)) packA(rows, x, ldx, gather, w.k, g0, kp, apack);
    for (int64_t j = 0; j < w.panels; ++j) {
      const int32_t* b = w.data.data() + j * panelStride + g0 * kNR;
      for (int64_t ir = 0; ir < panelsA; ++ir)
        kernel.micro(kp, apack + ir * kp * kMR, b, c + ir * kMR * ldc + j * kNR, ldc, g0 > 0);
    }
  }
}

}  // namespace dendra::igemm
