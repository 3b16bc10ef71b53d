// The compiled network: layers of tiles with pre-packed effective conductance matrices, and the
// forward pass over a batch (rows split across std::threads, each with its own scratch).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "gemm.h"
#include "periphery.h"
#include "program.h"
#include "rng.h"

namespace dendra {

class Network {
 public:
  /** Takes the validated program; precomputes and packs every tile's effective matrix. */
  explicit Network(Program program);

  int32_t inFeatures() const { return layers_.front().spec.inFeatures; }
  int32_t outFeatures() const { return layers_.back().spec.outFeatures; }
  const char* kernelName() const { return kernel_.name; }

  /**
   * out[batch x outFeatures] = network(in[batch x inFeatures]). Safe to call concurrently on one instance
   * (each call takes its own scratch from a locked pool). Blocks until every worker thread has joined.
   */
  void forward(const float* in, float* out, int64_t batch);

 private:
  struct Tile {
    gemm::PackedMatrix weff;            // Weff[r][c] = G[rowPos[r]][colPos[c]] - G[rowNeg[r]][colNeg[c]], packed
    bool gatherInput = true;            // false when inputIndex is 0..k-1 (read the input row in place)
    bool contiguousOutput = false;      // outputIndex is o0, o0+1, ... (add a contiguous run)
    bool quantiseOutput = false;        // adcBits > 0
    periphery::Adc adc;
  };
  struct Layer {
    LayerSpec spec;                     // including the raw tile specs (indices) for later physics
    std::vector<Tile> tiles;
    std::vector<size_t> order;          // execution order: tiles sharing an inputIndex run back to back
    std::vector<size_t> inputGroup;     // per tile: id of its inputIndex (equal ids => identical gathers)
  };
  /** Per-thread buffers for one row block (at most blockRows_ rows). */
  struct Scratch {
    gemm::FloatBuffer act[2];  // layer outputs, ping-pong
    gemm::FloatBuffer u;       // DAC output (normalised input)
    gemm::FloatBuffer c;       // one tile's GEMM result
    gemm::FloatBuffer apack;   // packed A micro-panels
    std::vector<float> scale;  // per-row DAC scale s
  };

  static constexpr int64_t kMaxBlockRows = 144;          // rows per block (multiple of gemm::kMR)
  static constexpr int64_t kBlockBudget = int64_t{1} << 22;  // floats per row-block buffer (16 MiB)

  void forwardRows(const float* in, float* out, int64_t rows, Scratch& scratch) const;
  std::vector<std::unique_ptr<Scratch>> acquire(size_t count);
  void giveBack(std::vector<std::unique_ptr<Scratch>>& scratches);

  std::vector<ArraySpec> arrays_;  // raw conductances, kept for read noise / IR drop
  std::vector<Layer> layers_;
  int32_t threads_ = 1;
  int64_t minRowsPerThread_ = 1;
  gemm::Kernel kernel_;
  int64_t maxIn_ = 0, maxOut_ = 0, maxPaddedCols_ = 0;
  int64_t blockRows_ = kMaxBlockRows;  // fewer rows per block for very wide layers (bounded scratch)

  std::mutex rngMutex_;
  Rng rng_;  // per instance, seeded from program.seed; guarded by rngMutex_

  std::mutex poolMutex_;
  std::vector<std::unique_ptr<Scratch>> pool_;
};

}  // namespace dendra
