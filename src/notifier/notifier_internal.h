// File: src/notifier/notifier_internal.h (private to src/notifier/)
//
// Functions shared by mmu_notifier.cc (the classic core and entry points)
// and interval_notifier.cc (the interval tree's sequence protocol).

#pragma once

#include "shadowmm/notifier/mmu_notifier.h"

namespace smm {

class MmStruct;
class MmuNotifierSubscriptions;

MmuNotifierSubscriptions* subscriptions_of(const MmStruct* mm);

// CallbackScope reporter: a subscriber slept where it must not (E10).
void report_sleep_in_callback(void* ctx, const void* sub, const char* what);
// Tells the machine's observers that `sub` returned from its invalidation.
void report_invalidated(MmStruct* mm, const void* sub, const MmuNotifierRange& range);

// Linux: mn_itree_invalidate. The interval pass of a range start: 0, or
// -EAGAIN (non-blockable range and a subscriber would block; inv_end was
// already done).
int mn_itree_invalidate(MmStruct* mm, MmuNotifierSubscriptions* subs, const MmuNotifierRange* range);
// Linux: mn_itree_inv_end.
void mn_itree_inv_end(MmuNotifierSubscriptions* subs);
// Linux: mn_itree_release (mmu_notifier_release's interval part).
void mn_itree_release(MmStruct* mm, MmuNotifierSubscriptions* subs);

}  // namespace smm
