// File: src/base/srcu.cc
//
// Sleepable RCU with two counter slots (see srcu.h).

#include "shadowmm/base/srcu.h"

#include <thread>

#include "shadowmm/base/lockdep.h"

namespace smm {

Srcu::~Srcu() { barrier(); }

int Srcu::read_lock() {
  // Retry when the slot flipped between reading the index and incrementing,
  // so the increment always lands in the slot synchronize() will wait on.
  for (;;) {
    int idx = idx_.load();
    counts_[idx].fetch_add(1);
    // The increment is visible before anything the section reads (the
    // lockless page-table walks rely on it, see pt_sync_lockless_walkers).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (idx_.load() == idx) return idx;
    counts_[idx].fetch_sub(1);
  }
}

void Srcu::read_unlock(int idx) { counts_[idx].fetch_sub(1); }

void Srcu::synchronize() {
  might_sleep("synchronize_srcu");
  // Callbacks queued before this grace period may run after it.
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard<std::mutex> g(queue_mu_);
    ready.swap(queue_);
  }
  {
    std::lock_guard<std::mutex> g(sync_mu_);
    for (int round = 0; round < 2; round++) {
      int old = idx_.load();
      idx_.store(old ^ 1);
      // Readers are short (a notifier pass): spin, then yield.
      for (int spins = 0; counts_[old].load() != 0; spins++)
        if (spins > 64) std::this_thread::yield();
    }
  }
  for (auto& fn : ready) fn();
}

void Srcu::call(std::function<void()> fn) {
  std::lock_guard<std::mutex> g(queue_mu_);
  queue_.push_back(std::move(fn));
}

void Srcu::barrier() { synchronize(); }

int64_t Srcu::readers() const { return counts_[0].load() + counts_[1].load(); }

}  // namespace smm
