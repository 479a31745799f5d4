// File: src/hmm/hmm.cc
//
// hmm_range_fault (mm/hmm.c): walk the CPU page tables of a range, fault
// what the caller asked for and is missing (each fault restarts the walk
// from the first address not yet filled, as hmm_vma_fault's -EBUSY does),
// and report pfns with their flags and leaf order.
//
// Not modelled: device-private and migration entries (no migration in the
// model), hugetlb.

#include "shadowmm/hmm/hmm.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/notifier/interval_notifier.h"

namespace smm {

namespace {

constexpr unsigned HMM_NEED_FAULT = 1u << 0;
constexpr unsigned HMM_NEED_WRITE_FAULT = 1u << 1;

struct HmmWalk {
  HmmRange* range;
  MmStruct* mm;
  VirtAddr last;  // first address not yet final
};

uint64_t& pfn_at(HmmWalk& w, VirtAddr addr) { return w.range->hmm_pfns[(addr - w.range->start) >> PAGE_SHIFT]; }

// Linux: hmm_pte_need_fault.
unsigned pte_need_fault(const HmmWalk& w, uint64_t req, uint64_t cpu_flags) {
  req &= w.range->pfn_flags_mask;
  req |= w.range->default_flags;
  if (!(req & HMM_PFN_REQ_FAULT)) return 0;
  if ((req & HMM_PFN_REQ_WRITE) && !(cpu_flags & HMM_PFN_WRITE)) return HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT;
  if (!(cpu_flags & HMM_PFN_VALID)) return HMM_NEED_FAULT;
  return 0;
}

// Linux: hmm_range_need_fault over [addr, end).
unsigned range_need_fault(HmmWalk& w, VirtAddr addr, VirtAddr end, uint64_t cpu_flags) {
  // Nothing can be requested per page when the mask ignores the inputs.
  if (!w.range->pfn_flags_mask) return pte_need_fault(w, 0, cpu_flags);
  unsigned need = 0;
  for (VirtAddr a = addr; a < end; a += PAGE_SIZE) need |= pte_need_fault(w, pfn_at(w, a), cpu_flags);
  return need;
}

void fill(HmmWalk& w, VirtAddr addr, VirtAddr end, uint64_t value) {
  for (VirtAddr a = addr; a < end; a += PAGE_SIZE) pfn_at(w, a) = value;
}

// Linux: hmm_vma_fault. Faults [addr, end) and asks for a restart from addr.
int vma_fault(HmmWalk& w, VmArea* vma, VirtAddr addr, VirtAddr end, unsigned required) NO_THREAD_SAFETY_ANALYSIS {
  // hmm_range_fault's caller holds mmap_lock (asserted there).
  unsigned flags = FAULT_FLAG_REMOTE;
  if (required & HMM_NEED_WRITE_FAULT) {
    if (!(vma->vm_flags & VM_WRITE)) return -EPERM;
    flags |= FAULT_FLAG_WRITE;
  }
  w.last = addr;
  for (VirtAddr a = addr; a < end; a += PAGE_SIZE)
    if (handle_mm_fault(w.mm, vma, a, flags) & VM_FAULT_ERROR) return -EFAULT;
  return -EBUSY;
}

// Flags of a present leaf for the device (protnone: nothing).
uint64_t leaf_cpu_flags(Pte e, unsigned level) {
  if (!e.is_leaf() || e.protnone()) return 0;
  uint64_t f = HMM_PFN_VALID | (e.writable() ? HMM_PFN_WRITE : 0);
  if (level > PTE_LEVEL) f |= uint64_t{9u * level} << HMM_PFN_ORDER_SHIFT;
  return f;
}

// A present huge leaf (hmm_vma_handle_pmd / the PUD case).
int handle_leaf(HmmWalk& w, VmArea* vma, VirtAddr addr, VirtAddr end, Pte e, unsigned level) {
  uint64_t cpu_flags = leaf_cpu_flags(e, level);
  if (unsigned req = range_need_fault(w, addr, end, cpu_flags)) return vma_fault(w, vma, addr, end, req);
  uint64_t base = e.pfn().value() + ((addr.value() & (level_size(level) - 1)) >> PAGE_SHIFT);
  for (VirtAddr a = addr; a < end; a += PAGE_SIZE, base++)
    pfn_at(w, a) = base | cpu_flags;
  return 0;
}

// Linux: hmm_vma_handle_pte, for the PTEs of [addr, end) in one table.
int handle_ptes(HmmWalk& w, VmArea* vma, PageTable* t, VirtAddr addr, VirtAddr end) {
  Machine& m = w.mm->machine();
  for (VirtAddr a = addr; a < end; a += PAGE_SIZE) {
    Pte e(t->entries[a.index(PTE_LEVEL)].load(std::memory_order_acquire));
    uint64_t cpu_flags = leaf_cpu_flags(e, PTE_LEVEL);
    if (unsigned req = pte_need_fault(w, pfn_at(w, a), cpu_flags)) return vma_fault(w, vma, a, end, req);
    if (!cpu_flags) {
      pfn_at(w, a) = 0;
      continue;
    }
    // The zero page is a normal read-only page for hmm.
    (void)m;
    pfn_at(w, a) = e.pfn().value() | cpu_flags;
  }
  return 0;
}

// The page tables of [addr, end) inside `vma`.
int walk_vma(HmmWalk& w, VmArea* vma, VirtAddr addr, VirtAddr end) {
  while (addr < end) {
    VirtAddr next = std::min(end, addr.align_down(PMD_SIZE) + PMD_SIZE);
    PtSlot pud = pt_lookup(w.mm, addr, PUD_LEVEL);
    Pte pude = pud ? pud.get() : Pte::none();
    if (pude.is_leaf()) {
      VirtAddr pnext = std::min(end, addr.align_down(PUD_SIZE) + PUD_SIZE);
      int ret = handle_leaf(w, vma, addr, pnext, pude, PUD_LEVEL);
      if (ret) return ret;
      addr = pnext;
      continue;
    }
    PtSlot pmd = pt_lookup(w.mm, addr, PMD_LEVEL);
    Pte pmde = pmd ? pmd.get() : Pte::none();
    int ret = 0;
    if (pmde.is_none()) {
      // hmm_vma_walk_hole.
      if (unsigned req = range_need_fault(w, addr, next, 0))
        ret = vma_fault(w, vma, addr, next, req);
      else
        fill(w, addr, next, 0);
    } else if (pmde.is_leaf()) {
      ret = handle_leaf(w, vma, addr, next, pmde, PMD_LEVEL);
    } else {
      ret = handle_ptes(w, vma, pmde.table(), addr, next);
    }
    if (ret) return ret;
    addr = next;
  }
  return 0;
}

// walk_page_range over [start, end) with hmm's test_walk and pte_hole.
int walk_range(HmmWalk& w, VirtAddr start, VirtAddr end) NO_THREAD_SAFETY_ANALYSIS {
  // hmm_range_fault's caller holds mmap_lock (asserted there).
  VirtAddr addr = start;
  while (addr < end) {
    VmArea* vma = w.mm->mm_mt.find(addr);
    if (!vma || vma->vm_start > addr) {
      VirtAddr hole_end = vma ? std::min(end, vma->vm_start) : end;
      // No VMA: a requested fault is -EFAULT, otherwise HMM_PFN_ERROR.
      if (range_need_fault(w, addr, hole_end, 0)) return -EFAULT;
      fill(w, addr, hole_end, HMM_PFN_ERROR);
      addr = hole_end;
      continue;
    }
    VirtAddr vend = std::min(end, vma->vm_end);
    // hmm_vma_walk_test: VM_IO/VM_PFNMAP or unreadable VMAs.
    if ((vma->vm_flags & (VM_IO | VM_PFNMAP)) || !(vma->vm_flags & VM_READ)) {
      if (range_need_fault(w, addr, vend, 0)) return -EFAULT;
      fill(w, addr, vend, HMM_PFN_ERROR);
    } else {
      int ret = walk_vma(w, vma, addr, vend);
      if (ret) return ret;
    }
    addr = vend;
  }
  return 0;
}

}  // namespace

int hmm_range_fault(HmmRange* range) {
  MmStruct* mm = range->notifier->mm;
  mm->mmap_lock.assert_held();
  HmmWalk w{range, mm, range->start};
  int ret;
  do {
    // The notifier's seq moved: the snapshot would be stale anyway.
    if (mmu_interval_check_retry(range->notifier, range->notifier_seq)) return -EBUSY;
    ret = walk_range(w, w.last, range->end);
  } while (ret == -EBUSY);
  return ret;
}

}  // namespace smm
