// The compiled network: layers of tiles with pre-packed effective conductance matrices, and the
// forward pass over a batch (rows split across std::threads, each with its own scratch).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "gemm.h"
#include "igemm.h"
#include "noise.h"
#include "periphery.h"
#include "pool.h"
#include "program.h"
#include "rng.h"

namespace dendra {

/** What one run measured, summed over its samples (docs/energy.md). */
struct RunStats {
  double crossbarPower = 0.0;  // W (times the read time: joules)
  double dendriteEnergy = 0.0;  // J
  double somaEnergy = 0.0;      // J
  // Event counts (docs/energy.md), summed over the samples:
  double rowEvents = 0.0;       // physical rows driven (non-zero input), every layer
  double inputRowEvents = 0.0;  // ... of the first layer only (the input DACs of an analog periphery)
  double signalsOn = 0.0;       // dendrite branch signals in the device's ON region
  double signals = 0.0;         // non-zero branch signals (a rectified negative one is none)
  double somasActive = 0.0;     // soma outputs above 1 % of the soma's full scale (layers with soma devices)
  double somas = 0.0;           // soma outputs (layers with soma devices)
  RunStats& operator+=(const RunStats& o) {
    crossbarPower += o.crossbarPower;
    dendriteEnergy += o.dendriteEnergy;
    somaEnergy += o.somaEnergy;
    rowEvents += o.rowEvents;
    inputRowEvents += o.inputRowEvents;
    signalsOn += o.signalsOn;
    signals += o.signals;
    somasActive += o.somasActive;
    somas += o.somas;
    return *this;
  }
};

class Network {
 public:
  /**
   * Takes the validated program and "programs" the chip: programming error and drift of every healthy cell
   * (drawn from the instance's RNG, array by array, cell by cell), then IR drop folded into every tile's
   * pre-packed effective matrix, and the per-tile read-noise variance matrices.
   */
  explicit Network(Program program);

  int32_t inFeatures() const { return layers_.front().spec.inFeatures; }
  int32_t outFeatures() const { return layers_.back().spec.outFeatures; }
  const char* kernelName() const { return kernel_.name; }

  /** What the session holds and how its tiles run (Chip.info()). */
  struct Info {
    size_t memoryBytes = 0;   // packed matrices, held conductances and the scratch pool, in bytes
    int64_t tiles = 0;
    int64_t integerTiles = 0;  // tiles run as integer products (a DAC of <= 8 bits)
    int64_t exactTiles = 0;    // ... of which every G+ − G− is a whole number of levels (exact integers)
  };
  Info info() const;

  size_t arrayCount() const { return arrays_.size(); }
  /** The conductances the chip holds (after programming error, stuck cells and drift; before IR drop). */
  const ArraySpec& array(size_t i) const { return arrays_[i]; }

  /** Numbers one run (call it once per run/runSync call, at call time): its read noise stream. */
  uint64_t beginRun() { return runs_.fetch_add(1, std::memory_order_relaxed); }

  /**
   * out[batch x outFeatures] = network(in[batch x inFeatures]). Safe to call concurrently on one instance
   * (each call takes its own scratch from a locked pool). Blocks until every worker thread has joined.
   * run: from beginRun(); with read noise, the noise of sample b is a function of (seed, run, b) only.
   * Returns the crossbar read power summed over the batch's samples, in watts (docs/energy.md): for every
   * sample, layer and tile, Σ over the tile's driven physical rows ρ of V_ρ² · Σ_c G_ρc (all cells of the
   * row, held conductances). A sample whose term is not finite (an input holding NaN or ±∞) adds 0.
   * With dendrites and somas, also their energy (J), summed over the samples, with the same rule.
   */
  RunStats forward(const float* in, float* out, int64_t batch, uint64_t run);

