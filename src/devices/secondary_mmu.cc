// File: src/devices/secondary_mmu.cc
//
// What every reference device shares: identity, its mm, the event log, the
// device-fault count, and simulated device latency.

#include "shadowmm/devices/secondary_mmu.h"

#include <chrono>
#include <thread>

#include "shadowmm/base/lockdep.h"
#include "shadowmm/devices/device_page_table.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

SecondaryMmu::SecondaryMmu(std::string name, std::string kind, MmStruct* mm)
    : name_(std::move(name)), kind_(std::move(kind)), mm_(mm) {
  mm_->mmgrab();
  for (MmObserver* o : mm_->machine().observers())
    if (auto* d = dynamic_cast<DeviceObserver*>(o)) observers_.push_back(d);
}

SecondaryMmu::~SecondaryMmu() { mm_->mmdrop(); }

Machine& SecondaryMmu::machine() const { return mm_->machine(); }

int SecondaryMmu::set_flags(bool) { return -EINVAL; }

uint64_t SecondaryMmu::mapped_pages() {
  uint64_t n = 0;
  with_table([&](const DevicePageTable& pt) { n = pt.pages(); });
  return n;
}

void SecondaryMmu::for_each_translation(const std::function<void(const DevTranslation&)>& fn) {
  with_table([&](const DevicePageTable& pt) { pt.for_each(fn); });
}

bool SecondaryMmu::has_translation_in(VaRange r) {
  bool any = false;
  with_table([&](const DevicePageTable& pt) { any = pt.any_in(r); });
  return any;
}

std::optional<DevTranslation> SecondaryMmu::cached_translation(VirtAddr addr) {
  std::optional<DevTranslation> t;
  with_table([&](const DevicePageTable& pt) { t = pt.get(addr); });
  return t;
}

std::optional<DevTranslation> SecondaryMmu::translation_of_pfns(Pfn first, uint64_t nr) {
  std::optional<DevTranslation> t;
  with_table([&](const DevicePageTable& pt) { t = pt.get_pfn_range(first, nr); });
  return t;
}

std::vector<DeviceEvent> SecondaryMmu::take_events() {
  SpinLocker l(events_lock_);
  std::vector<DeviceEvent> out;
  out.swap(events_);
  return out;
}

uint64_t SecondaryMmu::device_faults() const {
  SpinLocker l(events_lock_);
  return device_faults_;
}

void SecondaryMmu::record_event(const MmuNotifierRange& range, uint64_t wall_ns) {
  record_event(mmu_notify_event_name(range.event), range.start, range.end, range.blockable(), wall_ns);
}

void SecondaryMmu::record_event(const char* event, VirtAddr start, VirtAddr end, bool blockable,
                                uint64_t wall_ns) {
  SpinLocker l(events_lock_);
  events_.push_back(DeviceEvent{event, start, end, blockable, wall_ns});
}

void SecondaryMmu::count_device_fault() {
  SpinLocker l(events_lock_);
  device_faults_++;
}

void SecondaryMmu::report_attached() {
  for (DeviceObserver* o : observers_) o->on_device_attached(this);
}

void SecondaryMmu::report_detached() {
  for (DeviceObserver* o : observers_) o->on_device_detached(this);
}

int SecondaryMmu::attach_classic(MmuNotifier* sub, bool block_thp, bool* attached) {
  if (block_thp) return -EINVAL;
  if (*attached) return -EBUSY;
  if (!mm_->mmget_not_zero()) return -EINVAL;
  int ret = mmu_notifier_register(sub, mm_);
  mm_->mmput();
  if (ret) return ret;
  *attached = true;
  report_attached();
  return 0;
}

int SecondaryMmu::detach_classic(MmuNotifier* sub, bool* attached) {
  if (!*attached) return -EINVAL;
  mmu_notifier_unregister(sub, mm_);
  *attached = false;
  report_detached();
  return 0;
}

void SecondaryMmu::device_delay(uint64_t ns, bool may_sleep) {
  if (!ns) return;
  if (may_sleep) might_sleep("device TLB invalidation");
  // sleep_for overshoots by tens of microseconds: sleep most of it, spin the rest.
  auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  if (may_sleep && ns > 200000) std::this_thread::sleep_for(std::chrono::nanoseconds(ns - 100000));
  while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
}

}  // namespace smm
