#include "network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DENDRA_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace dendra {

namespace {

/** Σ_j u_j² · w_j in float64 (the per-sample crossbar read power before vRead²), portable. */
double weightedSquaresPortable(const float* u, const double* w, int64_t n) {
  double a[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) {
      const double x = u[j + l];
      a[l] += x * x * w[j + l];
    }
  double sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  for (; j < n; ++j) {
    const double x = u[j];
    sum += x * x * w[j];
  }
  return sum;
}

#ifdef DENDRA_X86_DISPATCH
/** The same with AVX2/FMA: 16 inputs per step in four float64 accumulators. */
__attribute__((target("avx2,fma"))) double weightedSquaresAvx2(const float* u, const double* w, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(u + j));
    const __m256d x1 = _mm256_cvtps_pd(_mm_loadu_ps(u + j + 4));
    const __m256d x2 = _mm256_cvtps_pd(_mm_loadu_ps(u + j + 8));
    const __m256d x3 = _mm256_cvtps_pd(_mm_loadu_ps(u + j + 12));
    a0 = _mm256_fmadd_pd(_mm256_mul_pd(x0, x0), _mm256_loadu_pd(w + j), a0);
    a1 = _mm256_fmadd_pd(_mm256_mul_pd(x1, x1), _mm256_loadu_pd(w + j + 4), a1);
    a2 = _mm256_fmadd_pd(_mm256_mul_pd(x2, x2), _mm256_loadu_pd(w + j + 8), a2);
    a3 = _mm256_fmadd_pd(_mm256_mul_pd(x3, x3), _mm256_loadu_pd(w + j + 12), a3);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; j < n; ++j) {
    const double x = u[j];
    sum += x * x * w[j];
  }
  return sum;
}
#endif

// Rough single-core throughput target per spawned thread: below this much work a thread costs more than it saves.
constexpr double kMinFlopsPerThread = 4.0e6;

float toConductance(double g) { return static_cast<float>(std::min(g, static_cast<double>(std::numeric_limits<float>::max()))); }

/**
 * The conductances the tiles see: first-order IR drop of an R-row array with wire resistance r per segment,
 * G_eff(i, j) = G / (1 + G * r * (j + 1 + R - i)).
 */
std::vector<float> irDrop(const ArraySpec& a, double r) {
  std::vector<float> eff(a.conductance.size());
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j) {
      const size_t cell = static_cast<size_t>(i * a.cols + j);
      const double g = a.conductance[cell];
      eff[cell] = static_cast<float>(g / (1.0 + g * r * static_cast<double>(j + 1 + a.rows - i)));
    }
  return eff;
}

}  // namespace

void Network::prepareReadPower(Layer& layer) const {
  const LayerSpec& ls = layer.spec;
  layer.rowPower.assign(static_cast<size_t>(ls.inFeatures), 0.0);
  layer.rowDrives.assign(static_cast<size_t>(ls.inFeatures), 0.0f);
  for (const TileSpec& ts : ls.tiles)
    for (size_t p = 0; p < ts.inputIndex.size(); ++p)
      layer.rowDrives[static_cast<size_t>(ts.inputIndex[p])] += ts.rowNeg[p] != ts.rowPos[p] ? 2.0f : 1.0f;
  for (const TileSpec& ts : ls.tiles) {
    const ArraySpec& arr = arrays_[static_cast<size_t>(ts.array)];
    const size_t k = ts.inputIndex.size();
    // Σ_c G of a physical row: every cell of the row sits between the driven row and a virtual-ground column.
    auto rowSum = [&](int32_t row) {
      const float* g = arr.conductance.data() + static_cast<int64_t>(row) * arr.cols;
      double sum = 0.0;
      for (int64_t c = 0; c < arr.cols; ++c) sum += g[c];
      return sum;
    };
    // Driven rows: rowPos[p] with +v, and rowNeg[p] with −v where it is another row (pairs on rows).
    std::vector<int32_t> drives(static_cast<size_t>(arr.rows), 0);
    bool shared = false;
    for (size_t p = 0; p < k; ++p) {
      shared |= ++drives[static_cast<size_t>(ts.rowPos[p])] > 1;
      if (ts.rowNeg[p] != ts.rowPos[p]) shared |= ++drives[static_cast<size_t>(ts.rowNeg[p])] > 1;
    }
    if (!shared) {
      for (size_t p = 0; p < k; ++p)
        layer.rowPower[static_cast<size_t>(ts.inputIndex[p])] +=
            rowSum(ts.rowPos[p]) + (ts.rowNeg[p] != ts.rowPos[p] ? rowSum(ts.rowNeg[p]) : 0.0);
      continue;
    }
    SharedRows sr;
    std::vector<int32_t> slotOf(static_cast<size_t>(arr.rows), -1);
    auto drive = [&](int32_t input, int32_t row, float sign) {
      int32_t& slot = slotOf[static_cast<size_t>(row)];
      if (slot < 0) {
        slot = static_cast<int32_t>(sr.rowSum.size());
        sr.rowSum.push_back(rowSum(row));
      }
      sr.input.push_back(input);
      sr.slot.push_back(slot);
      sr.sign.push_back(sign);
    };
    for (size_t p = 0; p < k; ++p) {
      drive(ts.inputIndex[p], ts.rowPos[p], 1.0f);
      if (ts.rowNeg[p] != ts.rowPos[p]) drive(ts.inputIndex[p], ts.rowNeg[p], -1.0f);
    }
    layer.sharedRows.push_back(std::move(sr));
  }
}

