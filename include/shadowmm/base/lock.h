// File: shadowmm/base/lock.h
//
// The project's annotated lock wrappers. Model code uses only these (never
// std::mutex directly), so that ranks are checked (lockdep.h), sleeping in
// atomic context is caught, and a scheduler hook sees every acquire.
//
//   Mutex    sleeping lock (kernel struct mutex)
//   SpinLock non-sleeping lock: holding it is atomic context (spinlock_t)
//   RwSem    reader/writer semaphore, writer-preferring (struct rw_semaphore);
//            supports downgrade_write like mmap_write_downgrade
//   WaitQueue  wait_event / wake_up_all on a predicate (wait_queue_head_t)
//
// Each lock carries a LockRank and a name. Scoped guards (MutexLocker,
// SpinLocker, ReadLocker, WriteLocker) are annotated for clang's analysis.

#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "shadowmm/base/lock_order.h"
#include "shadowmm/base/lockdep.h"
#include "shadowmm/base/thread_annotations.h"

namespace smm {

// A 4-byte futex lock (three states: free, locked, locked with waiters).
// Not used directly by model code: it is the body of Mutex and SpinLock.
class RawLock {
 public:
  void lock() {
    uint32_t c = 0;
    if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    lock_slow(c);
  }
  bool try_lock() {
    uint32_t c = 0;
    return state_.compare_exchange_strong(c, 1, std::memory_order_acquire);
  }
  void unlock() {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }
  bool is_locked() const { return state_.load(std::memory_order_relaxed) != 0; }

 private:
  void lock_slow(uint32_t c);
  std::atomic<uint32_t> state_{0};
};

class CAPABILITY("mutex") Mutex {
 public:
  explicit Mutex(LockRank rank, const char* name) : rank_(rank), name_(name) {}
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { lock_nested(0); }
  void lock_nested(int subclass) ACQUIRE() {
    might_sleep(name_);
    lockdep::acquire(this, rank_, name_, subclass);
    sched_point(SchedPoint::kLock, this);
    raw_.lock();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    if (!raw_.try_lock()) return false;
    lockdep::acquire(this, rank_, name_, 0);
    return true;
  }
  void unlock() RELEASE() {
    raw_.unlock();
    lockdep::release(this);
    sched_point(SchedPoint::kUnlock, this);
  }
  void assert_held() const ASSERT_CAPABILITY(this) { lockdep::assert_held(this, name_); }
  bool is_locked() const { return raw_.is_locked(); }
  const char* name() const { return name_; }

 private:
  RawLock raw_;
  LockRank rank_;
  const char* name_;
};

class CAPABILITY("spinlock") SpinLock {
 public:
  explicit SpinLock(LockRank rank, const char* name) : rank_(rank), name_(name) {}
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() ACQUIRE() { lock_nested(0); }
  void lock_nested(int subclass) ACQUIRE() {
    lockdep::acquire(this, rank_, name_, subclass);
    sched_point(SchedPoint::kLock, this);
    raw_.lock();
    preempt::disable();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    if (!raw_.try_lock()) return false;
    lockdep::acquire(this, rank_, name_, 0);
    preempt::disable();
    return true;
  }
  void unlock() RELEASE() {
    preempt::enable();
    raw_.unlock();
    lockdep::release(this);
    sched_point(SchedPoint::kUnlock, this);
  }
  void assert_held() const ASSERT_CAPABILITY(this) { lockdep::assert_held(this, name_); }
  bool is_locked() const { return raw_.is_locked(); }
  const char* name() const { return name_; }

 private:
  RawLock raw_;
  LockRank rank_;
  const char* name_;
};

// Writer-preferring reader/writer semaphore: once a writer waits, new readers
// queue behind it (as the kernel's rwsem hand-off does), so a stream of
// device faults holding mmap_lock for read cannot starve munmap.
class CAPABILITY("rwsem") RwSem {
 public:
  explicit RwSem(LockRank rank, const char* name) : rank_(rank), name_(name) {}
  RwSem(const RwSem&) = delete;
  RwSem& operator=(const RwSem&) = delete;

