// Read noise: counter-based Gaussian deviates added to a tile's output currents.
//
// Every normal deviate is a pure function of (key, counter): pair counter n of the stream `key` is
// splitmix64's output mix64(key + (n + 1) * golden), whose 64 bits become two N(0, 1) values by
// Box-Muller (31 bits for the radius, 2 bits for the quadrant and 22 for the angle within it). No state
// is carried between calls, so a sample's noise depends only on its key and on which counters it reads,
// never on the thread or the row block that computes it.
#pragma once

#include <cstdint>

namespace dendra::noise {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

/** splitmix64's finaliser (a bijection of the 64-bit words). */
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/** The j-th key of the splitmix64 stream seeded with `seed` (j >= 0). */
inline uint64_t streamKey(uint64_t seed, uint64_t j) { return mix64(seed + (j + 1) * kGolden); }

/**
 * For p in [0, half): (z0, z1) = the two normals of pair counter (counter + p) of stream `key`;
 * c[p] += sqrt(s[p]) * z0 and c[p + half] += sqrt(s[p + half]) * z1.
 * c and s must hold 2*half floats (callers pass m outputs with half = ceil(m / 2); the one extra column of
 * an odd m lands in the GEMM's padding).
 */
using AddKernel = void (*)(uint64_t key, uint64_t counter, float* c, const float* s, int64_t half);

struct Kernel {
  const char* name;
  AddKernel add;
};

/** 'avx2-fma' when the CPU has AVX2 and FMA, else 'scalar'; DENDRA_NATIVE_KERNEL=scalar forces 'scalar'. */
Kernel selectKernel();

}  // namespace dendra::noise
