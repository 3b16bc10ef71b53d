// Per-instance pseudo-random generator (xoshiro256**, seeded through splitmix64).
// Programming error and drift draw from it at construction (array by array, cell by cell); read noise
// has its own per-sample streams (noise.h).
#pragma once

#include <cstdint>
#include <cmath>

namespace dendra {

class Rng {
 public:
  explicit Rng(uint64_t seed) { reseed(seed); }

  void reseed(uint64_t seed) {
    uint64_t x = seed;
    for (auto& word : s_) word = splitmix64(x);
  }

  /** Next 64 random bits. */
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /** Uniform double in [0, 1). */
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /** Standard normal deviate (Box-Muller, one value per call). */
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  /** Two independent standard normal deviates (both outputs of one Box-Muller draw). */
  void normalPair(double& a, double& b) {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double t = 6.283185307179586 * uniform();
    a = r * std::cos(t);
    b = r * std::sin(t);
  }

  /** An independent generator for a worker (jumps by drawing a fresh seed). */
  Rng split() { return Rng(next()); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  uint64_t s_[4];
};

}  // namespace dendra
