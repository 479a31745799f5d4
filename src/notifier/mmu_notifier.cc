// File: src/notifier/mmu_notifier.cc
//
// Invalidation entry points of the mm core (mm/mmu_notifier.c). Every range
// is counted in the machine's stats and reported to its observers.

#include "shadowmm/notifier/mmu_notifier.h"

#include "shadowmm/mm/machine.h"
#include "shadowmm/mm/mm_struct.h"
#include "shadowmm/notifier/interval_notifier.h"

namespace smm {

const char* mmu_notify_event_name(MmuNotifyEvent event) {
  switch (event) {
    case MMU_NOTIFY_UNMAP: return "unmap";
    case MMU_NOTIFY_CLEAR: return "clear";
    case MMU_NOTIFY_PROTECTION_VMA: return "protection_vma";
    case MMU_NOTIFY_PROTECTION_PAGE: return "protection_page";
    case MMU_NOTIFY_SOFT_DIRTY: return "soft_dirty";
    case MMU_NOTIFY_RELEASE: return "release";
    case MMU_NOTIFY_MIGRATE: return "migrate";
    case MMU_NOTIFY_EXCLUSIVE: return "exclusive";
  }
  return "?";
}

namespace {

VmEvent range_stat(MmuNotifyEvent event) {
  return static_cast<VmEvent>(static_cast<unsigned>(VmEvent::notifier_range_unmap) + event);
}

}  // namespace

void mmu_notifier_range_init(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags, MmStruct* mm,
                             VirtAddr start, VirtAddr end) {
  mmu_notifier_range_init_owner(range, event, flags, mm, start, end, nullptr);
}

void mmu_notifier_range_init_owner(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags,
                                   MmStruct* mm, VirtAddr start, VirtAddr end, const void* owner) {
  range->mm = mm;
  range->start = start;
  range->end = end;
  range->flags = flags;
  range->event = event;
  range->owner = owner;
}

void mmu_notifier_invalidate_range_start(MmuNotifierRange* range) {
  might_sleep("mmu_notifier_invalidate_range_start");
  range->flags |= MMU_NOTIFIER_RANGE_BLOCKABLE;
  Machine& m = range->mm->machine();
  m.stats().count(range_stat(range->event));
  for_each_observer(m, [&](MmObserver* o) { o->on_range_start(*range); });
}

int mmu_notifier_invalidate_range_start_nonblock(MmuNotifierRange* range) {
  range->flags &= ~MMU_NOTIFIER_RANGE_BLOCKABLE;
  Machine& m = range->mm->machine();
  m.stats().count(range_stat(range->event));
  for_each_observer(m, [&](MmObserver* o) { o->on_range_start(*range); });
  return 0;
}

void mmu_notifier_invalidate_range_end(MmuNotifierRange* range) {
  if (range->blockable()) might_sleep("mmu_notifier_invalidate_range_end");
  Machine& m = range->mm->machine();
  for_each_observer(m, [&](MmObserver* o) { o->on_range_end(*range); });
}

void mmu_notifier_invalidate_range_only_end(MmuNotifierRange* range) {
  mmu_notifier_invalidate_range_end(range);
}

void mmu_notifier_arch_invalidate_secondary_tlbs(MmStruct* mm, VirtAddr start, VirtAddr end) {
  (void)mm, (void)start, (void)end;
}

void mmu_notifier_release(MmStruct* mm) { (void)mm; }

void mmu_notifier_subscriptions_destroy(MmStruct* mm) { (void)mm; }

bool mmu_interval_notifier_range_block_thp(MmStruct* mm, VirtAddr start, VirtAddr end) {
  // No interval notifier can be registered yet (the notifier core comes next).
  (void)mm, (void)start, (void)end;
  return false;
}

}  // namespace smm