 private:
  struct Tile {
    gemm::PackedMatrix weff;            // Weff[r][c] = G[rowPos[r]][colPos[c]] - G[rowNeg[r]][colNeg[c]], packed
                                        // (G after IR drop)
    gemm::PackedMatrix var;             // read noise only: Var[r][c] = σ²(G+) + σ²(G−) of the held G, packed
    bool gatherInput = true;            // false when inputIndex is o0..o0+k-1 (read the input row in place)
    int64_t inputOffset = 0;            // o0 when !gatherInput
    bool contiguousOutput = false;      // outputIndex is o0, o0+1, ... (add a contiguous run)
    bool quantiseOutput = false;        // adcBits > 0
    periphery::Adc adc;
    // Integer path (the layer's DAC has 1..8 bits): Weff = wq · intStep, wq 16-bit; the GEMM of the DAC codes
    // with wq is exact in int32 and one product by intScale = intStep / q turns it into current / vRead.
    igemm::PackedInt wq;
    igemm::PackedInt8 wq8;              // instead of wq: exact level differences within ±127 on vnni
    bool use8 = false;
    int64_t intCols() const { return use8 ? wq8.paddedCols() : wq.paddedCols(); }
    int64_t intM() const { return use8 ? wq8.m : wq.m; }
    double intScale = 0.0;
    double codeScale = 0.0;             // with an ADC: its code per unit of the integer sum
    bool exactLevels = false;           // every Weff is a whole number of level steps (wq exact)
  };
  /**
   * Crossbar read power of a tile in which one physical row is driven by several inputs (never written by
   * the compiler, but a valid program): the row's voltage is the signed sum of its inputs' voltages.
   */
  struct SharedRows {
    std::vector<double> rowSum;         // per driven row slot: Σ_c G of the row (S)
    std::vector<int32_t> input, slot;   // per drive: logical input and row slot
    std::vector<float> sign;            // +1 (rowPos) or −1 (rowNeg)
  };
  struct Layer {
    LayerSpec spec;                     // including the raw tile specs (indices) for later physics
    bool intPath = false;               // tiles run on the integer kernel (Tile::wq)
    std::vector<Tile> tiles;
    std::vector<size_t> order;          // execution order: tiles sharing an inputIndex run back to back
    std::vector<size_t> inputGroup;     // per tile: id of its inputIndex (equal ids => identical gathers)
    // Crossbar read power per sample = vRead² · (Σ_j u_j² · rowPower_j + the sharedRows terms), u the DAC output.
    std::vector<double> rowPower;       // per logical input: Σ_c G over every physical row it drives (S)
    std::vector<SharedRows> sharedRows;
    std::vector<float> rowDrives;       // per logical input: physical rows it drives (all tiles); event-driven rows
    // Dendrites (spec.dendrites.active()): each device's factor ε, [branch][output], and the devices' constants.
    std::vector<float> eps;
    dendrite::Constants consts;
  };
  /** Per-thread buffers for one row block (at most blockRows_ rows). */
  struct Scratch {
    gemm::FloatBuffer act[2];  // layer outputs, ping-pong
    gemm::FloatBuffer u;       // DAC output (normalised input)
    gemm::FloatBuffer c;       // one tile's GEMM result
    gemm::FloatBuffer apack;   // packed A micro-panels
    gemm::FloatBuffer cvar;    // read noise: one tile's variance GEMM result
    gemm::FloatBuffer apack2;  // read noise: packed squared A micro-panels
    std::vector<noise::RowState> noise;  // read noise: each row's random stream
    std::vector<float> scale;  // per-row DAC scale s
    gemm::FloatBuffer branch;  // dendrites: the partial sums of the branch being computed, [row][output]
    std::vector<double> branchPower;  // dendrites: each row's Σ of its dendrites' V·I so far
    std::vector<double> dendritePower;  // dendrites: one branch row's per-neuron V·I terms
    igemm::CodeBuffer codes;   // integer path: the DAC codes of the block's rows
    igemm::IntBuffer ci;       // integer path: one tile's int32 sums
    igemm::IntBuffer capack;   // integer path: packed code micro-panels
  };

  static constexpr int64_t kMaxBlockRows = 144;          // rows per block (multiple of gemm::kMR)
  static constexpr int64_t kBlockBudget = int64_t{1} << 22;  // floats per row-block buffer (16 MiB)

