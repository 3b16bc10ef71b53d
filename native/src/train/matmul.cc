#include "matmul.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

#include "parallel.h"

namespace dendra::train {

namespace {
constexpr int64_t kBlockRows = 96;           // rows per GEMM call (a multiple of gemm::kMR)
constexpr double kMinFlopsPerThread = 2.0e6;  // below this a thread costs more than it saves
}  // namespace

bool hasAvx2(const gemm::Kernel& kernel) {
  const char* n = kernel.name;
  return n != nullptr && (std::strncmp(n, "avx", 3) == 0 || std::strcmp(n, "vnni") == 0);
}

namespace {

constexpr int64_t kMinPanelFloats = int64_t{1} << 16;  // a thread packs at least this much

/** Sizes dst for a k × m packed matrix and runs fn(j) for every panel j, the panels split over the threads. */
template <typename Fn>
void forPanels(gemm::PackedMatrix& dst, int64_t k, int64_t m, int32_t threads, Fn&& fn) {
  const int64_t panels = (m + gemm::kNR - 1) / gemm::kNR;
  const size_t size = static_cast<size_t>(panels * k * gemm::kNR);
  dst.k = k;
  dst.m = m;
  dst.panels = panels;
  if (dst.data.size() != size) dst.data.assign(size, 0.0f);
  const int64_t minPanels = std::max<int64_t>(1, kMinPanelFloats / std::max<int64_t>(1, k * gemm::kNR));
  parallelFor(threads, panels, minPanels, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) fn(j, dst.data.data() + j * k * gemm::kNR, j * gemm::kNR, std::min(gemm::kNR, m - j * gemm::kNR));
  });
}

}  // namespace

void packStrided(gemm::PackedMatrix& dst, const float* src, int64_t k, int64_t m, int64_t ld, int32_t threads) {
  forPanels(dst, k, m, threads, [&](int64_t, float* panel, int64_t c0, int64_t nc) {
    if (nc == gemm::kNR) {
      for (int64_t p = 0; p < k; ++p) {
        const float* s = src + p * ld + c0;
        float* d = panel + p * gemm::kNR;
        for (int64_t c = 0; c < gemm::kNR; ++c) d[c] = s[c];
      }
    } else {
      for (int64_t p = 0; p < k; ++p)
        for (int64_t c = 0; c < gemm::kNR; ++c) panel[p * gemm::kNR + c] = c < nc ? src[p * ld + c0 + c] : 0.0f;
    }
  });
}

void packRows(gemm::PackedMatrix& dst, const float* w, int64_t ldw, const int32_t* rows, int64_t k, int64_t m,
              int32_t threads) {
  forPanels(dst, k, m, threads, [&](int64_t, float* panel, int64_t c0, int64_t nc) {
    for (int64_t p = 0; p < k; ++p) {
      const float* src = w + static_cast<int64_t>(rows[p]) * ldw + c0;
      float* d = panel + p * gemm::kNR;
      if (nc == gemm::kNR)
        for (int64_t c = 0; c < gemm::kNR; ++c) d[c] = src[c];
      else
        for (int64_t c = 0; c < gemm::kNR; ++c) d[c] = c < nc ? src[c] : 0.0f;
    }
  });
}

void packTransposedRows(gemm::PackedMatrix& dst, const float* w, int64_t ldw, const int32_t* rows, int64_t k, int64_t m,
                        int32_t threads) {
  forPanels(dst, k, m, threads, [&](int64_t, float* panel, int64_t c0, int64_t nc) {
    for (int64_t c = 0; c < gemm::kNR; ++c) {
      if (c >= nc) {
        for (int64_t p = 0; p < k; ++p) panel[p * gemm::kNR + c] = 0.0f;
        continue;
      }
      const float* row = w + static_cast<int64_t>(rows ? rows[c0 + c] : c0 + c) * ldw;
      for (int64_t p = 0; p < k; ++p) panel[p * gemm::kNR + c] = row[p];
    }
  });
}

void Matmul::runRows(int64_t r0, int64_t rows, const float* x, int64_t ldx, const int32_t* gather,
                     const gemm::PackedMatrix& w, const Target& t, Scratch& s) const {
  const int64_t block = std::min<int64_t>(kBlockRows, (rows + gemm::kMR - 1) / gemm::kMR * gemm::kMR);
  const int64_t ldc = w.paddedCols();
  if (s.apack.size() < gemm::packBufferSize(block)) s.apack.resize(gemm::packBufferSize(block));
  if (s.c.size() < static_cast<size_t>(block * ldc)) s.c.resize(static_cast<size_t>(block * ldc));
  gemm::FloatBuffer& apack = s.apack;
  gemm::FloatBuffer& c = s.c;
  const int64_t m = w.m;
  for (int64_t b0 = 0; b0 < rows; b0 += block) {
    const int64_t nr = std::min(block, rows - b0);
    gemm::multiply(kernel_, nr, x + (r0 + b0) * ldx, ldx, gather, w, c.data(), ldc, apack.data());
    for (int64_t i = 0; i < nr; ++i) {
      const int64_t row = r0 + b0 + i;
      float* dst = t.data + static_cast<int64_t>(t.rowIndex ? t.rowIndex[row] : row) * t.ld;
      const float* src = c.data() + i * ldc;
      if (t.colIndex) {
        if (t.accumulate)
          for (int64_t j = 0; j < m; ++j) dst[t.colIndex[j]] += src[j];
        else
          for (int64_t j = 0; j < m; ++j) dst[t.colIndex[j]] = src[j];
      } else if (t.accumulate) {
        for (int64_t j = 0; j < m; ++j) dst[j] += src[j];
      } else {
        std::memcpy(dst, src, static_cast<size_t>(m) * sizeof(float));
      }
    }
  }
}

void Matmul::run(int64_t rows, const float* x, int64_t ldx, const int32_t* gather, const gemm::PackedMatrix& w,
                 const Target& target) const {
  if (rows <= 0 || w.m <= 0) return;
  if (w.k == 0) {  // an empty sum
    if (!target.accumulate)
      for (int64_t i = 0; i < rows; ++i) {
        float* dst = target.data + static_cast<int64_t>(target.rowIndex ? target.rowIndex[i] : i) * target.ld;
        for (int64_t j = 0; j < w.m; ++j) dst[target.colIndex ? target.colIndex[j] : j] = 0.0f;
      }
    return;
  }
  const double flopsPerRow = 2.0 * static_cast<double>(w.k) * static_cast<double>(w.m);
  const int64_t minRows = std::max<int64_t>(gemm::kMR, static_cast<int64_t>(kMinFlopsPerThread / flopsPerRow));
  int64_t workers = std::min<int64_t>(threads_, (rows + minRows - 1) / minRows);
  workers = std::max<int64_t>(1, workers);
  int64_t chunk = (rows + workers - 1) / workers;
  chunk = (chunk + gemm::kMR - 1) / gemm::kMR * gemm::kMR;
  workers = (rows + chunk - 1) / chunk;
  if (scratch_.size() < static_cast<size_t>(workers)) scratch_.resize(static_cast<size_t>(workers));
  if (workers == 1) {
    runRows(0, rows, x, ldx, gather, w, target, scratch_[0]);
    return;
  }
  runWorkers(workers, [&](int64_t t) {
    const int64_t r0 = t * chunk;
    runRows(r0, std::min(chunk, rows - r0), x, ldx, gather, w, target, scratch_[static_cast<size_t>(t)]);
  });
}

}  // namespace dendra::train
