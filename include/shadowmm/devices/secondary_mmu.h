// File: shadowmm/devices/secondary_mmu.h
//
// The interface of the reference secondary MMUs (DESIGN.md: mirror, pinned,
// gpus, sva, kvm). Each keeps its own device page table (address -> frame,
// permission, size) behind its own lock, reports the invalidations it
// received and its fatal faults, and tells its device observers (the
// coherence oracle, which sits on the floor above) what it establishes and
// uses, through the DeviceObserver interface below.
//
// Lifetime: a device belongs to the mm that was current when it was created
// (it holds an mmgrab on it); detach() or destruction removes its
// subscriptions. Verbs act on that mm even after it exited (they then fail
// with -EINVAL, as test_hmm answers when mmget_not_zero fails).

#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/base/types.h"
#include "shadowmm/notifier/mmu_notifier.h"

namespace smm {

class DevicePageTable;
class MmStruct;
class Machine;
class SecondaryMmu;
struct MmuIntervalNotifier;

// One translation held by a device: [addr, addr + size) -> pfn...
struct DevTranslation {
  VirtAddr addr;
  uint64_t size = PAGE_SIZE;
  Pfn pfn;              // frame of addr
  uint16_t gen = 0;     // the frame's generation when it was established
  bool writable = false;
};

// One invalidation as a device received it.
struct DeviceEvent {
  std::string event;  // "unmap", "clear", ..., "secondary_tlbs"
  VirtAddr start;
  VirtAddr end;
  bool blockable = true;
  // For a gpus group: the wall time the notifier spent in it (ns).
  uint64_t wall_ns = 0;
};

// What a device reports about its translations. The coherence oracle
// implements it; a test may implement it to record what a driver does.
// A device reports to every observer of its machine (Machine::add_observer)
// that also implements DeviceObserver, as installed when the device was
// created. Calls come from any device thread, some under the device's own
// lock: implementations must be thread-safe and must not call back into the
// device while handling them.
class DeviceObserver {
 public:
  virtual ~DeviceObserver() = default;
  // The device registered its subscriptions (attach) / removed them (detach).
  virtual void on_device_attached(SecondaryMmu* dev) { (void)dev; }
  virtual void on_device_detached(SecondaryMmu* dev) { (void)dev; }
  // An interval subscriber programs `t` after read_retry(sub, seq) said no.
  virtual void on_interval_establish(SecondaryMmu* dev, MmuIntervalNotifier* sub, uint64_t seq,
                                     const DevTranslation& t) {
    (void)dev, (void)sub, (void)seq, (void)t;
  }
  // A start/end (classic) subscriber programs `t`.
  virtual void on_classic_establish(SecondaryMmu* dev, const void* sub, const DevTranslation& t) {
    (void)dev, (void)sub, (void)t;
  }
  // The device uses `t` for an access.
  virtual void on_device_access(SecondaryMmu* dev, const DevTranslation& t, bool write) {
    (void)dev, (void)t, (void)write;
  }
  // A TLB that walks the CPU page tables fills `t` from them (sva).
  virtual void on_walker_fill(SecondaryMmu* dev, const DevTranslation& t) { (void)dev, (void)t; }
};

class SecondaryMmu {
 public:
  SecondaryMmu(std::string name, std::string kind, MmStruct* mm);
  virtual ~SecondaryMmu();
  SecondaryMmu(const SecondaryMmu&) = delete;
  SecondaryMmu& operator=(const SecondaryMmu&) = delete;

  const std::string& name() const { return name_; }
  const std::string& kind() const { return kind_; }
  MmStruct* mm() const { return mm_; }
  Machine& machine() const;

  // Scenario verbs; each returns 0 or a negative errno.
  virtual int attach(VirtAddr start, uint64_t len, bool block_thp) = 0;
  virtual int detach() = 0;
  virtual int set_flags(bool block_thp);
  virtual int fault(VirtAddr start, uint64_t len, bool write) = 0;
  virtual int read(VirtAddr addr, uint64_t* value) = 0;
  virtual int write(VirtAddr addr, uint64_t value) = 0;

