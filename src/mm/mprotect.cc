// File: src/mm/mprotect.cc
//
// mprotect (mm/mprotect.c): do_mprotect_pkey checks and walks the VMAs;
// mprotect_fixup merges or splits the VMA and rewrites its flags; then
// change_protection rewrites the page tables inside a PROTECTION_VMA range.
//
// [S3] The range opens in change_pud_range at the first non-none PUD and
// closes after the PUD loop, so 1 GiB PUD leaves are covered. With the knob
// `mm.mprotect_notify_level pmd` it opens per change_pmd_range call instead
// (before "mm/mprotect: push mmu notifier to PUDs"), and a PUD leaf changed
// in place is never notified: the bug the series fixed.
//
// TLB: entries whose permissions shrink are recorded in the syscall's
// mmu_gather; the flush happens at the end of each VMA (tlb_end_vma), after
// that VMA's range end.

#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/mprotect.h"

#include "shadowmm/base/uapi.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/mmu_gather.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

namespace {

struct ChangeProt {
  MmuGather* tlb;
  VmArea* vma;
  uint8_t newprot;
  bool try_writable;  // MM_CP_TRY_CHANGE_WRITABLE
  MmKnobs::NotifyLevel level;
};

// Linux: can_change_pte_writable.
bool can_change_pte_writable(Machine& m, const VmArea* vma, Pte pte) {
  if (!(vma->vm_flags & VM_WRITE) || pte.protnone() || pte.special()) return false;
  if (!(vma->vm_flags & VM_SHARED)) {
    Folio folio = m.mem().pfn_folio(pte.pfn());
    return folio.test(PG_anon) && folio.page_anon_exclusive(pte.pfn() - folio.pfn());
  }
  return pte.dirty();
}

long change_pte_range(const ChangeProt& cp, PageTable* table, VirtAddr addr, VirtAddr end) {
  MmStruct* mm = cp.vma->vm_mm;
  Machine& m = mm->machine();
  long pages = 0;
  SpinLocker l(table->ptl);
  for (; addr < end; addr += PAGE_SIZE) {
    PtSlot slot{table, &table->entries[addr.index(PTE_LEVEL)], &table->ptl};
    Pte old = slot.get();
    if (!old.is_leaf()) continue;
    bool zero = old.special();
    Pte updated = old.with_prot(zero ? cp.newprot & ~PTE_PROT_W : cp.newprot);
    if (cp.try_writable && !updated.writable() && (cp.newprot & PTE_PROT_R) &&
        can_change_pte_writable(m, cp.vma, old))
      updated = updated.mkwrite();
    if (updated == old) continue;
    pt_set_entry(mm, addr, slot, updated);
    if (old.prot() & ~updated.prot()) cp.tlb->remove_tlb_entry(addr, PAGE_SIZE);
    pages++;
  }
  return pages;
}

long change_pmd_range(const ChangeProt& cp, PageTable* pmd_table, VirtAddr addr, VirtAddr end) {
  MmStruct* mm = cp.vma->vm_mm;
  long pages = 0;
  MmuNotifierRange range;
  bool notifying = false;
  for (; addr < end;) {
    VirtAddr next = std::min(end, addr.align_down(PMD_SIZE) + PMD_SIZE);
    PtSlot pmd{pmd_table, &pmd_table->entries[addr.index(PMD_LEVEL)], &pmd_table->ptl};
    Pte e = pmd.get();
    if (e.is_none()) {
      addr = next;
      continue;
    }
    if (cp.level == MmKnobs::NotifyLevel::kPmd && !notifying) {
      mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_VMA, 0, mm, addr, end);
      mmu_notifier_invalidate_range_start(&range);
      notifying = true;
    }
    if (e.is_leaf()) {
      if (next - addr == PMD_SIZE) {
        pages += change_huge_pmd(cp.tlb, cp.vma, pmd, addr, cp.newprot, cp.try_writable);
        addr = next;
        continue;
      }
      split_huge_pmd(cp.vma, pmd, addr);  // nested CLEAR range
      e = pmd.get();
    }
    if (e.is_table()) pages += change_pte_range(cp, e.table(), addr, next);
    addr = next;
  }
  if (notifying) mmu_notifier_invalidate_range_end(&range);
  return pages;
}

long change_pud_range(const ChangeProt& cp, PageTable* pud_table, VirtAddr addr, VirtAddr end) {
  MmStruct* mm = cp.vma->vm_mm;
  long pages = 0;
  MmuNotifierRange range;
  bool notifying = false;
  for (; addr < end;) {
    VirtAddr next = std::min(end, addr.align_down(PUD_SIZE) + PUD_SIZE);
    PtSlot pud{pud_table, &pud_table->entries[addr.index(PUD_LEVEL)], &mm->page_table_lock};
    Pte e = pud.get();
    if (e.is_none()) {
      addr = next;
      continue;
    }
    if (cp.level == MmKnobs::NotifyLevel::kPud && !notifying) {
      mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_VMA, 0, mm, addr, end);
      mmu_notifier_invalidate_range_start(&range);
      notifying = true;
    }
    if (e.is_leaf()) {
      if (next - addr != PUD_SIZE) {
        split_huge_pud(cp.vma, pud, addr);  // then retry this entry
        continue;
      }
      pages += change_huge_pud(cp.tlb, cp.vma, pud, addr, cp.newprot, cp.try_writable);
      addr = next;
      continue;
    }
    if (e.is_table()) pages += change_pmd_range(cp, e.table(), addr, next);
    addr = next;
  }
  if (notifying) mmu_notifier_invalidate_range_end(&range);
  return pages;
}

