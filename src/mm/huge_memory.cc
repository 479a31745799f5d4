// File: src/mm/huge_memory.cc
//
// Huge PMD and PUD mappings (mm/huge_memory.c): the THP order selection
// (__thp_vma_allowable_orders, at the end of the file), do_huge_pmd_anonymous_page,
// the huge zero page, do_huge_pmd_wp_page with do_huge_zero_wp_pmd,
// __split_huge_pmd / __split_huge_pud, zap_huge_pmd / zap_huge_pud,
// change_huge_pmd / change_huge_pud; and the device-DAX huge fault
// (drivers/dax/device.c: dev_dax_huge_fault).
//
// Deviation from Linux: no PTE table is deposited with an anonymous THP
// (pgtable_trans_huge_deposit); a split allocates its PTE table then. Table
// allocation cannot fail in the model, which is what the deposit guarantees.

#include "shadowmm/mm/huge_memory.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

namespace {

constexpr uint32_t kAnonFolioFlags = PG_anon | PG_swapbacked | PG_lru;

uint8_t writable_prot(const VmArea* vma) {
  uint8_t prot = vma->vm_page_prot;
  if (vma->vm_flags & VM_WRITE) prot |= PTE_PROT_W;
  return prot;
}

bool is_huge_zero(Machine& m, Pte e) { return e.special() && m.is_huge_zero_pfn(e.pfn()); }

// Installs a fresh anonymous PMD folio. Caller holds pmd.ptl; the PMD is none
// (or the huge zero page being replaced, already cleared).
void map_anon_folio_pmd_locked(MmStruct* mm, VmArea* vma, const PtSlot& pmd, VirtAddr haddr, Folio folio) {
  for (uint64_t i = 0; i < HPAGE_PMD_NR; i++) folio.set_page_anon_exclusive(i, true);
  folio_add_rmap_leaf(folio, 0, HPAGE_PMD_NR);
  mm->add_rss(MM_ANONPAGES, HPAGE_PMD_NR);
  // The allocation reference becomes the mapping's reference.
  pt_set_entry(mm, haddr, pmd, Pte::leaf(folio.pfn(), writable_prot(vma)).mkdirty().mkyoung());
  for_each_observer(mm->machine(),
                    [&](MmObserver* o) { o->on_large_folio_mapped(mm, vma->vm_flags, haddr, HPAGE_PMD_ORDER); });
}

}  // namespace

vm_fault_t do_huge_pmd_anonymous_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pmd,
                                      bool write) NO_THREAD_SAFETY_ANALYSIS {
  // Called from __handle_mm_fault with mmap_lock held for read.
  Machine& m = mm->machine();
  VirtAddr haddr = addr.align_down(PMD_SIZE);
  if (!thp_vma_suitable_order(vma, haddr.value(), HPAGE_PMD_ORDER)) return VM_FAULT_FALLBACK;
  anon_vma_prepare(mm, vma);
  khugepaged_enter_vma(vma, vma->vm_flags);

  if (!write && m.knobs().zero_page.load(std::memory_order_relaxed) &&
      m.thp().use_zero_page.load(std::memory_order_relaxed)) {
    SpinLocker l(*pmd.ptl);
    if (pmd.get().is_none()) {
      Pte zero = Pte::leaf(m.huge_zero_folio().pfn(), vma->vm_page_prot & ~PTE_PROT_W).mkspecial();
      pt_set_entry(mm, haddr, pmd, zero);
      for_each_observer(m, [&](MmObserver* o) { o->on_large_folio_mapped(mm, vma->vm_flags, haddr, HPAGE_PMD_ORDER); });
      mm->set_flag(MMF_HUGE_ZERO_PAGE);
      m.stats().count(VmEvent::fault_huge_zero_page);
    }
    return 0;
  }

  Result<Folio> res = m.mem().alloc_folio(HPAGE_PMD_ORDER, kAnonFolioFlags);
  if (!res.ok()) {
    m.stats().count(VmEvent::thp_fault_fallback);
    return VM_FAULT_FALLBACK;
  }
  Folio folio = *res;
  {
    SpinLocker l(*pmd.ptl);
    if (pmd.get().is_none()) {
      map_anon_folio_pmd_locked(mm, vma, pmd, haddr, folio);
      m.stats().count(VmEvent::thp_fault_alloc);
      return 0;
    }
  }
  folio.put();
  return 0;
}

