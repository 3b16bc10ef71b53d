// Read noise: Gaussian deviates added to a tile's output currents, from a per-sample random stream.
//
// Every sample (a row of the batch) owns a stream: 8 interleaved xoshiro128+ generators (one per AVX2
// lane), seeded through splitmix64 from a key that depends only on (program seed, run number, the
// sample's row in the batch). A sample draws from its stream in a fixed order (layer by layer, tile by
// tile in execution order, blocks of 16 output columns), so its noise never depends on the thread or the
// row block that computes it. Each block turns 48 bits per lane into two N(0, 1) values by Box-Muller
// (31 bits for the radius, 15 for the angle, 2 signs); noise.cc has the exact bit layout and formulas.
#pragma once

#include <cstdint>

#include "cpu.h"

namespace dendra::noise {

constexpr int kLanes = 8;

/** splitmix64's finaliser (a bijection of the 64-bit words). */
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/** The j-th output of the splitmix64 stream seeded with `seed` (j >= 0). */
inline uint64_t streamKey(uint64_t seed, uint64_t j) { return mix64(seed + (j + 1) * 0x9E3779B97F4A7C15ull); }

/** One sample's stream: xoshiro128+ state words s[0..3] of each of the kLanes lanes. */
struct alignas(32) RowState {
  uint32_t s[4][kLanes];
};

/** Seeds a stream from its key (splitmix64 outputs; a lane is never all zero). */
void seed(RowState& st, uint64_t key);

/** Columns served by one block (one Box-Muller pair per lane): the x normals, then the y normals. */
constexpr int64_t kBlock = 2 * kLanes;

/**
 * For each row i < rows (stream st[i], currents c + i*ld, variances s + i*ld) and each block of 16 columns
 * j0 = 0, 16, ... < cols (cols a multiple of 16, e.g. a packed tile's padded width): 8 Box-Muller pairs
 * (x_l, y_l) from the stream; c[j0 + l] += sqrt(s[j0 + l]) * x_l and c[j0 + 8 + l] += sqrt(s[j0 + 8 + l]) * y_l.
 * Padding columns (variance 0) are left as they are.
 */
using AddKernel = void (*)(RowState* st, int64_t rows, float* c, const float* s, int64_t ld, int64_t cols);

struct Kernel {
  const char* name;
  AddKernel add;
};

/**
 * 'avx512' for isa >= avx512 (two rows' streams side by side in 512-bit registers, the same operations and
 * results as 'avx2', bit for bit), 'avx2' for avx2, else 'portable' (sqrt instead of the hardware rsqrt estimate).
 */
Kernel kernelFor(cpu::Isa isa);

}  // namespace dendra::noise
