// File: shadowmm/notifier/mmu_notifier.h
//
// MMU-notifier ranges: the invalidation entry points the mm core calls
// around every change of a present user mapping (include/linux/
// mmu_notifier.h, mm/mmu_notifier.c).
//
// Every mm path brackets its page-table changes with
//   mmu_notifier_range_init(&range, EVENT, flags, mm, start, end);
//   mmu_notifier_invalidate_range_start(&range);
//   ... change PTEs, flush ...
//   mmu_notifier_invalidate_range_end(&range);
// at exactly the points of spec table d.1. Every range is counted in the
// machine's stats and reported to its observers, with or without
// subscribers, so tests can assert where ranges open and close.

#pragma once

#include <cstdint>

#include "shadowmm/base/types.h"

namespace smm {

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

void mmu_notifier_range_init(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags,
                             MmStruct* mm, VirtAddr start, VirtAddr end);
void mmu_notifier_range_init_owner(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags,
                                   MmStruct* mm, VirtAddr start, VirtAddr end, const void* owner);

// Forces BLOCKABLE, then notifies subscribers. May sleep.
void mmu_notifier_invalidate_range_start(MmuNotifierRange* range);
// Non-blocking start (OOM reaper): returns 0 or -EAGAIN; on -EAGAIN the
// caller must not call _end.
int mmu_notifier_invalidate_range_start_nonblock(MmuNotifierRange* range);
void mmu_notifier_invalidate_range_end(MmuNotifierRange* range);
// [S5] End variant for callers that already invalidated secondary TLBs under
// the page-table lock (wp_page_copy, __split_huge_pmd, __split_huge_pud): the
// classic end pass does not call invalidate_secondary_tlbs again.
void mmu_notifier_invalidate_range_only_end(MmuNotifierRange* range);

// Linux: mmu_notifier_release (exit_mmap, before the final unmap).
void mmu_notifier_release(MmStruct* mm);
// Linux: mmu_notifier_subscriptions_destroy (when the mm structure is freed).
void mmu_notifier_subscriptions_destroy(MmStruct* mm);

// The secondary-TLB hook of every CPU TLB flush of a user range (S5).
void mmu_notifier_arch_invalidate_secondary_tlbs(MmStruct* mm, VirtAddr start, VirtAddr end);

}  // namespace smm
