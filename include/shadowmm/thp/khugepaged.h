// File: shadowmm/thp/khugepaged.h
//
// khugepaged and MADV_COLLAPSE (mm/khugepaged.c), with S2's collapse to mTHP
// orders inside a PMD ("khugepaged: mTHP support", later revisions: order
// argument, sub-range notifier, anon_vma held, bitmap/stack walk).
//
//   khugepaged_enter_vma / khugepaged_fork / khugepaged_exit
//                             the mm list (MMF_VM_HUGEPAGE, mm_slot)
//   hpage_collapse_scan_pmd   read the 512 PTEs of one PMD and decide
//   collapse_huge_page        collapse [start, start + 4K << order) inside
//                             one PMD: the lock sequence of spec d.2
//   mthp_collapse             [S2] the order stack over the occupancy bitmap
//   madvise_collapse          MADV_COLLAPSE (PMD order only)
//   Khugepaged                the scanner: khugepaged_do_scan (one wake-up of
//                             pages_to_scan), full passes, and an optional
//                             background thread sleeping scan_sleep_millisecs
//
// Implementation: src/thp/khugepaged.cc (the scan of one PMD, the collapse,
// MADV_COLLAPSE) and src/thp/khugepaged_scan.cc (the mm list, the scanner,
// the thread).
//
// Not modelled: file/shmem collapse (collapse_file, retract_page_tables; the
// model's shmem has no huge pages), NUMA node selection, memcg charging,
// userfaultfd (no uffd-wp PTEs exist), machine-check copies.

#pragma once

#include <atomic>
#include <bitset>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/base/types.h"
#include "shadowmm/mm/mm_struct.h"
#include "shadowmm/mm/vm_flags.h"

namespace smm {

struct VmArea;
class Machine;

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

// ---- the mm list ----

// Registers vma->vm_mm with khugepaged when some order khugepaged may
// collapse to is allowed in the VMA under the sysfs settings ([S2]: any anon
// order unless `mm.collapse_orders pmd`; mainline: PMD order only).
void khugepaged_enter_vma(VmArea* vma, vm_flags_t vm_flags);
// Linux: khugepaged_fork. The child joins the list when the parent is on it.
void khugepaged_fork(MmStruct* mm, MmStruct* oldmm);
// Linux: khugepaged_exit (__mmput, before exit_mmap): leave the list.
void khugepaged_exit(MmStruct* mm);

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

// Linux: madvise_collapse, for [start, end) inside `vma`. Caller holds
// mmap_lock for read; it may be dropped and retaken (then *lock_dropped is
// set and `vma` must not be used again). 0 when every 2 MiB block of the
// range ends PMD-mapped, else -EINVAL/-ENOMEM/-EBUSY/-EAGAIN (spec d.2).
int madvise_collapse(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end, bool* lock_dropped)
    REQUIRES_SHARED(mm->mmap_lock);

// Linux: madvise_collapse_errno. ENOMEM for an allocation failure; EBUSY
// for too many none PTEs or a charge failure (only userfaultfd or memcg
// produce them, neither is modelled); EAGAIN for transient page states
// (count, lock, LRU); EINVAL otherwise.
int madvise_collapse_errno(ScanResult r);

// ---- the scanner ----

// The khugepaged of one machine: the list of registered mms (mm_slot), the
// scan cursor (khugepaged_scan), and an optional background thread.
//
// Lifetime: each listed mm is pinned with mmgrab; khugepaged_exit() drops it.
// A scan takes mmget_not_zero on the mm it scans, so an exit that races with
// it runs when the scan lets go.
class Khugepaged {
 public:
  explicit Khugepaged(Machine& machine);
  ~Khugepaged();
  Khugepaged(const Khugepaged&) = delete;
  Khugepaged& operator=(const Khugepaged&) = delete;

  // The background thread: do_scan(), then sleep scan_sleep_millisecs
  // (alloc_sleep_millisecs once after an allocation failure), until stop().
  // stop() returns once the thread has exited.
  void start();
  void stop();
  bool running() const { return thread_.joinable(); }

  // Linux: __khugepaged_enter / khugepaged_exit.
  void enter(MmStruct* mm) EXCLUDES(mm_lock_);
  void exit(MmStruct* mm) EXCLUDES(mm_lock_);

  // Linux: khugepaged_do_scan. One wake-up: scans up to pages_to_scan PTEs
  // (each PMD counts 512, each skipped VMA or mm 1), resuming where the last
  // wake-up stopped. Returns the progress made. `sleep_on_alloc_fail`: sleep
  // alloc_sleep_millisecs after a first allocation failure (the thread);
  // synchronous callers stop the wake-up instead.
  unsigned do_scan(bool sleep_on_alloc_fail = false) EXCLUDES(scan_lock_, mm_lock_);
  // Scans until exactly `passes` more full scans of the list completed (or
  // the list is empty), in steps of pages_to_scan: the scenario verb
  // `khugepaged [passes=N]`.
  void scan_passes(unsigned passes) EXCLUDES(scan_lock_, mm_lock_);

  uint64_t full_scans() const EXCLUDES(mm_lock_);
  size_t nr_mms() const EXCLUDES(mm_lock_);
  bool has_mm(const MmStruct* mm) const EXCLUDES(mm_lock_);

 private:
  // Linux: khugepaged_scan_mm_slot. Scans the mm at the cursor for at most
  // `pages`; moves the cursor to the next mm when this one is done.
  unsigned scan_mm_slot(unsigned pages, ScanResult* result) REQUIRES(scan_lock_) EXCLUDES(mm_lock_);
  // Scans `mm` from *address; returns progress, sets *done when every VMA
  // was scanned. Takes mmap_lock itself (trylock, as khugepaged does).
  unsigned scan_mm(MmStruct* mm, VirtAddr* address, unsigned pages, ScanResult* result, bool* done)
      REQUIRES(scan_lock_);
  void thread_main();

  Machine& machine_;
  // One scanner at a time (the kernel has one khugepaged thread).
  Mutex scan_lock_{LockRank::kKhugepagedScan, "khugepaged_scan"};
  // Linux: khugepaged_mm_lock. Guards the list and the cursor.
  mutable SpinLock mm_lock_{LockRank::kKhugepagedMm, "khugepaged_mm_lock"};
  std::vector<MmStruct*> slots_ GUARDED_BY(mm_lock_);
  // Linux: khugepaged_scan.mm_slot (scan_active_ false = NULL) and .address.
  bool scan_active_ GUARDED_BY(mm_lock_) = false;
  size_t scan_index_ GUARDED_BY(mm_lock_) = 0;
  VirtAddr scan_address_ GUARDED_BY(mm_lock_);
  uint64_t full_scans_ GUARDED_BY(mm_lock_) = 0;

  // The thread's sleep (wait_event_freezable_timeout). A plain condition
  // variable: a leaf wait, like WaitQueue's internals.
  std::thread thread_;  // started and joined by start()/stop() only
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  bool stop_requested_ = false;  // under sleep_mu_
};

// The scenario verb: `khugepaged [passes=N]`.
void khugepaged_scan_passes(Machine& machine, unsigned passes);

}  // namespace smm
