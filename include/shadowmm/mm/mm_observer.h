// File: shadowmm/mm/mm_observer.h
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
#include "shadowmm/pgtable/pgtable.h"
#include "shadowmm/phys/page.h"

namespace smm {

class MmStruct;
struct MmuNotifierRange;

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
  // A present leaf is installed (none -> present, or a re-point's second half).
  virtual void on_pte_install(MmStruct* mm, VirtAddr addr, uint64_t size, Pte pte) {
    (void)mm, (void)addr, (void)size, (void)pte;
  }
  // `folio` is about to go back to the allocator.
  virtual void on_folio_free(Folio folio) { (void)folio; }
};

}  // namespace smm