double Network::readPower(const Layer& layer, const float* u) const {
  double sum = weightedSquares_(u, layer.rowPower.data(), layer.spec.inFeatures);
  for (const SharedRows& sr : layer.sharedRows) {
    thread_local std::vector<double> v;
    v.assign(sr.rowSum.size(), 0.0);
    for (size_t d = 0; d < sr.input.size(); ++d) v[static_cast<size_t>(sr.slot[d])] += sr.sign[d] * static_cast<double>(u[sr.input[d]]);
    for (size_t r = 0; r < v.size(); ++r) sum += v[r] * v[r] * sr.rowSum[r];
  }
  return sum * layer.spec.vRead * layer.spec.vRead;
}

void Network::programCells(const Physics& ph) {
  const bool error = ph.programError();
  const bool drift = ph.drift();
  if (!error && !drift) return;
  const double logAge = drift ? std::log(ph.time / ph.driftT0) : 0.0;
  const double fixedFactor = drift ? std::exp(-std::max(0.0, ph.driftNu) * logAge) : 1.0;  // when driftNuSigma == 0
  for (ArraySpec& a : arrays_) {
    const size_t n = a.conductance.size();
    for (size_t cell = 0; cell < n; ++cell) {
      if (a.isStuck(cell)) continue;  // stuck cells sit exactly at their conductance
      double g = a.conductance[cell];
      if (error) {
        const double sigma = ph.programSigma + ph.programRelative * g;
        g = std::max(0.0, g + sigma * rng_.normal());
      }
      if (drift) {
        if (ph.driftNuSigma > 0.0) {
          const double nu = std::max(0.0, ph.driftNu + ph.driftNuSigma * rng_.normal());
          g *= std::exp(-nu * logAge);
        } else {
          g *= fixedFactor;
        }
      }
      a.conductance[cell] = toConductance(g);
    }
  }
}

