// File: src/check/coherence_oracle.cc
//
// The coherence oracle (spec section e). See the header for the invariants.
//
// Locking: the oracle's lock is the innermost of all (lock_order.h), so it
// may be taken under page-table locks and device locks. It is never held
// while calling into a device (device locks rank below it): device queries
// happen with it released.

#include "shadowmm/check/coherence_oracle.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/machine/vm_flags.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/pgtable.h"

namespace smm {

namespace {

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

std::string describe(const DevTranslation& t) {
  return hex(t.addr.value()) + " -> pfn " + hex(t.pfn.value()) + (t.writable ? " rw" : " r-") + " (" +
         std::to_string(t.size >> 10) + "K)";
}

}  // namespace

CoherenceOracle::CoherenceOracle(Machine& machine) : machine_(machine) {
  machine_.add_observer(this);
}

CoherenceOracle::~CoherenceOracle() { machine_.remove_observer(this); }

void CoherenceOracle::on_device_attached(SecondaryMmu* dev) {
  SpinLocker l(lock_);
  if (std::find(devices_.begin(), devices_.end(), dev) == devices_.end()) devices_.push_back(dev);
  for (const void* sub : dev->subscriptions()) by_sub_[sub] = dev;
}

void CoherenceOracle::on_device_detached(SecondaryMmu* dev) {
  SpinLocker l(lock_);
  devices_.erase(std::remove(devices_.begin(), devices_.end(), dev), devices_.end());
  for (auto it = by_sub_.begin(); it != by_sub_.end();)
    it = it->second == dev ? by_sub_.erase(it) : std::next(it);
}

void CoherenceOracle::record(std::string invariant, const SecondaryMmu* dev, VirtAddr addr, std::string detail) {
  violations_.push_back(
      OracleViolation{std::move(invariant), dev ? dev->name() : "-", addr, MmOpScope::current(), std::move(detail)});
}

bool CoherenceOracle::covered_locked(MmStruct* mm, VaRange r) const {
  for (const ActiveRange& a : active_)
    if (a.mm == mm && a.range.contains(r)) return true;
  return false;
}

SecondaryMmu* CoherenceOracle::device_of_locked(const void* sub) const {
  auto it = by_sub_.find(sub);
  return it == by_sub_.end() ? nullptr : it->second;
}

bool CoherenceOracle::backed_by_cpu(MmStruct* mm, const DevTranslation& t, std::string* why) const {
  // A lockless walk: no mmap_lock here (devices call in under their own lock).
  SrcuReadLock rcu(mm->machine().pgtable_srcu());
  for (unsigned level = PUD_LEVEL;; level--) {
    PtSlot slot = pt_lookup(mm, t.addr, level);
    if (!slot) break;
    Pte e = slot.get();
    if (level == PMD_LEVEL && e.is_none()) {
      // A PTE table detached by a collapse still says what is mapped
      // outside the collapsed sub-range (spec E9).
      PageTable* table = nullptr;
      {
        SpinLocker l(lock_);
        auto it = detached_.find({mm, t.addr.align_down(PMD_SIZE).value()});
        if (it != detached_.end()) table = it->second.table;
      }
      if (table) {
        level = PTE_LEVEL;
        e = Pte(table->entries[t.addr.index(PTE_LEVEL)].load(std::memory_order_acquire));
      }
    }
    if (e.is_table()) continue;
    if (!e.is_leaf() || e.protnone()) break;
    Pfn cpu_pfn = e.pfn() + ((t.addr.value() & (level_size(level) - 1)) >> PAGE_SHIFT);
    if (cpu_pfn != t.pfn) {
      *why = "the CPU maps pfn " + hex(cpu_pfn.value()) + " there";
      return false;
    }
    if (t.writable && !e.writable()) {
      *why = "the CPU mapping is read-only";
      return false;
    }
    if (mm->machine().mem().generation(t.pfn) != t.gen) {
      *why = "the frame was freed and reused since";
      return false;
    }
    return true;
  }
  *why = "the CPU has no mapping there";
  return false;
}

// ---- the mm core ----

void CoherenceOracle::on_range_start(const MmuNotifierRange& range) {
  SpinLocker l(lock_);
  active_.push_back(ActiveRange{range.mm, range.range(), range.event});
}

void CoherenceOracle::on_range_end(const MmuNotifierRange& range) {
  SpinLocker l(lock_);
  for (auto it = active_.begin(); it != active_.end(); ++it) {
    if (it->mm == range.mm && it->range == range.range() && it->event == range.event) {
      active_.erase(it);
      return;
    }
  }
}

void CoherenceOracle::on_pte_change(MmStruct* mm, VirtAddr addr, uint64_t size, Pte old_pte, Pte new_pte) {
  // E1: only mms with notifier subscriptions need their ranges.
  if (!mm_has_notifiers(mm)) return;
  SpinLocker l(lock_);
  if (covered_locked(mm, {addr, addr + size})) return;
  const char* what = !new_pte.is_leaf()                ? "removed"
                     : new_pte.pfn() != old_pte.pfn() ? "re-pointed"
                                                      : "write-protected";
  record("E1", nullptr, addr,
         std::string("a present ") + std::to_string(size >> 10) + "K mapping was " + what +
             " outside every notifier range of its mm");
}

void CoherenceOracle::on_tlb_flush(MmStruct* mm, VirtAddr start, VirtAddr end) {
  SpinLocker l(lock_);
  auto it = unflushed_.find(mm);
  if (it == unflushed_.end()) return;
  auto& pending = it->second;
  auto p = pending.lower_bound(start.value());
  // An entry that begins below `start` may still overlap it (a huge leaf).
  if (p != pending.begin() && std::prev(p)->first + std::prev(p)->second > start.value()) --p;
  while (p != pending.end() && p->first < end.value()) p = pending.erase(p);
  if (pending.empty()) unflushed_.erase(it);
}

void CoherenceOracle::on_pte_changing(MmStruct* mm, VirtAddr addr, uint64_t size) {
  SpinLocker l(lock_);
  if (has_walker_locked(mm)) unflushed_[mm][addr.value()] = size;
}

bool CoherenceOracle::has_walker_locked(const MmStruct* mm) const {
  for (SecondaryMmu* d : devices_)
    if (d->mm() == mm && d->walks_cpu_page_tables()) return true;
  return false;
}

bool CoherenceOracle::unflushed_locked(const MmStruct* mm, VirtAddr addr) const {
  auto it = unflushed_.find(mm);
  if (it == unflushed_.end()) return false;
  auto p = it->second.upper_bound(addr.value());
  if (p == it->second.begin()) return false;
  --p;
  return p->first + p->second > addr.value();
}

void CoherenceOracle::on_pte_install(MmStruct* mm, VirtAddr addr, uint64_t size, Pte pte) {
  // E6: a TLB that walks the CPU page tables must not still cache another
  // frame for this address when the new entry appears, unless the flush of
  // the entry's clear is still to come.
  std::vector<SecondaryMmu*> walkers;
  {
    SpinLocker l(lock_);
    if (unflushed_locked(mm, addr)) return;
    for (SecondaryMmu* d : devices_)
      if (d->mm() == mm && d->walks_cpu_page_tables()) walkers.push_back(d);
  }
  // Every 4 KiB of a huge entry: the IOTLB caches 4 KiB translations.
  for (SecondaryMmu* d : walkers) {
    if (size > PAGE_SIZE && !d->has_translation_in({addr, addr + size})) continue;
    for (uint64_t off = 0; off < size; off += PAGE_SIZE) {
      std::optional<DevTranslation> cached = d->cached_translation(addr + off);
      if (!cached) continue;
      Pfn cached_pfn = cached->pfn + ((addr + off - cached->addr) >> PAGE_SHIFT);
      if (cached_pfn == pte.pfn() + (off >> PAGE_SHIFT)) continue;
      SpinLocker l(lock_);
      record("E6", d, addr + off,
             "the PTE was re-pointed to pfn " + hex(pte.pfn().value() + (off >> PAGE_SHIFT)) +
                 " while the device still caches pfn " + hex(cached_pfn.value()) +
                 " (no invalidate_secondary_tlbs between the clear and the new entry)");
      break;
    }
  }
}

void CoherenceOracle::on_pmd_table_detached(MmStruct* mm, VirtAddr haddr, PageTable* table, VaRange collapsing) {
  Detached d{table, collapsing, {}};
  FrameAllocator& mem = mm->machine().mem();
  for (VirtAddr a = collapsing.start; a < collapsing.end; a += PAGE_SIZE) {
    Pte e(table->entries[a.index(PTE_LEVEL)].load(std::memory_order_acquire));
    d.values.push_back(e.is_leaf() ? std::optional<uint64_t>(mem.value(e.pfn()).load(std::memory_order_relaxed))
                                   : std::nullopt);
  }
  SpinLocker l(lock_);
  detached_[{mm, haddr.value()}] = std::move(d);
}

void CoherenceOracle::on_pmd_table_reattached(MmStruct* mm, VirtAddr haddr) {
  Detached d;
  {
    SpinLocker l(lock_);
    auto it = detached_.find({mm, haddr.value()});
    if (it == detached_.end()) return;
    d = std::move(it->second);
    detached_.erase(it);
  }
  // What was there must be read back through the new mapping (a page that
  // was none reads as zero, or keeps whatever the new folio holds).
  FrameAllocator& mem = mm->machine().mem();
  SrcuReadLock rcu(mm->machine().pgtable_srcu());
  for (size_t i = 0; i < d.values.size(); i++) {
    if (!d.values[i]) continue;
    VirtAddr a = d.collapsing.start + i * PAGE_SIZE;
    std::optional<Pfn> pfn = cpu_pfn_of(mm, a);
    uint64_t now = pfn ? mem.value(*pfn).load(std::memory_order_relaxed) : 0;
    if (pfn && now == *d.values[i]) continue;
    SpinLocker l(lock_);
    record("VALUE", nullptr, a,
           "the collapse lost a write: the page held " + hex(*d.values[i]) + " and now reads " +
               (pfn ? hex(now) : std::string("nothing (unmapped)")));
    return;
  }
}

std::optional<Pfn> CoherenceOracle::cpu_pfn_of(MmStruct* mm, VirtAddr addr) const {
  for (unsigned level = PUD_LEVEL;; level--) {
    PtSlot slot = pt_lookup(mm, addr, level);
    if (!slot) return std::nullopt;
    Pte e = slot.get();
    if (e.is_table()) continue;
    if (!e.is_leaf()) return std::nullopt;
    return e.pfn() + ((addr.value() & (level_size(level) - 1)) >> PAGE_SHIFT);
  }
}

void CoherenceOracle::on_folio_free(Folio folio) {
  // E5: nobody may still reach a frame being freed.
  std::vector<SecondaryMmu*> devs;
  {
    SpinLocker l(lock_);
    devs = devices_;
  }
  for (SecondaryMmu* d : devs) {
    std::optional<DevTranslation> t = d->translation_of_pfns(folio.pfn(), folio.nr_pages());
    if (!t) continue;
    SpinLocker l(lock_);
    record("E5", d, t->addr,
           "pfn " + hex(folio.pfn().value()) + " (" + std::to_string(folio.size() >> 10) +
               "K) is freed while the device still maps it: " + describe(*t));
  }
}

void CoherenceOracle::on_large_folio_mapped(MmStruct*, uint64_t vm_flags, VirtAddr addr, unsigned order) {
  if (!(vm_flags & VM_NOHUGEPAGE)) return;
  SpinLocker l(lock_);
  record("THP", nullptr, addr,
         "a " + std::to_string((PAGE_SIZE << order) >> 10) + "K folio was newly mapped in a VM_NOHUGEPAGE VMA");
}

// ---- the notifier core ----

void CoherenceOracle::on_subscriber_invalidated(const void* sub, const MmuNotifierRange& range) {
  SecondaryMmu* dev;
  {
    SpinLocker l(lock_);
    dev = device_of_locked(sub);
    if (dev && dev->is_classic(sub)) classic_windows_.emplace_back(sub, range.range());
  }
  // E2: the callback returned, so the device must hold nothing in range;
  // except in a migration the device itself started (spec E9).
  if (range.event == MMU_NOTIFY_MIGRATE && range.owner == dev) return;
  if (dev && !dev->walks_cpu_page_tables() && dev->has_translation_in(range.range())) {
    SpinLocker l(lock_);
    record("E2", dev, range.start,
           std::string("still holds a translation in [") + hex(range.start.value()) + ", " + hex(range.end.value()) +
               ") after its " + mmu_notify_event_name(range.event) + " invalidation returned");
  }
}

void CoherenceOracle::on_subscriber_range_end(const void* sub, const MmuNotifierRange& range) {
  SpinLocker l(lock_);
  for (auto it = classic_windows_.begin(); it != classic_windows_.end(); ++it) {
    if (it->first == sub && it->second == range.range()) {
      classic_windows_.erase(it);
      return;
    }
  }
}

void CoherenceOracle::on_secondary_tlbs(const void*, MmStruct*, VirtAddr, VirtAddr) {}

void CoherenceOracle::on_release(MmStruct* mm) {
  std::vector<SecondaryMmu*> devs;
  {
    SpinLocker l(lock_);
    released_.insert(mm->id());
    for (SecondaryMmu* d : devices_)
      if (d->mm() == mm) devs.push_back(d);
  }
  for (SecondaryMmu* d : devs) {
    std::optional<DevTranslation> left;
    d->for_each_translation([&](const DevTranslation& t) {
      if (!left) left = t;
    });
    if (!left) continue;
    SpinLocker l(lock_);
    record("E7", d, left->addr, "still holds " + describe(*left) + " after mmu_notifier_release");
  }
}

void CoherenceOracle::check_not_released_locked(const SecondaryMmu* dev, const DevTranslation& t) {
  if (released_.count(dev->mm()->id()))
    record("E7", dev, t.addr, "established " + describe(t) + " after mmu_notifier_release of its mm");
}

void CoherenceOracle::on_sleep_in_callback(const void* sub, const char* what) {
  SpinLocker l(lock_);
  SecondaryMmu* dev = sub ? device_of_locked(sub) : nullptr;
  if (sub)
    record("E10", dev, VirtAddr(0), std::string(what) + " inside a callback that must not sleep");
  else
    record("E10", dev, VirtAddr(0), std::string(what) + " called with a device lock held");
}

// ---- devices ----

void CoherenceOracle::on_interval_establish(SecondaryMmu* dev, MmuIntervalNotifier* sub, uint64_t seq,
                                            const DevTranslation& t) {
  MmStruct* mm = dev->mm();
  IntervalNotifierState st = mmu_interval_notifier_state(mm);
  uint64_t cur = sub->invalidate_seq.load();
  std::string why;
  bool backed = backed_by_cpu(mm, t, &why);
  SpinLocker l(lock_);
  check_not_released_locked(dev, t);
  // E8: a subscription's seq is always odd; the mm's is odd only while an
  // invalidation is active.
  if (!(cur & 1) || ((st.invalidate_seq & 1) && st.active_invalidate_ranges == 0))
    record("E8", dev, t.addr,
           "subscription seq " + std::to_string(cur) + ", mm seq " + std::to_string(st.invalidate_seq) + " with " +
               std::to_string(st.active_invalidate_ranges) + " active invalidations");
  // E3: programming with a stale seq, or while an invalidation that hit
  // this subscription is active (and its callback already ran).
  if (seq != cur || (cur == st.invalidate_seq && (cur & 1)))
    record("E3", dev, t.addr,
           "programmed " + describe(t) + " with seq " + std::to_string(seq) + " while the subscription's seq is " +
               std::to_string(cur) + " and the mm's is " + std::to_string(st.invalidate_seq));
  // E4: what is programmed must be what the CPU maps, unless an active
  // range excuses it (its callback will drop it: E2 watches that).
  if (!backed && !covered_locked(mm, {t.addr, t.addr + t.size}))
    record("E4", dev, t.addr, "programmed " + describe(t) + " but " + why);
}

void CoherenceOracle::on_classic_establish(SecondaryMmu* dev, const void* sub, const DevTranslation& t) {
  MmStruct* mm = dev->mm();
  std::string why;
  bool backed = backed_by_cpu(mm, t, &why);
  SpinLocker l(lock_);
  check_not_released_locked(dev, t);
  for (const auto& [s, r] : classic_windows_)
    if (s == sub && r.overlaps({t.addr, t.addr + t.size}))
      record("E3", dev, t.addr, "programmed " + describe(t) + " between its invalidate_range_start and _end");
  if (!backed && !covered_locked(mm, {t.addr, t.addr + t.size}))
    record("E4", dev, t.addr, "programmed " + describe(t) + " but " + why);
}

void CoherenceOracle::on_walker_fill(SecondaryMmu* dev, const DevTranslation& t) {
  // The walker copies what the PTE says at that instant (which may change
  // right after: the IOTLB is a TLB), so there is no E4 to check; but the
  // PTE must not point to a free frame.
  bool freed = dev->mm()->machine().mem().is_free(t.pfn);
  SpinLocker l(lock_);
  check_not_released_locked(dev, t);
  if (!freed) return;
  record("E5", dev, t.addr, "the walker filled " + describe(t) + " from a PTE that points to a free frame");
}

void CoherenceOracle::on_device_access(SecondaryMmu* dev, const DevTranslation& t, bool write) {
  MmStruct* mm = dev->mm();
  std::string why;
  bool backed = backed_by_cpu(mm, t, &why);
  bool reused = mm->machine().mem().generation(t.pfn) != t.gen;
  if (backed && !reused) return;
  SpinLocker l(lock_);
  if (!reused && dev->walks_cpu_page_tables()) {
    // A TLB (an IOTLB filled by a walker) may use an entry whose PTE
    // already changed until the flush that follows; after it, the entry
    // should have been invalidated by invalidate_secondary_tlbs.
    if (unflushed_locked(mm, t.addr)) return;
    record("E2", dev, t.addr,
           std::string(write ? "wrote" : "read") + " through the stale " + describe(t) +
               " after the TLB flush that should have dropped it: " + why);
    return;
  }
  if (reused) {
    record("E5", dev, t.addr,
           std::string(write ? "wrote" : "read") + " through " + describe(t) +
               " whose frame was freed (and maybe reused) since it was established");
    return;
  }
  // Inside an active range the device may still use what it had until its
  // callback runs; outside, it is a stale translation.
  if (covered_locked(mm, {t.addr, t.addr + t.size})) return;
  record("E2", dev, t.addr, std::string(write ? "wrote" : "read") + " through the stale " + describe(t) + ": " + why);
}

// ---- results ----

size_t CoherenceOracle::violations() const {
  SpinLocker l(lock_);
  return violations_.size();
}

std::vector<OracleViolation> CoherenceOracle::violation_list() const {
  SpinLocker l(lock_);
  return violations_;
}

std::vector<OracleViolation> CoherenceOracle::unacknowledged_list(size_t* total) const {
  SpinLocker l(lock_);
  *total = violations_.size();
  return {violations_.begin() + static_cast<std::ptrdiff_t>(acknowledged_), violations_.end()};
}

void CoherenceOracle::acknowledge(size_t total) {
  SpinLocker l(lock_);
  acknowledged_ = std::max(acknowledged_, std::min(total, violations_.size()));
}

size_t CoherenceOracle::unacknowledged() const {
  SpinLocker l(lock_);
  return violations_.size() - acknowledged_;
}

}  // namespace smm
