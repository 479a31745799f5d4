// File: shadowmm/pgtable/pgtable.h
//
// x86-64 4-level page tables (PGD -> PUD -> PMD -> PTE; P4D folded), made of
// real 512-entry table pages allocated on demand (include/linux/pgtable.h,
// arch/x86/include/asm/pgtable*.h, mm/memory.c: __pud_alloc, __pmd_alloc,
// __pte_alloc).
//
// The entry encoding, the table page and its lock are in
// machine/pgtable_types.h; this floor walks, allocates and frees tables.
//
// Tables are freed only by free_pgtables (munmap) and by the empty-PTE-table
// reclaim of MADV_DONTNEED, both through an mmu_gather, after the TLB flush.

#pragma once

#include "shadowmm/machine/pgtable_types.h"

namespace smm {

class MmStruct;

// The slot mapping `addr` at `level` when every table above it exists;
// an empty PtSlot when some upper entry is none or a leaf. Lockless.
PtSlot pt_lookup(MmStruct* mm, VirtAddr addr, unsigned level);

// Waits until no lockless walker (Machine::pgtable_srcu) can still be
// reading a table that was just detached from the tree; call before freeing
// detached tables. Free when nobody walks.
// Deviation from Linux: a synchronous grace period instead of call_rcu.
void pt_sync_lockless_walkers(MmStruct* mm);

// Like pt_lookup, but allocates missing tables down to `level` the way the
// fault path does (pud_alloc, pmd_alloc, pte_alloc: allocate, then install
// under the parent's lock unless someone else already did). Returns an empty
// slot when a leaf sits above `level` (the caller must handle the huge entry).
PtSlot pt_alloc(MmStruct* mm, VirtAddr addr, unsigned level);

// The lock guarding entries of tables at `level` (pud_lockptr, pmd_lockptr,
// pte_lockptr).
SpinLock* pt_lockptr(MmStruct* mm, PageTable* table);

// Allocates / frees one table page, keeping mm->pgtables_bytes.
PageTable* pt_alloc_table(MmStruct* mm, unsigned level);
void pt_free_table(MmStruct* mm, PageTable* table);

// Page tables detached while mmap_lock was held only for read (the
// empty-PTE-table reclaim of MADV_DONTNEED) wait on mm->pt_deferred: lockless
// walkers holding mmap_lock for read may still look at them, so they are
// freed only once mmap_lock is next taken for write (MmapWriteLock,
// mm/mmap_lock.h): the model's RCU grace period for page tables.
// Deviation from Linux: Linux frees them with RCU.
//
// Queues `table` (already detached) for freeing at the next write lock.
void pt_defer_free(MmStruct* mm, PageTable* table);
// Frees the deferred tables. Caller holds mmap_lock for write.
void pt_drain_deferred(MmStruct* mm);
size_t pt_deferred_count(MmStruct* mm);

// Recursively frees every table below the PGD (mm teardown). Entries must be
// none or tables.
void pt_free_all(MmStruct* mm);

// Page-table structure checks for `mm`: every table reached from the PGD has
// the right level, leaves only where leaves are legal (PUD/PMD/PTE), pfns
// inside memory.
void pt_check_invariants(MmStruct* mm);

}  // namespace smm
