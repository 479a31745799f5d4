// File: shadowmm/mm/huge_memory.h
//
// Huge mappings (include/linux/huge_mm.h, mm/huge_memory.c): the THP order
// selection (thp_vma_allowable_orders and its helpers, over the sysfs knobs
// of machine/knobs.h), anonymous PMD THP faults, the huge zero page, write
// faults on huge PMDs, device-DAX PMD/PUD faults, splitting of PMD and PUD
// leaves, zapping and protection changes of huge entries.

#pragma once

#include <cstdint>

#include "shadowmm/base/types.h"
#include "shadowmm/machine/vm_flags.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/pgtable/mmu_gather.h"
#include "shadowmm/pgtable/pgtable.h"

namespace smm {

struct VmArea;

// ---- order selection ----

inline constexpr unsigned THP_MIN_ANON_ORDER = 2;  // order 1 is never used for anon
// Orders 2..9: the anonymous THP orders on x86-64.
inline constexpr uint32_t THP_ORDERS_ALL_ANON = ((1u << (9 + 1)) - 1) & ~3u;
// Orders of special huge mappings (DAX): PMD and PUD.
inline constexpr uint32_t THP_ORDERS_ALL_SPECIAL = (1u << 9) | (1u << 18);

// tva_flags (include/linux/huge_mm.h).
enum TvaFlags : uint32_t {
  TVA_SMAPS = 1u << 0,          // /proc/pid/smaps THPeligible
  TVA_IN_PF = 1u << 1,          // page fault
  TVA_ENFORCE_SYSFS = 1u << 2,  // obey the sysfs enabled settings
  // MADV_COLLAPSE (6.18's TVA_FORCED_COLLAPSE): an explicit request passes
  // PR_THP_DISABLE_EXCEPT_ADVISED (vma_thp_disabled's forced_collapse).
  TVA_FORCED_COLLAPSE = 1u << 3,
};

// Linux: thp_vma_allowable_orders. The orders of `orders` allowed for `vma`
// with flags `vm_flags` for the caller described by `tva_flags`.
uint32_t thp_vma_allowable_orders(const VmArea* vma, vm_flags_t vm_flags, uint32_t tva_flags,
                                  uint32_t orders);
inline bool thp_vma_allowable_order(const VmArea* vma, vm_flags_t vm_flags, uint32_t tva_flags,
                                    unsigned order) {
  return thp_vma_allowable_orders(vma, vm_flags, tva_flags, 1u << order) != 0;
}

// Linux: thp_vma_suitable_order. The naturally aligned block of `order`
// around `addr` lies inside the VMA.
bool thp_vma_suitable_order(const VmArea* vma, uint64_t addr, unsigned order);
// The subset of `orders` suitable at `addr`.
uint32_t thp_vma_suitable_orders(const VmArea* vma, uint64_t addr, uint32_t orders);

// Linux: vma_thp_disabled (6.18 form with PR_THP_DISABLE_EXCEPT_ADVISED).
bool vma_thp_disabled(const VmArea* vma, vm_flags_t vm_flags, bool forced_collapse);

inline unsigned highest_order(uint32_t orders) { return 31 - __builtin_clz(orders); }

// ---- faults, splits, zap and protection changes of huge entries ----

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
