// File: src/notifier/subscriptions.h (private to src/notifier/)
//
// Linux: struct mmu_notifier_subscriptions (mm/mmu_notifier.c). One per mm,
// created by the first registration, freed with the mm structure.
//
// States of the interval part (spec a.6):
//   idle                 active == 0, seq even: the tree may change directly
//   partially excluded   active > 0, seq even: invalidations run but none hit
//                        an interval; inserts still go in (forcing seq odd)
//   fully excluded       active > 0, seq odd: the tree is frozen; inserts and
//                        removes wait on the deferred list until the last
//                        active invalidation ends
// Invariants: seq odd => active > 0 (but see spec c.7: a failed classic
// non-blocking start leaks an active count); every inserted subscription's
// seq is odd; a non-empty deferred list => seq odd.

#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "shadowmm/notifier/interval_tree.h"
#include "shadowmm/notifier/mmu_notifier.h"

namespace smm {

class MmuNotifierSubscriptions {
 public:
  // The classic list: an immutable snapshot, newest subscription first,
  // replaced (copy on write) under `lock` and read under the machine's
  // notifier SRCU. Retired snapshots are freed after a grace period.
  using List = std::vector<MmuNotifier*>;

  MmuNotifierSubscriptions() : list(new List) {}
  ~MmuNotifierSubscriptions() { delete list.load(); }

  SpinLock lock{LockRank::kNotifierSubscriptions, "notifier_subscriptions"};
  std::atomic<const List*> list;
  // Set once an interval notifier was ever inserted (read locklessly).
  std::atomic<bool> has_itree{false};
  // Even: no invalidation hit the tree; odd: at least one active one did.
  // Written under `lock`; read locklessly by read_begin's wait.
  std::atomic<uint64_t> invalidate_seq{2};
  uint64_t active_invalidate_ranges GUARDED_BY(lock) = 0;
  // The interval tree. Changed only under `lock` and only while the seq is
  // even (or by the final inv_end, still under `lock`); walked without the
  // lock by an invalidation that made the seq odd.
  IntervalTree itree;
  // Subscriptions whose insertion (node not in the tree) or removal (in the
  // tree) waits for the final inv_end.
  std::vector<MmuIntervalNotifier*> deferred_list GUARDED_BY(lock);
  // read_begin and remove wait here for the seq to move on.
  WaitQueue wq;

  bool is_invalidating() const { return invalidate_seq.load() & 1; }
};

}  // namespace smm
