// A session's worker threads, started once and kept: a batch's row chunks are handed to them without
// creating a thread per call.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace dendra {

class WorkerPool {
 public:
  /** helpers: threads besides the caller's (started on first use). */
  explicit WorkerPool(int32_t helpers) : helpers_(helpers) {}
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /**
   * Runs fn(ctx, t) for every t in [0, count), on the calling thread and the helpers, and returns when all
   * have returned. fn must not throw. While another run holds the pool (concurrent runs of one session),
   * or when no helper could be started, the calling thread runs every t itself.
   */
  void run(int64_t count, void (*fn)(void*, int64_t), void* ctx);

 private:
  void loop();
  bool start();  // under busy_: false if no helper could be started

  int32_t helpers_;
  std::mutex busy_;  // held by the run in progress
  std::mutex m_;
  std::condition_variable work_, done_;
  void (*fn_)(void*, int64_t) = nullptr;
  void* ctx_ = nullptr;
  int64_t count_ = 0, next_ = 0, remaining_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace dendra
