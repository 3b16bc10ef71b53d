// The training engine's network: dense layers (point neurons or dendritic), their activations, the hardware
// effects modelled in the training forward pass, and the loss. Plain C++ structs, validated by binding.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "../dendrite.h"
#include "../program.h"

namespace dendra::train {

/** A layer's dendrites in the training forward (the model of common/dendrite.ts). count == 0: none. */
struct DendriteDef {
  int32_t count = 0;
  std::vector<int32_t> branchOf;  // per input, in [0, count)
  DendriteSpec device;            // kind, alpha, onOffRatio, ratio, threshold, rectify, variation, fullScale, biasScale
  bool active() const { return count > 0; }
};

/**
 * Hardware effects in the training forward pass, all in weight units (what the layer's x·W sums in) and all
 * off by default. Drawn from the trainer's RNG: programming error once per minibatch (one chip per minibatch,
 * shared by its samples), read noise per sample and output on every pass.
 */
struct HardwareDef {
  /** Per weight [in × out]: 0 healthy, else the weight sits at stuckValue and takes no gradient. Empty: none. */
  std::vector<uint8_t> stuck;
  std::vector<float> stuckValue;
  /** W̃ = W + N(0, (programSigma + programRelative·|W|)²) per healthy weight, per minibatch; gradient straight through. */
  double programSigma = 0.0, programRelative = 0.0;
  /** Each sum z_j gets N(0, Σ_i x_i² (readSigma + readRelative·|W̃_ij|)²): a fresh read of every device. */
  double readSigma = 0.0, readRelative = 0.0;
  /** ADC: sums clipped to ±adcClip (no gradient outside); with adcBits > 0 quantised to adcClip/(2^(bits−1)−1) (straight-through). */
  double adcClip = 0.0;
  int32_t adcBits = 0;
  /** DAC: each input row scaled by its abs-max and quantised to dacBits (straight-through), as the simulator's DAC. */
  int32_t dacBits = 0;

  bool hasStuck() const { return !stuck.empty(); }
  bool programError() const { return programSigma > 0.0 || programRelative > 0.0; }
  bool readNoise() const { return readSigma > 0.0 || readRelative > 0.0; }
};

struct LayerDef {
  int32_t in = 0;
  int32_t out = 0;
  Activation activation = Activation::None;  // the soma: ThresholdSoma with alpha = θ, beta = scale
  float alpha = 0.0f;
  float beta = 0.0f;
  DendriteDef dendrites;
  HardwareDef hardware;
};

/** An L1 activity penalty added to the loss (issue 11), per sample. */
struct Penalty {
  double soma = 0.0;    // λ_s · Σ_j |out_j| over every layer but the last (whose outputs are the logits)
  double branch = 0.0;  // λ_b · Σ_bj |z_bj / F| (dendritic layers: the branch signal the device sees)
};

struct NetDef {
  std::vector<LayerDef> layers;
  /** The loss is the softmax cross-entropy of logitScale · (last layer's outputs). */
  double logitScale = 1.0;
  Penalty penalty;
  int32_t threads = 1;
  uint64_t seed = 0;
};

/** The trainable parameters: per layer W [in × out] row-major (crossbar rows × columns) and b [out]. */
struct Params {
  std::vector<std::vector<float>> weight, bias;
};

}  // namespace dendra::train
