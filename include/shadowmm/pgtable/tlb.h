// File: shadowmm/pgtable/tlb.h
//
// The CPU TLB of the model (arch/x86/mm/tlb.c: flush_tlb_mm_range) and the
// page-table primitives that clear-and-flush an entry
// (ptep_clear_flush, pmdp_invalidate, pmdp_huge_clear_flush,
// pmdp_collapse_flush, pudp_huge_clear_flush).
//
// The model's CPUs do not cache translations: every CPU access walks the page
// tables under the PTL, so a flush is instantaneous. What a flush *means* is
// kept: it is counted, it orders frees (mmu_gather frees after it), and it is
// the single call point where secondary TLBs that walk the CPU page tables
// are invalidated (S5: invalidate_secondary_tlbs at every CPU TLB flush of a
// user range).

#pragma once

#include "shadowmm/base/types.h"
#include "shadowmm/pgtable/pgtable.h"

namespace smm {

class MmStruct;

// Flushes CPU TLB entries of `mm` for [start, end). Counted in stats; fires
// the secondary-TLB hook of the mm's notifier subscriptions.
void flush_tlb_mm_range(MmStruct* mm, VirtAddr start, VirtAddr end);

// Writes `new_pte` into `slot` (caller holds *slot.ptl) and reports the
// change to the machine's observers: removals, re-points and permission
// downgrades of a present leaf (on_pte_change), and new present leaves
// (on_pte_install). Permission upgrades and young/dirty changes are not
// reported, as the kernel does not notify them either.
void pt_set_entry(MmStruct* mm, VirtAddr addr, const PtSlot& slot, Pte new_pte);
// ptep_get_and_clear with the same reporting.
Pte pt_get_and_clear(MmStruct* mm, VirtAddr addr, const PtSlot& slot);

// Clear an entry and flush it. Caller holds slot.ptl. Return the old entry.
Pte ptep_clear_flush(MmStruct* mm, VirtAddr addr, const PtSlot& slot);
// Huge PMD/PUD: clear and flush the whole 2 MiB / 1 GiB.
Pte pmdp_huge_clear_flush(MmStruct* mm, VirtAddr haddr, const PtSlot& slot);
Pte pudp_huge_clear_flush(MmStruct* mm, VirtAddr haddr, const PtSlot& slot);
// khugepaged: clear a PMD that points to a PTE table and flush 2 MiB.
Pte pmdp_collapse_flush(MmStruct* mm, VirtAddr haddr, const PtSlot& slot);

}  // namespace smm
