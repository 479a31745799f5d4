// File: shadowmm/check/coherence_oracle.h
//
// The coherence oracle (spec section e). It watches the mm core as one of
// the machine's observers (MmObserver) and the devices as their device
// observer (DeviceObserver: the calls they make when they attach, establish
// or use a translation), and records violations:
//
//   E1 coverage: a present mapping is removed, re-pointed or downgraded
//      outside every active notifier range of its mm (only for mms with
//      notifier subscriptions);
//   E2 drop on start: a subscriber still holds a translation in the range
//      its invalidation just returned for; or a device uses a translation
//      the CPU page tables no longer back, outside an active range (a TLB
//      that walks the page tables: after the flush that followed the
//      change);
//   E3 no establish inside an invalidation: an interval subscriber programs
//      a translation while its seq shows a hitting invalidation, or with a
//      stale seq; a start/end subscriber between its start and end;
//   E4 value at establishment: what a device programs differs from the CPU
//      page tables, and no active range excuses it;
//   E5 free safety: a frame is freed while a device can reach it, or a
//      device uses a frame whose generation changed;
//   E6 replacement ordering: a TLB that walks the CPU page tables was not
//      invalidated between the clear and the new entry of a re-pointed PTE;
//   THP (spec f.5, the invariant BLOCK_THP relies on): no folio of order > 0
//      is newly mapped in a VMA with VM_NOHUGEPAGE;
//   E7 release: after mmu_notifier_release no device of the mm holds a
//      translation, and none is established;
//   E8 sequence: a subscription's seq is odd, and the mm's seq is odd only
//      while an invalidation is active (checked at establishment);
//   VALUE: a collapse maps the values its pages had (no write is lost);
//   E10 blocking: a callback slept on a non-blockable range (or in
//      invalidate_secondary_tlbs), or read_begin/remove ran from a callback
//      or under a device lock.
//
// Each violation names the invariant, the device, the address and the
// operation. Thread-safe; its own lock is the innermost of lock_order.h.

#pragma once

#include <absl/container/btree_map.h>
#include <absl/container/btree_set.h>

#include <cstdint>
#include <map>
#include <optional>
#include <mutex>
#include <string>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/devices/secondary_mmu.h"
#include "shadowmm/machine/mm_observer.h"

namespace smm {

class Machine;
struct MmuIntervalNotifier;

struct OracleViolation {
  std::string invariant;  // "E1".."E10", "THP", "VALUE"
  std::string device;     // device name, or "-" when none is involved
  VirtAddr address;
  std::string operation;  // the mm operation in progress
  std::string detail;
};

class CoherenceOracle : public MmObserver, public DeviceObserver {
 public:
  explicit CoherenceOracle(Machine& machine);
  ~CoherenceOracle() override;

  // ---- DeviceObserver (called by devices, some under their own lock) ----
  // Attached devices are known, so subscriber callbacks map back to them.
  void on_device_attached(SecondaryMmu* dev) override EXCLUDES(lock_);
  void on_device_detached(SecondaryMmu* dev) override EXCLUDES(lock_);
  void on_interval_establish(SecondaryMmu* dev, MmuIntervalNotifier* sub, uint64_t seq,
                             const DevTranslation& t) override EXCLUDES(lock_);
  void on_classic_establish(SecondaryMmu* dev, const void* sub, const DevTranslation& t) override
      EXCLUDES(lock_);
  void on_device_access(SecondaryMmu* dev, const DevTranslation& t, bool write) override EXCLUDES(lock_);
  void on_walker_fill(SecondaryMmu* dev, const DevTranslation& t) override EXCLUDES(lock_);

  // ---- MmObserver ----
  void on_range_start(const MmuNotifierRange& range) override;
  void on_range_end(const MmuNotifierRange& range) override;
  void on_pte_change(MmStruct* mm, VirtAddr addr, uint64_t size, Pte old_pte, Pte new_pte) override;
  void on_pte_install(MmStruct* mm, VirtAddr addr, uint64_t size, Pte pte) override;
  void on_tlb_flush(MmStruct* mm, VirtAddr start, VirtAddr end) override;
  void on_pte_changing(MmStruct* mm, VirtAddr addr, uint64_t size) override;
  void on_folio_free(Folio folio) override;
  void on_pmd_table_detached(MmStruct* mm, VirtAddr haddr, PageTable* table, VaRange collapsing) override;
  void on_pmd_table_reattached(MmStruct* mm, VirtAddr haddr) override;
  void on_large_folio_mapped(MmStruct* mm, uint64_t vm_flags, VirtAddr addr, unsigned order) override;
  void on_subscriber_invalidated(const void* sub, const MmuNotifierRange& range) override;
  void on_subscriber_range_end(const void* sub, const MmuNotifierRange& range) override;
  void on_secondary_tlbs(const void* sub, MmStruct* mm, VirtAddr start, VirtAddr end) override;
  void on_sleep_in_callback(const void* sub, const char* what) override;
  void on_release(MmStruct* mm) override;

