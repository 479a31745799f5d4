// File: shadowmm/mm/mprotect.h
//
// mprotect (mm/mprotect.c: do_mprotect_pkey, mprotect_fixup,
// change_protection, change_pud_range, change_pmd_range, change_pte_range).

#pragma once

#include <cstdint>

#include "shadowmm/base/types.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

// Linux: do_mprotect_pkey (pkey -1). Takes mmap_lock for write. Returns 0,
// EINVAL (unaligned start, unknown prot bits, GROWSDOWN/GROWSUP misuse),
// ENOMEM (overflowing length, a hole: the VMAs before it are already
// changed), EACCES (beyond VM_MAY*). Zero length succeeds without looking.
int do_mprotect(MmStruct* mm, VirtAddr start, uint64_t len, int prot) EXCLUDES(mm->mmap_lock);

}  // namespace smm
