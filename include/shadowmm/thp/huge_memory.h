// File: shadowmm/thp/huge_memory.h
//
// Huge mappings (mm/huge_memory.c): anonymous PMD THP faults, the huge zero
// page, write faults on huge PMDs, device-DAX PMD/PUD faults, splitting of
// PMD and PUD leaves, zapping and protection changes of huge entries.

#pragma once

#include "shadowmm/base/types.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/pgtable/mmu_gather.h"
#include "shadowmm/pgtable/pgtable.h"

namespace smm {

// Linux: do_huge_pmd_anonymous_page. `pmd` is a none PMD slot.
vm_fault_t do_huge_pmd_anonymous_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pmd,
                                      bool write);
// Linux: do_huge_pmd_wp_page (and do_huge_zero_wp_pmd). Write fault on a
// read-only PMD leaf of an anonymous VMA. VM_FAULT_FALLBACK after a split.
vm_fault_t do_huge_pmd_wp_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pmd);
// Device-DAX huge faults (dev_dax_huge_fault): map the folio of the
// device at PUD or PMD size. VM_FAULT_FALLBACK when that size does not fit.
vm_fault_t dax_huge_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& slot, bool write);

// Linux: __split_huge_pmd. Opens a CLEAR range over the 2 MiB block of
// `address` (even when no huge entry is found), splits a PMD leaf there:
// anonymous THP -> PTEs to the same pages, huge zero -> zero-page PTEs,
// dax -> cleared (refault later).
void split_huge_pmd(VmArea* vma, const PtSlot& pmd, VirtAddr address);
// Linux: split_huge_pmd_address: find the PMD slot (needs a PMD table) and split.
void split_huge_pmd_address(VmArea* vma, VirtAddr address);
// Linux: __split_huge_pud. CLEAR range over the 1 GiB block; clears the PUD
// leaf (dax refaults at a smaller size).
void split_huge_pud(VmArea* vma, const PtSlot& pud, VirtAddr address);
void split_huge_pud_address(VmArea* vma, VirtAddr address);

// Split the PMD leaf under the already-held PMD lock (inside a CLEAR range).
void split_huge_pmd_locked(VmArea* vma, const PtSlot& pmd, VirtAddr haddr) REQUIRES(*pmd.ptl);

// Linux: zap_huge_pmd / zap_huge_pud. The slot maps a leaf fully inside the
// zapped range.
void zap_huge_pmd(MmuGather* tlb, VmArea* vma, const PtSlot& pmd, VirtAddr haddr);
void zap_huge_pud(MmuGather* tlb, VmArea* vma, const PtSlot& pud, VirtAddr haddr);

// Linux: change_huge_pmd / change_huge_pud (mprotect of a fully covered leaf).
// `newprot` is the VMA's new page protection; `try_writable` =
// MM_CP_TRY_CHANGE_WRITABLE. Returns the number of pages changed.
long change_huge_pmd(MmuGather* tlb, VmArea* vma, const PtSlot& pmd, VirtAddr haddr, uint8_t newprot,
                     bool try_writable);
long change_huge_pud(MmuGather* tlb, VmArea* vma, const PtSlot& pud, VirtAddr haddr, uint8_t newprot,
                     bool try_writable);

}  // namespace smm