Network::Network(Program program)
    : arrays_(std::move(program.arrays)),
      physics_(program.physics),
      readNoise_(program.physics.readNoise()),
      noiseKernel_(noise::selectKernel()),
      noiseSeed_(noise::mix64(noise::mix64(program.seed) ^ 0x726561642D6E6F69ull)),
      threads_(program.threads),
      kernel_(gemm::selectKernel()),
      rng_(program.seed) {
  weightedSquares_ = &weightedSquaresPortable;
#ifdef DENDRA_X86_DISPATCH
  if (std::strcmp(kernel_.name, "avx2-fma") == 0) weightedSquares_ = &weightedSquaresAvx2;  // same CPU check
#endif
  programCells(physics_);  // the constructor is the only user of rng_ so far: no lock needed

  // IR drop: the effective conductances of every array, computed once.
  std::vector<std::vector<float>> effective;
  if (physics_.irDrop()) {
    effective.reserve(arrays_.size());
    for (const ArraySpec& a : arrays_) effective.push_back(irDrop(a, physics_.wireResistance));
  }
  const double readSigma = physics_.readSigma, readRelative = physics_.readRelative;
  auto variance = [&](double g) {
    const double sd = readSigma + readRelative * g;
    return sd * sd;
  };

  double flopsPerRow = 0.0;
  layers_.reserve(program.layers.size());
  for (LayerSpec& spec : program.layers) {
    Layer layer;
    layer.spec = std::move(spec);
    const LayerSpec& ls = layer.spec;
    maxIn_ = std::max<int64_t>(maxIn_, ls.inFeatures);
    maxOut_ = std::max<int64_t>(maxOut_, ls.outFeatures);
    layer.tiles.reserve(ls.tiles.size());
    for (const TileSpec& ts : ls.tiles) {
      const ArraySpec& arr = arrays_[static_cast<size_t>(ts.array)];
      const int64_t k = static_cast<int64_t>(ts.inputIndex.size());
      const int64_t m = static_cast<int64_t>(ts.outputIndex.size());
      Tile tile;
      tile.weff = gemm::allocatePacked(k, m);
      const float* g = effective.empty() ? arr.conductance.data() : effective[static_cast<size_t>(ts.array)].data();
      for (int64_t p = 0; p < k; ++p) {
        const float* pos = g + static_cast<int64_t>(ts.rowPos[p]) * arr.cols;
        const float* neg = g + static_cast<int64_t>(ts.rowNeg[p]) * arr.cols;
        for (int64_t c = 0; c < m; ++c)
          tile.weff.at(p, c) = static_cast<float>(static_cast<double>(pos[ts.colPos[c]]) - neg[ts.colNeg[c]]);
      }
      if (readNoise_) {
        // Variance of the (r, c) current per volt²: both devices of the pair, from the held conductances.
        tile.var = gemm::allocatePacked(k, m);
        const float* h = arr.conductance.data();
        for (int64_t p = 0; p < k; ++p) {
          const float* pos = h + static_cast<int64_t>(ts.rowPos[p]) * arr.cols;
          const float* neg = h + static_cast<int64_t>(ts.rowNeg[p]) * arr.cols;
          for (int64_t c = 0; c < m; ++c)
            tile.var.at(p, c) = static_cast<float>(variance(pos[ts.colPos[c]]) + variance(neg[ts.colNeg[c]]));
        }
        flopsPerRow += 2.0 * static_cast<double>(k) * static_cast<double>(m) + 30.0 * static_cast<double>(m);
      }
      tile.gatherInput = false;
      for (int64_t p = 0; p < k; ++p)
        if (ts.inputIndex[p] != p) {
          tile.gatherInput = true;
          break;
        }
      tile.contiguousOutput = true;
      for (int64_t c = 0; c < m; ++c)
        if (ts.outputIndex[c] != ts.outputIndex[0] + c) {
          tile.contiguousOutput = false;
          break;
        }
      tile.quantiseOutput = ls.adcBits > 0;
      if (tile.quantiseOutput) tile.adc = periphery::makeAdc(ls.adcBits, ts.adcFullScale, ls.vRead);
      maxPaddedCols_ = std::max(maxPaddedCols_, tile.weff.paddedCols());
      flopsPerRow += 2.0 * static_cast<double>(k) * static_cast<double>(m);
      layer.tiles.push_back(std::move(tile));
    }
    // Group tiles by identical inputIndex so one packed (gathered) input block serves all of them.
    const size_t nt = ls.tiles.size();
    layer.inputGroup.assign(nt, 0);
    for (size_t i = 0; i < nt; ++i) {
      layer.inputGroup[i] = i;
      for (size_t j = 0; j < i; ++j)
        if (layer.inputGroup[j] == j && ls.tiles[j].inputIndex == ls.tiles[i].inputIndex) {
          layer.inputGroup[i] = j;
          break;
        }
    }
    layer.order.resize(nt);
    for (size_t i = 0; i < nt; ++i) layer.order[i] = i;
    std::stable_sort(layer.order.begin(), layer.order.end(),
                     [&](size_t a, size_t b) { return layer.inputGroup[a] < layer.inputGroup[b]; });
    flopsPerRow += 8.0 * ls.outFeatures;
    if (ls.dendrites.active()) {
      const DendriteSpec& d = ls.dendrites;
      layer.consts = dendrite::constants(d);
      layer.consts.avx2 = std::strcmp(kernel_.name, "avx2-fma") == 0;  // the same CPU check as the GEMM's
      layer.eps.assign(static_cast<size_t>(d.count) * static_cast<size_t>(ls.outFeatures), 1.0f);
      if (d.variation > 0.0)  // device-to-device variation, drawn once per chip (constructor only: no lock)
        for (float& e : layer.eps) e = static_cast<float>(std::max(0.0, 1.0 + d.variation * rng_.normal()));
      maxBranchOut_ = std::max<int64_t>(maxBranchOut_, static_cast<int64_t>(d.count) * ls.outFeatures);
      flopsPerRow += 30.0 * static_cast<double>(d.count) * ls.outFeatures;
    }
    prepareReadPower(layer);
    layers_.push_back(std::move(layer));
  }
  const int64_t widest = std::max({maxIn_, maxOut_, maxPaddedCols_, int64_t{1}});
  blockRows_ = std::clamp(kBlockBudget / widest / gemm::kMR * gemm::kMR, gemm::kMR, kMaxBlockRows);
  const double rows = std::ceil(kMinFlopsPerThread / std::max(1.0, flopsPerRow));
  minRowsPerThread_ = std::max<int64_t>(gemm::kMR, static_cast<int64_t>(std::min(rows, 1.0e9)));
}

