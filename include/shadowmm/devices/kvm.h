// File: shadowmm/devices/kvm.h
//
// A KVM-style shadow page table (virt/kvm/kvm_main.c: the mmu notifier
// callbacks, mmu_invalidate_in_progress / mmu_invalidate_seq,
// mmu_invalidate_retry_gfn; arch/x86/kvm/mmu: kvm_faultin_pfn and the
// fault's retry). A classic notifier over the whole mm:
//
//   invalidate_range_start: in_progress++, widen the in-progress range,
//                           zap the SPTEs of the range
//   invalidate_range_end:   seq++, in_progress--
//   fault:                  seq snapshot; resolve the page (GUP-like, under
//                           mmap_lock read); take mmu_lock; retry if an
//                           invalidation covering it is in progress or the
//                           seq moved; install the SPTE
//
// Aging ops report and clear the SPTEs' accessed bits; release zaps all.

#pragma once

#include <atomic>
#include <cstdint>

#include "shadowmm/base/lock.h"
#include "shadowmm/devices/device_page_table.h"
#include "shadowmm/devices/secondary_mmu.h"

namespace smm {

class Kvm : public SecondaryMmu {
 public:
  Kvm(std::string name, MmStruct* mm);
  ~Kvm() override;

  int attach(VirtAddr start, uint64_t len, bool block_thp) override;
  int detach() override;
  int fault(VirtAddr start, uint64_t len, bool write) override;
  int read(VirtAddr addr, uint64_t* value) override;
  int write(VirtAddr addr, uint64_t value) override;

  std::vector<const void*> subscriptions() const override { return {&notifier_}; }
  bool is_classic(const void* sub) const override { return sub == &notifier_; }
  std::vector<std::pair<std::string, uint64_t>> dump_counters() override EXCLUDES(mmu_lock_);

 protected:
  void with_table(const std::function<void(const DevicePageTable&)>& fn) override EXCLUDES(mmu_lock_);

 private:
  // A guest access through the SPTEs, faulting the page in as needed.
  int access(VirtAddr addr, bool write, uint64_t* value);
  static int start_cb(MmuNotifier* sub, const MmuNotifierRange* range);
  static void end_cb(MmuNotifier* sub, const MmuNotifierRange* range);
  static void release_cb(MmuNotifier* sub, MmStruct* mm);
  static int clear_flush_young_cb(MmuNotifier* sub, MmStruct* mm, VirtAddr start, VirtAddr end);
  static int test_young_cb(MmuNotifier* sub, MmStruct* mm, VirtAddr addr);
  static const MmuNotifierOps kOps;

  // Resolves `addr` for the guest (hva_to_pfn): faults it in if needed.
  int faultin_pfn(VirtAddr addr, bool write, DevTranslation* t);
  int fault_page(VirtAddr addr, bool write);
  bool invalidate_retry_locked(uint64_t seq, VirtAddr addr) REQUIRES(mmu_lock_);

  SpinLock mmu_lock_{LockRank::kDevice, "kvm_mmu_lock"};
  DevicePageTable spte_ GUARDED_BY(mmu_lock_);
  std::atomic<uint64_t> mmu_invalidate_seq_{0};
  int64_t mmu_invalidate_in_progress_ GUARDED_BY(mmu_lock_) = 0;
  VaRange mmu_invalidate_range_ GUARDED_BY(mmu_lock_){};
  // Accessed bits of the SPTEs (by page address).
  absl::btree_map<uint64_t, bool> young_ GUARDED_BY(mmu_lock_);
  MmuNotifier notifier_;
  bool attached_ = false;
  uint64_t retries_ = 0;
};

}  // namespace smm
