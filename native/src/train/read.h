// Reading and validating what JS hands the training engine (native/index.ts NativeTrainNetwork, batches, pass
// and fit options, optimizers); every message names the field.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine.h"
#include "net.h"
#include "optimizer.h"

namespace dendra::train {

struct ReadNet {
  NetDef def;
  Params params;
  bool transposed = false;
};

/** A NativeTrainDendrites object's count and device (branchOf is not read), validated. */
DendriteSpec readDendriteSpec(Napi::Env env, Napi::Value v, const std::string& path);

/** The network object, validated; weights (and stuck masks) turned to the engine's [in × out]. */
ReadNet readNetwork(Napi::Env env, Napi::Value v);

struct Batch {
  const float* x = nullptr;
  const int32_t* labels = nullptr;
  int64_t n = 0;
};

/** (x: Float32Array, labels: Int32Array) at info[at], info[at + 1], checked against the network (x finite when labelled). */
Batch readBatch(const Napi::CallbackInfo& info, size_t at, const NetDef& def, const std::string& method, bool needLabels = true);

struct PassOptions {
  Draw draw;
  std::vector<std::vector<float>> eps;
  std::vector<std::vector<float>> measured;  // per layer, [batch × out] (empty: none)
};


/** options = { noise?, variation?, eps?, measured? } of gradients / step / evaluate / predict / forwardLayers. */
PassOptions readPassOptions(Napi::Env env, Napi::Value v, const NetDef& def, int64_t batch, const std::string& method,
                            bool allowMeasured);

/** The optimizer object (NativeOptimizer); undefined: Adam with its defaults. */
OptimizerDef readOptimizer(Napi::Env env, Napi::Value v);

struct FitOptions {
  int32_t epochs = 1;
  int64_t batch = 32;
  Draw draw;  // noise / variation per minibatch
};

/** options = { epochs?, batch?, noise?, variation? } of fit / fitSync. */
FitOptions readFitOptions(Napi::Env env, Napi::Value v, const std::string& method);

/** [rows × cols] row-major → [cols × rows]. */
std::vector<float> transpose(const float* a, int64_t rows, int64_t cols);

}  // namespace dendra::train