std::vector<std::unique_ptr<Network::Scratch>> Network::acquire(size_t count) {
  std::vector<std::unique_ptr<Scratch>> out;
  out.reserve(count);
  {
    std::lock_guard<std::mutex> lock(poolMutex_);
    while (out.size() < count && !pool_.empty()) {
      out.push_back(std::move(pool_.back()));
      pool_.pop_back();
    }
  }
  while (out.size() < count) {
    auto s = std::make_unique<Scratch>();
    const size_t block = static_cast<size_t>(blockRows_);
    const size_t paddedRows = block;  // blockRows_ is a multiple of kMR
    s->act[0].resize(block * static_cast<size_t>(maxOut_));
    s->act[1].resize(block * static_cast<size_t>(maxOut_));
    s->u.resize(block * static_cast<size_t>(maxIn_));
    s->c.resize(paddedRows * static_cast<size_t>(maxPaddedCols_));
    s->apack.resize(gemm::packBufferSize(blockRows_));
    if (readNoise_) {
      s->cvar.resize(paddedRows * static_cast<size_t>(maxPaddedCols_));
      s->apack2.resize(gemm::packBufferSize(blockRows_));
      s->noise.resize(block);
    }
    s->scale.resize(block);
    if (maxBranchOut_ > 0) {
      s->branch.resize(block * static_cast<size_t>(maxBranchOut_));
      s->dendritePower.resize(static_cast<size_t>(maxOut_));
    }
    out.push_back(std::move(s));
  }
  return out;
}

void Network::giveBack(std::vector<std::unique_ptr<Scratch>>& scratches) {
  std::lock_guard<std::mutex> lock(poolMutex_);
  for (auto& s : scratches) pool_.push_back(std::move(s));
  scratches.clear();
}

RunStats Network::forward(const float* in, float* out, int64_t batch, uint64_t run) {
  if (batch <= 0) return {};
  const int64_t inF = inFeatures();
  const int64_t outF = outFeatures();

  int64_t workers = std::min<int64_t>(threads_, (batch + minRowsPerThread_ - 1) / minRowsPerThread_);
  workers = std::max<int64_t>(1, workers);
  int64_t chunk = (batch + workers - 1) / workers;
  chunk = (chunk + gemm::kMR - 1) / gemm::kMR * gemm::kMR;
  workers = (batch + chunk - 1) / chunk;

  const uint64_t runKey = noise::streamKey(noiseSeed_, run);
  auto scratches = acquire(static_cast<size_t>(workers));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  std::vector<RunStats> power(static_cast<size_t>(workers));
  auto job = [&](int64_t t) {
    try {
      const int64_t r0 = t * chunk;
      const int64_t rows = std::min(chunk, batch - r0);
      power[static_cast<size_t>(t)] =
          forwardRows(in + r0 * inF, out + r0 * outF, rows, r0, runKey, *scratches[static_cast<size_t>(t)]);
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
    }
  };

  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(workers));
  for (int64_t t = 1; t < workers; ++t) {
    try {
      pool.emplace_back(job, t);
    } catch (const std::system_error&) {
      job(t);  // could not start a thread: do the chunk here
    }
  }
  job(0);
  for (auto& th : pool) th.join();
  giveBack(scratches);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  RunStats total;
  for (const RunStats& p : power) total += p;
  return total;
}

