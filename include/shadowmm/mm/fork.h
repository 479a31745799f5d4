// File: shadowmm/mm/fork.h
//
// fork's address-space copy (kernel/fork.c: dup_mm, dup_mmap; mm/rmap.c:
// anon_vma_fork; mm/memory.c: copy_page_range, copy_pte_range,
// copy_present_ptes; mm/huge_memory.c: copy_huge_pmd).

#pragma once

#include <string>

#include "shadowmm/base/result.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

// Creates the child address space of `oldmm` (copy-on-write). VMAs with
// VM_DONTCOPY are left out, VM_WIPEONFORK ones start empty. Page tables are
// copied only for VMAs that need it (an anon_vma, PFN/MIXED maps): each COW
// VMA gets a PROTECTION_PAGE notifier range on the parent while its
// writable anonymous PTEs and PMDs are write-protected in both mms, and the
// parent's TLB is flushed once at the end. Secondary MMUs are not inherited.
// Returns the child with mm_users = 1, or ENOMEM.
Result<MmStruct*> dup_mm(MmStruct* oldmm, std::string name) EXCLUDES(oldmm->mmap_lock);

}  // namespace smm
