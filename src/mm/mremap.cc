// File: src/mm/mremap.cc
//
// mremap (mm/mremap.c). A move copies the VMA to its new place (copy_vma),
// moves the page-table entries under one UNMAP notifier range over the old
// range (move_page_tables), whole PMD leaves when both ends are 2 MiB
// aligned, PTEs otherwise (splitting a THP first), flushes the old range, and
// unmaps what is left of the old VMA.

#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/mremap.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

namespace {

// Moves the PTEs of [old, old+len) (inside one PTE table and one VMA) to
// [new, new+len). Returns true when a present entry moved (a flush is due).
bool move_ptes(MmStruct* mm, PageTable* src_table, VirtAddr old_addr, VirtAddr new_addr, uint64_t len) {
  PtSlot dst = pt_alloc(mm, new_addr, PTE_LEVEL);
  VM_BUG_ON(!dst);
  bool flush = false;
  SpinLockerPair l(src_table->ptl, dst.table->ptl);
  for (uint64_t off = 0; off < len; off += PAGE_SIZE) {
    PtSlot s{src_table, &src_table->entries[(old_addr + off).index(PTE_LEVEL)], &src_table->ptl};
    PtSlot d{dst.table, &dst.table->entries[(new_addr + off).index(PTE_LEVEL)], dst.ptl};
    Pte e = s.get();
    if (e.is_none()) continue;
    pt_get_and_clear(mm, old_addr + off, s);
    flush |= e.is_leaf();
    pt_set_entry(mm, new_addr + off, d, e);
  }
  return flush;
}

// Linux: move_page_tables. Caller holds mmap_lock for write; the new VMA
// exists. Returns bytes moved (always len: the model cannot fail here).
void move_page_tables(MmStruct* mm, VmArea* old_vma, VmArea* new_vma, VirtAddr old_addr, VirtAddr new_addr,
                      uint64_t len) {
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, mm, old_addr, old_addr + len);
  mmu_notifier_invalidate_range_start(&range);
  bool flush = false;
  for (uint64_t off = 0; off < len;) {
    VirtAddr o = old_addr + off;
    VirtAddr n = new_addr + off;
    // The extent inside one PMD of both the source and the destination.
    uint64_t extent = std::min({len - off, (o.align_down(PMD_SIZE) + PMD_SIZE) - o,
                                (n.align_down(PMD_SIZE) + PMD_SIZE) - n});
    PtSlot pmd = pt_lookup(mm, o, PMD_LEVEL);
    if (PtSlot pud = pt_lookup(mm, o, PUD_LEVEL); pud && pud.get().is_leaf()) {
      split_huge_pud(old_vma, pud, o);  // dax: refaults at the new place
      pmd = {};
    }
    Pte e = pmd ? pmd.get() : Pte::none();
    if (e.is_leaf()) {
      if (extent == PMD_SIZE && !old_vma->is_dax()) {
        // move_huge_pmd: the whole leaf moves.
        PtSlot dst = pt_alloc(mm, n, PMD_LEVEL);
        VM_BUG_ON(!dst);
        SpinLockerPair l(*pmd.ptl, *dst.ptl);
        Pte moved = pt_get_and_clear(mm, o, pmd);
        pt_set_entry(mm, n, dst, moved);
        flush = true;
        off += extent;
        continue;
      }
      split_huge_pmd(old_vma, pmd, o);
      e = pmd.get();
    }
    if (e.is_table()) flush |= move_ptes(mm, e.table(), o, n, extent);
    off += extent;
  }
  if (flush) flush_tlb_mm_range(mm, old_addr, old_addr + len);
  mmu_notifier_invalidate_range_end(&range);
  (void)new_vma;
}

