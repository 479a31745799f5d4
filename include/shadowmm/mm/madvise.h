// File: shadowmm/mm/madvise.h
//
// madvise (mm/madvise.c: do_madvise, madvise_walk_vmas,
// madvise_vma_behavior, madvise_dontneed_single_vma, madvise_free_single_vma,
// madvise_cold_or_pageout, madvise_populate; mm/khugepaged.c:
// hugepage_madvise, madvise_collapse).

#pragma once

#include <cstdint>

#include "shadowmm/base/types.h"
#include "shadowmm/base/uapi.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

// Linux: do_madvise. Returns 0 or the kernel's errno: EINVAL (unknown
// advice, unaligned start, overflowing length, advice refused by a VMA),
// ENOMEM (a hole: every mapped part was processed first; POPULATE stops at
// the first hole), EAGAIN (a VMA split ran out of map count), EFAULT
// (POPULATE hit SIGBUS). Zero length succeeds after the advice is checked.
//
// Advice modelled: MADV_NORMAL, RANDOM, SEQUENTIAL, WILLNEED, DONTNEED,
// FREE, DONTFORK, DOFORK, DONTDUMP, DODUMP, WIPEONFORK, KEEPONFORK,
// HUGEPAGE, NOHUGEPAGE, COLD, PAGEOUT, POPULATE_READ, POPULATE_WRITE,
// DONTNEED_LOCKED, COLLAPSE (PMD order; EINVAL for a VMA where THP is not
// allowed, ENOMEM/EBUSY/EAGAIN as madvise_collapse answers, khugepaged.h).
// Deviation from Linux: any other advice (MADV_REMOVE, KSM, guard
// regions, hwpoison) is rejected with EINVAL as if not configured.
int do_madvise(MmStruct* mm, VirtAddr start, uint64_t len, int advice) EXCLUDES(mm->mmap_lock);

// True when `advice` is one do_madvise models.
bool madvise_behavior_valid(int advice);

}  // namespace smm
