// File: src/devices/mirror.cc
//
// The HMM mirror device (lib/test_hmm.c: dmirror_interval_invalidate,
// dmirror_range_fault, dmirror_fault, dmirror_do_read/write).
//
// Why it is coherent (spec c.5): every translation is programmed under the
// driver mutex after mmu_interval_read_retry() said the snapshot is still
// valid, and the invalidate callback sets the seq and erases translations
// under the same mutex. A callback that ran before we took the mutex made
// read_retry fail; one that waits for the mutex erases what we programmed.

#include "shadowmm/devices/mirror.h"

#include <chrono>
#include <vector>

#include "shadowmm/hmm/hmm.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/mm/mmap_lock.h"

namespace smm {

const MmuIntervalNotifierOps Mirror::kOps = {
    .invalidate = &Mirror::invalidate_cb,
};

Mirror::Mirror(std::string name, MmStruct* mm, uint64_t latency_ns, std::string kind)
    : SecondaryMmu(std::move(name), std::move(kind), mm), latency_ns_(latency_ns) {
  notifier_.priv = this;
}

Mirror::~Mirror() { detach(); }

int Mirror::attach(VirtAddr start, uint64_t len, bool block_thp) {
  if (attached_) return -EBUSY;
  MmStruct* m = mm();
  if (!m->mmget_not_zero()) return -EINVAL;
  int ret;
  if (block_thp) {
    MmapWriteLock l(m);
    ret = mmu_interval_notifier_insert_locked_flags(&notifier_, m, start, len, ops(),
                                                    MMU_INTERVAL_NOTIFIER_BLOCK_THP);
  } else {
    ret = mmu_interval_notifier_insert(&notifier_, m, start, len, ops());
  }
  m->mmput();
  if (ret) return ret;
  attached_ = true;
  interval_ = {start, start + len};
  report_attached();
  return 0;
}

int Mirror::detach() {
  if (!attached_) return -EINVAL;
  mmu_interval_notifier_remove(&notifier_);
  attached_ = false;
  report_detached();
  MutexLocker l(lock_);
  clear_locked();
  return 0;
}

int Mirror::set_flags(bool block_thp) {
  if (!attached_) return -EINVAL;
  MmStruct* m = mm();
  if (!m->mmget_not_zero()) return -EINVAL;
  int ret;
  {
    MmapWriteLock l(m);
    ret = mmu_interval_notifier_set_flags_locked(&notifier_, block_thp ? MMU_INTERVAL_NOTIFIER_BLOCK_THP : 0);
  }
  m->mmput();
  return ret;
}

bool Mirror::invalidate_cb(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
  return static_cast<Mirror*>(sub->priv)->invalidate(range, cur_seq);
}

// Conditional locking is beyond the analysis; TRY_ACQUIRE tells the callers.
bool Mirror::lock_for(const MmuNotifierRange* range) NO_THREAD_SAFETY_ANALYSIS {
  if (range->blockable()) {
    lock_.lock();
    return true;
  }
  return lock_.try_lock();
}

bool Mirror::invalidate(const MmuNotifierRange* range, uint64_t cur_seq) {
  // Migrations this device started update its table themselves.
  if (range->event == MMU_NOTIFY_MIGRATE && range->owner == this) return true;
  if (!lock_for(range)) return false;
  mmu_interval_set_seq(&notifier_, cur_seq);
  pt_.erase_range(range->range().intersect(interval_));
  record_event(*range);
  // The device's own TLB invalidation, waited for under the mutex.
  device_delay(latency_ns_, range->blockable());
  lock_.unlock();
  return true;
}

int Mirror::fault_range(VirtAddr start, VirtAddr end, bool write) {
  MmStruct* m = mm();
  std::vector<uint64_t> pfns;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(kFaultTimeoutNs);
  for (VirtAddr addr = start; addr < end;) {
    VirtAddr next = std::min(end, addr + kFaultChunkPages * PAGE_SIZE);
    pfns.assign((next - addr) >> PAGE_SHIFT, 0);
    HmmRange range;
    range.notifier = &notifier_;
    range.start = addr;
    range.end = next;
    range.hmm_pfns = pfns.data();
    range.default_flags = HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0);
    range.dev_private_owner = this;
    int ret;
    for (;;) {
      if (std::chrono::steady_clock::now() > deadline) return -EBUSY;
      range.notifier_seq = mmu_interval_read_begin(&notifier_);
      {
        ReadLocker l(m->mmap_lock);
        ret = hmm_range_fault(&range);
      }
      if (ret == -EBUSY) continue;
      if (ret) return ret;
      MutexLocker l(lock_);
      if (mmu_interval_read_retry(&notifier_, range.notifier_seq)) continue;
      // Program the device: a huge leaf fully inside this chunk is one
      // translation; otherwise page by page.
      FrameAllocator& mem = machine().mem();
      for (uint64_t i = 0; i < pfns.size();) {
        uint64_t hp = pfns[i];
        VirtAddr a = addr + i * PAGE_SIZE;
        uint64_t size = PAGE_SIZE;
        unsigned order = hmm_pfn_to_map_order(hp);
        uint64_t block = PAGE_SIZE << order;
        if (order && a.is_aligned(block) && a + block <= next) size = block;
        DevTranslation t{a, size, hmm_pfn_to_pfn(hp), mem.generation(hmm_pfn_to_pfn(hp)),
                         (hp & HMM_PFN_WRITE) != 0};
        report_interval_establish(&notifier_, range.notifier_seq, t);
        program_locked(t);
        i += size >> PAGE_SHIFT;
      }
      break;
    }
    addr = next;
  }
  return 0;
}

