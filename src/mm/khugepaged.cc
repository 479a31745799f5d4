// File: src/mm/khugepaged.cc
//
// THP collapse, khugepaged's and MADV_COLLAPSE's (mm/khugepaged.c:
// hpage_collapse_scan_pmd, hugepage_vma_revalidate, find_pmd_or_thp_or_none,
// check_pmd_still_valid, __collapse_huge_page_swapin, alloc_charge_folio,
// collapse_huge_page, __collapse_huge_page_isolate, __collapse_huge_page_copy,
// madvise_collapse), with S2's mTHP collapse (collapse_max_ptes_none,
// mthp_collapse, the order argument of collapse_huge_page). The mm list and
// the scanner that drives this are in khugepaged_scan.cc.
//
// The lock sequence of a collapse (spec d.2), for [start, start + 4K<<order)
// inside the PMD at haddr:
//
//   no lock       allocate the new folio (the caller dropped mmap_lock)
//   mmap R        revalidate the VMA and the PMD; swap in (PMD order only)
//   mmap W        revalidate again; anon_vma write lock
//     CLEAR range [start, end) start
//       PMD lock: clear the PMD, flush (2 MiB; or [start, end) with
//                 `mm.collapse_flush range` below PMD order)
//     range end                         <- the range ends here, PMD none
//     PTE lock of the detached table: isolate the pages of [start, end)
//     (PMD order: anon_vma unlocked here; mTHP: held to the end)
//     copy values, drop the old pages
//     PMD lock: install (huge PMD; or PTEs into the old table, then the PMD
//               points to it again)
//   every failure once the PMD was cleared puts the old table back as it was
//
// Page-table entries of the detached table are changed without reporting to
// the observers: nothing can reach them (the CPU and devices see a none PMD,
// every fault blocks on mmap_lock) and the notifier range already ended, as
// in Linux. The new mapping is reported as installed.
//
// Deviation from Linux: mmu_notifier_test_young (the referenced check that
// asks secondary MMUs) is called after the PTE lock is dropped, not under
// it: the model's lock order puts device locks above page-table locks
// (lock_order.h), and the answer is only a heuristic either way.
// Deviation from Linux: the old PTE table of a PMD collapse is not
// deposited (huge_memory.cc deposits none); it is freed once installed.

#include "shadowmm/mm/khugepaged.h"

#include <algorithm>

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/swap.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/tlb.h"

#include "khugepaged_internal.h"

