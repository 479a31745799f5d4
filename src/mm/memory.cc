// File: src/mm/memory.cc
//
// Page faults and zapping (mm/memory.c): __handle_mm_fault, handle_pte_fault,
// do_anonymous_page with alloc_anon_folio (mTHP order selection), do_wp_page
// (reuse or wp_page_copy), the shmem read/write fault, unmap_page_range and
// zap_pte_range with the mmu_gather, free_pgd_range. The huge-entry halves of
// these paths live in src/mm/huge_memory.cc.
//
// Not modelled: userfaultfd, NUMA hinting faults, per-VMA locks (faults take
// mmap_lock for read, which the spec allows), file-backed mappings other
// than shmem and dax.

#include "shadowmm/mm/memory.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/swap.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

// ---- rmap accounting ----

void folio_add_rmap_ptes(Folio folio, uint64_t first, uint64_t nr) {
  for (uint64_t i = first; i < first + nr; i++) folio.add_page_mapcount(i, 1);
}

void folio_remove_rmap_ptes(Folio folio, uint64_t first, uint64_t nr) {
  for (uint64_t i = first; i < first + nr; i++) folio.add_page_mapcount(i, -1);
}

void folio_add_rmap_leaf(Folio folio, uint64_t first, uint64_t nr) {
  if (first == 0 && nr == folio.nr_pages())
    folio.add_entire_mapcount(1);
  else
    folio_add_rmap_ptes(folio, first, nr);
}

void folio_remove_rmap_leaf(Folio folio, uint64_t first, uint64_t nr) {
  if (first == 0 && nr == folio.nr_pages())
    folio.add_entire_mapcount(-1);
  else
    folio_remove_rmap_ptes(folio, first, nr);
}

MmCounter mm_counter_of(Folio folio) {
  uint32_t flags = folio.flags();
  if (flags & PG_anon) return MM_ANONPAGES;
  if (flags & PG_devmap) return MM_FILEPAGES;
  return MM_SHMEMPAGES;
}

