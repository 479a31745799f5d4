// File: src/base/lock.cc
//
// Slow paths of the lock wrappers.

#include "shadowmm/base/lock.h"

#include "shadowmm/base/bug.h"

namespace smm {

void RawLock::lock_slow(uint32_t c) {
  // Spin briefly: most PTL hold times are a few hundred nanoseconds.
  for (int i = 0; i < 64; i++) {
    c = 0;
    if (state_.compare_exchange_weak(c, 1, std::memory_order_acquire)) return;
    __builtin_ia32_pause();
  }
  if (c != 2) c = state_.exchange(2, std::memory_order_acquire);
  while (c != 0) {
    state_.wait(2, std::memory_order_relaxed);
    c = state_.exchange(2, std::memory_order_acquire);
  }
}

void RwSem::read_lock() {
  might_sleep(name_);
  lockdep::acquire(this, rank_, name_, 0);
  sched_point(SchedPoint::kLock, this);
  std::unique_lock<std::mutex> l(m_);
  cv_.wait(l, [&] { return !writer_.load(std::memory_order_relaxed) && writers_waiting_ == 0; });
  readers_++;
}

bool RwSem::try_read_lock() {
  std::unique_lock<std::mutex> l(m_);
  if (writer_.load(std::memory_order_relaxed) || writers_waiting_ != 0) return false;
  readers_++;
  l.unlock();
  lockdep::acquire(this, rank_, name_, 0);
  return true;
}

void RwSem::read_unlock() {
  bool wake;
  {
    std::lock_guard<std::mutex> l(m_);
    wake = --readers_ == 0 && writers_waiting_ != 0;
  }
  if (wake) cv_.notify_all();
  lockdep::release(this);
  sched_point(SchedPoint::kUnlock, this);
}

void RwSem::write_lock_nested(int subclass) {
  might_sleep(name_);
  lockdep::acquire(this, rank_, name_, subclass);
  sched_point(SchedPoint::kLock, this);
  std::unique_lock<std::mutex> l(m_);
  writers_waiting_++;
  cv_.wait(l, [&] { return !writer_.load(std::memory_order_relaxed) && readers_ == 0; });
  writers_waiting_--;
  writer_.store(true, std::memory_order_relaxed);
}

bool RwSem::try_write_lock() {
  std::unique_lock<std::mutex> l(m_);
  if (writer_.load(std::memory_order_relaxed) || readers_ != 0) return false;
  writer_.store(true, std::memory_order_relaxed);
  l.unlock();
  lockdep::acquire(this, rank_, name_, 0);
  return true;
}

void RwSem::write_unlock() {
  {
    std::lock_guard<std::mutex> l(m_);
    writer_.store(false, std::memory_order_relaxed);
  }
  cv_.notify_all();
  lockdep::release(this);
  sched_point(SchedPoint::kUnlock, this);
}

void RwSem::downgrade_write() {
  {
    std::lock_guard<std::mutex> l(m_);
    writer_.store(false, std::memory_order_relaxed);
    readers_++;
  }
  cv_.notify_all();
}

void RwSem::assert_write_held() const {
  lockdep::assert_held(this, name_);
  if (!writer_.load(std::memory_order_relaxed)) bug_fail("rwsem not write-locked", __FILE__, __LINE__);
}

bool RwSem::is_locked() const {
  auto* self = const_cast<RwSem*>(this);
  std::lock_guard<std::mutex> l(self->m_);
  return readers_ != 0 || writer_.load(std::memory_order_relaxed);
}

}  // namespace smm
