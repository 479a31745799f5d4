// File: shadowmm/mm/machine.h
//
// One simulated machine: the state the kernel keeps in globals. Its physical
// memory (the zone), the THP sysfs knobs, the project's mm knobs, the event
// counters (vm_event_states), the shared zero pages (empty_zero_page,
// huge_zero_folio) and the observers of the mm core (mm_observer.h).
//
// Nothing is global: every test and every scenario run builds its own
// Machine, so tests are isolated.

#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shadowmm/base/srcu.h"
#include "shadowmm/mm/mm_observer.h"
#include "shadowmm/mm/vmstat.h"
#include "shadowmm/phys/page_alloc.h"
#include "shadowmm/phys/swap.h"
#include "shadowmm/thp/policy.h"

namespace smm {

class MmStruct;
class CoherenceOracle;
class Khugepaged;

// The project's mm knobs (scenario language `set mm.*`, `notifier.*`).
struct MmKnobs {
  enum class NotifyLevel : uint8_t { kPud, kPmd };
  enum class CollapseOrders : uint8_t { kMthp, kPmd };
  enum class CollapseFlush : uint8_t { kPmd, kRange };

  // [S3] kPmd = mprotect opens its PROTECTION_VMA range per PMD table
  // (before "mm/mprotect: push mmu notifier to PUDs"), missing PUD leaves.
  std::atomic<NotifyLevel> mprotect_notify_level{NotifyLevel::kPud};
  // [S2] khugepaged collapse orders, and the flush span of an mTHP collapse.
  std::atomic<CollapseOrders> collapse_orders{CollapseOrders::kMthp};
  std::atomic<CollapseFlush> collapse_flush{CollapseFlush::kPmd};
  // [S1] false = MMU_INTERVAL_NOTIFIER_BLOCK_THP is an unknown flag.
  std::atomic<bool> block_thp{true};
  // [S5] also call invalidate_secondary_tlbs from the classic end pass.
  std::atomic<bool> secondary_tlbs_at_end{true};
  // false = mm_forbids_zeropage: read faults allocate real pages, no huge
  // zero page either (as on hosts booted without a zero page).
  std::atomic<bool> zero_page{true};
  // sysctl vm.max_map_count.
  std::atomic<int> max_map_count{65530};
};

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
  // khugepaged: its mm list and its (optional) background thread
  // (thp/khugepaged.h). The thread is not running unless start()ed.
  Khugepaged& khugepaged() { return *khugepaged_; }

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

  // The coherence oracle watching this machine, if any (set by whoever
  // installs it as an observer; devices report to it).
  CoherenceOracle* oracle() const { return oracle_; }
  void set_oracle(CoherenceOracle* oracle) { oracle_ = oracle; }

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
  CoherenceOracle* oracle_ = nullptr;
  std::atomic<uint64_t> next_mm_id_{1};
  // Last: destroyed first, so its thread stops while the machine is whole.
  std::unique_ptr<Khugepaged> khugepaged_;
};

// Helpers the mm core uses to report to every observer.
template <typename F>
inline void for_each_observer(Machine& m, F f) {
  for (MmObserver* o : m.observers()) f(o);
}

}  // namespace smm
