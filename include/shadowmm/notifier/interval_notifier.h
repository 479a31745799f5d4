// File: shadowmm/notifier/interval_notifier.h
//
// Interval notifiers (include/linux/mmu_notifier.h: struct
// mmu_interval_notifier; mm/mmu_notifier.c: mmu_interval_notifier_insert,
// _remove, mmu_interval_read_begin/retry, the sequence protocol of spec
// section c), with [S1] MMU_INTERVAL_NOTIFIER_BLOCK_THP and [S4] two-pass
// operations.
//
// The driver pattern (spec c.5):
//   fault:  seq = mmu_interval_read_begin(sub);
//           mmap_lock(read); hmm_range_fault(...); mmap_unlock;
//           driver_lock; if (mmu_interval_read_retry(sub, seq)) retry;
//           program the device; driver_unlock.
//   invalidate(sub, range, cur_seq):
//           driver_lock (trylock and return false if !range->blockable());
//           mmu_interval_set_seq(sub, cur_seq); drop translations in range;
//           driver_unlock; return true.
//
// Callback contracts: `invalidate` is called with mmap_lock (or an rmap
// lock) held and no page-table lock (RELEASE at exit: no mm lock at all);
// it may sleep only on a blockable range; on return the subscriber holds no usable translation in range ∩ interval.
// [S4] `invalidate_start` is the same first pass; when it returns true and
// sets *finish (which is nullptr on entry), `invalidate_finish(finish)` is
// called later, before the mm touches any PTE, and translations may survive
// only until then. Each concurrent invalidation needs its own finish object.

#pragma once

#include <atomic>
#include <cstdint>

#include "shadowmm/base/thread_annotations.h"
#include "shadowmm/base/types.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/notifier/interval_tree.h"
#include "shadowmm/notifier/mmu_notifier.h"

namespace smm {

struct MmuIntervalNotifier;

// [S4] struct mmu_interval_notifier_finish. The core fills `notifier`.
struct MmuIntervalNotifierFinish {
  MmuIntervalNotifier* notifier = nullptr;
};

// struct mmu_interval_notifier_ops.
struct MmuIntervalNotifierOps {
  bool (*invalidate)(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) = nullptr;
  bool (*invalidate_start)(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq,
                           MmuIntervalNotifierFinish** finish) = nullptr;
  void (*invalidate_finish)(MmuIntervalNotifierFinish* finish) = nullptr;
};

// [S1] The range must not be backed by THP while the notifier is active: the
// mm core marks the covered VMAs VM_NOHUGEPAGE (and clears VM_HUGEPAGE).
inline constexpr unsigned MMU_INTERVAL_NOTIFIER_BLOCK_THP = 1u << 0;

// struct mmu_interval_notifier. Owned by the driver; `priv` points back.
struct MmuIntervalNotifier {
  IntervalTreeNode interval_tree;  // [start, last]; guarded by the subscriptions lock
  const MmuIntervalNotifierOps* ops = nullptr;
  MmStruct* mm = nullptr;
  // On the mm's deferred list (subscriptions lock).
  bool deferred = false;
  // Always odd once inserted; written by set_seq under the driver lock, by
  // the core under the subscriptions lock.
  std::atomic<uint64_t> invalidate_seq{0};
  unsigned flags = 0;  // MMU_INTERVAL_NOTIFIER_* (subscriptions lock)
  void* priv = nullptr;
};

// Linux: mmu_interval_notifier_insert. Registers the interval tree if needed
// (takes mmap_lock for write then; do not hold it). 0, -EOVERFLOW (length 0
// or start + length - 1 overflows), -EINVAL (mm_users is 0; warns), or the
// registration's error. The subscription may be deferred on return.
// [S4] Warns once when ops->invalidate_start is set without invalidate_finish.
int mmu_interval_notifier_insert(MmuIntervalNotifier* sub, MmStruct* mm, VirtAddr start, uint64_t length,
                                 const MmuIntervalNotifierOps* ops) EXCLUDES(mm->mmap_lock);
// The same with mmap_lock held for write.
int mmu_interval_notifier_insert_locked(MmuIntervalNotifier* sub, MmStruct* mm, VirtAddr start, uint64_t length,
                                        const MmuIntervalNotifierOps* ops) REQUIRES(mm->mmap_lock);
// [S1] With flags. Order of checks: unknown flag bits -> -EINVAL (with the
// knob notifier.block_thp off, BLOCK_THP itself is unknown); BLOCK_THP with
// length 0 or start + length overflowing -> -EOVERFLOW; register the tree;
// BLOCK_THP: the VMA policy pass (its -ENOMEM is returned and may leave
// some VMAs already changed); insert with the flags stored.
int mmu_interval_notifier_insert_locked_flags(MmuIntervalNotifier* sub, MmStruct* mm, VirtAddr start,
                                              uint64_t length, const MmuIntervalNotifierOps* ops,
                                              unsigned flags) REQUIRES(mm->mmap_lock);
// [S1] Unknown bits -> -EINVAL; no mm -> warn, -EINVAL; turning BLOCK_THP on:
// last == ULONG_MAX -> -EOVERFLOW, else the VMA policy pass over
// [start, last + 1); then the flags are stored. Turning it off restores no
// VMA flag. Caller holds sub->mm->mmap_lock for write.
int mmu_interval_notifier_set_flags_locked(MmuIntervalNotifier* sub, unsigned flags);
// [S1] True when a subscription in the tree (not a deferred insert)
// intersecting [start, end) has BLOCK_THP.
bool mmu_interval_notifier_range_block_thp(MmStruct* mm, VirtAddr start, VirtAddr end);
// Linux: mmu_interval_notifier_remove. May sleep; never from a callback or
// with a lock a callback takes. On return no callback of `sub` runs or will
// run. VMA flags set by BLOCK_THP stay.
void mmu_interval_notifier_remove(MmuIntervalNotifier* sub);

// Linux: mmu_interval_read_begin. Waits while an invalidation that hit `sub`
// is active (until the last concurrent one ends), then returns the seq.
uint64_t mmu_interval_read_begin(MmuIntervalNotifier* sub);
// True when the seq changed: the caller must retry. Call with the driver
// lock held (the lock the invalidate callback takes around set_seq).
inline bool mmu_interval_read_retry(MmuIntervalNotifier* sub, uint64_t seq) {
  return sub->invalidate_seq.load(std::memory_order_acquire) != seq;
}
// Lockless early check: true is reliable, false is a hint.
inline bool mmu_interval_check_retry(MmuIntervalNotifier* sub, uint64_t seq) {
  return sub->invalidate_seq.load(std::memory_order_acquire) != seq;
}
// Inside invalidate (or invalidate_start), under the driver lock.
inline void mmu_interval_set_seq(MmuIntervalNotifier* sub, uint64_t cur_seq) {
  sub->invalidate_seq.store(cur_seq, std::memory_order_release);
}

// Introspection of the sequence protocol (tests and the oracle's E8).
struct IntervalNotifierState {
  uint64_t invalidate_seq = 0;
  uint64_t active_invalidate_ranges = 0;
  size_t deferred = 0;
  size_t in_tree = 0;
  bool has_itree = false;
};
IntervalNotifierState mmu_interval_notifier_state(MmStruct* mm);

}  // namespace smm
