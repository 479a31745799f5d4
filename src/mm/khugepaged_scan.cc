// File: src/mm/khugepaged_scan.cc
//
// khugepaged itself (mm/khugepaged.c: khugepaged_enter_vma,
// __khugepaged_enter, khugepaged_fork, __khugepaged_exit, collect_mm_slot,
// khugepaged_scan_mm_slot, khugepaged_do_scan, khugepaged_wait_work,
// khugepaged): the list of mms to scan, the scan cursor, one wake-up of
// pages_to_scan, full passes for the scenario verb, and the background
// thread. What a scan of one PMD does is in khugepaged.cc.
//
// Deviation from Linux: a synchronous pass (the scenario verb) does not
// sleep alloc_sleep_millisecs after an allocation failure; the background
// thread does, as the kthread.

#include "shadowmm/mm/khugepaged.h"

#include <algorithm>
#include <chrono>

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/huge_memory.h"

#include "khugepaged_internal.h"

namespace smm {

namespace {
constexpr uint32_t kPmdOrderBit = 1u << HPAGE_PMD_ORDER;
}  // namespace

// ---- the mm list ----

void khugepaged_enter_vma(VmArea* vma, vm_flags_t vm_flags) {
  MmStruct* mm = vma->vm_mm;
  if (mm->test_flag(MMF_VM_HUGEPAGE)) return;
  Machine& m = mm->machine();
  uint32_t orders = kPmdOrderBit;
  if (vma->is_anonymous() &&
      m.knobs().collapse_orders.load(std::memory_order_relaxed) == MmKnobs::CollapseOrders::kMthp)
    orders = THP_ORDERS_ALL_ANON;
  // Mainline: hugepage_pmd_enabled() && thp_vma_allowable_order(PMD_ORDER);
  // [S2] ("run khugepaged for all orders"): any order khugepaged collapses to.
  if (!thp_vma_allowable_orders(vma, vm_flags, TVA_ENFORCE_SYSFS, orders)) return;
  if (Khugepaged* k = m.khugepaged()) k->enter(mm);
}

void khugepaged_fork(MmStruct* mm, MmStruct* oldmm) {
  if (!oldmm->test_flag(MMF_VM_HUGEPAGE)) return;
  if (Khugepaged* k = mm->machine().khugepaged()) k->enter(mm);
}

void khugepaged_exit(MmStruct* mm) {
  if (!mm->test_flag(MMF_VM_HUGEPAGE)) return;
  if (Khugepaged* k = mm->machine().khugepaged()) k->exit(mm);
}

// ---- the scanner ----

Khugepaged::Khugepaged(Machine& machine) : machine_(machine) {
  VM_BUG_ON(machine_.khugepaged() != nullptr);
  machine_.set_khugepaged(this);
}

Khugepaged::~Khugepaged() {
  stop();
  machine_.set_khugepaged(nullptr);
  std::vector<MmStruct*> left;
  {
    SpinLocker l(mm_lock_);
    left.swap(slots_);
    scan_active_ = false;
  }
  // The mms leave the list: a khugepaged attached later may take them again.
  for (MmStruct* mm : left) {
    mm->clear_flag(MMF_VM_HUGEPAGE);
    mm->mmdrop();
  }
}

void Khugepaged::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> g(sleep_mu_);
    stop_requested_ = false;
  }
  thread_ = std::thread([this] { thread_main(); });
}

void Khugepaged::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> g(sleep_mu_);
    stop_requested_ = true;
  }
  sleep_cv_.notify_all();
  thread_.join();
}

void Khugepaged::enter(MmStruct* mm) {
  // The flag says "on the list"; only its first setter adds the slot.
  if (mm->flags.fetch_or(MMF_VM_HUGEPAGE, std::memory_order_relaxed) & MMF_VM_HUGEPAGE) return;
  mm->mmgrab();
  SpinLocker l(mm_lock_);
  slots_.push_back(mm);
}

