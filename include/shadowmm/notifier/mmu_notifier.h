// File: shadowmm/notifier/mmu_notifier.h
//
// MMU notifiers (include/linux/mmu_notifier.h, mm/mmu_notifier.c): the
// invalidation entry points the mm core calls around every change of a
// present user mapping, and the classic subscriptions (struct mmu_notifier)
// that secondary MMUs register to receive them. Interval subscriptions are
// in interval_notifier.h.
//
// Every mm path brackets its page-table changes with
//   mmu_notifier_range_init(&range, EVENT, flags, mm, start, end);
//   mmu_notifier_invalidate_range_start(&range);
//   ... change PTEs, flush ...
//   mmu_notifier_invalidate_range_end(&range);
// at exactly the points of spec table d.1. Every range is counted in the
// machine's stats and reported to its observers, with or without
// subscribers.
//
// Callback contracts (struct MmuNotifierOps), as in Linux:
//  * release(sub, mm): the mm is going away (exit) or the subscription is
//    being unregistered. Tear down every secondary mapping, make no new one.
//    May sleep. Holds no mm lock.
//  * invalidate_range_start(sub, range): before the mm changes PTEs in
//    range; afterwards the subscriber must not use or create translations in
//    range until the matching invalidate_range_end. Called with mmap_lock (or
//    an rmap lock) held, never a page-table lock. May sleep only if
//    range->blockable(); on a non-blockable range it must not sleep and may
//    return -EAGAIN (then it gets no end, and it must not have an end op).
//  * invalidate_range_end(sub, range): the PTEs changed; pages may be freed
//    after this returns. Paired with every successful start.
//  * arch_invalidate_secondary_tlbs(sub, mm, start, end): [S5] a TLB that
//    walks the CPU page tables must drop [start, end). Called at every CPU
//    TLB flush of the mm, often under a page-table lock: must never sleep. A
//    subscription with this op must not have start/end ops (-EINVAL).
//  * clear_flush_young / clear_young / test_young: aging; must not sleep.
//  * alloc_notifier / free_notifier: mmu_notifier_get/put lifetime; free
//    runs after an SRCU grace period.
// Callbacks run newest subscription first. After mmu_notifier_unregister()
// returns, no callback of that subscription is running or will run.

#pragma once

#include <cstdint>

#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"

namespace smm {

class Machine;
class MmStruct;

// enum mmu_notifier_event.
enum MmuNotifyEvent : uint8_t {
  MMU_NOTIFY_UNMAP = 0,
  MMU_NOTIFY_CLEAR,
  MMU_NOTIFY_PROTECTION_VMA,
  MMU_NOTIFY_PROTECTION_PAGE,
  MMU_NOTIFY_SOFT_DIRTY,
  MMU_NOTIFY_RELEASE,
  MMU_NOTIFY_MIGRATE,
  MMU_NOTIFY_EXCLUSIVE,
};

// Scenario-language name of an event ("unmap", "clear", "protection_vma"...).
const char* mmu_notify_event_name(MmuNotifyEvent event);

inline constexpr unsigned MMU_NOTIFIER_RANGE_BLOCKABLE = 1u << 0;

// struct mmu_notifier_range.
struct MmuNotifierRange {
  MmStruct* mm = nullptr;
  VirtAddr start;
  VirtAddr end;
  unsigned flags = 0;
  MmuNotifyEvent event = MMU_NOTIFY_UNMAP;
  const void* owner = nullptr;