namespace {

constexpr uint32_t kAnonFolioFlags = PG_anon | PG_swapbacked | PG_lru;

// The slot of the PTE `i` entries after `slot` in the same table.
PtSlot pte_slot_at(const PtSlot& slot, unsigned i) {
  return PtSlot{slot.table, slot.entry + i, slot.ptl};
}

// Linux: the pmd_same() recheck of pte_offset_map_lock. Under the PTE
// table's lock, does the PMD still point to that table? (An empty table can
// be detached by a concurrent MADV_DONTNEED holding mmap_lock for read.)
bool pte_table_attached(MmStruct* mm, VirtAddr addr, const PtSlot& pte) {
  PtSlot pmd = pt_lookup(mm, addr, PMD_LEVEL);
  return pmd && pmd.get() == Pte::table(pte.table);
}

bool pte_range_none(const PtSlot& first, unsigned nr) {
  for (unsigned i = 0; i < nr; i++)
    if (!pte_slot_at(first, i).get().is_none()) return false;
  return true;
}

// Updates the accessed (and, for a write, dirty) bits of a present entry, as
// the hardware would. Caller holds slot.ptl.
void set_accessed_locked(const PtSlot& slot, bool write) {
  Pte e = slot.get();
  Pte n = e.mkyoung();
  if (write) n = n.mkdirty();
  if (n != e) slot.set(n);
}

// ---- anonymous faults ----

// Linux: alloc_anon_folio. Picks the largest allowed mTHP order whose aligned
// PTE run around `addr` is empty, falling back order by order when the
// allocation fails. `pte` is the fault's PTE slot.
Result<Folio> alloc_anon_folio(Machine& m, VmArea* vma, VirtAddr addr, const PtSlot& pte) {
  uint32_t orders = thp_vma_allowable_orders(vma, vma->vm_flags, TVA_IN_PF | TVA_ENFORCE_SYSFS,
                                             (1u << HPAGE_PMD_ORDER) - 1);
  orders = thp_vma_suitable_orders(vma, addr.value(), orders);
  // Drop orders whose aligned run is not entirely none; lower ones stay.
  while (orders) {
    unsigned order = highest_order(orders);
    unsigned idx = addr.index(PTE_LEVEL) & ~((1u << order) - 1);
    if (pte_range_none(PtSlot{pte.table, &pte.table->entries[idx], pte.ptl}, 1u << order)) break;
    orders &= ~(1u << order);
  }
  while (orders) {
    unsigned order = highest_order(orders);
    Result<Folio> folio = m.mem().alloc_folio(order, kAnonFolioFlags);
    if (folio.ok()) {
      m.stats().count(mthp_fault_alloc_event(order));
      return folio;
    }
    m.stats().count(VmEvent::mthp_fault_fallback);
    orders &= ~(1u << order);
  }
  Result<Folio> folio = m.mem().alloc_folio(0, kAnonFolioFlags);
  if (folio.ok()) m.stats().count(VmEvent::fault_4k);
  return folio;
}

// Linux: do_anonymous_page.
vm_fault_t do_anonymous_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pte, bool write)
    REQUIRES_SHARED(mm->mmap_lock) {
  Machine& m = mm->machine();
  if (vma->vm_flags & VM_SHARED) return VM_FAULT_SIGBUS;

  // Read fault: map the shared zero page, unless the mm forbids it.
  if (!write && m.knobs().zero_page.load(std::memory_order_relaxed)) {
    Pte zero = Pte::leaf(m.zero_folio().pfn(), vma->vm_page_prot & ~PTE_PROT_W).mkspecial();
    SpinLocker l(*pte.ptl);
    if (pte.get().is_none() && pte_table_attached(mm, addr, pte)) {
      pt_set_entry(mm, addr.align_down(PAGE_SIZE), pte, zero);
      m.stats().count(VmEvent::fault_zero_page);
    }
    return 0;
  }

  anon_vma_prepare(mm, vma);
  Result<Folio> res = alloc_anon_folio(m, vma, addr, pte);
  if (!res.ok()) return VM_FAULT_OOM;
  Folio folio = *res;
  unsigned nr = static_cast<unsigned>(folio.nr_pages());
  VirtAddr start = addr.align_down(folio.size());
  PtSlot first = pte_slot_at(PtSlot{pte.table, &pte.table->entries[0], pte.ptl}, start.index(PTE_LEVEL));
  uint8_t prot = vma->vm_page_prot;
  if (vma->vm_flags & VM_WRITE) prot |= PTE_PROT_W;
  bool installed = false;
  {
    SpinLocker l(*pte.ptl);
    // Single page: install iff still none. Large folio: iff the whole run is.
    if ((nr == 1 ? pte.get().is_none() : pte_range_none(first, nr)) && pte_table_attached(mm, addr, pte)) {
      for (unsigned i = 0; i < nr; i++) folio.set_page_anon_exclusive(i, true);
      folio_add_rmap_ptes(folio, 0, nr);
      folio.get(static_cast<int32_t>(nr));
      mm->add_rss(MM_ANONPAGES, nr);
      for (unsigned i = 0; i < nr; i++) {
        Pte e = Pte::leaf(folio.page_pfn(i), prot).mkyoung();
        if (vma->vm_flags & VM_WRITE) e = e.mkdirty();
        pt_set_entry(mm, start + i * PAGE_SIZE, pte_slot_at(first, i), e);
      }
      installed = true;
      if (nr > 1)
        for_each_observer(m, [&](MmObserver* o) { o->on_large_folio_mapped(mm, vma->vm_flags, start, folio.order()); });
    }
  }
  // The mappings hold their own references; drop the allocation's (this
  // frees the folio when the fault lost a race).
  folio.put();
  (void)installed;
  return 0;
}