  void read_lock() ACQUIRE_SHARED();
  bool try_read_lock() TRY_ACQUIRE_SHARED(true);
  void read_unlock() RELEASE_SHARED();
  void write_lock() ACQUIRE() { write_lock_nested(0); }
  void write_lock_nested(int subclass) ACQUIRE();
  bool try_write_lock() TRY_ACQUIRE(true);
  void write_unlock() RELEASE();
  // Turns the held write lock into a read lock without letting a writer in.
  void downgrade_write() RELEASE() ACQUIRE_SHARED();

  void assert_held() const ASSERT_SHARED_CAPABILITY(this) { lockdep::assert_held(this, name_); }
  void assert_write_held() const ASSERT_CAPABILITY(this);
  bool is_write_locked() const { return writer_.load(std::memory_order_relaxed); }
  bool is_locked() const;
  const char* name() const { return name_; }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int readers_ = 0;
  int writers_waiting_ = 0;
  std::atomic<bool> writer_{false};
  LockRank rank_;
  const char* name_;
};

// wait_event/wake_up_all. The predicate is evaluated with READ_ONCE-style
// atomic loads by the caller; the internal mutex only closes the lost-wakeup
// window between the check and the sleep.
class WaitQueue {
 public:
  template <typename Pred>
  void wait_event(Pred pred) {
    if (pred()) return;
    might_sleep("wait_event");
    sched_point(SchedPoint::kWait, this);
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, pred);
  }
  void wake_up_all() {
    { std::lock_guard<std::mutex> l(m_); }
    cv_.notify_all();
    sched_point(SchedPoint::kWake, this);
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
};

class SCOPED_CAPABILITY MutexLocker {
 public:
  explicit MutexLocker(Mutex& m) ACQUIRE(m) : m_(m) { m_.lock(); }
  ~MutexLocker() RELEASE() { m_.unlock(); }
  MutexLocker(const MutexLocker&) = delete;
  MutexLocker& operator=(const MutexLocker&) = delete;

 private:
  Mutex& m_;
};

class SCOPED_CAPABILITY SpinLocker {
 public:
  explicit SpinLocker(SpinLock& l) ACQUIRE(l) : l_(l) { l_.lock(); }
  ~SpinLocker() RELEASE() { l_.unlock(); }
  SpinLocker(const SpinLocker&) = delete;
  SpinLocker& operator=(const SpinLocker&) = delete;

 private:
  SpinLock& l_;
};

// Holds `first`, and `second` nested unless it is the same lock: two page
// table locks that may coincide (move_ptes, move_huge_pmd).
class SCOPED_CAPABILITY SpinLockerPair {
 public:
  // The analysis cannot see that the second lock is skipped when it is the
  // first one; both are held for the guard's lifetime either way.
  SpinLockerPair(SpinLock& first, SpinLock& second) ACQUIRE(first, second) NO_THREAD_SAFETY_ANALYSIS
      : first_(first), second_(&second == &first ? nullptr : &second) {
    first_.lock();
    if (second_) second_->lock_nested(1);
  }
  ~SpinLockerPair() RELEASE() NO_THREAD_SAFETY_ANALYSIS {
    if (second_) second_->unlock();
    first_.unlock();
  }
  SpinLockerPair(const SpinLockerPair&) = delete;
  SpinLockerPair& operator=(const SpinLockerPair&) = delete;

 private:
  SpinLock& first_;
  SpinLock* second_;
};

class SCOPED_CAPABILITY ReadLocker {
 public:
  explicit ReadLocker(RwSem& s) ACQUIRE_SHARED(s) : s_(s) { s_.read_lock(); }
  ~ReadLocker() RELEASE() { s_.read_unlock(); }
  ReadLocker(const ReadLocker&) = delete;
  ReadLocker& operator=(const ReadLocker&) = delete;

 private:
  RwSem& s_;
};

class SCOPED_CAPABILITY WriteLocker {
 public:
  explicit WriteLocker(RwSem& s) ACQUIRE(s) : s_(s) { s_.write_lock(); }
  ~WriteLocker() RELEASE() { s_.write_unlock(); }
  WriteLocker(const WriteLocker&) = delete;
  WriteLocker& operator=(const WriteLocker&) = delete;

 private:
  RwSem& s_;
};

}  // namespace smm
