// File: shadowmm/mm/mremap.h
//
// mremap (mm/mremap.c: do_mremap, mremap_to, move_vma, move_page_tables,
// move_ptes, move_huge_pmd).

#pragma once

#include <cstdint>

#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"
#include "shadowmm/base/uapi.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

// Linux: mremap(2) without MREMAP_DONTUNMAP. Returns the (possibly new)
// address, or EINVAL (bad flags or alignment, zero new length, FIXED without
// MAYMOVE, overlapping FIXED ranges, zero old length of a private mapping),
// EFAULT (no VMA at addr, growing past the VMA), ENOMEM (cannot grow in
// place without MAYMOVE, no room).
// Deviation from Linux: MREMAP_DONTUNMAP and old_len 0 (duplicating a
// shared mapping) are answered with EINVAL; FIXED moves take one VMA.
Result<VirtAddr> do_mremap(MmStruct* mm, VirtAddr addr, uint64_t old_len, uint64_t new_len, int flags,
                           VirtAddr new_addr) EXCLUDES(mm->mmap_lock);

}  // namespace smm