namespace {

// Linux: do_huge_zero_wp_pmd. Replace the huge zero PMD with a fresh THP.
vm_fault_t do_huge_zero_wp_pmd(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pmd, Pte orig) {
  Machine& m = mm->machine();
  VirtAddr haddr = addr.align_down(PMD_SIZE);
  Result<Folio> res = m.mem().alloc_folio(HPAGE_PMD_ORDER, kAnonFolioFlags);
  if (!res.ok()) {
    m.stats().count(VmEvent::thp_fault_fallback);
    split_huge_pmd(vma, pmd, addr);
    return VM_FAULT_FALLBACK;
  }
  Folio folio = *res;
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr, haddr + PMD_SIZE);
  mmu_notifier_invalidate_range_start(&range);
  bool installed = false;
  {
    SpinLocker l(*pmd.ptl);
    if (pmd.get() == orig) {
      pmdp_huge_clear_flush(mm, haddr, pmd);
      map_anon_folio_pmd_locked(mm, vma, pmd, haddr, folio);
      installed = true;
    }
  }
  mmu_notifier_invalidate_range_end(&range);
  if (installed) {
    m.stats().count(VmEvent::thp_zero_wp_alloc);
    m.stats().count(VmEvent::thp_fault_alloc);
  } else {
    folio.put();
  }
  return 0;
}

}  // namespace

vm_fault_t do_huge_pmd_wp_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pmd) {
  Machine& m = mm->machine();
  Pte orig = pmd.get();
  if (!orig.is_leaf()) return 0;
  if (is_huge_zero(m, orig)) return do_huge_zero_wp_pmd(mm, vma, addr, pmd, orig);
  Folio folio = m.mem().pfn_folio(orig.pfn());
  {
    SpinLocker l(*pmd.ptl);
    if (pmd.get() != orig) return 0;
    // Exclusive, or the only reference is this mapping: reuse in place.
    bool reuse = folio.page_anon_exclusive(0);
    if (!reuse && folio.refcount() == 1 && !folio.test(PG_swapcache)) {
      for (uint64_t i = 0; i < HPAGE_PMD_NR; i++) folio.set_page_anon_exclusive(i, true);
      reuse = true;
    }
    if (reuse) {
      pmd.set(orig.mkwrite().mkdirty().mkyoung());
      m.stats().count(VmEvent::wp_reuse);
      return 0;
    }
  }
  split_huge_pmd(vma, pmd, addr);
  return VM_FAULT_FALLBACK;
}

vm_fault_t dax_huge_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& slot, bool write) {
  Machine& m = mm->machine();
  unsigned level = slot.level();
  uint64_t size = level_size(level);
  VirtAddr haddr = addr.align_down(size);
  if (haddr < vma->vm_start || haddr + size > vma->vm_end)
    return level == PUD_LEVEL ? VM_FAULT_FALLBACK : VM_FAULT_SIGBUS;
  VmFile& file = *vma->vm_file;
  uint64_t index = vma->linear_page_index(haddr);
  if (index >= file.nr_pages()) return VM_FAULT_SIGBUS;
  // A PUD leaf needs a 1 GiB folio starting exactly here.
  if (level == PUD_LEVEL && (file.folio_order(index) != HPAGE_PUD_ORDER || file.folio_index(index) != index))
    return VM_FAULT_FALLBACK;
  Result<Folio> res = file.get_folio(index);
  if (!res.ok()) return VM_FAULT_OOM;
  Folio folio = *res;
  uint64_t first = index - file.folio_index(index);
  uint64_t nr = size >> PAGE_SHIFT;
  if (!is_aligned(first, nr)) return VM_FAULT_SIGBUS;

  SpinLocker l(*slot.ptl);
  Pte cur = slot.get();
  if (cur.is_none()) {
    Pte e = Pte::leaf(folio.page_pfn(first), vma->vm_page_prot).mkyoung();
    if (write) e = e.mkdirty();
    folio.get();
    folio_add_rmap_leaf(folio, first, nr);
    mm->add_rss(MM_FILEPAGES, static_cast<int64_t>(nr));
    pt_set_entry(mm, haddr, slot, e);
    m.stats().count(level == PUD_LEVEL ? VmEvent::fault_dax_pud : VmEvent::fault_dax_pmd);
    for_each_observer(m, [&](MmObserver* o) { o->on_large_folio_mapped(mm, vma->vm_flags, haddr, folio.order()); });
  } else if (cur.is_leaf() && write && !cur.writable() && (vma->vm_flags & VM_WRITE)) {
    // Write to a write-protected shared leaf: the device makes it writable.
    slot.set(cur.mkwrite().mkdirty().mkyoung());
  }
  return 0;
}

