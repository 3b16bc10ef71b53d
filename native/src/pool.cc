#include "pool.h"

#include <system_error>

namespace dendra {

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  work_.notify_all();
  for (auto& t : threads_) t.join();
}

bool WorkerPool::start() {
  if (!threads_.empty() || helpers_ <= 0) return !threads_.empty();
  try {
    for (int32_t i = 0; i < helpers_; ++i) threads_.emplace_back([this] { loop(); });
  } catch (const std::system_error&) {
    // fewer helpers than asked: the ones that started take part
  }
  return !threads_.empty();
}

void WorkerPool::loop() {
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    work_.wait(lock, [this] { return stop_ || (fn_ && next_ < count_); });
    if (stop_) return;
    const int64_t t = next_++;
    auto* fn = fn_;
    void* ctx = ctx_;
    lock.unlock();
    fn(ctx, t);
    lock.lock();
    if (--remaining_ == 0) done_.notify_all();
  }
}

void WorkerPool::run(int64_t count, void (*fn)(void*, int64_t), void* ctx) {
  std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
  if (count <= 1 || !busy.owns_lock() || !start()) {
    for (int64_t t = 0; t < count; ++t) fn(ctx, t);
    return;
  }
  std::unique_lock<std::mutex> lock(m_);
  fn_ = fn;
  ctx_ = ctx;
  count_ = count;
  next_ = 0;
  remaining_ = count;
  work_.notify_all();
  while (next_ < count_) {  // the caller takes chunks too
    const int64_t t = next_++;
    lock.unlock();
    fn(ctx, t);
    lock.lock();
    --remaining_;
  }
  done_.wait(lock, [this] { return remaining_ == 0; });
  fn_ = nullptr;
  ctx_ = nullptr;
}

}  // namespace dendra
