// File: src/devices/kvm.cc
//
// KVM-style shadow MMU on classic MMU-notifier start/end
// (virt/kvm/kvm_main.c: kvm_mmu_notifier_invalidate_range_start/_end,
// kvm_mmu_invalidate_begin/_end, mmu_invalidate_retry_gfn).

#include "shadowmm/devices/kvm.h"

#include <sstream>

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/mm/memory.h"

namespace smm {

const MmuNotifierOps Kvm::kOps = {
    .release = &Kvm::release_cb,
    .clear_flush_young = &Kvm::clear_flush_young_cb,
    .clear_young = &Kvm::clear_flush_young_cb,
    .test_young = &Kvm::test_young_cb,
    .invalidate_range_start = &Kvm::start_cb,
    .invalidate_range_end = &Kvm::end_cb,
};

Kvm::Kvm(std::string name, MmStruct* mm) : SecondaryMmu(std::move(name), "kvm", mm) {
  notifier_.ops = &kOps;
  notifier_.priv = this;
}

Kvm::~Kvm() { detach(); }

int Kvm::attach(VirtAddr, uint64_t, bool block_thp) {
  // A classic notifier covers the whole mm (kvm_init_mmu_notifier).
  return attach_classic(&notifier_, block_thp, &attached_);
}

int Kvm::detach() {
  if (int ret = detach_classic(&notifier_, &attached_)) return ret;
  SpinLocker l(mmu_lock_);
  spte_.clear();
  young_.clear();
  return 0;
}

int Kvm::start_cb(MmuNotifier* sub, const MmuNotifierRange* range) {
  Kvm* k = static_cast<Kvm*>(sub->priv);
  SpinLocker l(k->mmu_lock_);
  // kvm_mmu_invalidate_begin: faults covering the range will retry.
  if (k->mmu_invalidate_in_progress_++ == 0)
    k->mmu_invalidate_range_ = range->range();
  else
    k->mmu_invalidate_range_ = {std::min(k->mmu_invalidate_range_.start, range->start),
                                std::max(k->mmu_invalidate_range_.end, range->end)};
  k->spte_.erase_range(range->range());
  k->record_event(*range);
  return 0;
}

void Kvm::end_cb(MmuNotifier* sub, const MmuNotifierRange*) {
  Kvm* k = static_cast<Kvm*>(sub->priv);
  SpinLocker l(k->mmu_lock_);
  // kvm_mmu_invalidate_end: the seq moves before in_progress drops, so a
  // fault that saw neither retries.
  k->mmu_invalidate_seq_.fetch_add(1);
  k->mmu_invalidate_in_progress_--;
}

void Kvm::release_cb(MmuNotifier* sub, MmStruct*) {
  Kvm* k = static_cast<Kvm*>(sub->priv);
  SpinLocker l(k->mmu_lock_);
  k->spte_.clear();
  k->record_event("release", VirtAddr(0), VirtAddr(~0ull), true);
}

int Kvm::clear_flush_young_cb(MmuNotifier* sub, MmStruct*, VirtAddr start, VirtAddr end) {
  Kvm* k = static_cast<Kvm*>(sub->priv);
  SpinLocker l(k->mmu_lock_);
  int young = 0;
  for (auto it = k->young_.lower_bound(start.value()); it != k->young_.end() && it->first < end.value(); ++it) {
    young |= it->second;
    it->second = false;
  }
  return young;
}

int Kvm::test_young_cb(MmuNotifier* sub, MmStruct*, VirtAddr addr) {
  Kvm* k = static_cast<Kvm*>(sub->priv);
  SpinLocker l(k->mmu_lock_);
  auto it = k->young_.find(addr.align_down(PAGE_SIZE).value());
  return it != k->young_.end() && it->second;
}

bool Kvm::invalidate_retry_locked(uint64_t seq, VirtAddr addr) {
  if (mmu_invalidate_in_progress_ && mmu_invalidate_range_.contains(addr)) return true;
  return mmu_invalidate_seq_.load() != seq;
}

int Kvm::faultin_pfn(VirtAddr addr, bool write, DevTranslation* t) {
  MmStruct* m = mm();
  ReadLocker l(m->mmap_lock);
  VmArea* vma = m->mm_mt.lookup(addr);
  if (!vma || !(vma->vm_flags & VM_READ) || (write && !(vma->vm_flags & VM_WRITE))) return -EFAULT;
  for (int attempt = 0; attempt < 64; attempt++) {
    for (unsigned level = PUD_LEVEL;; level--) {
      PtSlot slot = pt_lookup(m, addr, level);
      if (!slot) break;
      Pte e = slot.get();
      if (e.is_table()) continue;
      if (e.is_leaf() && e.readable() && (!write || e.writable())) {
        uint64_t page = (addr.value() & (level_size(level) - 1)) >> PAGE_SHIFT;
        Pfn pfn = e.pfn() + page;
        *t = DevTranslation{addr.align_down(PAGE_SIZE), PAGE_SIZE, pfn, m->machine().mem().generation(pfn),
                            e.writable()};
        return 0;
      }
      break;
    }
    vm_fault_t ret = handle_mm_fault(m, vma, addr, FAULT_FLAG_REMOTE | (write ? FAULT_FLAG_WRITE : 0));
    if (ret & VM_FAULT_OOM) return -ENOMEM;
    if (ret & VM_FAULT_ERROR) return -EFAULT;
  }
  return -EFAULT;
}

int Kvm::fault_page(VirtAddr addr, bool write) {
  for (;;) {
    uint64_t seq = mmu_invalidate_seq_.load();
    DevTranslation t;
    int ret = faultin_pfn(addr, write, &t);
    if (ret) return ret;
    SpinLocker l(mmu_lock_);
    if (invalidate_retry_locked(seq, addr)) {
      retries_++;
      continue;
    }
    report_classic_establish(&notifier_, t);
    spte_.insert(t);
    young_[t.addr.value()] = true;
    return 0;
  }
}

int Kvm::fault(VirtAddr start, uint64_t len, bool write) {
  if (!start.is_aligned(PAGE_SIZE) || len == 0) return -EINVAL;
  if (!attached_) return -EINVAL;
  MmStruct* m = mm();
  if (!m->mmget_not_zero()) return -EINVAL;
  MmOpScope op("device fault");
  int ret = 0;
  for (VirtAddr a = start; a < start + align_up(len, PAGE_SIZE) && !ret; a += PAGE_SIZE) ret = fault_page(a, write);
  m->mmput();
  return ret;
}

int Kvm::access(VirtAddr addr, bool write, uint64_t* value) {
  if (!addr.is_aligned(PAGE_SIZE) || !attached_) return -EINVAL;
  MmStruct* m = mm();
  if (!m->mmget_not_zero()) return -EINVAL;
  MmOpScope op(write ? "device write" : "device read");
  int ret = 0;
  for (;;) {
    {
      SpinLocker l(mmu_lock_);
      const DevTranslation* t = spte_.lookup(addr);
      if (t && (!write || t->writable)) {
        report_access(*t, write);
        auto v = machine().mem().value(t->pfn);
        if (write)
          v.store(*value, std::memory_order_relaxed);
        else
          *value = v.load(std::memory_order_relaxed);
        young_[t->addr.value()] = true;
        break;
      }
    }
    if ((ret = fault_page(addr, write))) break;
  }
  m->mmput();
  return ret;
}

int Kvm::read(VirtAddr addr, uint64_t* value) { return access(addr, false, value); }
int Kvm::write(VirtAddr addr, uint64_t value) { return access(addr, true, &value); }

std::vector<std::pair<std::string, uint64_t>> Kvm::dump_counters() {
  SpinLocker l(mmu_lock_);
  return {{"mmu_invalidate_seq", mmu_invalidate_seq_.load()},
          {"mmu_invalidate_in_progress", static_cast<uint64_t>(mmu_invalidate_in_progress_)},
          {"fault_retries", retries_}};
}

void Kvm::with_table(const std::function<void(const DevicePageTable&)>& fn) {
  SpinLocker l(mmu_lock_);
  fn(spte_);
}

}  // namespace smm
