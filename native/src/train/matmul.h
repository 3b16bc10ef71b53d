// Threaded matrix products for the training engine, through the simulator's packed GEMM (gemm.h):
// every product of the forward and backward passes is C = A · W with W packed once per step.
#pragma once

#include <cstdint>
#include <vector>

#include "../gemm.h"

namespace dendra::train {

/**
 * Whether the selected GEMM kernel runs on a CPU with AVX2/FMA (its name: 'avx2-fma', or 'avx2', 'avx512', 'vnni'),
 * so the engine's own loops (dendrites, optimizer updates) may take their AVX2 builds too.
 */
bool hasAvx2(const gemm::Kernel& kernel);

/** The packers split their panels over `threads` threads (for large matrices). */

/** Packs a k × m matrix whose element (p, c) is src[p * ld + c] (row stride ld >= m). */
void packStrided(gemm::PackedMatrix& dst, const float* src, int64_t k, int64_t m, int64_t ld, int32_t threads = 1);

/**
 * Packs the k × m matrix Wᵀ restricted to rows `rows` of W: element (p, c) = w[rows[c] * ldw + p], i.e. the
 * columns of the result are the rows rows[0..m) of the row-major W (p < k indexes W's columns).
 */
void packTransposedRows(gemm::PackedMatrix& dst, const float* w, int64_t ldw, const int32_t* rows, int64_t k, int64_t m,
                        int32_t threads = 1);

/** Packs the k × m matrix whose row p is row rows[p] of the row-major w (row stride ldw >= m). */
void packRows(gemm::PackedMatrix& dst, const float* w, int64_t ldw, const int32_t* rows, int64_t k, int64_t m,
              int32_t threads = 1);

/** Where the rows and columns of a product go: out[rowIndex[i] * ld + colIndex[c]] (identity where null). */
struct Target {
  float* data = nullptr;
  int64_t ld = 0;
  const int32_t* rowIndex = nullptr;
  const int32_t* colIndex = nullptr;
  bool accumulate = false;  // += instead of =
};

class Matmul {
 public:
  Matmul(gemm::Kernel kernel, int32_t threads) : kernel_(kernel), threads_(threads < 1 ? 1 : threads) {}

  /**
   * target(i, c) (=|+=) Σ_p A[i][p] · W(p, c) for i < rows, c < w.m, with A[i][p] = x[i * ldx + (gather ? gather[p] : p)].
   * Rows are split over up to `threads` std::threads (each with its own packing buffers), as the simulator does.
   */
  void run(int64_t rows, const float* x, int64_t ldx, const int32_t* gather, const gemm::PackedMatrix& w,
           const Target& target) const;

  int32_t threads() const { return threads_; }
  const gemm::Kernel& kernel() const { return kernel_; }

 private:
  /** Per worker: the packed A micro-panels and one block of C, kept between calls (one caller at a time). */
  struct Scratch {
    gemm::FloatBuffer apack, c;
  };

  void runRows(int64_t r0, int64_t rows, const float* x, int64_t ldx, const int32_t* gather,
               const gemm::PackedMatrix& w, const Target& target, Scratch& s) const;

  gemm::Kernel kernel_;
  int32_t threads_;
  mutable std::vector<Scratch> scratch_;  // one per worker; Matmul is used by one thread at a time
};

}  // namespace dendra::train
