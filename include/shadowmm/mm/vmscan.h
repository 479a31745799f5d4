// File: shadowmm/mm/vmscan.h
//
// Reclaim as MADV_PAGEOUT drives it (mm/madvise.c:
// madvise_cold_or_pageout_pte_range; mm/vmscan.c: reclaim_pages,
// shrink_folio_list; mm/rmap.c: try_to_unmap_one).

#pragma once

#include "shadowmm/base/thread_annotations.h"
#include "shadowmm/base/types.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

// Reclaims the anonymous folios mapped only by [start, end) of `vma`:
// swap-backed folios are written to swap (their PTEs become swap entries),
// clean lazy-free folios (MADV_FREE) are discarded, re-dirtied ones become
// swap-backed again. Shared folios, partly covered large folios, shmem and
// dax are left alone. Each folio is unmapped under one CLEAR range over its
// extent in the VMA; it is freed after the TLB flush. Always returns 0
// (a folio that cannot be reclaimed is skipped, as reclaim does).
int madvise_pageout_range(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end)
    REQUIRES_SHARED(mm->mmap_lock);

}  // namespace smm
