// File: src/mm/fork.cc
//
// fork (kernel/fork.c: dup_mmap; mm/memory.c: copy_page_range and its
// helpers; mm/huge_memory.c: copy_huge_pmd; mm/rmap.c: anon_vma_fork).
//
// Anonymous pages end up shared by parent and child, read-only in both and
// no longer PageAnonExclusive, so the first write on either side copies (or
// reuses the page when the other side has let go of it). The child's PTEs
// are marked old.
//
// Not modelled: pinned pages that must be copied at fork time
// (folio_maybe_dma_pinned), userfaultfd-wp.

#include "shadowmm/mm/fork.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

namespace {

// Linux: is_cow_mapping.
bool is_cow_mapping(vm_flags_t flags) { return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE; }

// Linux: vma_needs_copy. Other VMAs are refaulted by the child.
bool vma_needs_copy(const VmArea* src) { return src->anon_vma || (src->vm_flags & (VM_PFNMAP | VM_MIXEDMAP)); }

// Linux: anon_vma_fork. The child links to every anon_vma of the parent and
// gets its own, whose root is the parent's root.
void anon_vma_fork(VmArea* dst, const VmArea* src) {
  dst->anon_vma = nullptr;
  dst->anon_vma_chain.clear();
  if (!src->anon_vma) return;
  dst->anon_vma_chain = src->anon_vma_chain;
  std::shared_ptr<AnonVma> root;
  for (const auto& av : src->anon_vma_chain)
    if (av.get() == src->anon_vma.load()) root = av->root ? av->root : av;
  auto own = std::make_shared<AnonVma>();
  own->root = root;
  dst->anon_vma = own.get();
  dst->anon_vma_chain.push_back(std::move(own));
}

struct CopyCtx {
  MmStruct* dst_mm;
  MmStruct* src_mm;
  VmArea* dst_vma;
  VmArea* src_vma;
  bool cow;
};

// copy_pte_range for one PTE table of the source.
void copy_pte_range(const CopyCtx& c, PageTable* src_table, VirtAddr addr, VirtAddr end) {
  Machine& m = c.src_mm->machine();
  PtSlot dst = pt_alloc(c.dst_mm, addr, PTE_LEVEL);
  VM_BUG_ON(!dst);
  // The child's lock first, the parent's nested (as copy_pte_range does).
  SpinLocker dl(dst.table->ptl);
  src_table->ptl.lock_nested(1);
  for (; addr < end; addr += PAGE_SIZE) {
    unsigned idx = addr.index(PTE_LEVEL);
    PtSlot s{src_table, &src_table->entries[idx], &src_table->ptl};
    PtSlot d{dst.table, &dst.table->entries[idx], &dst.table->ptl};
    Pte e = s.get();
    if (e.is_none()) continue;
    if (e.is_swap()) {
      m.swap().dup(e.swap_offset());
      Pte shared = Pte::swap(e.swap_offset(), false);
      s.set(shared);
      d.set(shared);
      c.dst_mm->add_rss(MM_SWAPENTS, 1);
      continue;
    }
    Pte child = e;
    if (!e.special()) {
      Folio folio = m.mem().pfn_folio(e.pfn());
      uint64_t i = e.pfn() - folio.pfn();
      // folio_try_dup_anon_rmap_pte: the page is now shared.
      if (folio.test(PG_anon)) folio.set_page_anon_exclusive(i, false);
      folio_add_rmap_ptes(folio, i, 1);
      folio.get();
      c.dst_mm->add_rss(mm_counter_of(folio), 1);
      if (c.cow && e.writable()) {
        pt_set_entry(c.src_mm, addr, s, e.wrprotect());  // reported: inside PROTECTION_PAGE
        child = e.wrprotect();
      }
    }
    d.set(child.mkold());
  }
  src_table->ptl.unlock();
}

// copy_huge_pmd.
void copy_huge_pmd(const CopyCtx& c, const PtSlot& src_pmd, VirtAddr addr) {
  Machine& m = c.src_mm->machine();
  PtSlot dst = pt_alloc(c.dst_mm, addr, PMD_LEVEL);
  VM_BUG_ON(!dst);
  SpinLocker dl(*dst.ptl);
  src_pmd.ptl->lock_nested(1);
  Pte e = src_pmd.get();
  if (e.is_leaf()) {
    Pte child = e;
    if (!e.special()) {
      Folio folio = m.mem().pfn_folio(e.pfn());
      for (uint64_t i = 0; i < HPAGE_PMD_NR; i++) folio.set_page_anon_exclusive(i, false);
      folio_add_rmap_leaf(folio, e.pfn() - folio.pfn(), HPAGE_PMD_NR);
      folio.get();
      c.dst_mm->add_rss(mm_counter_of(folio), HPAGE_PMD_NR);
      if (c.cow && e.writable()) {
        pt_set_entry(c.src_mm, addr, src_pmd, e.wrprotect());
        child = e.wrprotect();
      }
    }
    dst.set(child.mkold());
  }
  src_pmd.ptl->unlock();
}

// Linux: copy_page_range.
void copy_page_range(const CopyCtx& c) {
  VmArea* src = c.src_vma;
  MmuNotifierRange range;
  if (c.cow) {
    mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_PAGE, 0, c.src_mm, src->vm_start, src->vm_end);
    mmu_notifier_invalidate_range_start(&range);
  }
  for (VirtAddr addr = src->vm_start; addr < src->vm_end;) {
    VirtAddr next = std::min(src->vm_end, addr.align_down(PMD_SIZE) + PMD_SIZE);
    PtSlot pmd = pt_lookup(c.src_mm, addr, PMD_LEVEL);
    if (pmd) {
      Pte e = pmd.get();
      if (e.is_leaf())
        copy_huge_pmd(c, pmd, addr);
      else if (e.is_table())
        copy_pte_range(c, e.table(), addr, next);
    }
    addr = next;
  }
  if (c.cow) mmu_notifier_invalidate_range_end(&range);
}

}  // namespace

