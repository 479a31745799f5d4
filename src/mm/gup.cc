// File: src/mm/gup.cc
//
// Faulting in user pages for the kernel (mm/gup.c: check_vma_flags,
// faultin_page_range, __get_user_pages): the MADV_POPULATE_* engine.

#include "shadowmm/mm/gup.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/memory.h"

namespace smm {

namespace {

// Linux: check_vma_flags without FOLL_FORCE.
bool vma_flags_ok(const VmArea* vma, bool write) {
  if (vma->vm_flags & (VM_IO | VM_PFNMAP)) return false;
  if (write) return vma->vm_flags & VM_WRITE;
  return vma->vm_flags & VM_READ;
}

// follow_page_mask: is `addr` mapped with the access GUP needs? Returns the
// size of the leaf that maps it, or 0 when a fault is needed.
uint64_t follow_page(MmStruct* mm, VirtAddr addr, bool write) {
  for (unsigned level = PUD_LEVEL;; level--) {
    PtSlot slot = pt_lookup(mm, addr, level);
    if (!slot) return 0;
    Pte e = slot.get();
    if (e.is_table()) continue;
    if (!e.is_leaf() || !e.readable()) return 0;
    if (write && !e.writable()) return 0;
    return level_size(level);
  }
}

}  // namespace

int faultin_page_range(MmStruct* mm, VirtAddr start, VirtAddr end, bool write) {
  VirtAddr addr = start;
  while (addr < end) {
    VmArea* vma = mm->mm_mt.lookup(addr);
    if (!vma) return -ENOMEM;
    if (!vma_flags_ok(vma, write)) return -EINVAL;
    VirtAddr vend = std::min(end, vma->vm_end);
    while (addr < vend) {
      uint64_t size = follow_page(mm, addr, write);
      if (size) {
        addr = std::min(vend, addr.align_down(size) + size);
        continue;
      }
      vm_fault_t ret = handle_mm_fault(mm, vma, addr, write ? FAULT_FLAG_WRITE : 0);
      if (ret & VM_FAULT_OOM) return -ENOMEM;
      if (ret & VM_FAULT_ERROR) return -EFAULT;
    }
  }
  return 0;
}

}  // namespace smm