RunStats Network::forwardRows(const float* in, float* out, int64_t rows, int64_t row0, uint64_t runKey, Scratch& s) const {
  RunStats stats;
  double& power = stats.crossbarPower;
  const size_t nLayers = layers_.size();
  const int64_t inF0 = layers_.front().spec.inFeatures;
  const int64_t outLast = layers_.back().spec.outFeatures;
  for (int64_t r0 = 0; r0 < rows; r0 += blockRows_) {
    const int64_t nr = std::min(blockRows_, rows - r0);
    const float* x = in + r0 * inF0;
    if (readNoise_)  // each sample's stream, keyed by its row in the whole batch (not by thread or block)
      for (int64_t i = 0; i < nr; ++i)
        noise::seed(s.noise[static_cast<size_t>(i)], noise::streamKey(runKey, static_cast<uint64_t>(row0 + r0 + i)));
    for (size_t li = 0; li < nLayers; ++li) {
      const Layer& layer = layers_[li];
      const LayerSpec& ls = layer.spec;
      const int64_t inF = ls.inFeatures;
      const int64_t outF = ls.outFeatures;
      float* acc = li + 1 == nLayers ? out + r0 * outLast : s.act[li % 2].data();

      // DAC: per-row abs-max scaling + quantisation (or the raw input when dacBits == 0).
      const float* u = x;
      if (ls.dacBits > 0) {
        for (int64_t i = 0; i < nr; ++i) s.scale[i] = periphery::dacRow(x + i * inF, inF, ls.dacBits, s.u.data() + i * inF);
        u = s.u.data();
      } else {
        std::fill(s.scale.begin(), s.scale.begin() + nr, 1.0f);
      }
      // Crossbar read power of each sample (the only data-dependent energy term).
      // and its driven rows: a row whose input is zero is not driven (event-driven rows).
      for (int64_t i = 0; i < nr; ++i) {
        const float* ui = u + i * inF;
        const double p = readPower(layer, ui);
        if (std::isfinite(p)) power += p;
        double events = 0.0;
        for (int64_t j = 0; j < inF; ++j) events += ui[j] != 0.0f ? layer.rowDrives[static_cast<size_t>(j)] : 0.0f;
        stats.rowEvents += events;
        if (li == 0) stats.inputRowEvents += events;
      }

      const bool dendritic = ls.dendrites.active();
      const int64_t branchStride = dendritic ? static_cast<int64_t>(ls.dendrites.count) * outF : 0;
      if (dendritic)
        std::fill(s.branch.data(), s.branch.data() + nr * branchStride, 0.0f);
      else
        std::fill(acc, acc + nr * outF, 0.0f);
      size_t packedGroup = static_cast<size_t>(-1);    // input group whose gathered block is in s.apack
      size_t packedGroupSq = static_cast<size_t>(-1);  // ... whose squared block is in s.apack2
      for (const size_t ti : layer.order) {
        const Tile& tile = layer.tiles[ti];
        const TileSpec& ts = ls.tiles[ti];
        const int64_t ldc = tile.weff.paddedCols();
        const int64_t m = tile.weff.m;
        const bool reuse = layer.inputGroup[ti] == packedGroup;
        gemm::multiply(kernel_, nr, u, inF, tile.gatherInput ? ts.inputIndex.data() : nullptr, tile.weff, s.c.data(),
                       ldc, s.apack.data(), reuse);
        packedGroup = tile.weff.k <= gemm::kKC ? layer.inputGroup[ti] : static_cast<size_t>(-1);
        if (readNoise_) {
          // S = (u∘u)·Var: the variance of each output current (in (current / vRead)² units)
          if (tile.var.k <= gemm::kKC) {
            // s.apack holds this tile's packed A (one K block): square it once per input group
            if (layer.inputGroup[ti] != packedGroupSq) gemm::squarePacked(s.apack.data(), s.apack2.data(), nr, tile.var.k);
            packedGroupSq = layer.inputGroup[ti];
            gemm::multiply(kernel_, nr, u, inF, nullptr, tile.var, s.cvar.data(), ldc, s.apack2.data(), true);
          } else {
            gemm::multiply(kernel_, nr, u, inF, tile.gatherInput ? ts.inputIndex.data() : nullptr, tile.var,
                           s.cvar.data(), ldc, s.apack2.data(), false, true);
            packedGroupSq = static_cast<size_t>(-1);
          }
        }
        if (readNoise_)  // I += sqrt(S) * N(0, 1), before the ADC
          noiseKernel_.add(s.noise.data(), nr, s.c.data(), s.cvar.data(), ldc, ldc);
        const int32_t* oi = ts.outputIndex.data();
        for (int64_t i = 0; i < nr; ++i) {
          float* crow = s.c.data() + i * ldc;
          float* arow = dendritic ? s.branch.data() + i * branchStride + static_cast<int64_t>(ts.branch) * outF
                                  : acc + i * outF;
          if (tile.quantiseOutput) periphery::adcInPlace(tile.adc, crow, m);
          if (tile.contiguousOutput) {
            float* dst = arow + oi[0];
            for (int64_t c = 0; c < m; ++c) dst[c] += crow[c];
          } else {
            for (int64_t c = 0; c < m; ++c) arow[oi[c]] += crow[c];
          }
        }
      }

      if (dendritic) {
        dendriticFinish(layer, s, nr, acc, stats);
      } else {
        for (int64_t i = 0; i < nr; ++i) {
          float* y = acc + i * outF;
          const float sc = s.scale[i];
          for (int64_t j = 0; j < outF; ++j) y[j] = y[j] * sc * ls.outScale[j] + ls.bias[j];
          periphery::activate(y, outF, ls.activation, ls.alpha, ls.beta);
        }
      }
      for (int64_t i = 0; i < nr; ++i) {
        float* y = acc + i * outF;
        if (ls.somaEnergy > 0.0) {
          // A soma saturates at its rated current: its output is bounded by ±somaFullScale, and its energy is its
          // output current (onCurrent · |y| / somaFullScale <= onCurrent) over the integration time.
          const float full = static_cast<float>(ls.somaFullScale);
          double sum = 0.0;
          int64_t active = 0;
          for (int64_t j = 0; j < outF; ++j) {
            y[j] = std::clamp(y[j], -full, full);  // NaN stays NaN
            const double a = std::fabs(static_cast<double>(y[j]));
            sum += a;
            active += a > 0.01 * ls.somaFullScale ? 1 : 0;
          }
          const double e = sum / ls.somaFullScale * ls.somaEnergy;
          if (std::isfinite(e)) stats.somaEnergy += e;
          stats.somasActive += static_cast<double>(active);
          stats.somas += static_cast<double>(outF);
        }
        periphery::applyHead(y, outF, ls.head);
      }
      x = acc;
    }
  }
  return stats;
}