  // ---- observation (thread-safe) ----
  // The invalidations received since the last call.
  std::vector<DeviceEvent> take_events() EXCLUDES(events_lock_);
  uint64_t device_faults() const EXCLUDES(events_lock_);
  // By default these look at the device's one page table (with_table).
  // 4 KiB pages the device can currently reach.
  virtual uint64_t mapped_pages();
  // Every translation (for the oracle's free check, E5).
  virtual void for_each_translation(const std::function<void(const DevTranslation&)>& fn);
  // Does the device hold a usable translation inside `r`? (E2)
  virtual bool has_translation_in(VaRange r);
  // The translation the device holds for `addr`, if any.
  virtual std::optional<DevTranslation> cached_translation(VirtAddr addr);
  // A translation reaching a frame of [first, first + nr), if any (E5).
  virtual std::optional<DevTranslation> translation_of_pfns(Pfn first, uint64_t nr);
  // The notifier subscriptions that deliver this device's callbacks.
  virtual std::vector<const void*> subscriptions() const = 0;
  // Is `sub` one of its classic (start/end) subscriptions?
  virtual bool is_classic(const void* sub) const { (void)sub; return false; }
  // Does the device walk the CPU page tables itself (an IOTLB, sva)? Such a
  // device may refill at any time and is invalidated through
  // invalidate_secondary_tlbs (E5, E6) rather than at range start (E2).
  virtual bool walks_cpu_page_tables() const { return false; }
  // The device's own log of what it did since the last call, for `dump
  // devices` (the gpus group logs its passes).
  virtual std::vector<std::string> take_trace() { return {}; }
  // Device-specific counters for `dump devices`.
  virtual std::vector<std::pair<std::string, uint64_t>> dump_counters() { return {}; }

 protected:
  // Runs `fn` on the device's page table (its TLB, its SPTEs) under the lock
  // that guards it. The observation functions above are built on it; a
  // device with several tables (gpus) overrides them instead.
  virtual void with_table(const std::function<void(const DevicePageTable&)>& fn) = 0;
  // Called by implementations when an invalidation reaches them.
  void record_event(const MmuNotifierRange& range, uint64_t wall_ns = 0) EXCLUDES(events_lock_);
  void record_event(const char* event, VirtAddr start, VirtAddr end, bool blockable, uint64_t wall_ns = 0)
      EXCLUDES(events_lock_);
  void count_device_fault() EXCLUDES(events_lock_);
  // Reports to the device's observers (DeviceObserver above).
  void report_attached();
  void report_detached();
  void report_interval_establish(MmuIntervalNotifier* sub, uint64_t seq, const DevTranslation& t) {
    for (DeviceObserver* o : observers_) o->on_interval_establish(this, sub, seq, t);
  }
  void report_classic_establish(const void* sub, const DevTranslation& t) {
    for (DeviceObserver* o : observers_) o->on_classic_establish(this, sub, t);
  }
  void report_access(const DevTranslation& t, bool write) {
    for (DeviceObserver* o : observers_) o->on_device_access(this, t, write);
  }
  void report_walker_fill(const DevTranslation& t) {
    for (DeviceObserver* o : observers_) o->on_walker_fill(this, t);
  }
  // attach/detach of a device bound to the whole mm through a classic
  // notifier (kvm, sva): registration under an mmget, the observers told.
  // BLOCK_THP is for interval notifiers: -EINVAL; attached twice: -EBUSY.
  int attach_classic(MmuNotifier* sub, bool block_thp, bool* attached);
  // -EINVAL when not attached; afterwards no callback of `sub` runs.
  int detach_classic(MmuNotifier* sub, bool* attached);
  // Simulated device work (a TLB invalidation): sleeps `ns` precisely, or
  // busy-waits when the caller may not sleep (a non-blockable range).
  static void device_delay(uint64_t ns, bool may_sleep = true);

 private:
  std::string name_;
  std::string kind_;
  MmStruct* mm_;
  // The machine's observers that are device observers, when the device was
  // created; fixed for its lifetime, so device threads read it unlocked.
  std::vector<DeviceObserver*> observers_;
  // A spinlock: invalidations are recorded from callbacks that may not sleep.
  mutable SpinLock events_lock_{LockRank::kDeviceEvents, "device_events"};
  std::vector<DeviceEvent> events_ GUARDED_BY(events_lock_);
  uint64_t device_faults_ GUARDED_BY(events_lock_) = 0;
};

}  // namespace smm