int Mirror::fault(VirtAddr start, uint64_t len, bool write) {
  if (!start.is_aligned(PAGE_SIZE) || len == 0) return -EINVAL;
  VirtAddr end = start + align_up(len, PAGE_SIZE);
  if (!attached_ || end < start || !interval_.contains(VaRange{start, end})) return -EINVAL;
  MmStruct* m = mm();
  if (!m->mmget_not_zero()) return -EINVAL;
  MmOpScope op("device fault");
  int ret = fault_range(start, end, write);
  m->mmput();
  return ret;
}

int Mirror::access(VirtAddr addr, bool write, uint64_t* value, bool may_fault) {
  if (!addr.is_aligned(PAGE_SIZE)) return -EINVAL;
  MmStruct* m = mm();
  if (!attached_ || !interval_.contains(addr)) return -EINVAL;
  if (!m->mmget_not_zero()) return -EINVAL;
  MmOpScope op(write ? "device write" : "device read");
  int ret = 0;
  for (int attempt = 0;; attempt++) {
    {
      MutexLocker l(lock_);
      std::optional<DevTranslation> t = lookup_locked(addr);
      if (t && (!write || t->writable)) {
        DevTranslation at = *t;
        Pfn pfn = t->pfn + ((addr - t->addr) >> PAGE_SHIFT);
        report_access(at, write);
        auto v = machine().mem().value(pfn);
        if (write)
          v.store(*value, std::memory_order_relaxed);
        else
          *value = v.load(std::memory_order_relaxed);
        break;
      }
    }
    if (!may_fault) {
      count_device_fault();
      ret = -EFAULT;
      break;
    }
    // Each round faults the page in; a storm of invalidations can take it
    // away again before the access, every time.
    if (attempt == kMaxAccessFaults) {
      ret = -EBUSY;
      break;
    }
    ret = fault_range(addr, addr + PAGE_SIZE, write);
    if (ret) break;
  }
  m->mmput();
  return ret;
}

int Mirror::read(VirtAddr addr, uint64_t* value) { return access(addr, false, value, true); }
int Mirror::write(VirtAddr addr, uint64_t value) { return access(addr, true, &value, true); }

void Mirror::with_table(const std::function<void(const DevicePageTable&)>& fn) {
  MutexLocker l(lock_);
  fn(pt_);
}

}  // namespace smm