// Linux: wp_can_reuse_anon_folio.
bool wp_can_reuse_anon_folio(Folio folio) {
  if (!folio.is_large()) {
    int32_t expected = 1 + (folio.test(PG_swapcache) ? 1 : 0);
    if (folio.refcount() > expected) return false;
    if (!folio.trylock()) return false;
    if (folio.test(PG_swapcache)) swap_free_folio_cache(folio);
    bool ok = folio.refcount() == 1;
    folio.unlock();
    return ok;
  }
  // A large folio is reused only when this mm maps it exclusively and every
  // reference is a mapping; with a single page mapped, copying that page is
  // preferred so the large folio can be freed.
  int64_t mapcount = folio.total_mapcount();
  if (mapcount <= 1) return false;
  // Linux asks whether one MM maps it (folio->_mm_id); after fork every page
  // is mapped twice, which the per-page mapcounts show.
  if (folio.maybe_mapped_shared() || folio.test(PG_swapcache)) return false;
  return mapcount == folio.refcount();
}

// Linux: wp_page_copy. COW of a private page, or zero page -> new page.
vm_fault_t wp_page_copy(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pte, Pte orig)
    REQUIRES_SHARED(mm->mmap_lock) {
  Machine& m = mm->machine();
  VirtAddr page = addr.align_down(PAGE_SIZE);
  bool from_zero = orig.special() && m.is_zero_pfn(orig.pfn());
  Folio old;
  uint64_t old_idx = 0;
  if (!from_zero) {
    old = m.mem().pfn_folio(orig.pfn());
    old_idx = orig.pfn() - old.pfn();
  }
  anon_vma_prepare(mm, vma);
  Result<Folio> res = m.mem().alloc_folio(0, kAnonFolioFlags);
  if (!res.ok()) return VM_FAULT_OOM;
  Folio fresh = *res;
  if (old) fresh.write(0, old.read(old_idx));

  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, page, page + PAGE_SIZE);
  mmu_notifier_invalidate_range_start(&range);
  bool copied = false;
  {
    SpinLocker l(*pte.ptl);
    if (pte.get() == orig) {
      // Clear and flush under the PTL before the new entry becomes visible:
      // a TLB walking the page tables must not keep the old page (E6).
      ptep_clear_flush(mm, page, pte);
      fresh.set_page_anon_exclusive(0, true);
      folio_add_rmap_ptes(fresh, 0, 1);
      fresh.get();
      mm->add_rss(MM_ANONPAGES, 1);
      Pte e = Pte::leaf(fresh.pfn(), vma->vm_page_prot | PTE_PROT_W).mkdirty().mkyoung();
      pt_set_entry(mm, page, pte, e);
      if (old) {
        folio_remove_rmap_ptes(old, old_idx, 1);
        mm->add_rss(mm_counter_of(old), -1);
      }
      copied = true;
    }
  }
  mmu_notifier_invalidate_range_only_end(&range);
  fresh.put();
  if (copied) {
    if (old) old.put();
    m.stats().count(VmEvent::cow);
  }
  return 0;
}

// Linux: do_wp_page. Write fault on a present, write-protected PTE.
vm_fault_t do_wp_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pte, Pte orig)
    REQUIRES_SHARED(mm->mmap_lock) {
  Machine& m = mm->machine();
  if (orig.special()) return wp_page_copy(mm, vma, addr, pte, orig);
  Folio folio = m.mem().pfn_folio(orig.pfn());
  uint64_t idx = orig.pfn() - folio.pfn();
  bool reuse;
  if (vma->vm_flags & VM_SHARED) {
    reuse = true;  // wp_page_shared: the page cache page is the page
  } else {
    reuse = folio.test(PG_anon) && (folio.page_anon_exclusive(idx) || wp_can_reuse_anon_folio(folio));
  }
  if (!reuse) return wp_page_copy(mm, vma, addr, pte, orig);
  SpinLocker l(*pte.ptl);
  if (pte.get() == orig) {
    if (!(vma->vm_flags & VM_SHARED)) folio.set_page_anon_exclusive(idx, true);
    pte.set(orig.mkwrite().mkdirty().mkyoung());
    m.stats().count(VmEvent::wp_reuse);
  }
  return 0;
}