namespace smm {

namespace {

constexpr uint32_t kAnonFolioFlags = PG_anon | PG_swapbacked | PG_lru;
constexpr uint32_t kPmdOrderBit = 1u << HPAGE_PMD_ORDER;
constexpr unsigned kMinMthpOrder = THP_MIN_ANON_ORDER;

uint8_t writable_prot(const VmArea* vma) {
  uint8_t prot = vma->vm_page_prot;
  if (vma->vm_flags & VM_WRITE) prot |= PTE_PROT_W;
  return prot;
}

bool is_zero_pte(const Machine& m, Pte e) { return e.is_leaf() && e.special() && m.is_zero_pfn(e.pfn()); }
bool pte_none_or_zero(const Machine& m, Pte e) { return e.is_none() || is_zero_pte(m, e); }

// Linux: folio_expected_ref_count for an anonymous folio outside the swap
// cache: one reference per mapping (a PTE each, one for a PMD).
int64_t folio_expected_ref_count(Folio folio) {
  return folio.total_mapcount() - int64_t{folio.entire_mapcount()} * int64_t(folio.nr_pages() - 1);
}

// Linux: find_pmd_or_thp_or_none (mm_find_pmd + check_pmd_state).
ScanResult find_pmd_or_thp_or_none(MmStruct* mm, VirtAddr haddr, PtSlot* pmd) {
  *pmd = pt_lookup(mm, haddr, PMD_LEVEL);
  if (!*pmd) return SCAN_PMD_NULL;
  Pte e = pmd->get();
  if (e.is_none()) return SCAN_PMD_NONE;
  if (e.is_leaf()) return SCAN_PMD_MAPPED;
  if (!e.is_table()) return SCAN_PMD_NULL;
  return SCAN_SUCCEED;
}

// Linux: check_pmd_still_valid. The PMD slot found now is the one scanned
// and still points to a PTE table.
ScanResult check_pmd_still_valid(MmStruct* mm, VirtAddr haddr, const PtSlot& pmd) {
  PtSlot now;
  ScanResult r = find_pmd_or_thp_or_none(mm, haddr, &now);
  if (r != SCAN_SUCCEED) return r;
  return now.entry == pmd.entry ? SCAN_SUCCEED : SCAN_FAIL;
}

// Linux: hugepage_vma_revalidate (S2 form with the order). After mmap_lock
// was dropped, is the VMA at `addr` still one this collapse may work on?
// The whole PMD block must still lie in it: the collapse clears the PMD.
ScanResult hugepage_vma_revalidate(MmStruct* mm, VirtAddr addr, bool expect_anon, VmArea** vmap,
                                   const CollapseControl& cc, unsigned order) REQUIRES_SHARED(mm->mmap_lock) {
  if (hpage_collapse_test_exit_or_disable(mm)) return SCAN_ANY_PROCESS;
  VmArea* vma = mm->mm_mt.find(addr);
  *vmap = vma;
  if (!vma) return SCAN_VMA_NULL;
  if (!thp_vma_suitable_order(vma, addr.align_down(PMD_SIZE).value(), HPAGE_PMD_ORDER)) return SCAN_ADDRESS_RANGE;
  if (!(collapse_allowable_orders(vma, cc.is_khugepaged) & (1u << order))) return SCAN_VMA_CHECK;
  if (expect_anon && (!vma->anon_vma || !vma->is_anonymous())) return SCAN_PAGE_ANON;
  return SCAN_SUCCEED;
}

// Linux: collapse_max_ptes_shared / collapse_max_ptes_swap (S2): the sysfs
// limit for a khugepaged PMD collapse, none for MADV_COLLAPSE, 0 for mTHP.
unsigned collapse_max_ptes_shared(Machine& m, const CollapseControl& cc, unsigned order) {
  if (order != HPAGE_PMD_ORDER) return 0;
  if (!cc.is_khugepaged) return HPAGE_PMD_NR;
  return m.thp().max_ptes_shared.load(std::memory_order_relaxed);
}

unsigned collapse_max_ptes_swap(Machine& m, const CollapseControl& cc, unsigned order) {
  if (order != HPAGE_PMD_ORDER) return 0;
  if (!cc.is_khugepaged) return HPAGE_PMD_NR;
  return m.thp().max_ptes_swap.load(std::memory_order_relaxed);
}

// Does a secondary MMU report any of `addrs` young? Counts them.
int count_young_in_secondary(MmStruct* mm, const std::vector<VirtAddr>& addrs) {
  if (addrs.empty() || !mm_has_notifiers(mm)) return 0;
  int n = 0;
  for (VirtAddr a : addrs)
    if (mmu_notifier_test_young(mm, a)) n++;
  return n;
}

// The folios __collapse_huge_page_isolate took: locked, off the LRU, each
// once (a large folio mapped by several PTEs of the range is one entry).
struct IsolatedFolios {
  std::vector<Folio> folios;
  bool contains(Folio f) const { return std::find(folios.begin(), folios.end(), f) != folios.end(); }
  // Linux: release_pte_pages. Back on the LRU, unlocked.
  void release() {
    for (Folio f : folios) {
      f.set(PG_lru);
      f.unlock();
    }
    folios.clear();
  }
};

// Linux: __collapse_huge_page_isolate over PTEs [first, first + nr) of the
// detached table `t`, mapping [start, start + nr * 4K). Caller holds t->ptl.
// PTEs whose young state only a secondary MMU can tell go to *ask_young.
ScanResult collapse_isolate_locked(Machine& m, PageTable* t, unsigned first, unsigned nr, VirtAddr start,
                                   const CollapseControl& cc, unsigned order, IsolatedFolios* isolated,
                                   int* referenced, std::vector<VirtAddr>* ask_young) REQUIRES(t->ptl) {
  const unsigned max_none = collapse_max_ptes_none(m, cc, order);
  const unsigned max_shared = collapse_max_ptes_shared(m, cc, order);
  unsigned none_or_zero = 0, shared = 0;
  bool writable = false;
  for (unsigned i = 0; i < nr; i++) {
    Pte e(t->entries[first + i].load(std::memory_order_relaxed));
    VirtAddr addr = start + uint64_t{i} * PAGE_SIZE;
    if (pte_none_or_zero(m, e)) {
      if (++none_or_zero > max_none) {
        m.stats().count(VmEvent::thp_scan_exceed_none_pte);
        isolated->release();
        return SCAN_EXCEED_NONE_PTE;
      }
      continue;
    }
    if (!e.is_leaf()) {
      // A swap entry left (swap-in is refused below PMD order).
      isolated->release();
      return SCAN_PTE_NON_PRESENT;
    }
    if (e.special()) {
      isolated->release();
      return SCAN_PAGE_NULL;
    }
    Folio folio = m.mem().pfn_folio(e.pfn());
    if (!folio.test(PG_anon)) {
      isolated->release();
      return SCAN_PAGE_ANON;
    }
    if (folio.maybe_mapped_shared() && ++shared > max_shared) {
      m.stats().count(VmEvent::thp_scan_exceed_shared_pte);
      isolated->release();
      return SCAN_EXCEED_SHARED_PTE;
    }
    if (!(folio.is_large() && isolated->contains(folio))) {
      // The folio lock serialises against reclaim and splits.
      if (!folio.trylock()) {
        isolated->release();
        return SCAN_PAGE_LOCK;
      }
      // No pins: every reference is a mapping (and this process cannot take
      // new ones, its PMD is none).
      if (folio_expected_ref_count(folio) != folio.refcount()) {
        folio.unlock();
        isolated->release();
        return SCAN_PAGE_COUNT;
      }
      if (!folio.test_and_clear(PG_lru)) {
        folio.unlock();
        isolated->release();
        return SCAN_DEL_PAGE_LRU;
      }
      isolated->folios.push_back(folio);
    }
    if (cc.is_khugepaged) {
      if (e.young() || folio.test(PG_referenced))
        (*referenced)++;
      else
        ask_young->push_back(addr);
    }
    if (e.writable()) writable = true;
  }
  if (!writable) {
    isolated->release();
    return SCAN_PAGE_RO;
  }
  return SCAN_SUCCEED;
}

// Linux: __collapse_huge_page_copy + __collapse_huge_page_copy_succeeded.
// Copies the values of [first, first + nr) into `folio`, then clears those
// PTEs of the detached table and drops the old pages (they became
// unreachable at the flush). Returns the number of none/zero PTEs, which the
// new folio adds to the mm's anonymous RSS.
int64_t collapse_copy_and_release(Machine& m, MmStruct* mm, PageTable* t, unsigned first, unsigned nr, Folio folio,
                                  IsolatedFolios* isolated) {
  struct Drop {
    Folio folio;
    int32_t refs;
  };
  std::vector<Drop> drops;
  int64_t filled = 0;
  {
    SpinLocker l(t->ptl);
    for (unsigned i = 0; i < nr; i++) {
      PtSlot slot{t, &t->entries[first + i], &t->ptl};
      Pte e = slot.get();
      if (pte_none_or_zero(m, e)) {
        folio.write(i, 0);
        filled++;
        if (!e.is_none()) slot.get_and_clear();
        continue;
      }
      Folio src = m.mem().pfn_folio(e.pfn());
      folio.write(i, m.mem().value(e.pfn()).load(std::memory_order_relaxed));
      slot.get_and_clear();
      folio_remove_rmap_ptes(src, e.pfn() - src.pfn(), 1);
      if (!drops.empty() && drops.back().folio == src)
        drops.back().refs++;
      else
        drops.push_back({src, 1});
    }
  }
  (void)mm;
  // Unlock (and put back a large folio still mapped elsewhere) before the
  // references go: the last put frees the folio.
  isolated->release();
  // Freed in one batch (release_pages): one zone lock for all of them.
  std::vector<Pfn> freed;
  for (const Drop& d : drops)
    if (d.folio.put_testzero(d.refs)) freed.push_back(d.folio.pfn());
  m.mem().free_folios(freed.data(), freed.size());
  return filled;
}

// Linux: __collapse_huge_page_swapin. Faults in every swap PTE of the PMD.
// Caller holds mmap_lock for read.
ScanResult collapse_huge_page_swapin(MmStruct* mm, VmArea* vma, VirtAddr haddr) REQUIRES_SHARED(mm->mmap_lock) {
  for (unsigned i = 0; i < HPAGE_PMD_NR; i++) {
    VirtAddr addr = haddr + uint64_t{i} * PAGE_SIZE;
    PtSlot pte = pt_lookup(mm, addr, PTE_LEVEL);
    if (!pte) return SCAN_PMD_NULL;
    Pte e = pte.get();
    if (!e.is_swap()) continue;
    vm_fault_t ret = do_swap_page(mm, vma, addr, pte, e, false);
    if (ret & VM_FAULT_ERROR) return SCAN_FAIL;
  }
  return SCAN_SUCCEED;
}

// Holds an anon_vma's lock for write; may let go early (a PMD collapse
// releases it once every page is isolated). Not a capability for the
// analysis: nothing is annotated as guarded by the anon_vma lock.
class AnonVmaWriteLock {
 public:
  explicit AnonVmaWriteLock(RwSem& s) NO_THREAD_SAFETY_ANALYSIS : s_(&s) { s_->write_lock(); }
  ~AnonVmaWriteLock() { unlock(); }
  void unlock() NO_THREAD_SAFETY_ANALYSIS {
    if (s_) s_->write_unlock();
    s_ = nullptr;
  }
  AnonVmaWriteLock(const AnonVmaWriteLock&) = delete;
  AnonVmaWriteLock& operator=(const AnonVmaWriteLock&) = delete;

