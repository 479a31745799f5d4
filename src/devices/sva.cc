// File: src/devices/sva.cc
//
// The SVA device (see sva.h): drivers/iommu/iommu-sva.c (iommu_sva_bind,
// the page-request handler iommu_sva_handle_mm) and the SVA mmu notifiers
// of arm-smmu-v3-sva.c / intel/svm.c, which [S5] turned from
// invalidate_range into arch_invalidate_secondary_tlbs.

#include "shadowmm/devices/sva.h"

#include <chrono>

#include "shadowmm/base/lockdep.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/mm/gup.h"
#include "shadowmm/pgtable/pgtable.h"

namespace smm {

const MmuNotifierOps Sva::kSecondaryTlbsOps = {
    .release = &Sva::release_cb,
    .arch_invalidate_secondary_tlbs = &Sva::secondary_tlbs_cb,
};

const MmuNotifierOps Sva::kStartEndOps = {
    .release = &Sva::release_cb,
    .invalidate_range_start = &Sva::start_cb,
    .invalidate_range_end = &Sva::end_cb,
};

Sva::Sva(std::string name, MmStruct* mm, Callback callback, uint64_t walk_period_ns)
    : SecondaryMmu(std::move(name), "sva", mm), callback_(callback), walk_period_ns_(walk_period_ns) {
  notifier_.ops = callback == Callback::kSecondaryTlbs ? &kSecondaryTlbsOps : &kStartEndOps;
  notifier_.priv = this;
}

Sva::~Sva() { detach(); }

int Sva::attach(VirtAddr, uint64_t, bool block_thp) {
  // iommu_sva_bind_device binds the whole mm.
  if (int ret = attach_classic(&notifier_, block_thp, &attached_)) return ret;
  if (walk_period_ns_) {
    stop_.store(false);
    walker_ = std::thread([this] { walker_thread(); });
  }
  return 0;
}

int Sva::detach() {
  if (!attached_) return -EINVAL;
  if (walker_.joinable()) {
    stop_.store(true);
    walker_.join();
  }
  detach_classic(&notifier_, &attached_);
  SpinLocker l(iotlb_lock_);
  iotlb_.clear();
  working_set_.clear();
  return 0;
}

// ---- the IOTLB and the hardware walker ----

std::optional<DevTranslation> Sva::walk_and_fill_locked(VirtAddr addr, bool write) {
  MmStruct* m = mm();
  // The hardware reads the CPU page tables with no CPU lock; the SRCU read
  // section stands for the guarantee that a table is not freed under a
  // walk (tables are freed after the IOTLB/paging-structure flush).
  SrcuReadLock rcu(m->machine().pgtable_srcu());
  for (unsigned level = PUD_LEVEL;; level--) {
    PtSlot slot = pt_lookup(m, addr, level);
    if (!slot) return std::nullopt;
    Pte e = slot.get();
    if (e.is_table()) {
      if (level == PTE_LEVEL) return std::nullopt;
      continue;
    }
    if (!e.is_leaf() || e.protnone() || !e.readable()) return std::nullopt;
    if (write && !e.writable()) return std::nullopt;
    Pfn pfn = e.pfn() + ((addr.value() & (level_size(level) - 1)) >> PAGE_SHIFT);
    DevTranslation t{addr, PAGE_SIZE, pfn, m->machine().mem().generation(pfn), e.writable()};
    report_walker_fill(t);
    iotlb_.insert(t);
    fills_++;
    m->machine().stats().count(VmEvent::iotlb_fills);
    return t;
  }
}

void Sva::refill_range_locked(VaRange r) {
  for (auto it = working_set_.lower_bound(r.start.value()); it != working_set_.end() && *it < r.end.value(); ++it)
    if (!iotlb_.lookup(VirtAddr(*it))) walk_and_fill_locked(VirtAddr(*it), false);
}

void Sva::walk_working_set() {
  MmStruct* m = mm();
  if (!m->mmget_not_zero()) return;
  // Like the hardware, with no CPU lock at all: the page-table SRCU of each
  // walk keeps the tables it reads alive.
  {
    SpinLocker l(iotlb_lock_);
    refill_range_locked({VirtAddr(0), VirtAddr(TASK_SIZE)});
  }
  m->mmput();
}

void Sva::walker_thread() {
  while (!stop_.load()) {
    walk_working_set();
    std::this_thread::sleep_for(std::chrono::nanoseconds(walk_period_ns_));
  }
}

size_t Sva::flush_iotlb(VaRange r) {
  SpinLocker l(iotlb_lock_);
  invalidations_++;
  mm()->machine().stats().count(VmEvent::iotlb_invalidations);
  return iotlb_.erase_range(r);
}

// ---- the notifier callbacks ----

void Sva::secondary_tlbs_cb(MmuNotifier* sub, MmStruct*, VirtAddr start, VirtAddr end) {
  // Called from the CPU TLB flush, under the page-table lock: never sleeps.
  Sva* s = static_cast<Sva*>(sub->priv);
  s->flush_iotlb({start, end});
  s->record_event("secondary_tlbs", start, end, false);
}

int Sva::start_cb(MmuNotifier* sub, const MmuNotifierRange* range) {
  Sva* s = static_cast<Sva*>(sub->priv);
  s->flush_iotlb(range->range());
  s->record_event(*range);
  // The bug this driver has: nothing stops the hardware from walking the
  // still-unchanged PTEs right now. The model makes it walk here, the worst
  // moment, so the outcome does not depend on timing.
  SpinLocker l(s->iotlb_lock_);
  s->refill_range_locked(range->range());
  return 0;
}

void Sva::end_cb(MmuNotifier* sub, const MmuNotifierRange* range) {
  static_cast<Sva*>(sub->priv)->flush_iotlb(range->range());
}

void Sva::release_cb(MmuNotifier* sub, MmStruct*) {
  // The mm is going away: the device must stop walking it (the driver
  // clears the PASID entry). Only the IOTLB is modelled.
  Sva* s = static_cast<Sva*>(sub->priv);
  SpinLocker l(s->iotlb_lock_);
  s->iotlb_.clear();
  s->working_set_.clear();
}

// ---- device accesses ----

int Sva::access(VirtAddr addr, bool write, uint64_t* value) {
  if (!addr.is_aligned(PAGE_SIZE) || addr.value() >= TASK_SIZE) return -EINVAL;
  if (!attached_) return -EINVAL;
  MmStruct* m = mm();
  if (!m->mmget_not_zero()) return -EINVAL;
  MmOpScope op(write ? "device write" : "device read");
  int ret = 0;
  for (int attempt = 0;; attempt++) {
    {
      ReadLocker rl(m->mmap_lock);
      SpinLocker l(iotlb_lock_);
      working_set_.insert(addr.value());
      std::optional<DevTranslation> t;
      if (const DevTranslation* hit = iotlb_.lookup(addr); hit && (!write || hit->writable)) t = *hit;
      if (!t) t = walk_and_fill_locked(addr, write);
      if (t) {
        if (value) {
          report_access(*t, write);
          auto v = m->machine().mem().value(t->pfn);
          if (write)
            v.store(*value, std::memory_order_relaxed);
          else
            *value = v.load(std::memory_order_relaxed);
        }
        break;
      }
    }
    // A page request: the IOMMU driver resolves it like a CPU fault, and
    // the device replays the access (a racing zap may need another).
    page_requests_.fetch_add(1, std::memory_order_relaxed);
    if (attempt == kMaxPageRequests) {
      ret = -EBUSY;
      break;
    }
    ReadLocker rl(m->mmap_lock);
    int err = faultin_page_range(m, addr, addr + PAGE_SIZE, write);
    if (err) {
      ret = err == -EINVAL && write ? -EPERM : -EFAULT;
      break;
    }
  }
  m->mmput();
  return ret;
}

int Sva::fault(VirtAddr start, uint64_t len, bool write) {
  if (!start.is_aligned(PAGE_SIZE) || len == 0) return -EINVAL;
  VirtAddr end = start + align_up(len, PAGE_SIZE);
  if (end < start || end.value() > TASK_SIZE) return -EINVAL;
  for (VirtAddr a = start; a < end; a += PAGE_SIZE)
    if (int ret = access(a, write, nullptr)) return ret;
  return 0;
}

int Sva::read(VirtAddr addr, uint64_t* value) { return access(addr, false, value); }
int Sva::write(VirtAddr addr, uint64_t value) { return access(addr, true, &value); }

// ---- observation ----

void Sva::with_table(const std::function<void(const DevicePageTable&)>& fn) {
  SpinLocker l(iotlb_lock_);
  fn(iotlb_);
}

std::vector<std::pair<std::string, uint64_t>> Sva::dump_counters() {
  SpinLocker l(iotlb_lock_);
  return {{"iotlb_entries", iotlb_.size()},
          {"iotlb_fills", fills_},
          {"iotlb_invalidations", invalidations_},
          {"working_set_pages", working_set_.size()},
          {"page_requests", page_requests_.load(std::memory_order_relaxed)}};
}

}  // namespace smm
