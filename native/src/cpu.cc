#include "cpu.h"

#include <cstdlib>
#include <stdexcept>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
#endif

namespace dendra::cpu {

const char* name(Isa isa) {
  switch (isa) {
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Vnni: return "vnni";
    default: return "portable";
  }
}

Isa detect() {
#ifdef DENDRA_X86_DISPATCH
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return Isa::Portable;
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
    return Isa::Avx2;
  if (!__builtin_cpu_supports("avx512vnni")) return Isa::Avx512;
  return Isa::Vnni;
#else
  return Isa::Portable;
#endif
}

std::vector<Isa> available() {
  std::vector<Isa> out;
  const int best = static_cast<int>(detect());
  for (int i = 0; i <= best; ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

bool parse(const std::string& text, Isa& out) {
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Vnni})
    if (text == name(isa)) {
      out = isa;
      return true;
    }
  return false;
}

namespace {

std::string list() {
  std::string s;
  for (Isa isa : available()) s += (s.empty() ? "" : ", ") + std::string(name(isa));
  return s;
}

Isa check(const std::string& text, const std::string& what) {
  Isa isa;
  if (!parse(text, isa))
    throw std::invalid_argument(what + " = '" + text + "' is not a kernel (portable, avx2, avx512, vnni; this CPU has: " +
                                list() + ")");
  if (static_cast<int>(isa) > static_cast<int>(detect()))
    throw std::invalid_argument(what + " = '" + text + "' but this CPU lacks it (this CPU has: " + list() + ")");
  return isa;
}

}  // namespace

Isa requested() {
  if (const char* env = std::getenv("DENDRA_KERNEL"); env && *env && std::string(env) != "auto")
    return check(env, "DENDRA_KERNEL");
  if (const char* legacy = std::getenv("DENDRA_NATIVE_KERNEL"); legacy && std::string(legacy) == "scalar")
    return Isa::Portable;
  return detect();
}

Isa resolve(const std::string& text) {
  if (text.empty() || text == "auto") return requested();
  return check(text, "kernel");
}

}  // namespace dendra::cpu
