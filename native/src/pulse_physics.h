// The pulse-level state of a memristor chip: every cell changes only by SET and RESET pulses (the board
// emulator's "silicon" and the in-situ trainer's simulated chip, one implementation for both).
//
// Per array (rows × cols), per cell:
// - its true conductance G. As fabricated, every healthy cell starts uniform in the lower quarter of the
//   window, [Gmin, Gmin + (Gmax − Gmin)/4]: a conductance is reached only by pulses and known only by reads;
// - its device-to-device factor d ~ N(1, variation²) (floored at 0.1) on its SET response;
// - whether it is stuck: a stuck cell never changes and reads as its stuck conductance;
// - how many pulses it took and the energy they spent.
//
// Pulses (the profile's `pulse` model, common/profile.ts):
// - SET (amplitude a > 0): G ← max(G, d·(slope·Vg + offset)) + N(0, noise²), Vg clipped to the gate range;
// - RESET (a < 0): when |a| > threshold, G ← Gmin + (G − Gmin)·exp(−(|a| − threshold)/scale) + N(0, noise²);
//   a RESET at or below the threshold does nothing (adds no noise, costs no energy);
// - then G is clamped to [0, 1.2·Gmax].
// Energy of a pulse on a cell: a²·G·width, G the larger of the conductances before and after (an upper
// bound: in a 1T1R cell part of the amplitude drops across the transistor).
// Reads: G + N(0, (readSigma + readRelative·G)²) per cell and read.
// Inference: I_c = Σ_r V_r·G_rc + N(0, Σ_r V_r²·σ_rc²), the read noise of every device drawn per column from
// the exact variance it implies.
//
// Arrays are materialised on first use, each from its own seeded stream, so a chip of 400 arrays starts at
// once and its state does not depend on the order arrays are touched. Pulse and read noise come from one
// per-instance stream, in the order of the calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "gemm.h"
#include "pool.h"
#include "rng.h"

namespace dendra {

struct PulseModel {
  double slope = 0.0;      // S/V
  double offset = 0.0;     // S
  double gateLo = 0.0;     // V
  double gateHi = 0.0;     // V
  double threshold = 0.0;  // V (RESET)
  double scale = 1.0;      // V (RESET)
  double noise = 0.0;      // S, on every pulse
  double variation = 0.0;  // device-to-device spread of the SET response

  /** The conductance a SET with gate voltage vg reaches from below, before the cell's own factor. */
  double setLevel(double vg) const { return slope * std::min(gateHi, std::max(gateLo, vg)) + offset; }
};

/** One stuck cell: row-major index and its conductance. */
struct StuckCell {
  int64_t cell = 0;
  float conductance = 0.0f;
};

struct PulseChipConfig {
  int32_t rows = 0;
  int32_t cols = 0;
  int32_t count = 0;
  double gmin = 0.0;
  double gmax = 0.0;
  double readSigma = 0.0;
  double readRelative = 0.0;
  PulseModel pulse;
  uint32_t seed = 0;
  std::vector<std::vector<StuckCell>> stuck;  // per array (count entries, possibly empty)
};

/** A bad argument (index out of range, non-finite value): the binding turns it into a RangeError. */
struct PulseArgumentError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/** Totals since construction. */
struct PulseTotals {
  double pulses = 0;       // pulses applied (a row-wide pulse or a row update's SET counts once per row)
  double cellPulses = 0;   // cell-pulses (every cell a pulse reached, stuck or not)
  double reads = 0;        // cells read
  double energy = 0;       // J spent by pulses
};

class PulseChip {
 public:
  /** One tile's conductances and scaled read-noise variances, packed for the GEMM (gemm.h). */
  struct TilePack {
    std::vector<int32_t> rows, cols;
    gemm::PackedMatrix w, var;
    double maxVar = 0.0;
  };
  static constexpr double kAsFabricatedFraction = 0.25;
  static constexpr double kClampFraction = 1.2;

  explicit PulseChip(PulseChipConfig config);

  int32_t rows() const { return cfg_.rows; }
  int32_t cols() const { return cfg_.cols; }
  int32_t count() const { return cfg_.count; }
  const PulseModel& model() const { return cfg_.pulse; }

  /**
   * Pulses in order on one array: cell (row[k], col[k]) (col −1: the whole row, one gate voltage), amplitude
   * (V, > 0 SET, < 0 RESET), gate (V), all of `width` seconds. Indices and values are checked before any
   * pulse is applied (PulseArgumentError names the first bad one).
   */
  void pulse(int32_t array, const int32_t* row, const int32_t* col, const float* amplitude, const float* gate, size_t n,
             double width);

