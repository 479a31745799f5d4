// File: shadowmm/mm/khugepaged.h
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
// This header holds what the rest of the mm floor calls (the mm list hooks,
// MADV_COLLAPSE) and the scanner that its owner drives. The scan of one PMD
// and the collapse are private to src/mm/ (khugepaged_internal.h):
// khugepaged.cc implements them and MADV_COLLAPSE, khugepaged_scan.cc the
// mm list, the scanner and the thread.
//
// Not modelled: file/shmem collapse (collapse_file, retract_page_tables; the
// model's shmem has no huge pages), NUMA node selection, memcg charging,
// userfaultfd (no uffd-wp PTEs exist), machine-check copies.

#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/base/types.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/machine/vm_flags.h"

namespace smm {

struct VmArea;
class Machine;
// The result of one scan or collapse (khugepaged_internal.h).
enum ScanResult : uint8_t;

// ---- the mm list ----

// Registers vma->vm_mm with khugepaged when some order khugepaged may
// collapse to is allowed in the VMA under the sysfs settings ([S2]: any anon
// order unless `mm.collapse_orders pmd`; mainline: PMD order only).
void khugepaged_enter_vma(VmArea* vma, vm_flags_t vm_flags);
// Linux: khugepaged_fork. The child joins the list when the parent is on it.
void khugepaged_fork(MmStruct* mm, MmStruct* oldmm);
// Linux: khugepaged_exit (__mmput, before exit_mmap): leave the list.
void khugepaged_exit(MmStruct* mm);

// Linux: madvise_collapse, for [start, end) inside `vma`. Caller holds
// mmap_lock for read; it may be dropped and retaken (then *lock_dropped is
// set and `vma` must not be used again). 0 when every 2 MiB block of the
// range ends PMD-mapped, else -EINVAL/-ENOMEM/-EBUSY/-EAGAIN (spec d.2).
int madvise_collapse(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end, bool* lock_dropped)
    REQUIRES_SHARED(mm->mmap_lock);

// ---- the scanner ----

// The khugepaged of one machine: the list of registered mms (mm_slot), the
// scan cursor (khugepaged_scan), and an optional background thread.
//
// Lifetime: it attaches itself to the machine on construction
// (Machine::khugepaged) and detaches on destruction, which must come before
// the machine's. Each listed mm is pinned with mmgrab; khugepaged_exit() drops it.
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

// The scenario verb: `khugepaged [passes=N]`, on the machine's khugepaged
// (nothing when none is attached).
void khugepaged_scan_passes(Machine& machine, unsigned passes);

}  // namespace smm
