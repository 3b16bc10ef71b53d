// The training engine: forward and backward passes of a network of dense layers (point neurons or dendritic)
// over a minibatch, on the simulator's GEMM, with the hardware effects of net.h in the forward pass, and the
// softmax cross-entropy (plus the optional activity penalty) as the loss.
#pragma once

#include <cstdint>
#include <vector>

#include "../dendrite.h"
#include "../gemm.h"
#include "../rng.h"
#include "matmul.h"
#include "net.h"

namespace dendra::train {

/** What the forward pass draws and uses. */
struct Draw {
  /** Programming error and read noise (HardwareDef), drawn from the engine's RNG. */
  bool noise = false;
  /** Dendrite variation ε: true draws a fresh ε per dendrite (one chip for the whole batch); false uses `eps`. */
  bool drawVariation = false;
  /** Per layer, ε [branch × out] (branch-major), or empty for ε = 1. Used when drawVariation is false. */
  const std::vector<std::vector<float>>* eps = nullptr;
};

/** Per layer: what the chip computed for a minibatch (the layer's outputs [batch × out], after its activation). */
using Measured = std::vector<const float*>;

struct BatchResult {
  double loss = 0.0;          // mean over the batch of cross-entropy + penalty
  double crossEntropy = 0.0;  // mean cross-entropy alone
  int64_t correct = 0;        // samples whose largest output is their label
};

class Engine {
 public:
  /** def and params must be valid (binding.cc checks them). */
  Engine(NetDef def, Params params);

  const NetDef& def() const { return def_; }
  Params& params() { return params_; }
  const Params& params() const { return params_; }
  Rng& rng() { return rng_; }
  int32_t inFeatures() const { return def_.layers.front().in; }
  int32_t outFeatures() const { return def_.layers.back().out; }

  /**
   * Forward and backward of one minibatch: grads (sized like params, overwritten) = d(loss)/d(params).
   * measured (optional, one pointer per layer): the backward uses the chip's outputs as every layer's input and
   * output (the activation's slope from its output) and the loss of the last layer's measured outputs; the
   * branch sums of a dendritic layer are recomputed from its measured input.
   */
  BatchResult gradients(const float* x, const int32_t* labels, int64_t batch, Params& grads, const Draw& draw,
                        const Measured* measured = nullptr);

  /** Forward only: out [batch × outFeatures] (the last layer's outputs, before any head). */
  void forward(const float* x, int64_t batch, float* out, const Draw& draw);

  /**
   * Forward only, every layer kept: per layer its outputs [batch × out], its soma inputs [batch × out] and, for a
   * dendritic layer, its branch sums z [batch × count × out] (after the ADC), into the given vectors (resized).
   */
  void forwardLayers(const float* x, int64_t batch, const Draw& draw, std::vector<std::vector<float>>& outputs,
                     std::vector<std::vector<float>>& pre, std::vector<std::vector<float>>& branch);

  /** Mean cross-entropy (and correct count) of the outputs the forward gives (processed in chunks). */
  BatchResult evaluate(const float* x, const int32_t* labels, int64_t batch, const Draw& draw);

  /** The loss of given last-layer outputs (cross-entropy only), and dLoss/dOut into grad when not null. */
  BatchResult loss(const float* out, const int32_t* labels, int64_t batch, float* grad) const;

 private:
  struct Work {
    std::vector<int32_t> perm;    // inputs sorted by branch (stable); identity without dendrites
    std::vector<int32_t> start;   // group g owns perm[start[g], start[g+1])
    int32_t groups = 1;
    gemm::FloatBuffer wEff;       // W̃ (when stuck cells or programming error make it differ from W)
    std::vector<gemm::PackedMatrix> packed, packedT, packedVar;
    gemm::PackedMatrix packedDz;
    dendrite::Constants consts;
    gemm::FloatBuffer xq, x2, z, pre, out, dz, dpre, dout, xT, dzT;
    std::vector<float> eps;       // ε [group × out] of this pass (empty: 1)
    const float* input = nullptr;     // the layer's input this pass (before the DAC)
    const float* applied = nullptr;   // what multiplied W̃ (after the DAC)
    const float* outputs = nullptr;   // the layer's outputs this pass (own buffer or measured)
    const float* weights = nullptr;   // W̃ this pass
  };

  /** The forward of layer li over `batch` rows of `input`; fills its Work. */
  void forwardLayer(size_t li, const float* input, int64_t batch, const Draw& draw, const float* measuredOut,
                    bool drawWeights);
  /** Sets every dendritic layer's ε for the coming pass: drawn (one chip) or given by draw.eps, else 1. */
  void setVariation(const Draw& draw);
  /** The backward of layer li: w.dout holds dLoss/dOut; writes grads and (li > 0) the previous layer's dout. */
  void backwardLayer(size_t li, int64_t batch, Params& grads, bool fromOutputs);
  void ensure(int64_t batch);

  NetDef def_;
  Params params_;
  Rng rng_;
  Matmul mm_;
  std::vector<Work> work_;
  int64_t capacity_ = 0;
  std::vector<float> ones_;  // outScale of the dendrite kernel (weight units in, weight units out)
  std::vector<double> scratch_;
};

}  // namespace dendra::train