void Khugepaged::exit(MmStruct* mm) {
  bool found = false;
  {
    SpinLocker l(mm_lock_);
    auto it = std::find(slots_.begin(), slots_.end(), mm);
    if (it != slots_.end()) {
      size_t idx = static_cast<size_t>(it - slots_.begin());
      slots_.erase(it);
      found = true;
      // Keep the cursor on the mm it was on; if that was this one, it moves
      // to the next mm (address 0), or past the end: one full scan done.
      if (scan_active_) {
        if (idx < scan_index_) {
          scan_index_--;
        } else if (idx == scan_index_) {
          scan_address_ = VirtAddr(0);
          if (scan_index_ >= slots_.size()) {
            scan_active_ = false;
            scan_index_ = 0;
            full_scans_++;
            machine_.stats().count(VmEvent::khugepaged_full_scans);
          }
        }
      }
    }
  }
  if (found) mm->mmdrop();
}

uint64_t Khugepaged::full_scans() const {
  SpinLocker l(mm_lock_);
  return full_scans_;
}

size_t Khugepaged::nr_mms() const {
  SpinLocker l(mm_lock_);
  return slots_.size();
}

bool Khugepaged::has_mm(const MmStruct* mm) const {
  SpinLocker l(mm_lock_);
  return std::find(slots_.begin(), slots_.end(), mm) != slots_.end();
}

unsigned Khugepaged::scan_mm(MmStruct* mm, VirtAddr* address, unsigned pages, ScanResult* result, bool* done) {
  MmOpScope op("khugepaged");
  Machine& m = machine_;
  CollapseControl cc;
  cc.is_khugepaged = true;
  *done = true;
  // Never wait for mmap_lock: move on to the next mm instead.
  if (!mm->mmap_lock.try_read_lock()) return 0;
  unsigned progress = 1;
  if (hpage_collapse_test_exit_or_disable(mm)) {
    mm->mmap_lock.read_unlock();
    return progress;
  }
  for (VmArea* vma = mm->mm_mt.find(*address); vma; vma = mm->mm_mt.next(vma)) {
    // khugepaged skips VM_NOHUGEPAGE (BLOCK_THP) and VM_NO_KHUGEPAGED VMAs
    // here: no order is allowed for them.
    if (!collapse_allowable_orders(vma, true)) {
      progress++;
      continue;
    }
    VirtAddr hstart = vma->vm_start.align_up(PMD_SIZE);
    VirtAddr hend = vma->vm_end.align_down(PMD_SIZE);
    if (*address > hend) {
      progress++;
      continue;
    }
    if (*address < hstart) *address = hstart;
    while (*address < hend) {
      ScanResult r = hpage_collapse_scan_pmd_locked(mm, vma, *address, &cc);
      VirtAddr haddr = *address;
      *address += PMD_SIZE;
      progress += HPAGE_PMD_NR;
      if (r == SCAN_SUCCEED) {
        // collapse_huge_page expects the lock dropped; the scan resumes
        // from the next block on the next call.
        mm->mmap_lock.read_unlock();
        r = collapse_scanned_pmd(mm, haddr, &cc);
        if (r == SCAN_SUCCEED) m.stats().count(VmEvent::khugepaged_pages_collapsed);
        *result = r;
        *done = false;
        return progress;
      }
      *result = r;
      if (progress >= pages) {
        mm->mmap_lock.read_unlock();
        *done = false;
        return progress;
      }
    }
  }
  mm->mmap_lock.read_unlock();
  return progress;
}