// ---- splitting ----

void split_huge_pmd_locked(VmArea* vma, const PtSlot& pmd, VirtAddr haddr) {
  MmStruct* mm = vma->vm_mm;
  Machine& m = mm->machine();
  Pte old = pmd.get();
  if (!old.is_leaf()) return;
  m.stats().count(VmEvent::thp_split_pmd);

  if (vma->is_dax()) {
    // File/DAX: zap the PMD; the next access refaults.
    pmdp_huge_clear_flush(mm, haddr, pmd);
    Folio folio = m.mem().pfn_folio(old.pfn());
    folio_remove_rmap_leaf(folio, old.pfn() - folio.pfn(), HPAGE_PMD_NR);
    mm->add_rss(MM_FILEPAGES, -static_cast<int64_t>(HPAGE_PMD_NR));
    folio.put();
    return;
  }

  PageTable* table = pt_alloc_table(mm, PTE_LEVEL);
  if (is_huge_zero(m, old)) {
    // The zero page stays mapped, now by 4 KiB zero-page PTEs.
    pmdp_huge_clear_flush(mm, haddr, pmd);
    Pte zero = Pte::leaf(m.zero_folio().pfn(), old.prot()).mkspecial();
    for (auto& e : table->entries) e.store(zero.raw(), std::memory_order_relaxed);
  } else {
    // Anonymous THP: pmdp_invalidate (the PMD is not present and flushed),
    // then PTEs to the same pages with the same bits.
    pt_get_and_clear(mm, haddr, pmd);
    flush_tlb_mm_range(mm, haddr, haddr + PMD_SIZE);
    Folio folio = m.mem().pfn_folio(old.pfn());
    VM_BUG_ON(folio.order() != HPAGE_PMD_ORDER);
    for (unsigned i = 0; i < PTRS_PER_TABLE; i++) {
      Pte e = Pte::leaf(folio.page_pfn(i), old.prot());
      if (old.dirty()) e = e.mkdirty();
      if (old.young()) e = e.mkyoung();
      table->entries[i].store(e.raw(), std::memory_order_relaxed);
    }
    folio_remove_rmap_leaf(folio, 0, HPAGE_PMD_NR);
    folio_add_rmap_ptes(folio, 0, HPAGE_PMD_NR);
    folio.get(HPAGE_PMD_NR - 1);  // one reference per PTE instead of one per PMD
  }
  pmd.set(Pte::table(table));
}

void split_huge_pmd(VmArea* vma, const PtSlot& pmd, VirtAddr address) {
  MmStruct* mm = vma->vm_mm;
  VirtAddr haddr = address.align_down(PMD_SIZE);
  // The range is notified even when no huge entry turns out to be there.
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr, haddr + PMD_SIZE);
  mmu_notifier_invalidate_range_start(&range);
  {
    SpinLocker l(*pmd.ptl);
    if (pmd.get().is_leaf()) split_huge_pmd_locked(vma, pmd, haddr);
  }
  mmu_notifier_invalidate_range_only_end(&range);
}

void split_huge_pmd_address(VmArea* vma, VirtAddr address) {
  PtSlot pmd = pt_lookup(vma->vm_mm, address, PMD_LEVEL);
  if (!pmd) return;  // mm_find_pmd: no PMD table
  split_huge_pmd(vma, pmd, address);
}