  /**
   * Row-parallel update of one array: for each listed row, first one RESET pulse (amplitude resetAmplitude < 0)
   * on the cells whose mask is set, then one SET pulse (setAmplitude > 0) on the cells whose gate voltage is
   * finite, each with its own gate voltage (NaN: not selected). gates and reset are [rows.size() × cols].
   * Returns the number of cell-pulses applied.
   */
  double updateRows(int32_t array, const int32_t* rowIndex, size_t nRows, const float* gates, const uint8_t* reset,
                    double setAmplitude, double resetAmplitude, double width);

  /** One noisy read of a region, row-major. */
  std::vector<float> read(int32_t array, int32_t row, int32_t col, int32_t rows, int32_t cols);

  /** Column currents [batch × nCols] for voltages [batch × nRows] on the given rows (distinct). */
  std::vector<float> infer(int32_t array, const int32_t* rowIndex, size_t nRows, const int32_t* colIndex, size_t nCols,
                           const float* voltages, int64_t batch);

  /**
   * infer of several tiles in one call (InferTiles): tile t drives rowCounts[t] rows and senses colCounts[t]
   * columns of arrays[t]; rows, cols and voltages hold the tiles' lists one after another (voltages: [batch ×
   * rowCounts[t]] per tile); returns the tiles' currents [batch × colCounts[t]] one after another. Everything is
   * checked before anything runs; tiles run on up to `threads` threads, each with its own noise stream drawn in
   * tile order from the chip's.
   */
  std::vector<float> inferTiles(const int32_t* arrays, size_t nTiles, const int32_t* rowCounts, const int32_t* rows,
                                size_t nRowIndices, const int32_t* colCounts, const int32_t* cols, size_t nColIndices,
                                const float* voltages, size_t nVoltages, int64_t batch, int32_t threads);

  /** What array a really holds (a copy), row-major, siemens. */
  std::vector<float> conductances(int32_t array);
  std::vector<float> setFactors(int32_t array);
  std::vector<uint32_t> pulseCounts(int32_t array);
  std::vector<double> pulseEnergy(int32_t array);
  /** 0 healthy, 1 stuck (the hidden truth; tests only). */
  std::vector<uint8_t> stuckMask(int32_t array);
  const PulseTotals& totals() const { return totals_; }

 private:
  struct ArrayState {
    std::vector<float> g;
    std::vector<float> d;
    std::vector<uint8_t> stuck;
    std::vector<uint32_t> pulses;
    std::vector<double> energy;
    /** Packed tiles of this array for inference (dropped when a pulse changes a cell). */
    std::vector<std::shared_ptr<const TilePack>> packed;
  };

  ArrayState& state(int32_t array);
  void checkArray(int32_t array) const;
  /** Throws (bad) unless infer's arguments are valid: array, distinct in-range rows and columns, finite voltages. */
  void checkInfer(int32_t array, const int32_t* rowIndex, size_t k, const int32_t* colIndex, size_t m,
                  const float* voltages, int64_t batch) const;

 public:
  /** infer's products and read noise into out [batch × cols], for a tile packed by packed(). */
  void inferInto(const TilePack& pack, const float* voltages, int64_t batch, const gemm::Kernel& kernel, Rng& rng,
                 float* out) const;

 private:
  /** The tile's pack, kept per array until a pulse changes the array (arguments checked). */
  std::shared_ptr<const TilePack> packed(int32_t array, const int32_t* rowIndex, size_t k, const int32_t* colIndex, size_t m);
  static constexpr size_t kPacksKept = 4;
  /** Applies one pulse to the cells [first, last) of one row (all checked). Returns cell-pulses. */
  void pulseCell(ArrayState& s, size_t i, double amplitude, double level, double keep, double width);

  PulseChipConfig cfg_;
  std::vector<std::unique_ptr<ArrayState>> arrays_;
  Rng noise_;
  /** The float GEMM kernel inference runs on (gemm::selectKernel, chosen on first use). */
  std::optional<gemm::Kernel> kernel_;
  /** Threads of inferTiles (started on first use with more than one thread). */
  std::unique_ptr<WorkerPool> pool_;
  int32_t poolThreads_ = 0;
  PulseTotals totals_;
};

}  // namespace dendra