  // ---- results ----
  size_t violations() const EXCLUDES(lock_);
  std::vector<OracleViolation> violation_list() const EXCLUDES(lock_);
  // The violations a script has not acknowledged yet, in order, taken under
  // one lock; *total is the count of all violations at that moment.
  std::vector<OracleViolation> unacknowledged_list(size_t* total) const EXCLUDES(lock_);
  // Acknowledges the first `total` violations (what a script expected).
  void acknowledge(size_t total) EXCLUDES(lock_);
  size_t unacknowledged() const EXCLUDES(lock_);

 private:
  struct ActiveRange {
    MmStruct* mm;
    VaRange range;
    MmuNotifyEvent event;
  };

  void record(std::string invariant, const SecondaryMmu* dev, VirtAddr addr, std::string detail)
      REQUIRES(lock_);
  bool covered_locked(MmStruct* mm, VaRange r) const REQUIRES(lock_);
  SecondaryMmu* device_of_locked(const void* sub) const REQUIRES(lock_);
  bool has_walker_locked(const MmStruct* mm) const REQUIRES(lock_);
  // The frame the CPU page tables map at `addr` (a lockless walk: call
  // inside the page-table SRCU), or nothing.
  std::optional<Pfn> cpu_pfn_of(MmStruct* mm, VirtAddr addr) const;
  // E7: records a translation established in a released mm.
  void check_not_released_locked(const SecondaryMmu* dev, const DevTranslation& t) REQUIRES(lock_);
  bool unflushed_locked(const MmStruct* mm, VirtAddr addr) const REQUIRES(lock_);
  // Checks `t` against the CPU page tables (pfn and write permission).
  bool backed_by_cpu(MmStruct* mm, const DevTranslation& t, std::string* why) const;

  Machine& machine_;
  mutable SpinLock lock_{LockRank::kOracle, "oracle"};
  std::vector<SecondaryMmu*> devices_ GUARDED_BY(lock_);
  std::map<const void*, SecondaryMmu*> by_sub_ GUARDED_BY(lock_);
  std::vector<ActiveRange> active_ GUARDED_BY(lock_);
  // Classic (start/end) subscribers between their start and end.
  std::vector<std::pair<const void*, VaRange>> classic_windows_ GUARDED_BY(lock_);
  std::vector<OracleViolation> violations_ GUARDED_BY(lock_);
  // PTE tables khugepaged detached, by (mm, PMD address): while the PMD is
  // none, the CPU mapping of an address is what the table says (spec E9:
  // outside the collapsed sub-range it is unchanged; inside it, E2 already
  // required the devices to drop their translations).
  // With them, the values of the collapsing pages when the table was
  // detached: what the new mapping must read (no write lost).
  struct Detached {
    PageTable* table;
    VaRange collapsing;
    std::vector<std::optional<uint64_t>> values;  // one per page of `collapsing`
  };
  std::map<std::pair<const MmStruct*, uint64_t>, Detached> detached_ GUARDED_BY(lock_);
  // Ids of the mms whose notifiers were released (E7).
  absl::btree_set<uint64_t> released_ GUARDED_BY(lock_);
  // E2/E6 for TLBs: present PTEs changed (cleared, re-pointed, downgraded)
  // whose TLB flush has not happened yet (address -> size), kept only for
  // mms with a device that walks the CPU page tables. Until that flush, a
  // walker may legally still use the old entry, also after a racing fault
  // installed a new one (as a CPU TLB may); after it, it may not.
  std::map<const MmStruct*, absl::btree_map<uint64_t, uint64_t>> unflushed_ GUARDED_BY(lock_);
  size_t acknowledged_ GUARDED_BY(lock_) = 0;
};

}  // namespace smm
