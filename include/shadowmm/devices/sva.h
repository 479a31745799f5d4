// File: shadowmm/devices/sva.h
//
// A device that shares the CPU page tables (Shared Virtual Addressing: the
// IOMMU walks the process's page tables itself; drivers/iommu/iommu-sva.c
// and the arm-smmu-v3 / intel SVA notifiers that [S5] moved to
// invalidate_secondary_tlbs).
//
// The device caches translations in an IOTLB (4 KiB entries here). Its
// hardware walker fills the IOTLB from the CPU page tables whenever the
// device touches an address, and a walker thread keeps touching the working
// set (every page the device accessed) at any time, as real hardware
// prefetches and re-walks. Nothing tells the walker to stop: the only thing
// that keeps the IOTLB coherent is an invalidation *after* the PTE changed.
//
//   callback=secondary_tlbs  (the default, the [S5] driver) registers only
//       arch_invalidate_secondary_tlbs, called at every CPU TLB flush of the
//       mm, i.e. after the PTE change and before the frame is freed.
//   callback=start_end  (the bug pattern) invalidates in
//       invalidate_range_start/_end instead. The walker may refill between
//       start and the PTE change; the model makes it do so right after the
//       start flush (the worst moment, deterministic), so the stale entry
//       survives the re-pointing of a PTE (E6) or the free of a frame (E5).
//
// A missing translation at access time is a page request (PRI/IOPF): the
// fault is resolved with handle_mm_fault and the walk retried.
//
// Deviation from Linux: IOTLB entries are 4 KiB whatever the CPU mapping's
// size (an SMMU caches block entries too), which keeps the E5/E6 checks
// exact; the start_end driver's refill at its start flush is a chosen
// interleaving, the worst one, not something hardware must do.

#pragma once

#include <absl/container/btree_set.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "shadowmm/base/lock.h"
#include "shadowmm/devices/device_page_table.h"
#include "shadowmm/devices/secondary_mmu.h"

namespace smm {

class Sva : public SecondaryMmu {
 public:
  enum class Callback { kSecondaryTlbs, kStartEnd };
  // `walk_period_ns`: how often the walker thread re-walks the working set
  // (0 = no walker thread).
  Sva(std::string name, MmStruct* mm, Callback callback, uint64_t walk_period_ns);
  ~Sva() override;

  int attach(VirtAddr start, uint64_t len, bool block_thp) override;
  int detach() override;
  int fault(VirtAddr start, uint64_t len, bool write) override;
  int read(VirtAddr addr, uint64_t* value) override;
  int write(VirtAddr addr, uint64_t value) override;

  std::vector<const void*> subscriptions() const override { return {&notifier_}; }
  bool is_classic(const void* sub) const override { return sub == &notifier_ && callback_ == Callback::kStartEnd; }
  bool walks_cpu_page_tables() const override { return true; }
  std::vector<std::pair<std::string, uint64_t>> dump_counters() override EXCLUDES(iotlb_lock_);

  // Page requests for one access before it gives up with -EBUSY (an
  // access that keeps losing its page to concurrent zaps).
  static constexpr int kMaxPageRequests = 64;

  // One pass of the hardware walker over the working set (the thread's
  // body; tests call it to place a walk at a chosen moment).
  void walk_working_set() EXCLUDES(iotlb_lock_);

 protected:
  void with_table(const std::function<void(const DevicePageTable&)>& fn) override EXCLUDES(iotlb_lock_);

 private:
  static void secondary_tlbs_cb(MmuNotifier* sub, MmStruct* mm, VirtAddr start, VirtAddr end);
  static int start_cb(MmuNotifier* sub, const MmuNotifierRange* range);
  static void end_cb(MmuNotifier* sub, const MmuNotifierRange* range);
  static void release_cb(MmuNotifier* sub, MmStruct* mm);
  static const MmuNotifierOps kSecondaryTlbsOps;
  static const MmuNotifierOps kStartEndOps;

  // The hardware walk of `addr`: reads the CPU page tables (locklessly, in
  // the page-table SRCU) and fills the IOTLB. Returns the translation, or
  // nothing when the CPU has no usable mapping (a page request follows).
  std::optional<DevTranslation> walk_and_fill_locked(VirtAddr addr, bool write) REQUIRES(iotlb_lock_);
  void refill_range_locked(VaRange r) REQUIRES(iotlb_lock_);
  size_t flush_iotlb(VaRange r) EXCLUDES(iotlb_lock_);
  int access(VirtAddr addr, bool write, uint64_t* value);
  void walker_thread();

  const Callback callback_;
  const uint64_t walk_period_ns_;
  MmuNotifier notifier_;
  bool attached_ = false;  // changed by attach/detach, which no verb races
  // The IOTLB; invalidated from under the CPU's page-table locks.
  mutable SpinLock iotlb_lock_{LockRank::kSecondaryTlb, "iotlb"};
  DevicePageTable iotlb_ GUARDED_BY(iotlb_lock_);
  // Pages the device touched: what the walker keeps re-walking.
  absl::btree_set<uint64_t> working_set_ GUARDED_BY(iotlb_lock_);
  uint64_t fills_ GUARDED_BY(iotlb_lock_) = 0;
  uint64_t invalidations_ GUARDED_BY(iotlb_lock_) = 0;
  std::atomic<uint64_t> page_requests_{0};
  std::atomic<bool> stop_{true};
  std::thread walker_;
};

}  // namespace smm