unsigned Khugepaged::scan_mm_slot(unsigned pages, ScanResult* result) {
  *result = SCAN_FAIL;
  MmStruct* mm;
  VirtAddr address;
  bool got;
  {
    SpinLocker l(mm_lock_);
    if (slots_.empty()) return 0;
    if (!scan_active_) {
      scan_active_ = true;
      scan_index_ = 0;
      scan_address_ = VirtAddr(0);
    }
    mm = slots_[scan_index_];
    address = scan_address_;
    // Deviation from Linux: the scan pins the address space (mmget) instead
    // of relying on exit_mmap's write lock; fails once it is exiting (its
    // khugepaged_exit then takes the slot off the list).
    got = mm->mmget_not_zero();
  }
  unsigned progress = 1;
  bool done = true;
  if (got) progress = scan_mm(mm, &address, pages, result, &done);
  {
    SpinLocker l(mm_lock_);
    if (scan_active_ && scan_index_ < slots_.size() && slots_[scan_index_] == mm) {
      scan_address_ = address;
      if (done) {
        scan_address_ = VirtAddr(0);
        if (++scan_index_ >= slots_.size()) {
          scan_active_ = false;
          scan_index_ = 0;
          full_scans_++;
          machine_.stats().count(VmEvent::khugepaged_full_scans);
        }
      }
    }
  }
  // Outside the mm list's lock: the last reference runs exit_mmap.
  if (got) mm->mmput();
  return progress;
}

unsigned Khugepaged::do_scan(bool sleep_on_alloc_fail) {
  const unsigned pages = std::max(1u, machine_.thp().pages_to_scan.load(std::memory_order_relaxed));
  unsigned progress = 0, pass_through_head = 0;
  bool wait = true;
  for (;;) {
    {
      // Not held across the allocation-failure sleep below: a synchronous
      // pass (the khugepaged verb) must not wait behind it.
      MutexLocker s(scan_lock_);
      for (;;) {
        if (sleep_on_alloc_fail) {
          std::lock_guard<std::mutex> g(sleep_mu_);
          if (stop_requested_) return progress;
        }
        bool has_work;
        {
          SpinLocker l(mm_lock_);
          if (!scan_active_) pass_through_head++;
          has_work = !slots_.empty();
        }
        ScanResult result = SCAN_SUCCEED;
        if (has_work && pass_through_head < 2)
          progress += scan_mm_slot(pages - progress, &result);
        else
          progress = pages;
        if (progress >= pages) return progress;
        if (result == SCAN_ALLOC_HUGE_PAGE_FAIL) break;
      }
    }
    // The first allocation failure sleeps a while, the second ends the
    // wake-up.
    if (!wait || !sleep_on_alloc_fail) return progress;
    wait = false;
    std::unique_lock<std::mutex> l(sleep_mu_);
    sleep_cv_.wait_for(l, std::chrono::milliseconds(machine_.thp().alloc_sleep_millisecs.load(std::memory_order_relaxed)),
                       [&] { return stop_requested_; });
  }
}

void Khugepaged::scan_passes(unsigned passes) {
  MutexLocker s(scan_lock_);
  uint64_t target;
  {
    SpinLocker l(mm_lock_);
    target = full_scans_ + passes;
  }
  // Wake-ups of pages_to_scan each, back to back, but stopping exactly at
  // the end of the last full scan (a kthread wake-up may wrap around into
  // the next one).
  const unsigned pages = std::max(1u, machine_.thp().pages_to_scan.load(std::memory_order_relaxed));
  for (;;) {
    {
      SpinLocker l(mm_lock_);
      if (slots_.empty() || full_scans_ >= target) return;
    }
    ScanResult result;
    scan_mm_slot(pages, &result);
  }
}

void Khugepaged::thread_main() {
  for (;;) {
    do_scan(true);
    std::unique_lock<std::mutex> l(sleep_mu_);
    if (stop_requested_) return;
    unsigned ms = machine_.thp().scan_sleep_millisecs.load(std::memory_order_relaxed);
    sleep_cv_.wait_for(l, std::chrono::milliseconds(ms), [&] { return stop_requested_; });
    if (stop_requested_) return;
  }
}

void khugepaged_scan_passes(Machine& machine, unsigned passes) {
  if (Khugepaged* k = machine.khugepaged()) k->scan_passes(passes);
}

}  // namespace smm