Result<MmStruct*> dup_mm(MmStruct* oldmm, std::string name) {
  MmOpScope op("fork");
  Machine& m = oldmm->machine();
  MmStruct* mm = MmStruct::create(m, std::move(name));
  {
    MmapWriteLock old_lock(oldmm);
    mm->mmap_lock.write_lock_nested(1);
    // PR_SET_THP_DISABLE is inherited.
    uint32_t inherit = oldmm->flags.load() & (MMF_DISABLE_THP_COMPLETELY | MMF_DISABLE_THP_EXCEPT_ADVISED);
    mm->flags.fetch_or(inherit);
    khugepaged_fork(mm, oldmm);
    bool copied = false;
    oldmm->mm_mt.for_each([&](VmArea* src) NO_THREAD_SAFETY_ANALYSIS {
      if (src->vm_flags & VM_DONTCOPY) return;
      auto dst = std::make_unique<VmArea>(*src);
      dst->vm_mm = mm;
      if (src->vm_flags & VM_WIPEONFORK) {
        dst->anon_vma = nullptr;  // the child starts with fresh memory here
        dst->anon_vma_chain.clear();
      } else {
        anon_vma_fork(dst.get(), src);
      }
      VmArea* d = mm->mm_mt.insert(std::move(dst));
      mm->map_count++;
      if (!(src->vm_flags & VM_WIPEONFORK) && vma_needs_copy(src)) {
        copy_page_range(CopyCtx{mm, oldmm, d, src, is_cow_mapping(src->vm_flags)});
        copied = true;
      }
    });
    // The parent's write-protected entries: one TLB flush after all VMAs.
    if (copied) flush_tlb_mm_range(oldmm, VirtAddr(0), VirtAddr(~0ull));  // flush_tlb_mm
    mm->mmap_lock.write_unlock();
  }
  return mm;
}

}  // namespace smm