// Linux: do_read_fault / do_shared_fault for shmem (shmem_fault).
vm_fault_t do_shmem_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pte, bool write) {
  Machine& m = mm->machine();
  uint64_t index = vma->linear_page_index(addr);
  if (index >= vma->vm_file->nr_pages()) return VM_FAULT_SIGBUS;
  Result<Folio> res = vma->vm_file->get_folio(index);
  if (!res.ok()) return VM_FAULT_OOM;
  Folio folio = *res;
  Pte e = Pte::leaf(folio.pfn(), vma->vm_page_prot).mkyoung();
  if (write) e = e.mkdirty();
  SpinLocker l(*pte.ptl);
  if (pte.get().is_none() && pte_table_attached(mm, addr, pte)) {
    folio.get();
    folio_add_rmap_ptes(folio, 0, 1);
    mm->add_rss(MM_SHMEMPAGES, 1);
    pt_set_entry(mm, addr.align_down(PAGE_SIZE), pte, e);
    m.stats().count(VmEvent::fault_shmem);
  }
  return 0;
}

// Linux: handle_pte_fault.
vm_fault_t handle_pte_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, unsigned flags)
    REQUIRES_SHARED(mm->mmap_lock) {
  bool write = flags & FAULT_FLAG_WRITE;
  PtSlot pte = pt_alloc(mm, addr, PTE_LEVEL);
  if (!pte) return 0;  // a huge entry appeared above: retry the access
  Pte e = pte.get();
  if (e.is_none()) {
    if (vma->is_anonymous()) return do_anonymous_page(mm, vma, addr, pte, write);
    if (vma->is_shmem()) return do_shmem_fault(mm, vma, addr, pte, write);
    return VM_FAULT_SIGBUS;  // dax: a PTE fault below the device alignment
  }
  if (e.is_swap()) return do_swap_page(mm, vma, addr, pte, e, write);
  if (write && !e.writable()) return do_wp_page(mm, vma, addr, pte, e);
  SpinLocker l(*pte.ptl);
  if (pte.get() == e) set_accessed_locked(pte, write);
  return 0;
}

// The huge-leaf half of __handle_mm_fault for an existing leaf in `slot`.
vm_fault_t huge_leaf_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& slot, Pte e,
                           bool write) REQUIRES_SHARED(mm->mmap_lock) {
  if (write && !e.writable()) {
    // wp_huge_pmd / wp_huge_pud.
    if (vma->is_dax()) return dax_huge_fault(mm, vma, addr, slot, write);
    if (slot.level() == PMD_LEVEL && vma->is_anonymous()) return do_huge_pmd_wp_page(mm, vma, addr, slot);
    if (slot.level() == PMD_LEVEL)
      split_huge_pmd(vma, slot, addr);
    else
      split_huge_pud(vma, slot, addr);
    return VM_FAULT_FALLBACK;
  }
  // huge_pmd_set_accessed / huge_pud_set_accessed.
  SpinLocker l(*slot.ptl);
  if (slot.get() == e) set_accessed_locked(slot, write);
  return 0;
}