// Linux: move_vma. [old_addr, old_addr+old_len) lies in `vma`.
Result<VirtAddr> move_vma(MmStruct* mm, VmArea* vma, VirtAddr old_addr, uint64_t old_len, uint64_t new_len,
                          VirtAddr new_addr) REQUIRES(mm->mmap_lock) {
  Machine& m = mm->machine();
  if (mm->map_count >= m.knobs().max_map_count.load() - 3) return Err{ENOMEM};
  if (vma->is_dax() && (!old_addr.is_aligned(PMD_SIZE) || !is_aligned(old_len, PMD_SIZE))) return Err{EINVAL};
  // copy_vma: the new VMA keeps the file offset / anonymous linear index,
  // unless anonymous memory was never faulted (then it starts afresh).
  uint64_t pgoff = vma->linear_page_index(old_addr);
  if (vma->is_anonymous() && !vma->anon_vma) pgoff = new_addr.vpn();
  VmArea* new_vma = vma_merge_new_range(mm, new_addr, new_addr + new_len, vma->vm_flags, pgoff, vma->vm_file, vma);
  if (!new_vma) {
    auto fresh = std::make_unique<VmArea>(*vma);
    fresh->vm_start = new_addr;
    fresh->vm_end = new_addr + new_len;
    fresh->vm_pgoff = pgoff;
    new_vma = mm->mm_mt.insert(std::move(fresh));
    mm->map_count++;
  }
  move_page_tables(mm, vma, new_vma, old_addr, new_addr, std::min(old_len, new_len));
  // Unmap the old range: its page tables are empty now, only the VMA goes.
  int rc = do_munmap_locked(mm, old_addr, old_len);
  VM_BUG_ON(rc != 0);
  khugepaged_enter_vma(mm->mm_mt.lookup(new_addr), mm->mm_mt.lookup(new_addr)->vm_flags);
  return new_addr;
}

}  // namespace

Result<VirtAddr> do_mremap(MmStruct* mm, VirtAddr addr, uint64_t old_len, uint64_t new_len, int flags,
                           VirtAddr new_addr) {
  MmOpScope op("mremap");
  old_len = align_up(old_len, PAGE_SIZE);
  new_len = align_up(new_len, PAGE_SIZE);
  if (flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE)) return Err{EINVAL};
  if (!addr.is_aligned(PAGE_SIZE)) return Err{EINVAL};
  if (!new_len) return Err{EINVAL};
  if (new_len > TASK_SIZE || new_addr.value() > TASK_SIZE - new_len) return Err{EINVAL};
  if (flags & MREMAP_FIXED) {
    if (!new_addr.is_aligned(PAGE_SIZE)) return Err{EINVAL};
    if (!(flags & MREMAP_MAYMOVE)) return Err{EINVAL};
    if (VaRange{addr, addr + old_len}.overlaps({new_addr, new_addr + new_len})) return Err{EINVAL};
  }
  MmapWriteLock l(mm);
  if (flags & MREMAP_FIXED) {
    int rc = do_munmap_locked(mm, new_addr, new_len);
    if (rc) return Err{-rc};
  }
  VmArea* vma = mm->mm_mt.lookup(addr);
  if (!vma) return Err{EFAULT};
  if (!old_len) return Err{EINVAL};

  if (!(flags & MREMAP_FIXED)) {
    if (old_len == new_len) return addr;
    if (new_len < old_len) {
      int rc = do_munmap_locked(mm, addr + new_len, old_len - new_len);
      if (rc) return Err{-rc};
      return addr;
    }
  }
  if (addr + std::min(old_len, new_len) > vma->vm_end) return Err{EFAULT};
  if (flags & MREMAP_FIXED) {
    if (new_len < old_len) {
      int rc = do_munmap_locked(mm, addr + new_len, old_len - new_len);
      if (rc) return Err{-rc};
      old_len = new_len;
      vma = mm->mm_mt.lookup(addr);
    }
    return move_vma(mm, vma, addr, old_len, new_len, new_addr);
  }
  if (addr + old_len > vma->vm_end) return Err{EFAULT};

  // Grow in place when the old range ends the VMA and the space after is free.
  VirtAddr grow_end = addr + new_len;
  if (addr + old_len == vma->vm_end && grow_end.value() <= TASK_SIZE && grow_end > addr &&
      !mm->mm_mt.find_intersection(vma->vm_end, grow_end) && !vma->is_dax()) {
    VmArea* next = mm->mm_mt.next(vma);
    vma->vm_end = grow_end;
    // vma_merge_extend: the grown VMA may now touch a compatible next one.
    if (next && next->vm_start == grow_end && vma_can_merge(vma, next)) {
      vma->vm_end = next->vm_end;
      mm->mm_mt.erase(next);
      mm->map_count--;
    }
    return addr;
  }
  if (!(flags & MREMAP_MAYMOVE)) return Err{ENOMEM};
  // Pick a new place like get_unmapped_area, keeping the PMD alignment of the
  // old address so THPs can move whole.
  Result<VirtAddr> area = do_mmap_find_area(mm, new_len, addr.is_aligned(PMD_SIZE) ? PMD_SIZE : PAGE_SIZE);
  if (!area.ok()) return area;
  return move_vma(mm, vma, addr, old_len, new_len, *area);
}

}  // namespace smm
