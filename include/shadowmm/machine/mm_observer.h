// File: shadowmm/machine/mm_observer.h
//
// The observation seam of the mm core: every point where a notifier range
// opens or closes, a CPU TLB flush happens, a present page-table entry is
// removed, downgraded or re-pointed, or a folio is freed is reported to the
// machine's observers. The coherence oracle is one observer; tests install
// recording observers to assert the exact order of these points.
//
// Observers are installed before the workload starts and must be
// thread-safe: they are called from every thread that changes an mm, some
// calls under page-table locks (they must not sleep there).

#pragma once

#include "shadowmm/base/types.h"
#include "shadowmm/machine/pgtable_types.h"
#include "shadowmm/phys/page.h"

namespace smm {

class MmStruct;
struct MmuNotifierRange;

// The mm operation the calling thread is in ("mprotect", "munmap", "fault",
// "device fault"...), for reports. Nests; the innermost wins.
class MmOpScope {
 public:
  explicit MmOpScope(const char* name) : outer_(current_), name_(name) { current_ = this; }
  ~MmOpScope() { current_ = outer_; }
  MmOpScope(const MmOpScope&) = delete;
  MmOpScope& operator=(const MmOpScope&) = delete;
  static const char* current() { return current_ ? current_->name_ : "?"; }

 private:
  static thread_local MmOpScope* current_;
  MmOpScope* outer_;
  const char* name_;
};

class MmObserver {
 public:
  virtual ~MmObserver() = default;
  // After the notifier core ran the start callbacks of `range`.
  virtual void on_range_start(const MmuNotifierRange& range) { (void)range; }
  // Before the notifier core runs the end callbacks of `range`.
  virtual void on_range_end(const MmuNotifierRange& range) { (void)range; }
  // A CPU TLB flush of [start, end) of `mm` (after the secondary-TLB hook).
  virtual void on_tlb_flush(MmStruct* mm, VirtAddr start, VirtAddr end) {
    (void)mm, (void)start, (void)end;
  }
  // A present leaf at `addr` (mapping `size` bytes) changes from `old_pte` to
  // `new_pte`, where the change removes it, re-points it, or removes
  // permissions (E1). Called under the entry's page-table lock.
  virtual void on_pte_change(MmStruct* mm, VirtAddr addr, uint64_t size, Pte old_pte, Pte new_pte) {
    (void)mm, (void)addr, (void)size, (void)old_pte, (void)new_pte;
  }
  // A present leaf at `addr` is about to be changed or cleared (called under
  // its page-table lock, before the new value is visible).
  virtual void on_pte_changing(MmStruct* mm, VirtAddr addr, uint64_t size) { (void)mm, (void)addr, (void)size; }
  // A present leaf is installed (none -> present, or a re-point's second half).
  virtual void on_pte_install(MmStruct* mm, VirtAddr addr, uint64_t size, Pte pte) {
    (void)mm, (void)addr, (void)size, (void)pte;
  }
  // khugepaged is detaching the PTE table of the PMD at `haddr` to collapse
  // `collapsing` (the PMD goes none right after this call, until
  // on_pmd_table_reattached): the PTEs outside the collapsed sub-range keep
  // their values meanwhile (spec E9). Called with the PMD lock held.
  virtual void on_pmd_table_detached(MmStruct* mm, VirtAddr haddr, PageTable* table, VaRange collapsing) {
    (void)mm, (void)haddr, (void)table, (void)collapsing;
  }
  // The window ends: the table is back, or replaced by a huge PMD (and will
  // be freed after a lockless-walker sync).
  virtual void on_pmd_table_reattached(MmStruct* mm, VirtAddr haddr) { (void)mm, (void)haddr; }
  // `folio` is about to go back to the allocator.
  virtual void on_folio_free(Folio folio) { (void)folio; }
  // A folio of order > 0 was newly mapped at `addr` in a VMA with
  // `vm_flags` (a THP or mTHP fault, the huge zero page, a collapse, a dax
  // huge fault): the oracle's THP invariant of spec f.5.
  virtual void on_large_folio_mapped(MmStruct* mm, uint64_t vm_flags, VirtAddr addr, unsigned order) {
    (void)mm, (void)vm_flags, (void)addr, (void)order;
  }

  // ---- the notifier core's calls into subscribers ----
  // A subscriber's invalidation returned for `range` and it must now hold no
  // translation in it: an interval `invalidate`, an `invalidate_start` that
  // returned no finish, an `invalidate_finish`, or a classic start.
  // `sub` is the MmuIntervalNotifier* or MmuNotifier*.
  virtual void on_subscriber_invalidated(const void* sub, const MmuNotifierRange& range) {
    (void)sub, (void)range;
  }
  // A classic subscriber's invalidate_range_end is about to run (from then on
  // it may establish translations in the range again).
  virtual void on_subscriber_range_end(const void* sub, const MmuNotifierRange& range) {
    (void)sub, (void)range;
  }
  // A classic subscriber's arch_invalidate_secondary_tlbs ran (under
  // whatever lock the flush holds).
  virtual void on_secondary_tlbs(const void* sub, MmStruct* mm, VirtAddr start, VirtAddr end) {
    (void)sub, (void)mm, (void)start, (void)end;
  }
  // mmu_notifier_release(mm) returned: every subscriber dropped everything.
  virtual void on_release(MmStruct* mm) { (void)mm; }
  // A callback of `sub` tried to sleep where it must not (a non-blockable
  // range, or invalidate_secondary_tlbs): E10.
  virtual void on_sleep_in_callback(const void* sub, const char* what) { (void)sub, (void)what; }
};

}  // namespace smm