// Linux: __handle_mm_fault.
vm_fault_t __handle_mm_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, unsigned flags)
    REQUIRES_SHARED(mm->mmap_lock) {
  bool write = flags & FAULT_FLAG_WRITE;
  const uint32_t tva = TVA_IN_PF | TVA_ENFORCE_SYSFS;
  for (;;) {
    PtSlot pud = pt_alloc(mm, addr, PUD_LEVEL);
    VM_BUG_ON(!pud);
    Pte pude = pud.get();
    if (pude.is_none() && thp_vma_allowable_order(vma, vma->vm_flags, tva, HPAGE_PUD_ORDER)) {
      // create_huge_pud: no anonymous PUD THP; dax maps a 1 GiB leaf.
      if (vma->is_dax()) {
        vm_fault_t ret = dax_huge_fault(mm, vma, addr, pud, write);
        if (!(ret & VM_FAULT_FALLBACK)) return ret;
      }
    } else if (pude.is_leaf()) {
      vm_fault_t ret = huge_leaf_fault(mm, vma, addr, pud, pude, write);
      if (!(ret & VM_FAULT_FALLBACK)) return ret;
    }

    PtSlot pmd = pt_alloc(mm, addr, PMD_LEVEL);
    if (!pmd) continue;  // the PUD became a leaf meanwhile
    Pte pmde = pmd.get();
    if (pmde.is_none() && thp_vma_allowable_order(vma, vma->vm_flags, tva, HPAGE_PMD_ORDER)) {
      vm_fault_t ret = VM_FAULT_FALLBACK;
      if (vma->is_anonymous())
        ret = do_huge_pmd_anonymous_page(mm, vma, addr, pmd, write);
      else if (vma->is_dax())
        ret = dax_huge_fault(mm, vma, addr, pmd, write);
      if (!(ret & VM_FAULT_FALLBACK)) return ret;
    } else if (pmde.is_leaf()) {
      vm_fault_t ret = huge_leaf_fault(mm, vma, addr, pmd, pmde, write);
      if (!(ret & VM_FAULT_FALLBACK)) return ret;
    }
    return handle_pte_fault(mm, vma, addr, flags);
  }
}

}  // namespace

vm_fault_t handle_mm_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, unsigned flags) {
  Machine& m = mm->machine();
  m.stats().count(VmEvent::pgfault);
  VM_BUG_ON(!vma->contains(addr));
  vm_fault_t ret;
  if ((flags & FAULT_FLAG_WRITE) && !(vma->vm_flags & VM_WRITE))
    ret = VM_FAULT_SIGSEGV;
  else if (!vma->is_accessible())
    ret = VM_FAULT_SIGSEGV;
  else
    ret = __handle_mm_fault(mm, vma, addr, flags);
  if (ret & VM_FAULT_OOM) m.stats().count(VmEvent::fault_oom);
  if (ret & VM_FAULT_SIGBUS) m.stats().count(VmEvent::fault_sigbus);
  if (ret & VM_FAULT_SIGSEGV) m.stats().count(VmEvent::fault_sigsegv);
  return ret & ~VM_FAULT_FALLBACK;
}

// ---- CPU accesses ----

namespace {

// arch/x86/mm/fault.c access_error: writes need VM_WRITE; any access flag
// allows reads (x86 has no write-only or exec-only pages).
bool access_error(const VmArea* vma, Access access) {
  if (access == Access::kWrite) return !(vma->vm_flags & VM_WRITE);
  return !vma->is_accessible();
}

// Try the access through the page tables as the MMU would: under the lock
// of the leaf's table, so a concurrent zap cannot free the page mid-access.
// Returns true when the access happened.
bool try_access(MmStruct* mm, VirtAddr addr, Access access, uint64_t* value) {
  Machine& m = mm->machine();
  for (unsigned level = PUD_LEVEL;; level--) {
    PtSlot slot = pt_lookup(mm, addr, level);
    if (!slot) return false;
    Pte e = slot.get();
    if (e.is_table()) {
      VM_BUG_ON(level == PTE_LEVEL);
      continue;
    }
    if (!e.is_leaf()) return false;
    SpinLocker l(*slot.ptl);
    e = slot.get();
    if (!e.is_leaf()) return false;
    if (access == Access::kWrite ? !e.writable() : !e.readable()) return false;
    uint64_t page_in_leaf = (addr.value() & (level_size(level) - 1)) >> PAGE_SHIFT;
    Pfn pfn = e.pfn() + page_in_leaf;
    if (access == Access::kWrite)
      m.mem().value(pfn).store(*value, std::memory_order_relaxed);
    else
      *value = m.mem().value(pfn).load(std::memory_order_relaxed);
    set_accessed_locked(slot, access == Access::kWrite);
    return true;
  }
}

}  // namespace

