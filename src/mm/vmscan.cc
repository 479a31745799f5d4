// File: src/mm/vmscan.cc
//
// MADV_PAGEOUT reclaim (mm/madvise.c: madvise_cold_or_pageout_pte_range;
// mm/vmscan.c: shrink_folio_list; mm/rmap.c: try_to_unmap_one).
//
// Reclaim only takes folios mapped exclusively by the walked range, which
// is all MADV_PAGEOUT reclaims in Linux too, so the reverse map of each
// folio is the one mapping the walk found (page.h: no ->mapping/->index).
//
// Deviation from Linux: a PMD-mapped THP is split at the PMD and swapped out
// page by page without splitting the folio (Linux swaps it out whole with
// THP_SWAP, or splits the folio first).

#include "shadowmm/mm/vmscan.h"

#include <vector>

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

namespace {

struct Candidate {
  Folio folio;
  VirtAddr addr;  // where page 0 of the folio is mapped
};

// Linux: try_to_unmap_one for the one mapping of `c.folio` in `vma`, then
// free it. Returns true when the folio was reclaimed.
bool reclaim_folio(MmStruct* mm, VmArea* vma, const Candidate& c) {
  Machine& m = mm->machine();
  Folio folio = c.folio;
  if (!folio.trylock()) return false;
  bool lazyfree = !folio.test(PG_swapbacked);
  if (!lazyfree && m.swap().nr_slots() == m.swap().used()) {
    // folio_alloc_swap failed. Linux then splits a large folio (which unmaps
    // a PMD mapping) and keeps its pages; the model splits the PMD only.
    folio.unlock();
    if (PtSlot pmd = pt_lookup(mm, c.addr, PMD_LEVEL); pmd && pmd.get().is_leaf())
      split_huge_pmd(vma, pmd, c.addr);
    return false;
  }
  VirtAddr fstart = std::max(c.addr, vma->vm_start);
  VirtAddr fend = std::min(c.addr + folio.size(), vma->vm_end);
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, fstart, fend);
  mmu_notifier_invalidate_range_start(&range);

  // TTU_SPLIT_HUGE_PMD.
  if (PtSlot pmd = pt_lookup(mm, c.addr, PMD_LEVEL); pmd && pmd.get().is_leaf()) split_huge_pmd(vma, pmd, c.addr);

  uint64_t nr = folio.nr_pages();
  uint64_t unmapped = 0;
  bool aborted = false;
  for (uint64_t i = 0; i < nr && !aborted; i++) {
    VirtAddr a = c.addr + i * PAGE_SIZE;
    PtSlot pte = pt_lookup(mm, a, PTE_LEVEL);
    if (!pte) continue;
    SpinLocker l(*pte.ptl);
    Pte e = pte.get();
    if (!e.is_leaf() || e.pfn() != folio.page_pfn(i)) continue;
    Pte old = ptep_clear_flush(mm, a, pte);
    if (lazyfree) {
      if (old.dirty() || folio.test(PG_dirty)) {
        // MADV_FREE page written again: keep it, it is swap-backed again.
        pt_set_entry(mm, a, pte, old);
        folio.set(PG_swapbacked);
        aborted = true;
        break;
      }
    } else {
      Result<uint64_t> slot = m.swap().alloc(folio.read(i));
      if (!slot.ok()) {
        pt_set_entry(mm, a, pte, old);
        aborted = true;
        break;
      }
      pte.set(Pte::swap(*slot, folio.page_anon_exclusive(i)));
      mm->add_rss(MM_SWAPENTS, 1);
      m.stats().count(VmEvent::pswpout);
    }
    folio_remove_rmap_ptes(folio, i, 1);
    mm->add_rss(MM_ANONPAGES, -1);
    unmapped++;
  }
  mmu_notifier_invalidate_range_end(&range);
  folio.unlock();
  // Every PTE was flushed by ptep_clear_flush: the references may go.
  if (unmapped) folio.put(static_cast<int32_t>(unmapped));
  if (!aborted) m.stats().count(VmEvent::pgsteal);
  return !aborted;
}

}  // namespace

int madvise_pageout_range(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end) {
  Machine& m = mm->machine();
  if (!vma->is_anonymous()) return 0;
  std::vector<Candidate> list;
  for (VirtAddr addr = start; addr < end;) {
    VirtAddr next = std::min(end, addr.align_down(PMD_SIZE) + PMD_SIZE);
    PtSlot pmd = pt_lookup(mm, addr, PMD_LEVEL);
    Pte e = pmd ? pmd.get() : Pte::none();
    if (e.is_leaf()) {
      if (next - addr == PMD_SIZE && !e.special()) {
        SpinLocker l(*pmd.ptl);
        Pte cur = pmd.get();
        if (cur.is_leaf() && !cur.special()) {
          Folio folio = m.mem().pfn_folio(cur.pfn());
          if (!folio.maybe_mapped_shared()) {
            folio.get();  // isolate it while the PMD still maps it
            list.push_back({folio, addr});
          }
        }
        addr = next;
        continue;
      }
      if (e.special()) {
        addr = next;
        continue;
      }
      split_huge_pmd(vma, pmd, addr);
      e = pmd.get();
    }
    if (e.is_table()) {
      PageTable* t = e.table();
      SpinLocker l(t->ptl);
      for (VirtAddr a = addr; a < next;) {
        Pte p(t->entries[a.index(PTE_LEVEL)].load(std::memory_order_relaxed));
        if (!p.is_leaf() || p.special()) {
          a += PAGE_SIZE;
          continue;
        }
        Folio folio = m.mem().pfn_folio(p.pfn());
        uint64_t idx = p.pfn() - folio.pfn();
        VirtAddr fstart = a - idx * PAGE_SIZE;
        bool whole = fstart >= start && fstart + folio.size() <= end && fstart >= vma->vm_start;
        if (whole && folio.test(PG_anon) && !folio.maybe_mapped_shared() &&
            (list.empty() || !(list.back().folio == folio))) {
          folio.get();  // isolate it under the PTL that maps it
          list.push_back({folio, fstart});
        }
        a = std::max(a + PAGE_SIZE, fstart + folio.size());
      }
    }
    addr = next;
  }
  for (const Candidate& c : list) {
    reclaim_folio(mm, vma, c);
    c.folio.put();
  }
  return 0;
}

}  // namespace smm
