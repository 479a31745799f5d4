// File: shadowmm/machine/machine.h
//
// One simulated machine: the state the kernel keeps in globals. Its physical
// memory (the zone), swap, the THP sysfs knobs and the project's mm knobs
// (knobs.h), the event counters (vm_event_states), the shared zero pages
// (empty_zero_page, huge_zero_folio), the SRCU domains, and the observers of
// the mm core (mm_observer.h).
//
// The machine is the ground floor: data only, below the page-table and
// notifier floors. It owns no actor: the coherence oracle attaches as an
// observer, and khugepaged attaches itself as the machine's khugepaged
// service (mm/khugepaged.h) for as long as it lives.
//
// Nothing is global: every test and every scenario run builds its own
// Machine, so tests are isolated.

#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "shadowmm/base/srcu.h"
#include "shadowmm/machine/knobs.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/machine/vmstat.h"
#include "shadowmm/phys/page_alloc.h"
#include "shadowmm/phys/swap.h"

namespace smm {

class MmStruct;
// The mm floor's khugepaged (mm/khugepaged.h), reached through the machine.
class Khugepaged;

struct MachineConfig {
  uint64_t memory_bytes = 64ull << 30;
  uint64_t swap_bytes = 16ull << 30;
};

class Machine {
 public:
  explicit Machine(MachineConfig config = {});
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  FrameAllocator& mem() { return mem_; }
  ThpPolicy& thp() { return thp_; }
  MmKnobs& knobs() { return knobs_; }
  SwapSpace& swap() { return swap_; }
  // The SRCU domain of the MMU-notifier core (Linux has one global `srcu`
  // in mm/mmu_notifier.c; the model has one per machine).
  Srcu& notifier_srcu() { return notifier_srcu_; }
  // Lockless walkers of the CPU page tables (an IOMMU's hardware walker,
  // the oracle's checks) read inside this domain; page tables detached from
  // the tree are freed only after its readers left (pt_sync_lockless_walkers),
  // as MMU_GATHER_RCU_TABLE_FREE protects gup_fast in Linux.
  Srcu& pgtable_srcu() { return pgtable_srcu_; }
  VmStats& stats() { return stats_; }
  const VmStats& stats() const { return stats_; }
  // The khugepaged serving this machine (its mm list, its scanner and its
  // optional thread), or nullptr when none runs: then no mm is registered
  // for collapse, as in a kernel without khugepaged. Not owned: a Khugepaged
  // attaches itself on construction and detaches on destruction.
  Khugepaged* khugepaged() const { return khugepaged_.load(std::memory_order_acquire); }
  void set_khugepaged(Khugepaged* k) { khugepaged_.store(k, std::memory_order_release); }

  // The shared zero page (order 0) and huge zero folio (order 9). Reserved:
  // never freed, never written, not refcounted by their mappings.
  Folio zero_folio() const { return zero_folio_; }
  Folio huge_zero_folio() const { return huge_zero_folio_; }
  bool is_zero_pfn(Pfn pfn) const { return pfn == zero_folio_.pfn(); }
  bool is_huge_zero_pfn(Pfn pfn) const {
    return pfn.value() - huge_zero_folio_.pfn().value() < HPAGE_PMD_NR;
  }

  // Observers (install before threads start using the machine).
  void add_observer(MmObserver* observer);
  void remove_observer(MmObserver* observer);
  const std::vector<MmObserver*>& observers() const { return observers_; }
  bool observed() const { return !observers_.empty(); }

  uint64_t next_mm_id() { return next_mm_id_.fetch_add(1, std::memory_order_relaxed); }
  // Live MmStruct objects (leak checks in tests).
  std::atomic<int64_t> live_mms{0};

 private:
  FrameAllocator mem_;
  ThpPolicy thp_;
  MmKnobs knobs_;
  VmStats stats_;
  SwapSpace swap_;
  Srcu notifier_srcu_;
  Srcu pgtable_srcu_;
  Folio zero_folio_;
  Folio huge_zero_folio_;
  std::vector<MmObserver*> observers_;
  std::atomic<uint64_t> next_mm_id_{1};
  std::atomic<Khugepaged*> khugepaged_{nullptr};
};

// Helpers the mm core uses to report to every observer.
template <typename F>
inline void for_each_observer(Machine& m, F f) {
  for (MmObserver* o : m.observers()) f(o);
}

}  // namespace smm
