// File: src/pgtable/tlb.cc
//
// The CPU TLB flush primitive and the clear-and-flush helpers
// (arch/x86/mm/tlb.c: flush_tlb_mm_range; mm/pgtable-generic.c:
// ptep_clear_flush, pmdp_huge_clear_flush, pudp_huge_clear_flush,
// pmdp_collapse_flush).

#include "shadowmm/pgtable/tlb.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/notifier/mmu_notifier.h"

namespace smm {

void flush_tlb_mm_range(MmStruct* mm, VirtAddr start, VirtAddr end) {
  Machine& m = mm->machine();
  m.stats().count(VmEvent::tlb_flush);
  m.stats().count(VmEvent::tlb_flush_pages, (end - start) >> PAGE_SHIFT);
  // S5 / mainline 6.6+: secondary TLBs that walk the CPU page tables are
  // invalidated by the architecture's TLB flush of the mm.
  mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end);
  for_each_observer(m, [&](MmObserver* o) { o->on_tlb_flush(mm, start, end); });
}

namespace {

// Does old -> new remove, re-point or downgrade a present leaf (E1)?
bool is_invalidating_change(Pte old_pte, Pte new_pte) {
  if (!old_pte.is_leaf()) return false;
  if (!new_pte.is_leaf()) return true;
  if (new_pte.pfn() != old_pte.pfn()) return true;
  return (old_pte.prot() & ~new_pte.prot()) != 0;
}

// Both reports run only when the machine has observers (the callers
// check), and stay out of line: the unobserved path is the hot one.
[[gnu::noinline]] void report(MmStruct* mm, VirtAddr addr, const PtSlot& slot, Pte old_pte, Pte new_pte) {
  Machine& m = mm->machine();
  uint64_t size = level_size(slot.level());
  if (is_invalidating_change(old_pte, new_pte))
    for_each_observer(m, [&](MmObserver* o) { o->on_pte_change(mm, addr, size, old_pte, new_pte); });
  if (new_pte.is_leaf() && (!old_pte.is_leaf() || old_pte.pfn() != new_pte.pfn()))
    for_each_observer(m, [&](MmObserver* o) { o->on_pte_install(mm, addr, size, new_pte); });
}

// Before a present leaf changes: observers that compare a TLB with the page
// tables must know the change is coming before anyone can see it.
[[gnu::noinline]] void report_changing(MmStruct* mm, VirtAddr addr, const PtSlot& slot) {
  Machine& m = mm->machine();
  if (!slot.get().is_leaf()) return;
  uint64_t size = level_size(slot.level());
  for_each_observer(m, [&](MmObserver* o) { o->on_pte_changing(mm, addr, size); });
}

}  // namespace

void pt_set_entry(MmStruct* mm, VirtAddr addr, const PtSlot& slot, Pte new_pte) {
  const bool observed = mm->machine().observed();
  if (observed) report_changing(mm, addr, slot);
  Pte old_pte = Pte(slot.entry->exchange(new_pte.raw(), std::memory_order_acq_rel));
  if (observed) report(mm, addr, slot, old_pte, new_pte);
}

Pte pt_get_and_clear(MmStruct* mm, VirtAddr addr, const PtSlot& slot) {
  const bool observed = mm->machine().observed();
  if (observed) report_changing(mm, addr, slot);
  Pte old_pte = slot.get_and_clear();
  if (observed) report(mm, addr, slot, old_pte, Pte::none());
  return old_pte;
}

Pte ptep_clear_flush(MmStruct* mm, VirtAddr addr, const PtSlot& slot) {
  Pte old_pte = pt_get_and_clear(mm, addr, slot);
  if (old_pte.is_leaf()) flush_tlb_mm_range(mm, addr, addr + PAGE_SIZE);
  return old_pte;
}

Pte pmdp_huge_clear_flush(MmStruct* mm, VirtAddr haddr, const PtSlot& slot) {
  VM_BUG_ON(!haddr.is_aligned(PMD_SIZE));
  Pte old_pte = pt_get_and_clear(mm, haddr, slot);
  flush_tlb_mm_range(mm, haddr, haddr + PMD_SIZE);
  return old_pte;
}

Pte pudp_huge_clear_flush(MmStruct* mm, VirtAddr haddr, const PtSlot& slot) {
  VM_BUG_ON(!haddr.is_aligned(PUD_SIZE));
  Pte old_pte = pt_get_and_clear(mm, haddr, slot);
  flush_tlb_mm_range(mm, haddr, haddr + PUD_SIZE);
  return old_pte;
}

Pte pmdp_collapse_flush(MmStruct* mm, VirtAddr haddr, const PtSlot& slot) {
  VM_BUG_ON(!haddr.is_aligned(PMD_SIZE));
  Pte old_pte = slot.get_and_clear();
  VM_BUG_ON(!old_pte.is_table());
  flush_tlb_mm_range(mm, haddr, haddr + PMD_SIZE);
  return old_pte;
}

}  // namespace smm