  bool blockable() const { return flags & MMU_NOTIFIER_RANGE_BLOCKABLE; }
  VaRange range() const { return {start, end}; }
};

struct MmuNotifier;

// struct mmu_notifier_ops. Every op is optional (nullptr).
struct MmuNotifierOps {
  void (*release)(MmuNotifier* sub, MmStruct* mm) = nullptr;
  int (*clear_flush_young)(MmuNotifier* sub, MmStruct* mm, VirtAddr start, VirtAddr end) = nullptr;
  int (*clear_young)(MmuNotifier* sub, MmStruct* mm, VirtAddr start, VirtAddr end) = nullptr;
  int (*test_young)(MmuNotifier* sub, MmStruct* mm, VirtAddr addr) = nullptr;
  int (*invalidate_range_start)(MmuNotifier* sub, const MmuNotifierRange* range) = nullptr;
  void (*invalidate_range_end)(MmuNotifier* sub, const MmuNotifierRange* range) = nullptr;
  void (*arch_invalidate_secondary_tlbs)(MmuNotifier* sub, MmStruct* mm, VirtAddr start, VirtAddr end) = nullptr;
  // For mmu_notifier_get(): allocates the subscription (an ERR_PTR = Err).
  Result<MmuNotifier*> (*alloc_notifier)(MmStruct* mm) = nullptr;
  void (*free_notifier)(MmuNotifier* sub) = nullptr;
};

// struct mmu_notifier. Owned by the driver; `priv` points back to it.
struct MmuNotifier {
  const MmuNotifierOps* ops = nullptr;
  MmStruct* mm = nullptr;
  unsigned users = 0;   // mmu_notifier_get/put count (subscriptions lock)
  bool hashed = false;  // on the mm's list (subscriptions lock)
  void* priv = nullptr;
};

// ---- invalidation entry points (mm core) ----

void mmu_notifier_range_init(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags,
                             MmStruct* mm, VirtAddr start, VirtAddr end);
void mmu_notifier_range_init_owner(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags,
                                   MmStruct* mm, VirtAddr start, VirtAddr end, const void* owner);

// Forces BLOCKABLE, then runs the interval pass and every classic start.
// May sleep.
void mmu_notifier_invalidate_range_start(MmuNotifierRange* range);
// Non-blocking start (OOM reaper): clears BLOCKABLE; returns 0 or -EAGAIN.
// On -EAGAIN the caller must not call _end.
int mmu_notifier_invalidate_range_start_nonblock(MmuNotifierRange* range);
void mmu_notifier_invalidate_range_end(MmuNotifierRange* range);
// [S5] End for callers that already invalidated secondary TLBs under the
// page-table lock (wp_page_copy, __split_huge_pmd, __split_huge_pud): the
// classic end pass does not call invalidate_secondary_tlbs again.
void mmu_notifier_invalidate_range_only_end(MmuNotifierRange* range);

// [S5] The secondary-TLB hook of every CPU TLB flush of a user range.
void mmu_notifier_arch_invalidate_secondary_tlbs(MmStruct* mm, VirtAddr start, VirtAddr end);

// Aging: OR of every subscriber's result / the first non-zero result.
int mmu_notifier_clear_flush_young(MmStruct* mm, VirtAddr start, VirtAddr end);
int mmu_notifier_clear_young(MmStruct* mm, VirtAddr start, VirtAddr end);
int mmu_notifier_test_young(MmStruct* mm, VirtAddr addr);

// Linux: mmu_notifier_release (exit_mmap, before the final unmap): one
// RELEASE invalidation over [0, ULONG_MAX) for interval subscribers, then
// every classic release, then the classic list is emptied.
void mmu_notifier_release(MmStruct* mm);
// Linux: mmu_notifier_subscriptions_destroy (when the mm structure is freed).
void mmu_notifier_subscriptions_destroy(MmStruct* mm);
// Linux: mm_has_notifiers.
bool mm_has_notifiers(const MmStruct* mm);

// ---- classic registration ----

// Takes mmap_lock for write. 0, -EINVAL (a secondary-TLB op together with a
// start/end op; warns once), -ENOMEM.
int mmu_notifier_register(MmuNotifier* sub, MmStruct* mm);
// The same with mmap_lock already held for write. `sub` may be nullptr: it
// then only sets up the interval tree (has_itree).
int __mmu_notifier_register(MmuNotifier* sub, MmStruct* mm);
// The existing subscription with these ops (users + 1; -EOVERFLOW at
// UINT_MAX), or a new one from ops->alloc_notifier (its error is returned;
// free_notifier undoes a failed registration). _locked: mmap_lock held for
// write.
Result<MmuNotifier*> mmu_notifier_get_locked(const MmuNotifierOps* ops, MmStruct* mm);
Result<MmuNotifier*> mmu_notifier_get(const MmuNotifierOps* ops, MmStruct* mm);
// users - 1 (warns at 0); the last put unhashes and frees after a grace
// period (free_notifier, then mmdrop). release is not called.
void mmu_notifier_put(MmuNotifier* sub);
// Calls release if still hashed, unhashes, waits for a grace period (so no
// callback of `sub` runs afterwards), mmdrop.
void mmu_notifier_unregister(MmuNotifier* sub, MmStruct* mm);
// Waits for pending frees of put subscriptions (mmu_notifier_synchronize).
void mmu_notifier_synchronize(Machine& machine);

}  // namespace smm
