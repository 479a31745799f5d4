// File: shadowmm/mm/gup.h
//
// Faulting in user pages on behalf of the kernel (mm/gup.c:
// check_vma_flags, faultin_page_range), as MADV_POPULATE_* uses it.

#pragma once

#include <cstdint>

#include "shadowmm/base/types.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

// Faults in [start, end) readable (or writable) like GUP without FOLL_FORCE.
// Caller holds mmap_lock for read. Returns 0, or ENOMEM (a hole, or out of
// memory), EINVAL (check_vma_flags refused a VMA: VM_IO/VM_PFNMAP, write
// without VM_WRITE, read without VM_READ), EFAULT (SIGBUS/SIGSEGV).
// Pages before the failing one stay populated.
int faultin_page_range(MmStruct* mm, VirtAddr start, VirtAddr end, bool write)
    REQUIRES_SHARED(mm->mmap_lock);

}  // namespace smm