int cpu_access(MmStruct* mm, VirtAddr addr, Access access, uint64_t* value) {
  MmOpScope op(access == Access::kWrite ? "cpu write" : "cpu read");
  ReadLocker l(mm->mmap_lock);
  VmArea* vma = mm->mm_mt.lookup(addr);
  if (!vma || access_error(vma, access)) return -EFAULT;
  // A fault may need several rounds (a lost race, a split then PTE fault).
  for (int attempt = 0; attempt < 64; attempt++) {
    if (try_access(mm, addr, access, value)) return 0;
    vm_fault_t ret = handle_mm_fault(mm, vma, addr, access == Access::kWrite ? FAULT_FLAG_WRITE : 0);
    if (ret & VM_FAULT_OOM) return -ENOMEM;
    if (ret & VM_FAULT_ERROR) return -EFAULT;
  }
  VM_BUG_ON(true && "fault did not make progress");
  return -EFAULT;
}

int cpu_touch(MmStruct* mm, VirtAddr start, uint64_t len, Access access, std::optional<uint64_t> value) {
  if (len == 0 || !start.is_aligned(PAGE_SIZE)) return -EINVAL;
  VirtAddr end = start + align_up(len, PAGE_SIZE);
  if (end <= start) return -EINVAL;
  {
    ReadLocker l(mm->mmap_lock);
    for (VirtAddr a = start; a < end;) {
      VmArea* vma = mm->mm_mt.lookup(a);
      if (!vma || access_error(vma, access)) return -EFAULT;
      a = vma->vm_end;
    }
  }
  for (VirtAddr a = start; a < end; a += PAGE_SIZE) {
    uint64_t v = value ? *value : a.value();
    int rc = cpu_access(mm, a, access, &v);
    if (rc) return rc;
  }
  return 0;
}

// ---- zap ----

