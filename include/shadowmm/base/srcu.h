// File: shadowmm/base/srcu.h
//
// Sleepable RCU (kernel/rcu/srcutree.c, reduced): readers mark critical
// sections that may sleep; synchronize() waits until every critical section
// that began before it has ended; call() runs a function after such a grace
// period. The MMU-notifier core protects its list of classic subscriptions
// with one domain per machine, so that "after unregister returns, no
// callback of that subscription runs" and freeing is safe.
//
// Two counter slots, as SRCU's: readers increment the current slot;
// synchronize() flips the slot and waits for the old one to drain (twice, so
// a reader that read the index just before a flip is waited for by the
// second round). All operations are seq_cst atomics, so ThreadSanitizer sees
// the happens-before from a reader's exit to the grace period's end.
//
// Deviation from Linux: call() callbacks run at the next synchronize() or
// barrier() of the domain (no grace-period kthread), so a free deferred by
// mmu_notifier_put waits for the next unregister/synchronize/destruction.
//
// Deviation from DESIGN.md: not liburcu. Its read sides are invisible to
// TSan and its domains are process-wide (tests would share grace periods).

#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace smm {

class Srcu {
 public:
  Srcu() = default;
  ~Srcu();
  Srcu(const Srcu&) = delete;
  Srcu& operator=(const Srcu&) = delete;

  // srcu_read_lock / srcu_read_unlock. The index must be passed back.
  int read_lock();
  void read_unlock(int idx);

  // synchronize_srcu. May sleep; must not be called inside a read section
  // of this domain.
  void synchronize();

  // call_srcu: `fn` runs after a grace period: at the end of the next
  // synchronize() or barrier() (or destruction), in the order queued.
  void call(std::function<void()> fn);
  // srcu_barrier / mmu_notifier_synchronize: waits for a grace period and
  // runs every queued callback.
  void barrier();

  // Readers currently inside a critical section (both slots).
  int64_t readers() const;

 private:
  std::atomic<int64_t> counts_[2] = {};
  std::atomic<int> idx_{0};
  std::mutex sync_mu_;   // serialises grace periods
  std::mutex queue_mu_;  // guards queue_
  std::vector<std::function<void()>> queue_;
};

// RAII read section.
class SrcuReadLock {
 public:
  explicit SrcuReadLock(Srcu& s) : s_(s), idx_(s.read_lock()) {}
  ~SrcuReadLock() { s_.read_unlock(idx_); }
  SrcuReadLock(const SrcuReadLock&) = delete;
  SrcuReadLock& operator=(const SrcuReadLock&) = delete;

 private:
  Srcu& s_;
  int idx_;
};

}  // namespace smm
