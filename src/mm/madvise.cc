// File: src/mm/madvise.cc
//
// madvise (mm/madvise.c): argument checks, the VMA walk that skips holes and
// reports ENOMEM after processing every mapped part, and the behaviours:
//   flag changes (HUGEPAGE, NOHUGEPAGE, NORMAL, RANDOM, SEQUENTIAL, DONTFORK,
//     DOFORK, DONTDUMP, DODUMP, WIPEONFORK, KEEPONFORK) under mmap_lock (write)
//     through vma_modify_flags;
//   DONTNEED / DONTNEED_LOCKED / FREE: one CLEAR range per VMA part, one
//     mmu_gather for the whole call (freed pages go at the end);
//   COLD (clear accessed bits), WILLNEED (nothing to read ahead without
//     swap-in work), PAGEOUT (reclaim, src/mm/vmscan.cc), POPULATE_*
//     (mm/gup.c), COLLAPSE (src/mm/khugepaged.cc).
//
// Deviation from Linux: folios are never split by madvise. Where Linux would
// split a partly covered large folio (FREE, COLD, PAGEOUT), the model splits
// the PMD mapping if there is one and then leaves the partly covered folio
// alone, as Linux does when the split fails.

#include "shadowmm/mm/madvise.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/gup.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/swap.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/mm/vmscan.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/mmu_gather.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

bool madvise_behavior_valid(int advice) {
  switch (advice) {
    case MADV_NORMAL:
    case MADV_RANDOM:
    case MADV_SEQUENTIAL:
    case MADV_WILLNEED:
    case MADV_DONTNEED:
    case MADV_FREE:
    case MADV_DONTFORK:
    case MADV_DOFORK:
    case MADV_DONTDUMP:
    case MADV_DODUMP:
    case MADV_WIPEONFORK:
    case MADV_KEEPONFORK:
    case MADV_HUGEPAGE:
    case MADV_NOHUGEPAGE:
    case MADV_COLD:
    case MADV_PAGEOUT:
    case MADV_POPULATE_READ:
    case MADV_POPULATE_WRITE:
    case MADV_DONTNEED_LOCKED:
    case MADV_COLLAPSE:
      return true;
    default:
      return false;
  }
}

namespace {

bool needs_write_lock(int advice) {
  switch (advice) {
    case MADV_WILLNEED:
    case MADV_DONTNEED:
    case MADV_DONTNEED_LOCKED:
    case MADV_FREE:
    case MADV_COLD:
    case MADV_PAGEOUT:
    case MADV_POPULATE_READ:
    case MADV_POPULATE_WRITE:
    case MADV_COLLAPSE:
      return false;
    default:
      return true;
  }
}

// ---- flag-changing behaviours ----

// Linux: hugepage_madvise (with S1's start/end).
void hugepage_madvise(VmArea* vma, VirtAddr start, VirtAddr end, vm_flags_t* new_flags, int advice) {
  if (advice == MADV_HUGEPAGE) {
    // [S1] An active BLOCK_THP notifier owns this nohuge policy: the hint is
    // ignored.
    if ((*new_flags & VM_NOHUGEPAGE) && mmu_interval_notifier_range_block_thp(vma->vm_mm, start, end))
      return;
    *new_flags &= ~VM_NOHUGEPAGE;
    *new_flags |= VM_HUGEPAGE;
    khugepaged_enter_vma(vma, *new_flags);
  } else {
    *new_flags &= ~VM_HUGEPAGE;
    *new_flags |= VM_NOHUGEPAGE;
  }
}

int madvise_update_flags(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end, int advice)
    REQUIRES(mm->mmap_lock) {
  vm_flags_t new_flags = vma->vm_flags;
  switch (advice) {
    case MADV_NORMAL:
      new_flags &= ~(VM_SEQ_READ | VM_RAND_READ);
      break;
    case MADV_SEQUENTIAL:
      new_flags = (new_flags & ~VM_RAND_READ) | VM_SEQ_READ;
      break;
    case MADV_RANDOM:
      new_flags = (new_flags & ~VM_SEQ_READ) | VM_RAND_READ;
      break;
    case MADV_DONTFORK:
      new_flags |= VM_DONTCOPY;
      break;
    case MADV_DOFORK:
      if (vma->vm_flags & VM_IO) return -EINVAL;
      new_flags &= ~VM_DONTCOPY;
      break;
    case MADV_WIPEONFORK:
      if (vma->vm_file || (vma->vm_flags & VM_SHARED)) return -EINVAL;
      new_flags |= VM_WIPEONFORK;
      break;
    case MADV_KEEPONFORK:
      new_flags &= ~VM_WIPEONFORK;
      break;
    case MADV_DONTDUMP:
      new_flags |= VM_DONTDUMP;
      break;
    case MADV_DODUMP:
      if (vma->vm_flags & VM_SPECIAL) return -EINVAL;
      new_flags &= ~VM_DONTDUMP;
      break;
    case MADV_HUGEPAGE:
    case MADV_NOHUGEPAGE:
      hugepage_madvise(vma, start, end, &new_flags, advice);
      break;
    default:
      VM_BUG_ON(true);
  }
  if (new_flags == vma->vm_flags) return 0;
  Result<VmArea*> r = vma_modify_flags(mm, vma, start, end, new_flags);
  if (!r.ok()) return r.error() == ENOMEM ? -EAGAIN : r.rc();
  (*r)->vm_page_prot = vm_get_page_prot((*r)->vm_flags);
  return 0;
}

// ---- DONTNEED ----

int madvise_dontneed_single_vma(MmuGather* tlb, VmArea* vma, VirtAddr start, VirtAddr end, int advice) {
  // madvise_dontneed_free_valid_vma.
  if ((vma->vm_flags & VM_PFNMAP) || ((vma->vm_flags & VM_LOCKED) && advice != MADV_DONTNEED_LOCKED))
    return -EINVAL;
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, vma->vm_mm, start, end);
  mmu_notifier_invalidate_range_start(&range);
  unmap_page_range(tlb, vma, start, end, ZapDetails{.reclaim_pt = true});
  mmu_notifier_invalidate_range_end(&range);
  return 0;
}

