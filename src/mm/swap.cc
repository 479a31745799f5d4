// File: src/mm/swap.cc
//
// Swap-in and swap-entry freeing (mm/memory.c: do_swap_page;
// mm/swapfile.c: free_swap_and_cache).

#include "shadowmm/mm/swap.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

vm_fault_t do_swap_page(MmStruct* mm, VmArea* vma, VirtAddr addr, const PtSlot& pte, Pte orig, bool write) {
  Machine& m = mm->machine();
  anon_vma_prepare(mm, vma);
  Result<Folio> res = m.mem().alloc_folio(0, PG_anon | PG_swapbacked | PG_lru, AllocZero::No);
  if (!res.ok()) return VM_FAULT_OOM;
  Folio folio = *res;
  bool mapped = false;
  {
    SpinLocker l(*pte.ptl);
    if (pte.get() == orig) {
      folio.write(0, m.swap().read(orig.swap_offset()));
      uint8_t prot = vma->vm_page_prot;
      bool exclusive = orig.swap_exclusive();
      Pte e = Pte::leaf(folio.pfn(), prot).mkyoung();
      if (write && exclusive && (vma->vm_flags & VM_WRITE)) e = e.mkwrite().mkdirty();
      folio.set_page_anon_exclusive(0, exclusive);
      folio_add_rmap_ptes(folio, 0, 1);
      folio.get();
      mm->add_rss(MM_ANONPAGES, 1);
      mm->add_rss(MM_SWAPENTS, -1);
      pt_set_entry(mm, addr.align_down(PAGE_SIZE), pte, e);
      m.swap().free(orig.swap_offset());
      m.stats().count(VmEvent::pswpin);
      mapped = true;
    }
  }
  folio.put();
  (void)mapped;
  return 0;
}

void swap_free_entry(Machine& machine, Pte entry) { machine.swap().free(entry.swap_offset()); }

void swap_free_folio_cache(Folio folio) { folio.clear(PG_swapcache); }

}  // namespace smm
