// The instruction sets the simulator's kernels are built for, detected once per process at load and
// forced with DENDRA_KERNEL=portable|avx2|avx512|vnni (docs/performance.md). Every kernel is compiled with a
// per-function target attribute, never with -march=native, so one binary runs on any x86-64 (or other) CPU.
#pragma once

#include <string>
#include <vector>

namespace dendra::cpu {

/** Ordered: each level includes the ones before it. */
enum class Isa : int {
  Portable = 0,  // plain C++ (whatever the compiler's baseline vectorises)
  Avx2 = 1,      // AVX2 + FMA (256-bit float and integer)
  Avx512 = 2,    // AVX-512 F/BW/DQ/VL (512-bit)
  Vnni = 3,      // AVX-512 with VNNI (vpdpbusd: 8-bit integer dot products)
};

const char* name(Isa isa);

/** The best level this CPU supports. */
Isa detect();

/** Every level this CPU supports, lowest first. */
std::vector<Isa> available();

/** Parses a level name ('portable', 'avx2', 'avx512', 'vnni'); false if unknown. */
bool parse(const std::string& text, Isa& out);

/**
 * The level to use: DENDRA_KERNEL when set (the legacy DENDRA_NATIVE_KERNEL=scalar means portable), else
 * detect(). Throws std::invalid_argument naming the variable when it names an unknown level or one this CPU
 * lacks.
 */
Isa requested();

/** The level named by `text` ('' or 'auto': requested()); throws std::invalid_argument as requested() does. */
Isa resolve(const std::string& text);

}  // namespace dendra::cpu