// ---- FREE ----

// Marks a folio lazily freeable (folio_mark_lazyfree): reclaim may discard it
// while it stays clean.
void folio_mark_lazyfree(Folio folio) {
  folio.clear(PG_swapbacked);
  folio.clear(PG_dirty);
}

void madvise_free_pte_range(MmuGather* tlb, VmArea* vma, PageTable* table, VirtAddr addr, VirtAddr end) {
  MmStruct* mm = vma->vm_mm;
  Machine& m = mm->machine();
  SpinLocker l(table->ptl);
  while (addr < end) {
    PtSlot slot{table, &table->entries[addr.index(PTE_LEVEL)], &table->ptl};
    Pte e = slot.get();
    if (e.is_swap()) {
      slot.set(Pte::none());
      swap_free_entry(m, e);
      mm->add_rss(MM_SWAPENTS, -1);
      addr += PAGE_SIZE;
      continue;
    }
    if (!e.is_leaf() || e.special()) {
      addr += PAGE_SIZE;
      continue;
    }
    Folio folio = m.mem().pfn_folio(e.pfn());
    uint64_t idx = e.pfn() - folio.pfn();
    // The run of PTEs mapping consecutive pages of this folio from here.
    unsigned nr = 1;
    while (addr + nr * PAGE_SIZE < end && addr.index(PTE_LEVEL) + nr < PTRS_PER_TABLE) {
      Pte n(table->entries[addr.index(PTE_LEVEL) + nr].load(std::memory_order_relaxed));
      if (!n.is_leaf() || n.pfn() != e.pfn() + nr) break;
      nr++;
    }
    bool whole = idx == 0 && nr == folio.nr_pages();
    if (!folio.test(PG_anon) || !whole || folio.maybe_mapped_shared()) {
      addr += nr * PAGE_SIZE;
      continue;
    }
    for (unsigned i = 0; i < nr; i++) {
      PtSlot s{table, slot.entry + i, &table->ptl};
      Pte p = s.get();
      if (p.young() || p.dirty()) {
        s.set(p.mkold().mkclean());
        tlb->remove_tlb_entry(addr + i * PAGE_SIZE, PAGE_SIZE);
      }
    }
    folio_mark_lazyfree(folio);
    addr += nr * PAGE_SIZE;
  }
}

int madvise_free_single_vma(MmuGather* tlb, VmArea* vma, VirtAddr start, VirtAddr end) {
  if (!vma->is_anonymous()) return -EINVAL;
  if (vma->vm_flags & (VM_PFNMAP | VM_LOCKED)) return -EINVAL;
  MmStruct* mm = vma->vm_mm;
  Machine& m = mm->machine();
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, start, end);
  mmu_notifier_invalidate_range_start(&range);
  tlb->start_vma();
  for (VirtAddr addr = start; addr < end;) {
    VirtAddr next = std::min(end, addr.align_down(PMD_SIZE) + PMD_SIZE);
    PtSlot pmd = pt_lookup(mm, addr, PMD_LEVEL);
    Pte e = pmd ? pmd.get() : Pte::none();
    if (e.is_leaf()) {
      if (next - addr != PMD_SIZE) {
        split_huge_pmd(vma, pmd, addr);
        e = pmd.get();
      } else {
        // madvise_free_huge_pmd: an exclusive THP is marked clean and old.
        SpinLocker l(*pmd.ptl);
        Pte cur = pmd.get();
        if (cur.is_leaf() && !cur.special()) {
          Folio folio = m.mem().pfn_folio(cur.pfn());
          if (!folio.maybe_mapped_shared()) {
            if (cur.young() || cur.dirty()) {
              pmd.set(cur.mkold().mkclean());
              tlb->remove_tlb_entry(addr, PMD_SIZE);
            }
            folio_mark_lazyfree(folio);
          }
        }
        addr = next;
        continue;
      }
    }
    if (e.is_table()) madvise_free_pte_range(tlb, vma, e.table(), addr, next);
    addr = next;
  }
  tlb->end_vma();
  mmu_notifier_invalidate_range_end(&range);
  return 0;
}