void split_huge_pud(VmArea* vma, const PtSlot& pud, VirtAddr address) {
  MmStruct* mm = vma->vm_mm;
  Machine& m = mm->machine();
  VirtAddr haddr = address.align_down(PUD_SIZE);
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr, haddr + PUD_SIZE);
  mmu_notifier_invalidate_range_start(&range);
  {
    SpinLocker l(*pud.ptl);
    Pte old = pud.get();
    if (old.is_leaf()) {
      m.stats().count(VmEvent::thp_split_pud);
      pudp_huge_clear_flush(mm, haddr, pud);
      Folio folio = m.mem().pfn_folio(old.pfn());
      folio_remove_rmap_leaf(folio, old.pfn() - folio.pfn(), 1ull << HPAGE_PUD_ORDER);
      mm->add_rss(mm_counter_of(folio), -static_cast<int64_t>(1ull << HPAGE_PUD_ORDER));
      folio.put();
    }
  }
  mmu_notifier_invalidate_range_only_end(&range);
}

void split_huge_pud_address(VmArea* vma, VirtAddr address) {
  PtSlot pud = pt_lookup(vma->vm_mm, address, PUD_LEVEL);
  if (!pud || !pud.get().is_leaf()) return;
  split_huge_pud(vma, pud, address);
}

// ---- zap ----

namespace {

void zap_huge_leaf(MmuGather* tlb, VmArea* vma, const PtSlot& slot, VirtAddr haddr, uint64_t size) {
  MmStruct* mm = vma->vm_mm;
  Machine& m = mm->machine();
  bool full;
  {
    SpinLocker l(*slot.ptl);
    Pte old = pt_get_and_clear(mm, haddr, slot);
    if (!old.is_leaf()) return;
    tlb->remove_tlb_entry(haddr, size);
    if (is_huge_zero(m, old)) return;
    Folio folio = m.mem().pfn_folio(old.pfn());
    uint64_t nr = size >> PAGE_SHIFT;
    folio_remove_rmap_leaf(folio, old.pfn() - folio.pfn(), nr);
    mm->add_rss(mm_counter_of(folio), -static_cast<int64_t>(nr));
    full = tlb->remove_folio_pages(folio, 1);
  }
  if (full) tlb->flush();
}

}  // namespace

void zap_huge_pmd(MmuGather* tlb, VmArea* vma, const PtSlot& pmd, VirtAddr haddr) {
  zap_huge_leaf(tlb, vma, pmd, haddr, PMD_SIZE);
}

void zap_huge_pud(MmuGather* tlb, VmArea* vma, const PtSlot& pud, VirtAddr haddr) {
  zap_huge_leaf(tlb, vma, pud, haddr, PUD_SIZE);
}

// ---- mprotect of a whole huge leaf ----

namespace {

long change_huge_leaf(MmuGather* tlb, VmArea* vma, const PtSlot& slot, VirtAddr haddr, uint8_t newprot,
                      bool try_writable, uint64_t size) {
  MmStruct* mm = vma->vm_mm;
  Machine& m = mm->machine();
  SpinLocker l(*slot.ptl);
  Pte old = slot.get();
  if (!old.is_leaf()) return 0;
  Pte updated;
  if (is_huge_zero(m, old)) {
    updated = old.with_prot(newprot & ~PTE_PROT_W);
  } else {
    updated = old.with_prot(newprot);
    // can_change_pmd_writable: private -> exclusive anon; shared -> dirty.
    if (try_writable && !updated.writable() && (newprot & PTE_PROT_R)) {
      Folio folio = m.mem().pfn_folio(old.pfn());
      bool ok = (vma->vm_flags & VM_SHARED) ? old.dirty()
                                            : folio.test(PG_anon) && folio.page_anon_exclusive(0);
      if (ok) updated = updated.mkwrite();
    }
  }
  if (updated != old) {
    pt_set_entry(mm, haddr, slot, updated);
    if (old.prot() & ~updated.prot()) tlb->remove_tlb_entry(haddr, size);
  }
  return static_cast<long>(size >> PAGE_SHIFT);
}

}  // namespace