void Network::dendriticFinish(const Layer& layer, Scratch& s, int64_t nr, float* acc, RunStats& stats) const {
  const LayerSpec& ls = layer.spec;
  const DendriteSpec& d = ls.dendrites;
  const int64_t outF = ls.outFeatures;
  const int64_t nb = d.count;
  const float kappa = d.bypass ? 1.0f : static_cast<float>(d.biasScale);
  for (int64_t i = 0; i < nr; ++i) {
    const float* z = s.branch.data() + i * nb * outF;
    float* y = acc + i * outF;
    const float sc = s.scale[i];
    double power = 0.0;  // Σ over the row's dendrites of (a|u|)·i(a|u|)·ε
    for (int64_t j = 0; j < outF; ++j) y[j] = kappa * ls.bias[j];
    for (int64_t b = 0; b < nb; ++b) {
      const float* zb = z + b * outF;
      if (d.bypass) {
        for (int64_t j = 0; j < outF; ++j) y[j] += zb[j] * sc * ls.outScale[j];
      } else {
        power += dendrite::branchRow(layer.consts, zb, sc, ls.outScale.data(), layer.eps.data() + b * outF, y,
                                     s.dendritePower.data(), outF);
        // Branch signals in the ON region (the applied voltage saturates at the rating, as in branchRow).
        const double onAt = layer.consts.onAt;
        for (int64_t j = 0; j < outF; ++j) {
          const double u = static_cast<double>(zb[j] * sc * ls.outScale[j]) * layer.consts.invF;
          if (!(u != 0.0) || (d.rectify && u < 0.0)) continue;
          stats.signals += 1.0;
          if (std::min(std::fabs(u) * layer.consts.ratio, layer.consts.maxRatio) >= onAt) stats.signalsOn += 1.0;
        }
      }
    }
    const double e = power * d.energyUnit;
    if (std::isfinite(e)) stats.dendriteEnergy += e;
    periphery::activate(y, outF, ls.activation, ls.alpha, ls.beta);
  }
}

}  // namespace dendra