namespace {

// Linux: zap_pte_range. Clears the present PTEs of [addr, end) (inside one
// PTE table), queueing page references on the gather; flushes early when the
// gather's batch is full.
void zap_pte_range(MmuGather* tlb, VmArea* vma, const PtSlot& pmd, PageTable* table, VirtAddr addr,
                   VirtAddr end, const ZapDetails& details) {
  MmStruct* mm = vma->vm_mm;
  Machine& m = mm->machine();
  VirtAddr range_start = addr;
  while (addr < end) {
    bool force_flush = false;
    int64_t rss[NR_MM_COUNTERS] = {};  // add_mm_rss_vec at the end
    {
      SpinLocker l(table->ptl);
      for (; addr < end; addr += PAGE_SIZE) {
        PtSlot slot{table, &table->entries[addr.index(PTE_LEVEL)], &table->ptl};
        Pte e = slot.get();
        if (e.is_none()) continue;
        if (e.is_swap()) {
          slot.set(Pte::none());
          swap_free_entry(m, e);
          rss[MM_SWAPENTS]--;
          continue;
        }
        Pte old = pt_get_and_clear(mm, addr, slot);
        tlb->remove_tlb_entry(addr, PAGE_SIZE);
        if (old.special()) continue;  // the zero page
        Folio folio = m.mem().pfn_folio(old.pfn());
        folio_remove_rmap_ptes(folio, old.pfn() - folio.pfn(), 1);
        rss[mm_counter_of(folio)]--;
        if (old.dirty() && !folio.test(PG_anon)) folio.set(PG_dirty);
        if (tlb->remove_folio_pages(folio, 1)) {
          force_flush = true;
          addr += PAGE_SIZE;
          break;
        }
      }
      // The batch is full: flush the TLB before the PTL is dropped.
      if (force_flush) tlb->flush_tlbonly();
    }
    for (unsigned c = 0; c < NR_MM_COUNTERS; c++)
      if (rss[c]) mm->add_rss(static_cast<MmCounter>(c), rss[c]);
    if (force_flush) tlb->flush();
  }

  // 6.14+ page-table reclaim (MADV_DONTNEED): a PTE table this zap emptied
  // completely is freed through the gather.
  // The zap holds mmap_lock only for read: lockless walkers may still reach
  // the table, so it is freed only at the next mmap_lock write (deferred),
  // and skipped when too many are already waiting.
  if (details.reclaim_pt && range_start.is_aligned(PMD_SIZE) && end - range_start >= PMD_SIZE &&
      pt_deferred_count(mm) < MmStruct::kMaxDeferredTables) {
    SpinLocker pl(*pmd.ptl);
    if (pmd.get() == Pte::table(table)) {
      SpinLocker l(table->ptl);
      if (table->empty()) {
        pmd.set(Pte::none());
        tlb->remove_table(table, range_start, /*under_read_lock=*/true);
      }
    }
  }
}

void zap_pmd_range(MmuGather* tlb, VmArea* vma, PageTable* pmd_table, VirtAddr addr, VirtAddr end,
                   const ZapDetails& details) {
  MmStruct* mm = vma->vm_mm;
  while (addr < end) {
    VirtAddr next = std::min(end, addr.align_down(PMD_SIZE) + PMD_SIZE);
    PtSlot pmd{pmd_table, &pmd_table->entries[addr.index(PMD_LEVEL)], &pmd_table->ptl};
    Pte e = pmd.get();
    if (e.is_leaf()) {
      if (next - addr == PMD_SIZE) {
        zap_huge_pmd(tlb, vma, pmd, addr);
        addr = next;
        continue;
      }
      split_huge_pmd(vma, pmd, addr);
      e = pmd.get();
    }
    if (e.is_table()) zap_pte_range(tlb, vma, pmd, e.table(), addr, next, details);
    (void)mm;
    addr = next;
  }
}

void zap_pud_range(MmuGather* tlb, VmArea* vma, PageTable* pud_table, VirtAddr addr, VirtAddr end,
                   const ZapDetails& details) {
  MmStruct* mm = vma->vm_mm;
  while (addr < end) {
    VirtAddr next = std::min(end, addr.align_down(PUD_SIZE) + PUD_SIZE);
    PtSlot pud{pud_table, &pud_table->entries[addr.index(PUD_LEVEL)], &mm->page_table_lock};
    Pte e = pud.get();
    if (e.is_leaf()) {
      if (next - addr == PUD_SIZE) {
        zap_huge_pud(tlb, vma, pud, addr);
        addr = next;
        continue;
      }
      split_huge_pud(vma, pud, addr);
      e = pud.get();
    }
    if (e.is_table()) zap_pmd_range(tlb, vma, e.table(), addr, next, details);
    addr = next;
  }
}

}  // namespace

void unmap_page_range(MmuGather* tlb, VmArea* vma, VirtAddr start, VirtAddr end,
                      const ZapDetails& details) {
  MmStruct* mm = vma->vm_mm;
  VM_BUG_ON(start < vma->vm_start || end > vma->vm_end || start >= end);
  tlb->start_vma();
  for (VirtAddr addr = start; addr < end;) {
    VirtAddr next = std::min(end, addr.align_down(PGDIR_SIZE) + PGDIR_SIZE);
    Pte e(mm->pgd->entries[addr.index(PGD_LEVEL)].load(std::memory_order_acquire));
    if (e.is_table()) zap_pud_range(tlb, vma, e.table(), addr, next, details);
    addr = next;
  }
  tlb->end_vma();
}

// ---- page-table freeing (free_pgd_range) ----

