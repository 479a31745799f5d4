// File: src/mm/khugepaged_internal.h (private to src/mm/)
//
// The collapse internals shared by khugepaged.cc (the scan of one PMD, the
// collapse, MADV_COLLAPSE) and khugepaged_scan.cc (the scanner), like
// Linux's mm/internal.h: scan results, the collapse control, and the scan
// and collapse steps. Unit tests include it to drive single steps.

#pragma once

#include <bitset>
#include <cstdint>

#include "shadowmm/machine/mm_types.h"
#include "shadowmm/mm/khugepaged.h"

namespace smm {

// Linux: hpage_collapse_test_exit_or_disable. The mm is exiting, or
// PR_SET_THP_DISABLE turned THP off for all of it.
inline bool hpage_collapse_test_exit_or_disable(const MmStruct* mm) {
  return mm->mm_users.load(std::memory_order_relaxed) == 0 || mm->test_flag(MMF_DISABLE_THP_COMPLETELY);
}

// Linux: enum scan_result (the subset the model can produce).
enum ScanResult : uint8_t {
  SCAN_FAIL,
  SCAN_SUCCEED,
  SCAN_PMD_NULL,      // no PMD table above (mm_find_pmd failed) or a non-table entry
  SCAN_PMD_NONE,      // the PMD entry is none
  SCAN_PMD_MAPPED,    // already a huge PMD
  SCAN_EXCEED_NONE_PTE,
  SCAN_EXCEED_SWAP_PTE,
  SCAN_EXCEED_SHARED_PTE,
  SCAN_PTE_NON_PRESENT,
  SCAN_PAGE_RO,
  SCAN_LACK_REFERENCED_PAGE,
  SCAN_PAGE_NULL,     // not a normal page (a special mapping)
  SCAN_PAGE_COUNT,    // extra references (a pin)
  SCAN_PAGE_LRU,      // not on the LRU
  SCAN_PAGE_LOCK,     // the folio lock is taken
  SCAN_PAGE_ANON,     // not anonymous
  SCAN_ANY_PROCESS,   // the mm is exiting or THP is disabled for it
  SCAN_VMA_NULL,
  SCAN_VMA_CHECK,     // the VMA no longer allows this order
  SCAN_ADDRESS_RANGE, // the block no longer fits the VMA
  SCAN_DEL_PAGE_LRU,  // could not take the folio off the LRU
  SCAN_ALLOC_HUGE_PAGE_FAIL,
};

// The kernel's name of a result ("succeeded", "exceed_none_pte", ...), as
// its tracepoints print them.
const char* scan_result_name(ScanResult r);

// Linux: struct collapse_control, plus what one PMD scan found.
struct CollapseControl {
  // false for MADV_COLLAPSE: no max_ptes_* limits, no referenced rule.
  bool is_khugepaged = true;
  // [S2] Orders the scanned block may be collapsed to (bit per order).
  uint32_t enabled_orders = 0;
  // [S2] PTEs of the scanned PMD that map a page (not none, not the zero
  // page, not swap): mthp_collapse's occupancy bitmap.
  std::bitset<HPAGE_PMD_NR> present;
  // [S2] The order of the folio each present PTE maps (blocks already
  // mapped by folios of an order are not collapsed to it again).
  uint8_t folio_order[HPAGE_PMD_NR] = {};
  // Referenced PTEs and swap PTEs ("unmapped") the scan counted.
  int referenced = 0;
  int unmapped = 0;
};

// ---- scan and collapse ----

// The orders khugepaged (or MADV_COLLAPSE, when !is_khugepaged) may
// collapse `vma` to: thp_vma_allowable_orders with TVA_ENFORCE_SYSFS
// (khugepaged) or TVA_FORCED_COLLAPSE (PMD order only).
uint32_t collapse_allowable_orders(const VmArea* vma, bool is_khugepaged);

// [S2] Linux: collapse_max_ptes_none. None or zero-page PTEs allowed in a
// collapse to `order`: PMD order -> khugepaged/max_ptes_none (MADV_COLLAPSE:
// all); mTHP -> 2^order - 1 when the sysfs value is 511, 0 when it is 0, and
// any other value warns once and counts as 0.
unsigned collapse_max_ptes_none(Machine& m, const CollapseControl& cc, unsigned order);

// Linux: hpage_collapse_scan_pmd, its scan half. Reads the 512 PTEs of the
// PMD at `haddr` under their PTL and decides whether a collapse is worth
// trying (spec d.2 step 1): fills cc's referenced, unmapped, present bitmap
// and enabled_orders. SCAN_SUCCEED means "collapse". Does not drop the lock.
ScanResult hpage_collapse_scan_pmd_locked(MmStruct* mm, VmArea* vma, VirtAddr haddr, CollapseControl* cc)
    REQUIRES_SHARED(mm->mmap_lock);

// What follows a successful scan once the caller dropped mmap_lock: a PMD
// collapse, or [S2] mthp_collapse when orders below PMD are enabled.
// Returns SCAN_SUCCEED when something was collapsed.
ScanResult collapse_scanned_pmd(MmStruct* mm, VirtAddr haddr, CollapseControl* cc) EXCLUDES(mm->mmap_lock);

// Linux: collapse_huge_page (S2 form). Collapses exactly
// [start_addr, start_addr + 4K << order), which lies inside one PMD, into a
// new folio of `order`. The caller has dropped mmap_lock; it is taken and
// released inside (read for the allocation-free revalidation and swap-in,
// then write for the collapse). Every failure after the PMD was cleared puts
// the old PTE table back unchanged.
ScanResult collapse_huge_page(MmStruct* mm, VirtAddr start_addr, int referenced, int unmapped,
                              CollapseControl* cc, unsigned order) EXCLUDES(mm->mmap_lock);

// [S2] Linux: mthp_collapse. Walks the (offset, order) stack from (0, PMD
// order) down to order 2 over cc->present and collapses every block whose
// occupancy reaches 2^order - max_none(order). Returns SCAN_SUCCEED when at
// least one block was collapsed, else the last failure.
ScanResult mthp_collapse(MmStruct* mm, VirtAddr haddr, CollapseControl* cc) EXCLUDES(mm->mmap_lock);

// Linux: madvise_collapse_errno. ENOMEM for an allocation failure; EBUSY
// for too many none PTEs or a charge failure (only userfaultfd or memcg
// produce them, neither is modelled); EAGAIN for transient page states
// (count, lock, LRU); EINVAL otherwise.
int madvise_collapse_errno(ScanResult r);

}  // namespace smm