 private:
  RwSem* s_;
};

// "Lower orders might still work" results of an mTHP attempt (S2): retry
// the two halves; anything else ends the walk.
bool lower_order_might_work(ScanResult r) {
  switch (r) {
    case SCAN_LACK_REFERENCED_PAGE:
    case SCAN_EXCEED_NONE_PTE:
    case SCAN_EXCEED_SWAP_PTE:
    case SCAN_EXCEED_SHARED_PTE:
    case SCAN_PAGE_LOCK:
    case SCAN_PAGE_COUNT:
    case SCAN_PAGE_LRU:
    case SCAN_DEL_PAGE_LRU:
    case SCAN_PTE_NON_PRESENT:
    case SCAN_PAGE_RO:
    case SCAN_PAGE_NULL:
    case SCAN_ALLOC_HUGE_PAGE_FAIL:
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* scan_result_name(ScanResult r) {
  switch (r) {
    case SCAN_FAIL: return "failed";
    case SCAN_SUCCEED: return "succeeded";
    case SCAN_PMD_NULL: return "pmd_null";
    case SCAN_PMD_NONE: return "pmd_none";
    case SCAN_PMD_MAPPED: return "page_pmd_mapped";
    case SCAN_EXCEED_NONE_PTE: return "exceed_none_pte";
    case SCAN_EXCEED_SWAP_PTE: return "exceed_swap_pte";
    case SCAN_EXCEED_SHARED_PTE: return "exceed_shared_pte";
    case SCAN_PTE_NON_PRESENT: return "pte_non_present";
    case SCAN_PAGE_RO: return "no_writable_page";
    case SCAN_LACK_REFERENCED_PAGE: return "lack_referenced_page";
    case SCAN_PAGE_NULL: return "page_null";
    case SCAN_PAGE_COUNT: return "page_count";
    case SCAN_PAGE_LRU: return "page_not_in_lru";
    case SCAN_PAGE_LOCK: return "page_locked";
    case SCAN_PAGE_ANON: return "page_not_anon";
    case SCAN_ANY_PROCESS: return "no_process_for_page";
    case SCAN_VMA_NULL: return "vma_null";
    case SCAN_VMA_CHECK: return "vma_check_failed";
    case SCAN_ADDRESS_RANGE: return "not_suitable_address_range";
    case SCAN_DEL_PAGE_LRU: return "could_not_delete_page_from_lru";
    case SCAN_ALLOC_HUGE_PAGE_FAIL: return "alloc_huge_page_failed";
  }
  return "?";
}

int madvise_collapse_errno(ScanResult r) {
  switch (r) {
    case SCAN_ALLOC_HUGE_PAGE_FAIL:
      return -ENOMEM;
    case SCAN_EXCEED_NONE_PTE:
      return -EBUSY;
    case SCAN_PAGE_COUNT:
    case SCAN_PAGE_LOCK:
    case SCAN_PAGE_LRU:
    case SCAN_DEL_PAGE_LRU:
      return -EAGAIN;
    default:
      return -EINVAL;
  }
}

// ---- orders and limits ----

uint32_t collapse_allowable_orders(const VmArea* vma, bool is_khugepaged) {
  Machine& m = vma->vm_mm->machine();
  uint32_t orders = kPmdOrderBit;
  // [S2] khugepaged collapses anonymous memory to every anon order; file
  // VMAs and MADV_COLLAPSE stay PMD-only. `mm.collapse_orders pmd` is the
  // behaviour before the series.
  if (is_khugepaged && vma->is_anonymous() &&
      m.knobs().collapse_orders.load(std::memory_order_relaxed) == MmKnobs::CollapseOrders::kMthp)
    orders = THP_ORDERS_ALL_ANON;
  return thp_vma_allowable_orders(vma, vma->vm_flags, is_khugepaged ? TVA_ENFORCE_SYSFS : TVA_FORCED_COLLAPSE,
                                  orders);
}

// ---- scan ----

unsigned collapse_max_ptes_none(Machine& m, const CollapseControl& cc, unsigned order) {
  if (!cc.is_khugepaged) return HPAGE_PMD_NR;
  unsigned sysfs = m.thp().max_ptes_none.load(std::memory_order_relaxed);
  if (order == HPAGE_PMD_ORDER) return sysfs;
  // [S2] Only 0 and 511 are meaningful below PMD order: anything between
  // would let a collapse create enough new pages for the next scan to
  // promote the block again ("creep").
  if (sysfs == HPAGE_PMD_NR - 1) return (1u << order) - 1;
  if (sysfs == 0) return 0;
  WARN_ON_ONCE(sysfs != 0 && sysfs != HPAGE_PMD_NR - 1);
  return 0;
}

ScanResult hpage_collapse_scan_pmd_locked(MmStruct* mm, VmArea* vma, VirtAddr haddr, CollapseControl* cc) {
  VM_BUG_ON(!haddr.is_aligned(PMD_SIZE));
  Machine& m = mm->machine();
  PtSlot pmd;
  ScanResult result = find_pmd_or_thp_or_none(mm, haddr, &pmd);
  if (result != SCAN_SUCCEED) return result;

  cc->present.reset();
  cc->referenced = 0;
  cc->unmapped = 0;
  cc->enabled_orders = collapse_allowable_orders(vma, cc->is_khugepaged);
  unsigned max_none = collapse_max_ptes_none(m, *cc, HPAGE_PMD_ORDER);
  // [S2] With orders below PMD enabled, scan everything to fill the bitmap;
  // each order's own limit applies in mthp_collapse.
  if (cc->enabled_orders != kPmdOrderBit) max_none = HPAGE_PMD_NR - 1;
  const unsigned max_swap = collapse_max_ptes_swap(m, *cc, HPAGE_PMD_ORDER);
  const unsigned max_shared = collapse_max_ptes_shared(m, *cc, HPAGE_PMD_ORDER);

  unsigned none_or_zero = 0, shared = 0;
  bool writable = false;
  std::vector<VirtAddr> ask_young;
  {
    PageTable* t = pmd.get().table();
    SpinLocker l(t->ptl);
    // pte_offset_map_lock's recheck: the table is still the PMD's.
    if (pmd.get() != Pte::table(t)) return SCAN_PMD_NULL;
    Folio last;
    bool last_shared = false;
    for (unsigned i = 0; i < HPAGE_PMD_NR; i++) {
      Pte e(t->entries[i].load(std::memory_order_relaxed));
      VirtAddr addr = haddr + uint64_t{i} * PAGE_SIZE;
      if (e.is_swap()) {
        if (++cc->unmapped > static_cast<int>(max_swap)) {
          m.stats().count(VmEvent::thp_scan_exceed_swap_pte);
          return SCAN_EXCEED_SWAP_PTE;
        }
        continue;
      }
      if (pte_none_or_zero(m, e)) {
        if (++none_or_zero > max_none) {
          m.stats().count(VmEvent::thp_scan_exceed_none_pte);
          return SCAN_EXCEED_NONE_PTE;
        }
        continue;
      }
      if (e.writable()) writable = true;
      if (e.special()) return SCAN_PAGE_NULL;
      Folio folio = m.mem().pfn_folio(e.pfn());
      if (!(folio == last)) {
        // Checks of the whole folio, once per folio (a large folio is
        // mapped by a run of consecutive PTEs).
        if (!folio.test(PG_anon)) return SCAN_PAGE_ANON;
        last_shared = folio.maybe_mapped_shared();
        if (!folio.test(PG_lru)) return SCAN_PAGE_LRU;
        if (folio.test(PG_locked)) return SCAN_PAGE_LOCK;
        if (folio_expected_ref_count(folio) != folio.refcount()) return SCAN_PAGE_COUNT;
        last = folio;
      }
      // A page counts as shared if any part of its folio is.
      if (last_shared && ++shared > max_shared) {
        m.stats().count(VmEvent::thp_scan_exceed_shared_pte);
        return SCAN_EXCEED_SHARED_PTE;
      }
      cc->present.set(i);
      cc->folio_order[i] = static_cast<uint8_t>(folio.order());
      if (cc->is_khugepaged) {
        if (e.young() || folio.test(PG_referenced))
          cc->referenced++;
        else
          ask_young.push_back(addr);
      }
    }
  }
  if (cc->is_khugepaged) cc->referenced += count_young_in_secondary(mm, ask_young);
  if (!writable) return SCAN_PAGE_RO;
  if (cc->is_khugepaged &&
      (!cc->referenced || (cc->unmapped && cc->referenced < static_cast<int>(HPAGE_PMD_NR / 2))))
    return SCAN_LACK_REFERENCED_PAGE;
  return SCAN_SUCCEED;
}

// ---- collapse ----

ScanResult collapse_huge_page(MmStruct* mm, VirtAddr start_addr, int referenced, int unmapped,
                              CollapseControl* cc, unsigned order) {
  (void)referenced;
  Machine& m = mm->machine();
  const VirtAddr haddr = start_addr.align_down(PMD_SIZE);
  const unsigned nr = 1u << order;
  const VirtAddr end_addr = start_addr + (PAGE_SIZE << order);
  const unsigned first = start_addr.index(PTE_LEVEL);
  VM_BUG_ON(order < kMinMthpOrder || order > HPAGE_PMD_ORDER);
  VM_BUG_ON(!start_addr.is_aligned(PAGE_SIZE << order));
  MmOpScope op(cc->is_khugepaged ? "khugepaged" : "madvise collapse");

  // Linux: alloc_charge_folio. No lock held: the allocation may be slow.
  Result<Folio> res = m.mem().alloc_folio(order, kAnonFolioFlags, AllocZero::No);
  if (!res.ok()) {
    m.stats().count(VmEvent::thp_collapse_alloc_failed);
    m.stats().count(VmEvent::collapse_fail);
    return SCAN_ALLOC_HUGE_PAGE_FAIL;
  }
  m.stats().count(VmEvent::thp_collapse_alloc);
  Folio folio = *res;
  auto fail = [&](ScanResult r) {
    folio.put();
    m.stats().count(VmEvent::collapse_fail);
    return r;
  };

  VmArea* vma = nullptr;
  PtSlot pmd;
  {
    ReadLocker rl(mm->mmap_lock);
    ScanResult r = hugepage_vma_revalidate(mm, haddr, true, &vma, *cc, order);
    if (r != SCAN_SUCCEED) return fail(r);
    r = find_pmd_or_thp_or_none(mm, haddr, &pmd);
    if (r != SCAN_SUCCEED) return fail(r);
    // Swap-in is a PMD-order affair; an mTHP range with swap PTEs fails
    // its isolation instead (S2).
    if (unmapped && order == HPAGE_PMD_ORDER) {
      r = collapse_huge_page_swapin(mm, vma, haddr);
      if (r != SCAN_SUCCEED) return fail(r);
    }
  }

  // Every access to these page tables is now excluded: faults, hmm and the
  // CPU path hold mmap_lock; reclaim holds it too (MADV_PAGEOUT).
  MmapWriteLock wl(mm);
  ScanResult r = hugepage_vma_revalidate(mm, haddr, true, &vma, *cc, order);
  if (r != SCAN_SUCCEED) return fail(r);
  r = check_pmd_still_valid(mm, haddr, pmd);
  if (r != SCAN_SUCCEED) return fail(r);

  AnonVmaWriteLock anon_lock(vma->anon_vma.load()->lock());

  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, start_addr, end_addr);
  mmu_notifier_invalidate_range_start(&range);
  Pte old_pmd;
  {
    SpinLocker l(*pmd.ptl);
    // Tell the observers before the PMD goes none, so that nobody looking
    // at the mapping from outside can see the PMD none without the table.
    VM_BUG_ON(!pmd.get().is_table());
    for_each_observer(m, [&](MmObserver* o) {
      o->on_pmd_table_detached(mm, haddr, pmd.get().table(), {start_addr, end_addr});
    });
    if (order < HPAGE_PMD_ORDER &&
        m.knobs().collapse_flush.load(std::memory_order_relaxed) == MmKnobs::CollapseFlush::kRange) {
      // Our own optimisation (spec decisions): the PMD is cleared as always,
      // but only the collapsed sub-range is flushed. The PTEs outside it
      // keep their values, so a TLB entry for them stays correct.
      old_pmd = pmd.get_and_clear();
      VM_BUG_ON(!old_pmd.is_table());
      flush_tlb_mm_range(mm, start_addr, end_addr);
    } else {
      old_pmd = pmdp_collapse_flush(mm, haddr, pmd);
    }
  }
  mmu_notifier_invalidate_range_end(&range);
  // Linux: tlb_remove_table_sync_one. Lockless walkers that read the old
  // PMD are gone; new ones see it none.
  pt_sync_lockless_walkers(mm);

  PageTable* t = old_pmd.table();
  IsolatedFolios isolated;
  int sub_referenced = 0;
  std::vector<VirtAddr> ask_young;
  {
    SpinLocker l(t->ptl);
    r = collapse_isolate_locked(m, t, first, nr, start_addr, *cc, order, &isolated, &sub_referenced, &ask_young);
  }
  if (r == SCAN_SUCCEED && cc->is_khugepaged) {
    sub_referenced += count_young_in_secondary(mm, ask_young);
    if (!sub_referenced) {
      isolated.release();
      r = SCAN_LACK_REFERENCED_PAGE;
    }
  }
  if (r != SCAN_SUCCEED) {
    {
      // Put the old table back exactly as it was.
      SpinLocker l(*pmd.ptl);
      VM_BUG_ON(!pmd.get().is_none());
      pmd.set(old_pmd);
      for_each_observer(m, [&](MmObserver* o) { o->on_pmd_table_reattached(mm, haddr); });
    }
    return fail(r);  // frees the new folio: not under the PMD lock
  }
  // PMD order: every page is isolated and locked, rmap walks cannot reach
  // them. mTHP: pages outside the range are not, and their rmap walks must
  // not find the PMD none, so the lock is held to the end.
  if (order == HPAGE_PMD_ORDER) anon_lock.unlock();

  int64_t filled = collapse_copy_and_release(m, mm, t, first, nr, folio, &isolated);
  mm->add_rss(MM_ANONPAGES, filled);

  for (unsigned i = 0; i < nr; i++) folio.set_page_anon_exclusive(i, true);
  {
    SpinLocker l(*pmd.ptl);
    VM_BUG_ON(!pmd.get().is_none());
    if (order == HPAGE_PMD_ORDER) {
      folio_add_rmap_leaf(folio, 0, HPAGE_PMD_NR);
      // The allocation reference becomes the PMD's.
      pt_set_entry(mm, haddr, pmd, Pte::leaf(folio.pfn(), writable_prot(vma)).mkdirty().mkyoung());
    } else {
      // PTEs into the old table (its lock is not needed: nothing can reach
      // it while the PMD is none), then the PMD points to it again.
      folio_add_rmap_ptes(folio, 0, nr);
      folio.get(static_cast<int32_t>(nr));
      Pte proto = Pte::leaf(folio.pfn(), writable_prot(vma)).mkdirty().mkyoung();
      for (unsigned i = 0; i < nr; i++) {
        PtSlot slot{t, &t->entries[first + i], &t->ptl};
        pt_set_entry(mm, start_addr + uint64_t{i} * PAGE_SIZE, slot,
                     Pte::leaf(folio.page_pfn(i), proto.prot()).mkdirty().mkyoung());
      }
      pmd.set(old_pmd);
    }
    for_each_observer(m, [&](MmObserver* o) { o->on_pmd_table_reattached(mm, haddr); });
    // The oracle's THP invariant (spec f.5): a new large mapping.
    for_each_observer(m, [&](MmObserver* o) { o->on_large_folio_mapped(mm, vma->vm_flags, start_addr, order); });
  }
  if (order == HPAGE_PMD_ORDER) {
    // Unreachable since the flush; the oracle stopped looking into it
    // above, and may still be reading it: one more sync.
    if (m.observed()) pt_sync_lockless_walkers(mm);
    pt_free_table(mm, t);
  } else {
    folio.put();  // the mappings hold their own references
  }
  m.stats().count(collapse_event(order));
  return SCAN_SUCCEED;
}

ScanResult mthp_collapse(MmStruct* mm, VirtAddr haddr, CollapseControl* cc) {
  Machine& m = mm->machine();
  struct Item {
    uint16_t offset;
    uint8_t order;
  };
  // Depth-first, lower half first: at most 2 entries per order level.
  Item stack[2 * HPAGE_PMD_ORDER + 2];
  int depth = 0;
  stack[depth++] = {0, HPAGE_PMD_ORDER};
  ScanResult last = SCAN_FAIL;
  bool collapsed = false;
  while (depth) {
    Item it = stack[--depth];
    const unsigned nr = 1u << it.order;
    if (cc->enabled_orders & (1u << it.order)) {
      unsigned max_none = collapse_max_ptes_none(m, *cc, it.order);
      unsigned occupied = 0;
      bool already = it.order < HPAGE_PMD_ORDER;
      for (unsigned i = it.offset; i < it.offset + nr; i++) {
        occupied += cc->present.test(i);
        already = already && cc->present.test(i) && cc->folio_order[i] >= it.order;
      }
      // Deviation from Linux: the series' revisions differ here; the model
      // skips a block already mapped by folios of this order or larger, so
      // a pass does not re-collapse it every time.
      if (already) continue;
      if (occupied + max_none >= nr) {
        ScanResult r = collapse_huge_page(mm, haddr + uint64_t{it.offset} * PAGE_SIZE, cc->referenced,
                                          cc->unmapped, cc, it.order);
        if (r == SCAN_SUCCEED) {
          collapsed = true;
          continue;
        }
        last = r;
        if (!lower_order_might_work(r)) break;
      }
    }
    // Try the two halves at the next order, if some lower order is enabled.
    if (it.order > kMinMthpOrder && (cc->enabled_orders & ((1u << it.order) - 1))) {
      const uint8_t next = static_cast<uint8_t>(it.order - 1);
      stack[depth++] = {static_cast<uint16_t>(it.offset + nr / 2), next};
      stack[depth++] = {it.offset, next};
    }
  }
  return collapsed ? SCAN_SUCCEED : last;
}

ScanResult collapse_scanned_pmd(MmStruct* mm, VirtAddr haddr, CollapseControl* cc) {
  // PMD order alone is mainline's path (and `mm.collapse_orders pmd`).
  if (cc->enabled_orders == kPmdOrderBit)
    return collapse_huge_page(mm, haddr, cc->referenced, cc->unmapped, cc, HPAGE_PMD_ORDER);
  return mthp_collapse(mm, haddr, cc);
}

// ---- MADV_COLLAPSE ----

int madvise_collapse(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end, bool* lock_dropped) {
  VM_BUG_ON(start < vma->vm_start || end > vma->vm_end);
  MmOpScope op("madvise collapse");
  if (!(collapse_allowable_orders(vma, false) & kPmdOrderBit)) return -EINVAL;

  CollapseControl cc;
  cc.is_khugepaged = false;
  VirtAddr hstart = start.align_up(PMD_SIZE);
  VirtAddr hend = end.align_down(PMD_SIZE);
  uint64_t thps = 0;
  ScanResult last_fail = SCAN_FAIL;
  bool revalidate = false;
  for (VirtAddr addr = hstart; addr < hend; addr += PMD_SIZE) {
    if (revalidate) {
      // mmap_lock was dropped by the last collapse: find the VMA again.
      ScanResult rv = hugepage_vma_revalidate(mm, addr, false, &vma, cc, HPAGE_PMD_ORDER);
      if (rv != SCAN_SUCCEED) {
        last_fail = rv;
        break;
      }
      hend = std::min(hend, vma->vm_end.align_down(PMD_SIZE));
      revalidate = false;
      if (addr >= hend) break;
    }
    ScanResult r = hpage_collapse_scan_pmd_locked(mm, vma, addr, &cc);
    if (r == SCAN_SUCCEED) {
      mm->mmap_lock.read_unlock();
      r = collapse_huge_page(mm, addr, cc.referenced, cc.unmapped, &cc, HPAGE_PMD_ORDER);
      mm->mmap_lock.read_lock();
      *lock_dropped = true;
      revalidate = true;
    }
    bool stop = false;
    switch (r) {
      case SCAN_SUCCEED:
      case SCAN_PMD_MAPPED:
        thps++;
        break;
      // Results where going on with the next block is fine.
      case SCAN_PMD_NULL:
      case SCAN_PTE_NON_PRESENT:
      case SCAN_PAGE_RO:
      case SCAN_LACK_REFERENCED_PAGE:
      case SCAN_PAGE_NULL:
      case SCAN_PAGE_COUNT:
      case SCAN_PAGE_LOCK:
      case SCAN_PAGE_LRU:
      case SCAN_DEL_PAGE_LRU:
        last_fail = r;
        break;
      default:
        last_fail = r;
        stop = true;
        break;
    }
    if (stop) break;
  }
  uint64_t blocks = hend > hstart ? (hend - hstart) >> PMD_SHIFT : 0;
  return thps == blocks ? 0 : madvise_collapse_errno(last_fail);
}

}  // namespace smm
