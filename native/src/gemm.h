// Packed single-precision GEMM for crossbar tiles: C = gather(X) * W, W packed once at construction.
//
// Layout (BLIS style): W (k x m, row-major) is packed into ceil(m/32) panels of 32 columns, each panel
// k x 32 contiguous (zero-padded columns). A row block of X is gathered through the tile's inputIndex and
// packed into micro-panels of 6 rows (k-major, 6 floats per k). The micro-kernel computes a 6 x 32 block:
// 12 __m512 accumulators (avx512, vnni), or two 6 x 16 halves of 12 __m256 (avx2), or plain loops
// (portable). K is blocked so a micro-panel of W (kc x 32) stays in L1 while every micro-panel of A (from
// L2) streams past it. Every path forms each output as the same sequence of k-ordered multiply-adds (fused
// on avx2/avx512, separate on portable), so paths agree to float rounding (docs/performance.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "cpu.h"

namespace dendra::gemm {

constexpr int64_t kMR = 6;     // micro-kernel rows
constexpr int64_t kNR = 32;    // micro-kernel columns (two __m512, four __m256)
constexpr int64_t kKC = 256;   // K block

/** 64-byte aligned allocator so packed panels start on cache lines. */
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  AlignedAllocator() noexcept = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(::operator new(n * sizeof(T), kAlign));
  }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, kAlign); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};

using FloatBuffer = std::vector<float, AlignedAllocator<float>>;

/** C[0..6, 0..kNR) (row stride ldc) = (accumulate ? C : 0) + A(6 x kc, packed) * B(kc x kNR, packed). */
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);

/**
 * One row of A against np (1..Kernel::rowPanels) panels of B (panel p at b + p*panelStride), for the rows of
 * a partial micro-panel: c[0, np*kNR) = (accumulate ? c : 0) + a(1 x kc, stride kMR) * B. Each column's sum
 * is formed in the same order as in MicroKernel, so a row's result does not depend on its batch position.
 */
using RowKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t panelStride, float* c, int64_t np,
                           bool accumulate);

struct Kernel {
  const char* name;   // cpu::name(isa): 'portable', 'avx2', 'avx512' or 'vnni'
  MicroKernel micro;
  RowKernel row;      // may be null: partial micro-panels then go through micro with zero-padded rows
  int64_t rowPanels;  // panels one row-kernel call takes (at most)
  cpu::Isa isa;       // the instruction set the kernel (and the loops around it) may use
};

/** The float kernel of one instruction-set level (the caller checks the CPU has it: cpu::resolve). */
Kernel kernelFor(cpu::Isa isa);

/**
 * The kernel of cpu::requested(): the best this CPU has, or the one DENDRA_KERNEL names
 * (portable | avx2 | avx512 | vnni). Throws std::invalid_argument for a name this CPU cannot run.
 */
Kernel selectKernel();

/** W (k x m) packed in panels of kNR columns: panel j occupies data[j*k*kNR, (j+1)*k*kNR). */
struct PackedMatrix {
  int64_t k = 0;
  int64_t m = 0;
  int64_t panels = 0;
  FloatBuffer data;
  int64_t paddedCols() const { return panels * kNR; }
  /** Element (p, col) of W inside its panel. */
  float& at(int64_t p, int64_t col) { return data[static_cast<size_t>((col / kNR) * k * kNR + p * kNR + col % kNR)]; }
};

/** A zero-filled packed k x m matrix, to be filled through at(). */
PackedMatrix allocatePacked(int64_t k, int64_t m);

/** Packs a row-major k x m matrix. */
PackedMatrix pack(const float* w, int64_t k, int64_t m);

/** Floats needed by the A packing buffer for row blocks of up to maxRows rows. */
inline size_t packBufferSize(int64_t maxRows) {
  return static_cast<size_t>((maxRows + kMR - 1) / kMR * kMR * kKC);
}

/**
 * out = apack squared elementwise, for an A of `rows` rows and k <= kKC columns packed by multiply()
 * (its whole packed block, zero padding included): the packed A of the variance GEMM without a second gather.
 */
void squarePacked(const float* apack, float* out, int64_t rows, int64_t k);

/**
 * C (rows rounded up to kMR, w.paddedCols() columns, row stride ldc) = A * W, where
 * A[i][p] = x[i*ldx + (gather ? gather[p] : p)] for i < rows, p < w.k.
 * apack must hold packBufferSize(rows) floats. ldc >= w.paddedCols().
 * reusePackedA: apack already holds exactly this A (same rows, x, gather and k, from the previous call),
 * which is only possible when k <= kKC (a single K block); the caller guarantees it.
 * squareA: use A[i][p]^2 instead of A[i][p] (S = (V∘V)·Vvar for read noise); apack then holds squares.
 */
void multiply(const Kernel& kernel, int64_t rows, const float* x, int64_t ldx, const int32_t* gather,
              const PackedMatrix& w, float* c, int64_t ldc, float* apack, bool reusePackedA = false,
              bool squareA = false);

}  // namespace dendra::gemm