namespace {

// Frees every PTE table hanging off [addr, end) of `pmd_table`, then the PMD
// table itself when no VMA outside [floor, ceiling) can share it.
void free_pmd_range(MmuGather* tlb, MmStruct* mm, const PtSlot& pud, VirtAddr addr, VirtAddr end,
                    VirtAddr floor, VirtAddr ceiling) {
  PageTable* pmd_table = pud.get().table();
  VirtAddr start = addr;
  for (; addr < end; addr = std::min(end, addr.align_down(PMD_SIZE) + PMD_SIZE)) {
    auto& slot = pmd_table->entries[addr.index(PMD_LEVEL)];
    Pte e(slot.load(std::memory_order_acquire));
    if (e.is_none()) continue;
    VM_BUG_ON(!e.is_table());
    slot.store(0, std::memory_order_release);
    tlb->remove_table(e.table(), addr.align_down(PMD_SIZE));
  }
  start = start.align_down(PUD_SIZE);
  if (start < floor) return;
  if (ceiling.value()) {
    ceiling = ceiling.align_down(PUD_SIZE);
    if (!ceiling.value()) return;
  }
  if (end.value() - 1 > ceiling.value() - 1) return;
  pud.set(Pte::none());
  tlb->remove_table(pmd_table, start);
  (void)mm;
}

void free_pud_range(MmuGather* tlb, MmStruct* mm, std::atomic<uint64_t>& pgd_entry, VirtAddr addr,
                    VirtAddr end, VirtAddr floor, VirtAddr ceiling) {
  PageTable* pud_table = Pte(pgd_entry.load(std::memory_order_acquire)).table();
  VirtAddr start = addr;
  for (; addr < end; addr = std::min(end, addr.align_down(PUD_SIZE) + PUD_SIZE)) {
    PtSlot pud{pud_table, &pud_table->entries[addr.index(PUD_LEVEL)], &mm->page_table_lock};
    Pte e = pud.get();
    if (e.is_none()) continue;
    VM_BUG_ON(!e.is_table());
    VirtAddr next = std::min(end, addr.align_down(PUD_SIZE) + PUD_SIZE);
    free_pmd_range(tlb, mm, pud, addr, next, floor, ceiling);
  }
  start = start.align_down(PGDIR_SIZE);
  if (start < floor) return;
  if (ceiling.value()) {
    ceiling = ceiling.align_down(PGDIR_SIZE);
    if (!ceiling.value()) return;
  }
  if (end.value() - 1 > ceiling.value() - 1) return;
  pgd_entry.store(0, std::memory_order_release);
  tlb->remove_table(pud_table, start);
}

}  // namespace

void free_pgd_range(MmuGather* tlb, VirtAddr addr, VirtAddr end, VirtAddr floor, VirtAddr ceiling) {
  MmStruct* mm = tlb->mm();
  // Skip the PTE table shared with memory below floor and the one shared
  // with memory above ceiling (mm/memory.c's arithmetic, ceiling 0 = top).
  addr = addr.align_down(PMD_SIZE);
  if (addr < floor) {
    addr = addr + PMD_SIZE;
    if (!addr.value()) return;
  }
  if (ceiling.value()) {
    ceiling = ceiling.align_down(PMD_SIZE);
    if (!ceiling.value()) return;
  }
  if (end.value() - 1 > ceiling.value() - 1) end = end - PMD_SIZE;
  if (addr.value() > end.value() - 1) return;
  SpinLocker l(mm->page_table_lock);
  for (VirtAddr a = addr; a < end;) {
    VirtAddr next = std::min(end, a.align_down(PGDIR_SIZE) + PGDIR_SIZE);
    if (next.value() == 0) next = end;
    auto& pgd_entry = mm->pgd->entries[a.index(PGD_LEVEL)];
    if (Pte(pgd_entry.load(std::memory_order_acquire)).is_table())
      free_pud_range(tlb, mm, pgd_entry, a, next, floor, ceiling);
    a = next;
  }
}

}  // namespace smm
