#include "placement.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <thread>

#include "reader.h"

namespace dendra {

std::vector<int32_t> assign(const std::vector<double>& cost, int32_t n, int32_t m) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0.0), v(m + 1, 0.0), minv(m + 1);
  std::vector<int32_t> p(m + 1, 0), way(m + 1, 0);
  std::vector<char> used(m + 1);
  for (int32_t i = 1; i <= n; ++i) {
    p[0] = i;
    int32_t j0 = 0;
    std::fill(minv.begin(), minv.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int32_t i0 = p[j0];
      const double* row = cost.data() + static_cast<size_t>(i0 - 1) * m - 1;
      const double ui = u[i0];
      double delta = inf;
      int32_t j1 = 0;
      for (int32_t j = 1; j <= m; ++j) {
        if (used[j]) continue;
        const double cur = row[j] - ui - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int32_t j = 0; j <= m; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int32_t j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int32_t> columnOf(n, 0);
  for (int32_t j = 1; j <= m; ++j)
    if (p[j] != 0) columnOf[p[j] - 1] = j - 1;
  return columnOf;
}

namespace {

inline double miss(double v, double lo, double hi) {
  const double d = v < lo ? lo - v : (v > hi ? v - hi : 0.0);
  return d * d;
}

/** CSR index of sites by a key (row slot or column slot). */
void index(const std::vector<int32_t>& keys, int32_t n, std::vector<int32_t>& start, std::vector<int32_t>& order) {
  start.assign(n + 1, 0);
  for (int32_t k : keys) ++start[k + 1];
  for (int32_t i = 0; i < n; ++i) start[i + 1] += start[i];
  std::vector<int32_t> fill(start.begin(), start.end() - 1);
  order.assign(keys.size(), 0);
  for (size_t i = 0; i < keys.size(); ++i) order[fill[keys[i]]++] = static_cast<int32_t>(i);
}

}  // namespace

void solvePlacement(PlacementProblem& p) {
  const int32_t k = p.k, c = p.c;
  p.rowFlip.assign(k, 0);
  p.colFlip.assign(c, 0);
  if (p.siteRow.empty()) return;
  std::vector<int32_t> rowStart, byRow, colStart, byCol;
  index(p.siteRow, p.rowSlots, rowStart, byRow);
  index(p.siteCol, p.colSlots, colStart, byCol);
  std::vector<double> wT(static_cast<size_t>(k) * c);  // transposed: inputs contiguous per output
  for (int32_t r = 0; r < k; ++r)
    for (int32_t q = 0; q < c; ++q) wT[static_cast<size_t>(q) * k + r] = p.weights[static_cast<size_t>(r) * c + q];
  std::vector<double> e0(std::max(k, c)), e1(std::max(k, c));

  for (int32_t round = 0; round < p.rounds; ++round) {
    if (round % 2 == 0) {
      std::vector<int32_t> owner(p.colSlots, -1);
      for (int32_t q = 0; q < c; ++q) owner[p.colSlot[q]] = q;
      std::vector<double> cost(static_cast<size_t>(k) * p.rowSlots, 0.0);
      std::vector<uint8_t> bestFlip(static_cast<size_t>(k) * p.rowSlots, 0);
      for (int32_t s = 0; s < p.rowSlots; ++s) {
        const int32_t from = rowStart[s], to = rowStart[s + 1];
        if (from == to) continue;
        std::fill(e0.begin(), e0.begin() + k, 0.0);
        std::fill(e1.begin(), e1.begin() + k, 0.0);
        for (int32_t n = from; n < to; ++n) {
          const int32_t i = byRow[n];
          const int32_t q = owner[p.siteCol[i]];
          if (q < 0) continue;
          const bool flipped = p.colFlip[q] != 0;
          const double lo = flipped ? -p.siteHi[i] : p.siteLo[i];
          const double hi = flipped ? -p.siteLo[i] : p.siteHi[i];
          const double ik = p.invK2[q];
          const double* w = wT.data() + static_cast<size_t>(q) * k;
          for (int32_t r = 0; r < k; ++r) {
            e0[r] += miss(w[r], lo, hi) * ik;
            e1[r] += miss(-w[r], lo, hi) * ik;
          }
        }
        for (int32_t r = 0; r < k; ++r) {
          const uint8_t flip = p.flipRows && e1[r] < e0[r] ? 1 : 0;
          bestFlip[static_cast<size_t>(r) * p.rowSlots + s] = flip;
          cost[static_cast<size_t>(r) * p.rowSlots + s] = p.power[r] * (flip ? e1[r] : e0[r]);
        }
      }
      const auto chosen = assign(cost, k, p.rowSlots);
      for (int32_t r = 0; r < k; ++r) {
        p.rowSlot[r] = chosen[r];
        p.rowFlip[r] = bestFlip[static_cast<size_t>(r) * p.rowSlots + chosen[r]];
      }
    } else {
      std::vector<int32_t> owner(p.rowSlots, -1);
      for (int32_t r = 0; r < k; ++r) owner[p.rowSlot[r]] = r;
      std::vector<double> cost(static_cast<size_t>(c) * p.colSlots, 0.0);
      std::vector<uint8_t> bestFlip(static_cast<size_t>(c) * p.colSlots, 0);
      for (int32_t x = 0; x < p.colSlots; ++x) {
        const int32_t from = colStart[x], to = colStart[x + 1];
        if (from == to) continue;
        std::fill(e0.begin(), e0.begin() + c, 0.0);
        std::fill(e1.begin(), e1.begin() + c, 0.0);
        for (int32_t n = from; n < to; ++n) {
          const int32_t i = byCol[n];
          const int32_t r = owner[p.siteRow[i]];
          if (r < 0) continue;
          const bool flipped = p.rowFlip[r] != 0;
          const double lo = flipped ? -p.siteHi[i] : p.siteLo[i];
          const double hi = flipped ? -p.siteLo[i] : p.siteHi[i];
          const double sr = p.power[r];
          const double* w = p.weights.data() + static_cast<size_t>(r) * c;
          for (int32_t q = 0; q < c; ++q) {
            e0[q] += sr * miss(w[q], lo, hi);
            e1[q] += sr * miss(-w[q], lo, hi);
          }
        }
        for (int32_t q = 0; q < c; ++q) {
          const uint8_t flip = !p.flipRows && e1[q] < e0[q] ? 1 : 0;
          bestFlip[static_cast<size_t>(q) * p.colSlots + x] = flip;
          cost[static_cast<size_t>(q) * p.colSlots + x] = (flip ? e1[q] : e0[q]) * p.invK2[q];
        }
      }
      const auto chosen = assign(cost, c, p.colSlots);
      for (int32_t q = 0; q < c; ++q) {
        p.colSlot[q] = chosen[q];
        p.colFlip[q] = bestFlip[static_cast<size_t>(q) * p.colSlots + chosen[q]];
      }
    }
  }
}

namespace {

std::vector<double> doubles(Reader& rd, Napi::Object o, const char* key, const std::string& path, size_t want) {
  auto a = rd.typed<double>(o, key, path, napi_float64_array);
  rd.length(path, a.ElementLength(), want, "see NativePlacementProblem");
  std::vector<double> out(a.Data(), a.Data() + a.ElementLength());
  for (size_t i = 0; i < out.size(); ++i)
    if (!std::isfinite(out[i]))
      throwRangeError(rd.env(), path + "[" + std::to_string(i) + "] = " + formatNumber(out[i]) + " must be finite");
  return out;
}

void distinct(Reader& rd, const std::string& path, const std::vector<int32_t>& v, int32_t limit) {
  rd.indices(path, v, limit, "the " + std::to_string(limit) + " slots");
  std::vector<char> seen(limit, 0);
  for (size_t i = 0; i < v.size(); ++i) {
    if (seen[v[i]]) throwRangeError(rd.env(), path + "[" + std::to_string(i) + "] = " + std::to_string(v[i]) + " is used twice");
    seen[v[i]] = 1;
  }
}

PlacementProblem readProblem(Reader& rd, Napi::Value value, const std::string& path) {
  Napi::Object o = rd.object(value, path);
  PlacementProblem p;
  p.rowSlots = static_cast<int32_t>(rd.integer(o, "rowSlots", path + ".rowSlots", 1, kMaxDim));
  p.colSlots = static_cast<int32_t>(rd.integer(o, "colSlots", path + ".colSlots", 1, kMaxDim));
  p.k = static_cast<int32_t>(rd.integer(o, "k", path + ".k", 1, p.rowSlots));
  p.c = static_cast<int32_t>(rd.integer(o, "c", path + ".c", 1, p.colSlots));
  p.rounds = static_cast<int32_t>(rd.integer(o, "rounds", path + ".rounds", 0, 16));
  Napi::Value flip = o.Get("flipRows");
  if (!flip.IsBoolean()) throwTypeError(rd.env(), path + ".flipRows must be a boolean (got " + describe(flip) + ")");
  p.flipRows = flip.As<Napi::Boolean>().Value();
  const size_t kc = static_cast<size_t>(p.k) * p.c;
  if (kc > static_cast<size_t>(kMaxTileCells)) throwRangeError(rd.env(), path + " is too large");
  p.weights = doubles(rd, o, "weights", path + ".weights", kc);
  p.invK2 = doubles(rd, o, "invK2", path + ".invK2", p.c);
  p.power = doubles(rd, o, "power", path + ".power", p.k);
  for (size_t i = 0; i < p.power.size(); ++i)
    if (p.power[i] < 0) throwRangeError(rd.env(), path + ".power[" + std::to_string(i) + "] must be >= 0");
  p.siteRow = rd.ints(o, "siteRow", path + ".siteRow");
  p.siteCol = rd.ints(o, "siteCol", path + ".siteCol");
  const size_t ns = p.siteRow.size();
  rd.length(path + ".siteCol", p.siteCol.size(), ns, "one per site");
  p.siteLo = doubles(rd, o, "siteLo", path + ".siteLo", ns);
  p.siteHi = doubles(rd, o, "siteHi", path + ".siteHi", ns);
  rd.indices(path + ".siteRow", p.siteRow, p.rowSlots, "the row slots");
  rd.indices(path + ".siteCol", p.siteCol, p.colSlots, "the column slots");
  for (size_t i = 0; i < ns; ++i)
    if (p.siteLo[i] > p.siteHi[i]) throwRangeError(rd.env(), path + ".siteLo[" + std::to_string(i) + "] > siteHi");
  p.rowSlot = rd.ints(o, "rowSlot", path + ".rowSlot");
  p.colSlot = rd.ints(o, "colSlot", path + ".colSlot");
  rd.length(path + ".rowSlot", p.rowSlot.size(), p.k, "one per input");
  rd.length(path + ".colSlot", p.colSlot.size(), p.c, "one per output");
  distinct(rd, path + ".rowSlot", p.rowSlot, p.rowSlots);
  distinct(rd, path + ".colSlot", p.colSlot, p.colSlots);
  return p;
}

template <typename T, typename A>
A copyOut(Napi::Env env, const std::vector<T>& v) {
  A a = A::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

}  // namespace

Napi::Value placeTiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Reader rd(env);
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber())
    throwTypeError(env, "placeTiles(problems: object[], threads: number)");
  Napi::Array list = info[0].As<Napi::Array>();
  double t = info[1].As<Napi::Number>().DoubleValue();
  if (!(t >= 1 && t <= kMaxThreads && t == std::floor(t))) throwRangeError(env, "placeTiles: threads must be an integer in [1, 256]");
  std::vector<PlacementProblem> problems;
  problems.reserve(list.Length());
  for (uint32_t i = 0; i < list.Length(); ++i) problems.push_back(readProblem(rd, list.Get(i), "problems[" + std::to_string(i) + "]"));

  std::atomic<size_t> next{0};
  auto work = [&]() {
    for (size_t i = next++; i < problems.size(); i = next++) solvePlacement(problems[i]);
  };
  const size_t threads = std::min<size_t>(static_cast<size_t>(t), std::max<size_t>(1, problems.size()));
  std::vector<std::thread> pool;
  for (size_t i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();

  Napi::Array out = Napi::Array::New(env, problems.size());
  for (size_t i = 0; i < problems.size(); ++i) {
    const auto& p = problems[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("rowSlot", copyOut<int32_t, Napi::Int32Array>(env, p.rowSlot));
    o.Set("rowFlip", copyOut<uint8_t, Napi::Uint8Array>(env, p.rowFlip));
    o.Set("colSlot", copyOut<int32_t, Napi::Int32Array>(env, p.colSlot));
    o.Set("colFlip", copyOut<uint8_t, Napi::Uint8Array>(env, p.colFlip));
    out.Set(i, o);
  }
  return out;
}

}  // namespace dendra
