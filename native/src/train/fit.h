// The minibatch loop of Trainer.fit / fitSync: seeded Fisher–Yates order per epoch from the engine's RNG,
// one optimizer step per minibatch, progress after each.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "engine.h"
#include "optimizer.h"
#include "read.h"

namespace dendra::train {

inline Params zerosLike(const Params& p) {
  Params g;
  for (const auto& w : p.weight) g.weight.emplace_back(w.size(), 0.0f);
  for (const auto& b : p.bias) g.bias.emplace_back(b.size(), 0.0f);
  return g;
}

/** The gradients of one batch as the JS result object. */

struct FitProgress {
  int32_t epoch = 0;
  int64_t samples = 0;  // done so far, over all epochs
  int64_t total = 0;
  double loss = 0.0;    // mean loss of the minibatches of this epoch so far
};

struct FitResult {
  std::vector<double> loss, accuracy;  // per epoch, over the minibatches as they trained
};

/** Epochs of seeded minibatches (Fisher–Yates per epoch from the engine's RNG), one optimizer step per minibatch. */

template <typename OnProgress>
FitResult fitLoop(Engine& engine, Optimizer& opt, const float* x, const int32_t* labels, int64_t n, const FitOptions& f,
                  OnProgress&& progress) {
  FitResult res;
  const int64_t inF = engine.inFeatures();
  const int64_t batch = std::min(f.batch, n);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> xb(static_cast<size_t>(batch * inF));
  std::vector<int32_t> lb(static_cast<size_t>(batch));
  Params grads = zerosLike(engine.params());
  FitProgress p;
  p.total = static_cast<int64_t>(f.epochs) * n;
  for (int32_t e = 0; e < f.epochs; ++e) {
    for (int64_t i = n - 1; i > 0; --i) {
      const int64_t j = static_cast<int64_t>(engine.rng().uniform() * static_cast<double>(i + 1));
      std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(std::min(j, i))]);
    }
    double lossSum = 0.0;
    int64_t correct = 0;
    for (int64_t s0 = 0; s0 < n; s0 += batch) {
      const int64_t nb = std::min(batch, n - s0);
      for (int64_t k = 0; k < nb; ++k) {
        const int32_t s = order[static_cast<size_t>(s0 + k)];
        std::memcpy(xb.data() + k * inF, x + static_cast<int64_t>(s) * inF, static_cast<size_t>(inF) * sizeof(float));
        lb[static_cast<size_t>(k)] = labels[s];
      }
      const BatchResult r = engine.gradients(xb.data(), lb.data(), nb, grads, f.draw);
      opt.step(engine.params(), grads, engine.def());
      lossSum += r.loss * static_cast<double>(nb);
      correct += r.correct;
      p.epoch = e + 1;
      p.samples += nb;
      p.loss = lossSum / static_cast<double>(s0 + nb);
      progress(p);
    }
    res.loss.push_back(lossSum / static_cast<double>(n));
    res.accuracy.push_back(static_cast<double>(correct) / static_cast<double>(n));
  }
  return res;
}

}  // namespace dendra::train