  /** Rows [row0, row0 + rows) of the batch; runKey keys the run's read noise. Returns their crossbar read power (W). */
  RunStats forwardRows(const float* in, float* out, int64_t rows, int64_t row0, uint64_t runKey, Scratch& scratch) const;
  /**
   * A dendritic layer, rows [0, nr), branch by branch: begin sets acc = κ·bias and clears the partial sums;
   * branch b adds its dendrites' outputs (from the partial sums s.branch) into acc and clears s.branch; finish
   * adds the dendrites' energy and applies the activation (before the head).
   */
  void dendriticBegin(const Layer& layer, Scratch& s, int64_t nr, float* acc) const;
  void dendriticBranch(const Layer& layer, Scratch& s, int64_t nr, int32_t b, float* acc, RunStats& stats) const;
  void dendriticFinish(const Layer& layer, Scratch& s, int64_t nr, float* acc, RunStats& stats) const;
  /** The integer path's wq and intScale of a tile from its effective conductances g (constructor only). */
  void makeIntegerTile(Tile& tile, const TileSpec& ts, const ArraySpec& arr, const float* g, int32_t dacBits) const;
  /** Programming error and drift of every healthy cell, in place (constructor only). */
  void programCells(const Physics& ph);
  /** layer.rowPower and layer.sharedRows from the held conductances (constructor only, after programCells). */
  void prepareReadPower(Layer& layer) const;
  /** Crossbar read power (W) of one sample's layer, from its DAC output u (normalised, length inFeatures). */
  double readPower(const Layer& layer, const float* u) const;
  std::vector<std::unique_ptr<Scratch>> acquire(size_t count);
  void giveBack(std::vector<std::unique_ptr<Scratch>>& scratches);

  std::vector<ArraySpec> arrays_;  // held conductances (after programming error and drift)
  Physics physics_;
  bool readNoise_ = false;
  noise::Kernel noiseKernel_;
  uint64_t noiseSeed_ = 0;         // from program.seed, independent of rng_'s stream
  std::atomic<uint64_t> runs_{0};
  std::vector<Layer> layers_;
  int32_t threads_ = 1;
  WorkerPool workers_;  // the session's threads besides the caller's, started on the first batch that uses them
  int64_t minRowsPerThread_ = 1;
  gemm::Kernel kernel_;
  igemm::Kernel ikernel_;
  periphery::DacCodesFn dacCodes_ = nullptr;
  /** Integer path epilogue: rows of int32 sums × scale, through the ADC (adc non-null), added into acc. */
  void (*intEpilogue_)(const int32_t* c, int64_t ldc, int64_t rows, int64_t m, double scale, const periphery::Adc* adc,
                       double codeScale, const int32_t* outputIndex, bool contiguous, float* acc, int64_t ldAcc) = nullptr;
  /** Float path epilogue: rows of tile currents through the ADC (adc non-null), added into acc. */
  void (*floatEpilogue_)(const float* c, int64_t ldc, int64_t rows, int64_t m, const periphery::Adc* adc,
                         const int32_t* outputIndex, bool contiguous, float* acc, int64_t ldAcc) = nullptr;
  void (*intToFloat_)(const int32_t* c, float* out, int64_t n, double scale) = nullptr;
  bool anyIntPath_ = false;
  double (*weightedSquares_)(const float* u, const double* w, int64_t n) = nullptr;  // Σ u² w, AVX2 or portable
  int64_t maxIn_ = 0, maxOut_ = 0, maxPaddedCols_ = 0, maxBranchOut_ = 0;
  int64_t blockRows_ = kMaxBlockRows;  // fewer rows per block for very wide layers (bounded scratch)

  std::mutex rngMutex_;
  Rng rng_;  // per instance, seeded from program.seed; guarded by rngMutex_

  mutable std::mutex poolMutex_;
  std::vector<std::unique_ptr<Scratch>> pool_;
};

}  // namespace dendra