// ---- COLD ----

// Linux: can_madv_lru_vma.
bool can_madv_lru_vma(const VmArea* vma) { return !(vma->vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)); }

// MADV_COLD: age the mappings (clear accessed bits of wholly covered
// entries). No notifier range: aging is not an invalidation.
void madvise_cold_range(MmuGather* tlb, VmArea* vma, VirtAddr start, VirtAddr end) {
  MmStruct* mm = vma->vm_mm;
  tlb->start_vma();
  for (VirtAddr addr = start; addr < end;) {
    VirtAddr next = std::min(end, addr.align_down(PMD_SIZE) + PMD_SIZE);
    PtSlot pmd = pt_lookup(mm, addr, PMD_LEVEL);
    Pte e = pmd ? pmd.get() : Pte::none();
    if (e.is_leaf() && next - addr == PMD_SIZE) {
      SpinLocker l(*pmd.ptl);
      Pte cur = pmd.get();
      if (cur.is_leaf() && cur.young()) {
        pmd.set(cur.mkold());
        tlb->remove_tlb_entry(addr, PMD_SIZE);
      }
    } else if (e.is_table()) {
      PageTable* t = e.table();
      SpinLocker l(t->ptl);
      for (VirtAddr a = addr; a < next; a += PAGE_SIZE) {
        PtSlot s{t, &t->entries[a.index(PTE_LEVEL)], &t->ptl};
        Pte p = s.get();
        if (p.is_leaf() && p.young()) {
          s.set(p.mkold());
          tlb->remove_tlb_entry(a, PAGE_SIZE);
        }
      }
    }
    addr = next;
  }
  tlb->end_vma();
}

int madvise_vma_behavior(MmuGather* tlb, MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end,
                         int advice) REQUIRES_SHARED(mm->mmap_lock) NO_THREAD_SAFETY_ANALYSIS {
  // Flag changers run with the lock held for write (see needs_write_lock);
  // the analysis cannot see which mode this call holds.
  switch (advice) {
    case MADV_DONTNEED:
    case MADV_DONTNEED_LOCKED:
      return madvise_dontneed_single_vma(tlb, vma, start, end, advice);
    case MADV_FREE:
      return madvise_free_single_vma(tlb, vma, start, end);
    case MADV_COLD:
      if (!can_madv_lru_vma(vma)) return -EINVAL;
      madvise_cold_range(tlb, vma, start, end);
      return 0;
    case MADV_PAGEOUT:
      if (!can_madv_lru_vma(vma)) return -EINVAL;
      return madvise_pageout_range(mm, vma, start, end);
    case MADV_WILLNEED:
      return 0;
    case MADV_COLLAPSE: {
      // May drop and retake mmap_lock; the walk looks VMAs up again.
      bool lock_dropped = false;
      return madvise_collapse(mm, vma, start, end, &lock_dropped);
    }
    default:
      return madvise_update_flags(mm, vma, start, end, advice);
  }
}

// Linux: madvise_walk_vmas.
int madvise_walk_vmas(MmuGather* tlb, MmStruct* mm, VirtAddr start, VirtAddr end, int advice)
    REQUIRES_SHARED(mm->mmap_lock) {
  int unmapped_error = 0;
  for (;;) {
    VmArea* vma = mm->mm_mt.find(start);
    if (!vma) return -ENOMEM;
    if (start < vma->vm_start) {
      unmapped_error = -ENOMEM;
      start = vma->vm_start;
      if (start >= end) break;
    }
    VirtAddr tmp = std::min(vma->vm_end, end);
    int error = madvise_vma_behavior(tlb, mm, vma, start, tmp, advice);
    if (error) return error;
    start = tmp;
    if (start >= end) break;
  }
  return unmapped_error;
}

}  // namespace

int do_madvise(MmStruct* mm, VirtAddr start, uint64_t len_in, int advice) {
  MmOpScope op("madvise");
  if (!madvise_behavior_valid(advice)) return -EINVAL;
  if (!start.is_aligned(PAGE_SIZE)) return -EINVAL;
  uint64_t len = align_up(len_in, PAGE_SIZE);
  if (len_in && !len) return -EINVAL;
  VirtAddr end = start + len;
  if (end < start) return -EINVAL;
  if (end == start) return 0;

  if (advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE) {
    ReadLocker l(mm->mmap_lock);
    return faultin_page_range(mm, start, end, advice == MADV_POPULATE_WRITE);
  }
  // One mmu_gather for the whole call: pages zapped by DONTNEED are freed
  // after every range has ended (madvise_finish_tlb).
  if (needs_write_lock(advice)) {
    MmapWriteLock l(mm);
    MmuGather tlb(mm);
    int rc = madvise_walk_vmas(&tlb, mm, start, end, advice);
    tlb.finish();
    return rc;
  }
  ReadLocker l(mm->mmap_lock);
  MmuGather tlb(mm);
  int rc = madvise_walk_vmas(&tlb, mm, start, end, advice);
  tlb.finish();
  return rc;
}

}  // namespace smm
