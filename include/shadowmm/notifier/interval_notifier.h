// File: shadowmm/notifier/interval_notifier.h
//
// Interval notifiers (include/linux/mmu_notifier.h: struct
// mmu_interval_notifier; mm/mmu_notifier.c: mmu_interval_notifier_insert,
// _remove, mmu_interval_read_begin, ...) and [S1] BLOCK_THP.

#pragma once

#include "shadowmm/base/types.h"

namespace smm {

class MmStruct;

// [S1] Linux: mmu_interval_notifier_range_block_thp. True when an interval
// notifier currently in the tree of `mm` intersecting [start, end) was
// registered with MMU_INTERVAL_NOTIFIER_BLOCK_THP (deferred inserts are not
// seen). False for an empty range or an mm without interval notifiers.
bool mmu_interval_notifier_range_block_thp(MmStruct* mm, VirtAddr start, VirtAddr end);

}  // namespace smm