long change_huge_pmd(MmuGather* tlb, VmArea* vma, const PtSlot& pmd, VirtAddr haddr, uint8_t newprot,
                     bool try_writable) {
  return change_huge_leaf(tlb, vma, pmd, haddr, newprot, try_writable, PMD_SIZE);
}

long change_huge_pud(MmuGather* tlb, VmArea* vma, const PtSlot& pud, VirtAddr haddr, uint8_t newprot,
                     bool try_writable) {
  return change_huge_leaf(tlb, vma, pud, haddr, newprot, try_writable, PUD_SIZE);
}

// ---- order selection (__thp_vma_allowable_orders) ----

bool vma_thp_disabled(const VmArea* vma, vm_flags_t vm_flags, bool forced_collapse) {
  if (vm_flags & VM_NOHUGEPAGE) return true;
  const MmStruct* mm = vma->vm_mm;
  if (mm->test_flag(MMF_DISABLE_THP_COMPLETELY)) return true;
  if (vm_flags & VM_HUGEPAGE) return false;
  if (forced_collapse) return false;
  return mm->test_flag(MMF_DISABLE_THP_EXCEPT_ADVISED);
}

bool thp_vma_suitable_order(const VmArea* vma, uint64_t addr, unsigned order) {
  uint64_t size = PAGE_SIZE << order;
  uint64_t haddr = align_down(addr, size);
  // File mappings also need the file offset aligned like the address.
  if (vma->vm_file && !is_aligned(vma->vm_start.vpn() - vma->vm_pgoff, 1ull << order)) return false;
  return haddr >= vma->vm_start.value() && haddr + size <= vma->vm_end.value();
}

uint32_t thp_vma_suitable_orders(const VmArea* vma, uint64_t addr, uint32_t orders) {
  uint32_t out = 0;
  for (uint32_t o = orders; o; o &= o - 1) {
    unsigned order = __builtin_ctz(o);
    if (thp_vma_suitable_order(vma, addr, order)) out |= 1u << order;
  }
  return out;
}

uint32_t thp_vma_allowable_orders(const VmArea* vma, vm_flags_t vm_flags, uint32_t tva_flags,
                                  uint32_t orders) {
  const bool smaps = tva_flags & TVA_SMAPS;
  const bool in_pf = tva_flags & TVA_IN_PF;
  const bool enforce_sysfs = tva_flags & TVA_ENFORCE_SYSFS;
  ThpPolicy& thp = vma->vm_mm->machine().thp();

  // The sysfs per-size settings (thp_vma_allowable_orders' inline part).
  if (enforce_sysfs && vma->is_anonymous()) {
    uint32_t mask = thp.always_orders();
    if (vm_flags & VM_HUGEPAGE) mask |= thp.madvise_orders();
    if (thp.global_always() || ((vm_flags & VM_HUGEPAGE) && thp.global_enabled()))
      mask |= thp.inherit_orders();
    orders &= mask;
    if (!orders) return 0;
  }

  // __thp_vma_allowable_orders.
  uint32_t supported = vma->is_anonymous() ? THP_ORDERS_ALL_ANON
                       : vma->is_dax()     ? THP_ORDERS_ALL_SPECIAL
                                           : 0;  // shmem: huge pages disabled (shmem_enabled never)
  orders &= supported;
  if (!orders) return 0;
  if (vma_thp_disabled(vma, vm_flags, tva_flags & TVA_FORCED_COLLAPSE)) return 0;
  if (vma->is_dax()) return in_pf ? orders : 0;
  if (!in_pf && !smaps && (vm_flags & VM_NO_KHUGEPAGED)) return 0;
  if (!in_pf) {
    // Keep the highest order that fits an aligned block ending at vm_end,
    // and every lower order.
    while (orders) {
      unsigned order = highest_order(orders);
      if (thp_vma_suitable_order(vma, vma->vm_end.value() - (PAGE_SIZE << order), order)) break;
      orders &= ~(1u << order);
    }
    if (!orders) return 0;
  }
  if (!vma->anon_vma) return (smaps || in_pf) ? orders : 0;
  return orders;
}

}  // namespace smm
