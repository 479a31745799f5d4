// File: shadowmm/devices/mirror.h
//
// An HMM device mirror (lib/test_hmm.c's dmirror): one interval notifier, a
// device page table behind one driver mutex, replayable faults through
// mmu_interval_read_begin / hmm_range_fault / mmu_interval_read_retry
// (spec c.5). The `pinned` kind (no replayable faults) derives from it.

#pragma once

#include <cstdint>

#include "shadowmm/base/lock.h"
#include "shadowmm/devices/device_page_table.h"
#include "shadowmm/devices/secondary_mmu.h"
#include "shadowmm/notifier/interval_notifier.h"

namespace smm {

class Mirror : public SecondaryMmu {
 public:
  // `latency_ns`: the cost of one device TLB invalidation.
  Mirror(std::string name, MmStruct* mm, uint64_t latency_ns, std::string kind = "mirror");
  ~Mirror() override;

  int attach(VirtAddr start, uint64_t len, bool block_thp) override;
  int detach() override;
  int set_flags(bool block_thp) override;
  int fault(VirtAddr start, uint64_t len, bool write) override;
  int read(VirtAddr addr, uint64_t* value) override;
  int write(VirtAddr addr, uint64_t value) override;

  std::vector<const void*> subscriptions() const override { return {&notifier_}; }
  // The driver lock (tests hold it to make a non-blocking callback fail).
  Mutex& driver_lock() RETURN_CAPABILITY(lock_) { return lock_; }

  // Pages per hmm_range_fault call (test_hmm's pfn array).
  static constexpr uint64_t kFaultChunkPages = 32;
  // How long a fault keeps retrying after -EBUSY (test_hmm: 1 s).
  static constexpr uint64_t kFaultTimeoutNs = 1000000000;
  // Faults one device access may take before it gives up with -EBUSY.
  static constexpr int kMaxAccessFaults = 64;

 protected:
  // Faults [start, end) (page aligned, inside the attached interval).
  int fault_range(VirtAddr start, VirtAddr end, bool write);
  // What a derived device changes: its notifier ops, where a translation
  // is programmed (under the driver lock, after read_retry said no), where
  // an access looks it up, and what detach drops.
  virtual const MmuIntervalNotifierOps* ops() const { return &kOps; }
  virtual void program_locked(const DevTranslation& t) REQUIRES(lock_) { pt_.insert(t); }
  virtual std::optional<DevTranslation> lookup_locked(VirtAddr addr) REQUIRES(lock_) { return pt_.get(addr); }
  void with_table(const std::function<void(const DevicePageTable&)>& fn) override EXCLUDES(lock_);
  virtual void clear_locked() REQUIRES(lock_) { pt_.clear(); }
  // One device access through the page table; faults first when
  // `may_fault` (replayable faults), else a missing translation is a fatal
  // device fault (-EFAULT).
  int access(VirtAddr addr, bool write, uint64_t* value, bool may_fault);
  // The driver lock for an invalidation: taken on a blockable range,
  // tried on a non-blockable one (false: the callback must fail).
  bool lock_for(const MmuNotifierRange* range) TRY_ACQUIRE(true, lock_);
  bool attached() const { return attached_; }
  VaRange interval() const { return interval_; }
  uint64_t latency_ns() const { return latency_ns_; }

  // The driver lock: the invalidate callback takes it around set_seq.
  Mutex lock_{LockRank::kDevice, "dmirror_mutex"};
  MmuIntervalNotifier notifier_;

 private:
  static bool invalidate_cb(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq);
  bool invalidate(const MmuNotifierRange* range, uint64_t cur_seq);
  static const MmuIntervalNotifierOps kOps;

  DevicePageTable pt_ GUARDED_BY(lock_);
  bool attached_ = false;
  VaRange interval_{};
  uint64_t latency_ns_;
};

// A device without replayable faults (the scenario's `pinned`): `fault`
// pins translations up front (the driver's get_user_pages at bind time);
// an access with no usable translation is a fatal device fault (-EFAULT,
// counted), never a re-fault. Such a device needs BLOCK_THP ([S1]) so that
// khugepaged does not invalidate what it cannot fault back.
class Pinned : public Mirror {
 public:
  Pinned(std::string name, MmStruct* mm, uint64_t latency_ns)
      : Mirror(std::move(name), mm, latency_ns, "pinned") {}
  int read(VirtAddr addr, uint64_t* value) override { return access(addr, false, value, false); }
  int write(VirtAddr addr, uint64_t value) override { return access(addr, true, &value, false); }
};

}  // namespace smm
