#include "pulse_physics.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

namespace dendra {

namespace {

/** A seed for array a's own stream. */
uint64_t arraySeed(uint32_t seed, int32_t a) {
  return (static_cast<uint64_t>(seed) << 32) ^ (static_cast<uint64_t>(a) * 0x9E3779B97F4A7C15ull) ^ 0x70756c7365ull;
}

[[noreturn]] void bad(const std::string& message) { throw PulseArgumentError(message); }

std::string num(double v) {
  std::string s = std::to_string(v);
  return s;
}

}  // namespace

PulseChip::PulseChip(PulseChipConfig config)
    : cfg_(std::move(config)), arrays_(static_cast<size_t>(cfg_.count)), noise_(static_cast<uint64_t>(cfg_.seed) ^ 0x6e6f697365ull) {
  if (cfg_.rows < 1 || cfg_.cols < 1 || cfg_.count < 0) bad("rows and cols must be >= 1 and count >= 0");
  if (cfg_.stuck.size() != static_cast<size_t>(cfg_.count)) cfg_.stuck.resize(static_cast<size_t>(cfg_.count));
}

void PulseChip::checkArray(int32_t array) const {
  if (array < 0 || array >= cfg_.count)
    bad("array " + std::to_string(array) + " does not exist: this chip has arrays 0.." + std::to_string(cfg_.count - 1));
}

PulseChip::ArrayState& PulseChip::state(int32_t array) {
  checkArray(array);
  auto& slot = arrays_[static_cast<size_t>(array)];
  if (slot) return *slot;
  const size_t n = static_cast<size_t>(cfg_.rows) * static_cast<size_t>(cfg_.cols);
  auto s = std::make_unique<ArrayState>();
  s->g.resize(n);
  s->d.resize(n);
  s->stuck.assign(n, 0);
  s->pulses.assign(n, 0);
  s->energy.assign(n, 0.0);
  Rng rng(arraySeed(cfg_.seed, array));
  const double span = kAsFabricatedFraction * (cfg_.gmax - cfg_.gmin);
  for (size_t i = 0; i < n; ++i) {
    s->g[i] = static_cast<float>(cfg_.gmin + span * rng.uniform());
    s->d[i] = static_cast<float>(std::max(0.1, 1.0 + cfg_.pulse.variation * rng.normal()));
  }
  for (const StuckCell& c : cfg_.stuck[static_cast<size_t>(array)]) {
    s->stuck[static_cast<size_t>(c.cell)] = 1;
    s->g[static_cast<size_t>(c.cell)] = c.conductance;
  }
  slot = std::move(s);
  return *slot;
}

void PulseChip::pulseCell(ArrayState& s, size_t i, double amplitude, double level, double keep, double width) {
  s.pulses[i]++;
  totals_.cellPulses++;
  if (s.stuck[i]) return;
  const double before = s.g[i];
  const double top = kClampFraction * cfg_.gmax;
  const double noise = cfg_.pulse.noise;
  double v;
  if (amplitude > 0) {
    v = std::max(before, static_cast<double>(s.d[i]) * level);
  } else {
    if (!(keep < 1.0)) return;  // at or below the threshold: nothing happens
    v = cfg_.gmin + (before - cfg_.gmin) * keep;
  }
  if (noise > 0) v += noise * noise_.normal();
  v = std::min(top, std::max(0.0, v));
  s.g[i] = static_cast<float>(v);
  if (!s.packed.empty()) s.packed.clear();
  const double e = amplitude * amplitude * std::max(before, v) * width;
  s.energy[i] += e;
  totals_.energy += e;
}

void PulseChip::pulse(int32_t array, const int32_t* row, const int32_t* col, const float* amplitude, const float* gate,
                      size_t n, double width) {
  checkArray(array);
  if (!(std::isfinite(width) && width > 0)) bad("pulse width " + num(width) + " s must be finite and > 0");
  for (size_t k = 0; k < n; ++k) {
    const std::string where = "pulse " + std::to_string(k) + " (row " + std::to_string(row[k]) + ", col " + std::to_string(col[k]) + ")";
    if (row[k] < 0 || row[k] >= cfg_.rows) bad(where + ": row is outside 0.." + std::to_string(cfg_.rows - 1));
    if (col[k] < -1 || col[k] >= cfg_.cols) bad(where + ": col is outside 0.." + std::to_string(cfg_.cols - 1) + " (or -1 for the whole row)");
    if (!std::isfinite(amplitude[k]) || amplitude[k] == 0.0f) bad(where + ": amplitude must be finite and nonzero");
    if (!std::isfinite(gate[k])) bad(where + ": gate voltage must be finite");
  }
  ArrayState& s = state(array);
  const PulseModel& m = cfg_.pulse;
  const size_t cols = static_cast<size_t>(cfg_.cols);
  for (size_t k = 0; k < n; ++k) {
    const double amp = amplitude[k];
    const size_t first = static_cast<size_t>(row[k]) * cols + (col[k] < 0 ? 0 : static_cast<size_t>(col[k]));
    const size_t last = col[k] < 0 ? static_cast<size_t>(row[k]) * cols + cols : first + 1;
    const double level = amp > 0 ? m.setLevel(gate[k]) : 0.0;
    const double over = -amp - m.threshold;
    const double keep = amp > 0 ? 1.0 : (over > 0 ? std::exp(-over / m.scale) : 1.0);
    for (size_t i = first; i < last; ++i) pulseCell(s, i, amp, level, keep, width);
    totals_.pulses++;
  }
}

double PulseChip::updateRows(int32_t array, const int32_t* rowIndex, size_t nRows, const float* gates, const uint8_t* reset,
                             double setAmplitude, double resetAmplitude, double width) {
  checkArray(array);
  if (!(std::isfinite(width) && width > 0)) bad("pulse width " + num(width) + " s must be finite and > 0");
  if (!(std::isfinite(setAmplitude) && setAmplitude > 0)) bad("SET amplitude " + num(setAmplitude) + " V must be > 0");
  if (!(std::isfinite(resetAmplitude) && resetAmplitude < 0)) bad("RESET amplitude " + num(resetAmplitude) + " V must be < 0");
  const size_t cols = static_cast<size_t>(cfg_.cols);
  std::vector<uint8_t> seen(static_cast<size_t>(cfg_.rows), 0);
  for (size_t r = 0; r < nRows; ++r) {
    const int32_t row = rowIndex[r];
    if (row < 0 || row >= cfg_.rows) bad("row " + std::to_string(r) + " = " + std::to_string(row) + " is outside 0.." + std::to_string(cfg_.rows - 1));
    if (seen[static_cast<size_t>(row)]++) bad("row " + std::to_string(row) + " is listed twice");
    for (size_t c = 0; c < cols; ++c) {
      const float g = gates[r * cols + c];
      if (std::isinf(g)) bad("row " + std::to_string(row) + ", col " + std::to_string(c) + ": gate voltage is infinite (NaN leaves a cell out)");
      if (reset[r * cols + c] > 1) bad("row " + std::to_string(row) + ", col " + std::to_string(c) + ": RESET mask must be 0 or 1");
    }
  }
  ArrayState& s = state(array);
  const PulseModel& m = cfg_.pulse;
  const double over = -resetAmplitude - m.threshold;
  const double keep = over > 0 ? std::exp(-over / m.scale) : 1.0;
  const double before = totals_.cellPulses;
  for (size_t r = 0; r < nRows; ++r) {
    const size_t base = static_cast<size_t>(rowIndex[r]) * cols;
    bool any = false;
    for (size_t c = 0; c < cols; ++c)
      if (reset[r * cols + c]) {
        pulseCell(s, base + c, resetAmplitude, 0.0, keep, width);
        any = true;
      }
    if (any) totals_.pulses++;
    any = false;
    for (size_t c = 0; c < cols; ++c) {
      const float g = gates[r * cols + c];
      if (std::isnan(g)) continue;
      pulseCell(s, base + c, setAmplitude, m.setLevel(g), 1.0, width);
      any = true;
    }
    if (any) totals_.pulses++;
  }
  return totals_.cellPulses - before;
}

std::vector<float> PulseChip::read(int32_t array, int32_t row, int32_t col, int32_t rows, int32_t cols) {
  checkArray(array);
  if (row < 0 || col < 0 || rows < 1 || cols < 1 || row + rows > cfg_.rows || col + cols > cfg_.cols)
    bad("region rows " + std::to_string(row) + ".." + std::to_string(row + rows - 1) + ", cols " + std::to_string(col) + ".." +
        std::to_string(col + cols - 1) + " leaves the " + std::to_string(cfg_.rows) + " x " + std::to_string(cfg_.cols) + " array");
  ArrayState& s = state(array);
  std::vector<float> out(static_cast<size_t>(rows) * static_cast<size_t>(cols));
  for (int32_t r = 0; r < rows; ++r)
    for (int32_t c = 0; c < cols; ++c) {
      const double g = s.g[static_cast<size_t>(row + r) * static_cast<size_t>(cfg_.cols) + static_cast<size_t>(col + c)];
      const double sd = cfg_.readSigma + cfg_.readRelative * g;
      out[static_cast<size_t>(r) * static_cast<size_t>(cols) + static_cast<size_t>(c)] = static_cast<float>(g + (sd > 0 ? sd * noise_.normal() : 0.0));
    }
  totals_.reads += static_cast<double>(out.size());
  return out;
}

void PulseChip::checkInfer(int32_t array, const int32_t* rowIndex, size_t k, const int32_t* colIndex, size_t m,
                           const float* voltages, int64_t batch) const {
  checkArray(array);
  std::vector<uint8_t> seen(static_cast<size_t>(cfg_.rows), 0);
  for (size_t p = 0; p < k; ++p) {
    if (rowIndex[p] < 0 || rowIndex[p] >= cfg_.rows) bad("rows[" + std::to_string(p) + "] = " + std::to_string(rowIndex[p]) + " is outside the array");
    if (seen[static_cast<size_t>(rowIndex[p])]++) bad("rows lists " + std::to_string(rowIndex[p]) + " twice");
  }
  seen.assign(static_cast<size_t>(cfg_.cols), 0);
  for (size_t c = 0; c < m; ++c) {
    if (colIndex[c] < 0 || colIndex[c] >= cfg_.cols) bad("cols[" + std::to_string(c) + "] = " + std::to_string(colIndex[c]) + " is outside the array");
    if (seen[static_cast<size_t>(colIndex[c])]++) bad("cols lists " + std::to_string(colIndex[c]) + " twice");
  }
  if (batch < 1) bad("batch must be >= 1");
  for (size_t i = 0; i < static_cast<size_t>(batch) * k; ++i)
    if (!std::isfinite(voltages[i])) bad("voltage " + std::to_string(i) + " is not finite");
}

std::shared_ptr<const PulseChip::TilePack> PulseChip::packed(int32_t array, const int32_t* rowIndex, size_t k,
                                                             const int32_t* colIndex, size_t m) {
  ArrayState& s = state(array);
  for (const auto& p : s.packed)
    if (p->rows.size() == k && p->cols.size() == m && std::equal(rowIndex, rowIndex + k, p->rows.begin()) &&
        std::equal(colIndex, colIndex + m, p->cols.begin()))
      return p;
  auto pack = std::make_shared<TilePack>();
  pack->rows.assign(rowIndex, rowIndex + k);
  pack->cols.assign(colIndex, colIndex + m);
  // The products run through the packed float GEMM of the simulator (gemm.h): currents = V·G and the
  // per-column variance (V∘V)·σ², the latter scaled by 1/max σ² so it stays well inside float range.
  // A zero voltage adds exactly nothing to either, as a row left undriven.
  gemm::PackedMatrix& w = pack->w;
  gemm::PackedMatrix& var = pack->var;
  w = gemm::allocatePacked(static_cast<int64_t>(k), static_cast<int64_t>(m));
  var = gemm::allocatePacked(static_cast<int64_t>(k), static_cast<int64_t>(m));
  double maxVar = 0.0;
  for (size_t p = 0; p < k; ++p) {
    const size_t base = static_cast<size_t>(rowIndex[p]) * static_cast<size_t>(cfg_.cols);
    for (size_t c = 0; c < m; ++c) {
      const double g = s.g[base + static_cast<size_t>(colIndex[c])];
      const double sd = cfg_.readSigma + cfg_.readRelative * g;
      maxVar = std::max(maxVar, sd * sd);
    }
  }
  const bool noisy = maxVar > 0;
  for (size_t p = 0; p < k; ++p) {
    const size_t base = static_cast<size_t>(rowIndex[p]) * static_cast<size_t>(cfg_.cols);
    for (size_t c = 0; c < m; ++c) {
      const double g = s.g[base + static_cast<size_t>(colIndex[c])];
      const double sd = cfg_.readSigma + cfg_.readRelative * g;
      w.at(static_cast<int64_t>(p), static_cast<int64_t>(c)) = static_cast<float>(g);
      if (noisy) var.at(static_cast<int64_t>(p), static_cast<int64_t>(c)) = static_cast<float>(sd * sd / maxVar);
    }
  }
  pack->maxVar = maxVar;
  // Kept until a pulse changes the array (pulseCell drops them); the few most recent tiles of each array.
  if (s.packed.size() >= kPacksKept) s.packed.erase(s.packed.begin());
  s.packed.push_back(pack);
  return pack;
}

void PulseChip::inferInto(const TilePack& pack, const float* voltages, int64_t batch, const gemm::Kernel& kernel, Rng& rng,
                          float* out) const {
  const size_t k = pack.rows.size();
  const size_t m = pack.cols.size();
  const gemm::PackedMatrix& w = pack.w;
  const gemm::PackedMatrix& var = pack.var;
  const double maxVar = pack.maxVar;
  const bool noisy = maxVar > 0;
  const int64_t ldc = w.paddedCols();
  const int64_t blockRows = std::min<int64_t>(batch, 252);
  std::vector<float> apack(gemm::packBufferSize(blockRows));
  std::vector<float> cur(static_cast<size_t>((blockRows + gemm::kMR - 1) / gemm::kMR * gemm::kMR * ldc));
  std::vector<float> cvar(noisy ? cur.size() : 0);
  for (int64_t b0 = 0; b0 < batch; b0 += blockRows) {
    const int64_t rows = std::min(blockRows, batch - b0);
    const float* x = voltages + static_cast<size_t>(b0) * k;
    gemm::multiply(kernel, rows, x, static_cast<int64_t>(k), nullptr, w, cur.data(), ldc, apack.data());
    if (noisy) gemm::multiply(kernel, rows, x, static_cast<int64_t>(k), nullptr, var, cvar.data(), ldc, apack.data(), false, true);
    for (int64_t i = 0; i < rows; ++i) {
      float* o = &out[static_cast<size_t>(b0 + i) * m];
      const float* ci = &cur[static_cast<size_t>(i * ldc)];
      if (!noisy) {
        std::copy(ci, ci + m, o);
        continue;
      }
      // Both deviates of a Box-Muller draw are used (a column with zero variance takes none).
      const float* vi = &cvar[static_cast<size_t>(i * ldc)];
      double spare = 0.0;
      bool haveSpare = false;
      for (size_t c = 0; c < m; ++c) {
        const double vr = static_cast<double>(vi[c]) * maxVar;
        double z = 0.0;
        if (vr > 0) {
          if (haveSpare) {
            z = spare;
            haveSpare = false;
          } else {
            rng.normalPair(z, spare);
            haveSpare = true;
          }
        }
        o[c] = static_cast<float>(static_cast<double>(ci[c]) + (vr > 0 ? std::sqrt(vr) * z : 0.0));
      }
    }
  }
}


std::vector<float> PulseChip::infer(int32_t array, const int32_t* rowIndex, size_t k, const int32_t* colIndex, size_t m,
                                    const float* voltages, int64_t batch) {
  checkInfer(array, rowIndex, k, colIndex, m, voltages, batch);
  state(array);
  if (!kernel_) kernel_ = gemm::selectKernel();
  std::vector<float> out(static_cast<size_t>(batch) * m);
  const auto pack = packed(array, rowIndex, k, colIndex, m);
  inferInto(*pack, voltages, batch, *kernel_, noise_, out.data());
  return out;
}

namespace {
struct TileJob {
  int32_t array;
  const int32_t* rows;
  size_t k;
  const int32_t* cols;
  size_t m;
  std::shared_ptr<const void> pack;
  const float* volts;
  float* out;
  Rng rng;
};
struct TilesContext {
  const PulseChip* chip;
  const gemm::Kernel* kernel;
  int64_t batch;
  std::vector<TileJob>* jobs;
  std::vector<std::string>* errors;
};
}  // namespace

std::vector<float> PulseChip::inferTiles(const int32_t* arrays, size_t nTiles, const int32_t* rowCounts, const int32_t* rows,
                                         size_t nRowIndices, const int32_t* colCounts, const int32_t* cols,
                                         size_t nColIndices, const float* voltages, size_t nVoltages, int64_t batch,
                                         int32_t threads) {
  if (batch < 1) bad("batch must be >= 1");
  if (threads < 1 || threads > 256) bad("threads must be from 1 to 256");
  std::vector<TileJob> jobs;
  jobs.reserve(nTiles);
  size_t r0 = 0, c0 = 0, v0 = 0, o0 = 0;
  for (size_t t = 0; t < nTiles; ++t) {
    if (rowCounts[t] < 1 || colCounts[t] < 1) bad("tile " + std::to_string(t) + " drives no row or senses no column");
    const size_t k = static_cast<size_t>(rowCounts[t]);
    const size_t m = static_cast<size_t>(colCounts[t]);
    if (r0 + k > nRowIndices || c0 + m > nColIndices || v0 + k * static_cast<size_t>(batch) > nVoltages)
      bad("tile " + std::to_string(t) + ": the row, column or voltage lists end before it");
    const float* vt = voltages + v0;
    try {
      checkInfer(arrays[t], rows + r0, k, cols + c0, m, vt, batch);
    } catch (const std::exception& e) {
      bad("tile " + std::to_string(t) + ": " + e.what());
    }
    jobs.push_back({arrays[t], rows + r0, k, cols + c0, m, nullptr, vt, nullptr, Rng(0)});
    r0 += k;
    c0 += m;
    v0 += k * static_cast<size_t>(batch);
    o0 += m * static_cast<size_t>(batch);
  }
  if (r0 != nRowIndices || c0 != nColIndices || v0 != nVoltages) bad("the row, column or voltage lists hold more than the tiles use");
  // Everything checked: materialise the arrays, then give every tile its own stream, drawn in tile order
  // from the chip's noise stream (so the result depends on the seed and the requests, not on the threads).
  for (TileJob& j : jobs) j.pack = packed(j.array, j.rows, j.k, j.cols, j.m);
  if (!kernel_) kernel_ = gemm::selectKernel();
  std::vector<float> out(o0);
  size_t at = 0;
  for (TileJob& j : jobs) {
    j.out = out.data() + at;
    at += j.m * static_cast<size_t>(batch);
    j.rng = noise_.split();
  }
  std::vector<std::string> errors;
  TilesContext ctx{this, &*kernel_, batch, &jobs, &errors};
  auto work = [](void* c, int64_t t) {
    auto* x = static_cast<TilesContext*>(c);
    TileJob& j = (*x->jobs)[static_cast<size_t>(t)];
    try {
      x->chip->inferInto(*static_cast<const PulseChip::TilePack*>(j.pack.get()), j.volts, x->batch, *x->kernel, j.rng, j.out);
    } catch (const std::exception& e) {
      (*x->errors)[static_cast<size_t>(t)] = e.what();
    }
  };
  errors.resize(jobs.size());
  if (threads > 1 && jobs.size() > 1) {
    if (!pool_ || poolThreads_ != threads) {
      pool_ = std::make_unique<WorkerPool>(threads - 1);
      poolThreads_ = threads;
    }
    pool_->run(static_cast<int64_t>(jobs.size()), work, &ctx);
  } else {
    for (size_t t = 0; t < jobs.size(); ++t) work(&ctx, static_cast<int64_t>(t));
  }
  for (const std::string& e : errors)
    if (!e.empty()) throw std::runtime_error("inferTiles: " + e);
  return out;
}

std::vector<float> PulseChip::conductances(int32_t array) { return state(array).g; }
std::vector<float> PulseChip::setFactors(int32_t array) { return state(array).d; }
std::vector<uint32_t> PulseChip::pulseCounts(int32_t array) { return state(array).pulses; }
std::vector<double> PulseChip::pulseEnergy(int32_t array) { return state(array).energy; }
std::vector<uint8_t> PulseChip::stuckMask(int32_t array) { return state(array).stuck; }

}  // namespace dendra
