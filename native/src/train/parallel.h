// Splits [0, n) into up to `threads` contiguous ranges and runs fn(begin, end) on each, one on the calling
// thread and the rest on std::threads (as the simulator does); exceptions are rethrown after the join.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

namespace dendra::train {

/**
 * Runs job(t) for t in [0, workers): t = 0 on the calling thread, the rest on std::threads (inline when a
 * thread cannot be started); the first exception is rethrown after every job has finished.
 */
template <typename Job>
void runWorkers(int64_t workers, Job&& job) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  auto guarded = [&](int64_t t) {
    try {
      job(t);
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(workers));
  for (int64_t t = 1; t < workers; ++t) {
    try {
      pool.emplace_back(guarded, t);
    } catch (const std::system_error&) {
      guarded(t);
    }
  }
  guarded(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

template <typename Fn>
void parallelFor(int32_t threads, int64_t n, int64_t minChunk, Fn&& fn) {
  if (n <= 0) return;
  int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, n / std::max<int64_t>(1, minChunk)));
  if (workers == 1) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t chunk = (n + workers - 1) / workers;
  runWorkers(workers, [&](int64_t t) {
    const int64_t b = t * chunk;
    if (b < n) fn(b, std::min(n, b + chunk));
  });
}

}  // namespace dendra::train
