// The JS program (runtime/native.ts NativeProgram) read and validated into plain C++ structs.
#pragma once

#include <napi.h>

#include <cstdint>
#include <vector>

#include "cpu.h"
#include "dendrite.h"

namespace dendra {

/** ThresholdSoma: the paper's soma, y = beta · max(2·sigmoid(x/beta − alpha) − 1, 0) (alpha = θ, beta = scale > 0). */
enum class Activation : int32_t { None = 0, Relu = 1, LeakyRelu = 2, Sigmoid = 3, Tanh = 4, Clip = 5, ThresholdSoma = 6 };
enum class Head : int32_t { None = 0, Softmax = 1, LogSoftmax = 2 };

/** Size limits (guards against absurd sizes before any 64-bit product is formed). */
constexpr int64_t kMaxDim = int64_t{1} << 24;          // rows, cols, features
constexpr int64_t kMaxTileCells = int64_t{1} << 30;    // k * m of one tile's effective matrix
constexpr int32_t kMaxThreads = 256;
constexpr int32_t kMaxBits = 16;

/** Stuck-cell states (NativeArray.stuck). */
enum Stuck : uint8_t { kHealthy = 0, kStuckOn = 1, kStuckOff = 2 };

struct ArraySpec {
  int32_t rows = 0;
  int32_t cols = 0;
  std::vector<float> conductance;  // rows*cols, row-major, siemens
  std::vector<uint8_t> stuck;      // empty (all healthy) or rows*cols values in {0, 1, 2}
  bool isStuck(size_t cell) const { return !stuck.empty() && stuck[cell] != kHealthy; }
};

/** Device non-idealities (NativePhysics); all zero = ideal. Every field finite and >= 0, driftT0 > 0. */
struct Physics {
  double programSigma = 0.0;
  double programRelative = 0.0;
  double readSigma = 0.0;
  double readRelative = 0.0;
  double driftNu = 0.0;
  double driftNuSigma = 0.0;
  double driftT0 = 1.0;
  double time = 0.0;
  double wireResistance = 0.0;
  double levelStep = 0.0;  // spacing of the device's conductance levels (S); 0: continuous conductances

  bool programError() const { return programSigma > 0.0 || programRelative > 0.0; }
  bool drift() const { return time > driftT0 && (driftNu > 0.0 || driftNuSigma > 0.0); }
  bool readNoise() const { return readSigma > 0.0 || readRelative > 0.0; }
  bool irDrop() const { return wireResistance > 0.0; }
};

struct TileSpec {
  int32_t array = 0;
  std::vector<int32_t> inputIndex, rowPos, rowNeg;    // length k
  std::vector<int32_t> outputIndex, colPos, colNeg;  // length m
  double adcFullScale = 0.0;
  int32_t branch = 0;  // the dendritic branch its inputs feed (0 when the layer has no dendrites)
};

struct LayerSpec {
  int32_t inFeatures = 0;
  int32_t outFeatures = 0;
  double vRead = 0.0;
  int32_t dacBits = 0;
  int32_t adcBits = 0;
  std::vector<TileSpec> tiles;
  std::vector<float> outScale;
  std::vector<float> bias;
  Activation activation = Activation::None;
  float alpha = 0.0f;
  float beta = 0.0f;
  Head head = Head::None;
  DendriteSpec dendrites;     // count == 0: none
  double somaFullScale = 0.0;  // soma energy: Σ_j |out_j| / somaFullScale · somaEnergy per sample
  double somaEnergy = 0.0;     // J at a soma output of somaFullScale; 0 = no soma devices
};

struct Program {
  std::vector<ArraySpec> arrays;
  std::vector<LayerSpec> layers;
  int32_t threads = 1;
  uint32_t seed = 0;
  Physics physics;  // all zero when program.physics is absent
  cpu::Isa isa = cpu::Isa::Portable;  // the kernels to run: program.kernel, else cpu::requested()
};

/** Reads and validates everything; throws Napi::TypeError / Napi::RangeError naming the field. */
Program readProgram(Napi::Env env, Napi::Value value);

/** "dendra native: " + message, thrown as a TypeError / RangeError. */
[[noreturn]] void throwTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void throwRangeError(Napi::Env env, const std::string& message);

/** A short description of a JS value's type for error messages ("undefined", "Int32Array", ...). */
std::string describe(Napi::Value value);

/** Shortest round-trip formatting of a number (integers without a fraction). */
std::string formatNumber(double value);

}  // namespace dendra
