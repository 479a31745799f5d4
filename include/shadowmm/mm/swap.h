// File: shadowmm/mm/swap.h
//
// Swap entries in page tables (mm/memory.c: do_swap_page; mm/swapfile.c:
// free_swap_and_cache).

#pragma once

#include "shadowmm/base/thread_annotations.h"
#include "shadowmm/mm/memory.h"

namespace smm {

class Machine;

// Linux: do_swap_page. Swaps the page of swap entry `orig` (in slot `pte`)
// back in: a fresh order-0 anonymous folio with the slot's value, mapped
// writable when this is a write fault and the entry was exclusive.
vm_fault_t do_swap_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pte, Pte orig, bool write)
    REQUIRES_SHARED(mm->mmap_lock);

// Linux: free_swap_and_cache for a zapped swap entry.
void swap_free_entry(Machine& machine, Pte entry);

// Linux: folio_free_swap. The model has no swap cache (swap.h), so a mapped
// folio never holds a slot; this only clears the flag.
void swap_free_folio_cache(Folio folio);

}  // namespace smm
