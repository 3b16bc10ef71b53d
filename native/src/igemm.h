// Integer crossbar GEMM: C (int32) = gather(X) * W for 16-bit input codes X (the DAC's codes) and 16-bit
// weights W (a tile's G+ - G-, as level differences when the conductances sit on the device's levels, else
// in fixed point), with 32-bit sums. Every kernel path (portable, avx2, avx512, vnni) computes the same
// exact integers: the callers bound |X|, |W| and k so no sum can overflow (see Network and
// docs/performance.md).
//
// Layout as in gemm.h, with k taken in pairs: W is packed in panels of 32 columns, panel j holding for each
// pair g of k rows one 32-bit word per column (low half: row 2g, high half: row 2g + 1); A is gathered into
// micro-panels of 6 rows, one 32-bit word (two codes) per row and pair. One step of the 6 x 32 micro-kernel
// is 12 vpdpwssd (vnni), 12 vpmaddwd + vpaddd (avx512, and twice that on __m256 for avx2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu.h"
#include "gemm.h"

namespace dendra::igemm {

constexpr int64_t kMR = 6;
constexpr int64_t kNR = 32;
constexpr int64_t kKCP = 128;  // K block, in pairs (256 rows of W)

using IntBuffer = std::vector<int32_t, gemm::AlignedAllocator<int32_t>>;
using CodeBuffer = std::vector<int16_t, gemm::AlignedAllocator<int16_t>>;

/** C[0..6, 0..32) (row stride ldc) = (accumulate ? C : 0) + A(6 x kp pairs) * B(kp pairs x 32). */
using MicroKernel = void (*)(int64_t kp, const int32_t* a, const int32_t* b, int32_t* c, int64_t ldc, bool accumulate);

struct Kernel {
  const char* name;
  MicroKernel micro;
};

/** The integer kernel of one level (the caller checks the CPU has it). */
Kernel kernelFor(cpu::Isa isa);

/** W (k x m) in panels of kNR columns and pairs of rows: panel j occupies data[j*pairs*kNR, (j+1)*pairs*kNR). */
struct PackedInt {
  int64_t k = 0;
  int64_t m = 0;
  int64_t pairs = 0;
  int64_t panels = 0;
  IntBuffer data;
  int64_t paddedCols() const { return panels * kNR; }
  size_t bytes() const { return data.size() * sizeof(int32_t); }
};

/** Packs a row-major k x m matrix of 16-bit integers. */
PackedInt pack(const int16_t* w, int64_t k, int64_t m);

/** Words needed by the A packing buffer for row blocks of up to maxRows rows. */
inline size_t packBufferSize(int64_t maxRows) { return static_cast<size_t>((maxRows + kMR - 1) / kMR * kMR * kKCP); }

/**
 * C (rows rounded up to kMR, w.paddedCols() columns, row stride ldc) = A * W, A[i][p] = x[i*ldx + gather[p]]
 * (or x[i*ldx + p] when gather is null) for i < rows, p < w.k. apack holds packBufferSize(rows) words.
 * reusePackedA: apack already holds exactly this A (only possible when w.pairs <= kKCP).
 */
void multiply(const Kernel& kernel, int64_t rows, const int16_t* x, int64_t ldx, const int32_t* gather,
              const PackedInt& w, int32_t* c, int64_t ldc, int32_t* apack, bool reusePackedA = false);

/**
 * The 8-bit form for vnni (vpdpbusd): W (k x m, |w| <= 127) in panels of kNR columns and quads of rows, one
 * 32-bit word per column and quad (bytes: rows 4g .. 4g + 3); A as unsigned bytes c + 128 (|c| <= 127), so
 * each column starts from bias[j] = -128 * Σ_p W[p][j] and the sums are exactly Σ c · w.
 */
struct PackedInt8 {
  int64_t k = 0;
  int64_t m = 0;
  int64_t quads = 0;
  int64_t panels = 0;
  IntBuffer data;
  IntBuffer bias;  // paddedCols() values
  int64_t paddedCols() const { return panels * kNR; }
  size_t bytes() const { return (data.size() + bias.size()) * sizeof(int32_t); }
};

/** Packs a row-major k x m matrix whose values all lie in [-127, 127]. */
PackedInt8 pack8(const int16_t* w, int64_t k, int64_t m);

/** Words needed by the A packing buffer of multiply8 for row blocks of up to maxRows rows. */
inline size_t packBufferSize8(int64_t maxRows) { return static_cast<size_t>((maxRows + kMR - 1) / kMR * kMR * kKCP); }

/** True when this CPU path has the 8-bit kernel (vnni). */
bool has8(cpu::Isa isa);

/** multiply for PackedInt8 (the caller checks has8): the same exact int32 sums. */
void multiply8(int64_t rows, const int16_t* x, int64_t ldx, const int32_t* gather, const PackedInt8& w, int32_t* c,
               int64_t ldc, int32_t* apack, bool reusePackedA = false);

}  // namespace dendra::igemm