// Linux: change_protection -> change_protection_range.
long change_protection(MmuGather* tlb, VmArea* vma, VirtAddr start, VirtAddr end, bool try_writable) {
  MmStruct* mm = vma->vm_mm;
  ChangeProt cp{tlb, vma, vma->vm_page_prot, try_writable,
                mm->machine().knobs().mprotect_notify_level.load(std::memory_order_relaxed)};
  long pages = 0;
  tlb->start_vma();
  for (VirtAddr addr = start; addr < end;) {
    VirtAddr next = std::min(end, addr.align_down(PGDIR_SIZE) + PGDIR_SIZE);
    Pte e(mm->pgd->entries[addr.index(PGD_LEVEL)].load(std::memory_order_acquire));
    if (e.is_table()) pages += change_pud_range(cp, e.table(), addr, next);
    addr = next;
  }
  tlb->end_vma();
  return pages;
}

// Linux: mprotect_fixup.
// On success *pvma is the VMA that now holds [start, end) (possibly merged
// with a neighbour).
int mprotect_fixup(MmuGather* tlb, MmStruct* mm, VmArea** pvma, VirtAddr start, VirtAddr end,
                   vm_flags_t newflags) REQUIRES(mm->mmap_lock) {
  VmArea* vma = *pvma;
  vm_flags_t oldflags = vma->vm_flags;
  if (newflags == oldflags) return 0;
  // Charge memory that becomes writable; give back the charge of an
  // untouched anonymous VMA that stops being writable.
  if (newflags & VM_WRITE) {
    if (!(oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE))) newflags |= VM_ACCOUNT;
  } else if ((oldflags & VM_ACCOUNT) && vma->is_anonymous() && !vma->anon_vma) {
    newflags &= ~VM_ACCOUNT;
  }
  Result<VmArea*> r = vma_modify_flags(mm, vma, start, end, newflags);
  if (!r.ok()) return r.rc();
  vma = *pvma = *r;
  vma->vm_page_prot = vm_get_page_prot(vma->vm_flags);
  // vma_wants_manual_pte_write_upgrade: shared mappings already carry W in
  // vm_page_prot; private ones upgrade exclusive anonymous pages.
  bool try_writable = !(vma->vm_flags & VM_SHARED) && (vma->vm_flags & VM_WRITE);
  change_protection(tlb, vma, start, end, try_writable);
  return 0;
}

}  // namespace

int do_mprotect(MmStruct* mm, VirtAddr start, uint64_t len, int prot) {
  MmOpScope op("mprotect");
  int grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
  prot &= ~grows;
  if (grows == (PROT_GROWSDOWN | PROT_GROWSUP)) return -EINVAL;
  if (!start.is_aligned(PAGE_SIZE)) return -EINVAL;
  if (!len) return 0;
  len = align_up(len, PAGE_SIZE);
  VirtAddr end = start + len;
  if (end <= start) return -ENOMEM;
  if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM)) return -EINVAL;

  MmapWriteLock l(mm);
  VmArea* vma = mm->mm_mt.find_intersection(start, end);
  if (!vma) return -ENOMEM;
  // No VMA of the model grows down or up.
  if (grows) return -EINVAL;
  if (vma->vm_start > start) return -ENOMEM;

  MmuGather tlb(mm);
  int error = 0;
  // `tmp` is where the next VMA must start for the range to have no hole.
  VirtAddr tmp = vma->vm_start;
  VirtAddr nstart = start;
  while (vma && vma->vm_start < end) {
    if (vma->vm_start != tmp) {
      error = -ENOMEM;
      break;
    }
    vm_flags_t newflags = calc_vm_prot_bits(prot) | (vma->vm_flags & ~VM_ACCESS_FLAGS);
    // Requested access without the matching VM_MAY* bit.
    if ((newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS) {
      error = -EACCES;
      break;
    }
    tmp = std::min(vma->vm_end, end);
    error = mprotect_fixup(&tlb, mm, &vma, nstart, tmp, newflags);
    if (error) break;
    // Continue after the VMA the range ended up in (a merge may extend it).
    tmp = vma->vm_end;
    nstart = tmp;
    vma = mm->mm_mt.next(vma);
  }
  if (!error && tmp < end) error = -ENOMEM;
  tlb.finish();
  return error;
}

}  // namespace smm

