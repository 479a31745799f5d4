// File: src/pgtable/pgtable.cc
//
// Table allocation, lookup and teardown (mm/memory.c: __pud_alloc,
// __pmd_alloc, __pte_alloc; include/linux/pgtable.h: p*_offset).

#include "shadowmm/pgtable/pgtable.h"

#include "shadowmm/base/bug.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

PageTable* pt_alloc_table(MmStruct* mm, unsigned level) {
  auto* t = new PageTable(level);
  mm->pgtables_bytes.fetch_add(sizeof(PageTable), std::memory_order_relaxed);
  mm->machine().stats().count(VmEvent::pgtable_alloc);
  return t;
}

void pt_sync_lockless_walkers(MmStruct* mm) {
  // A walker that starts after the unlink cannot reach the table: only
  // readers already inside need waiting for. The fence orders the unlink
  // (a store) before the readers' count (a load); Srcu::read_lock orders
  // the other way round.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  Srcu& srcu = mm->machine().pgtable_srcu();
  if (srcu.readers() != 0) srcu.synchronize();
}

void pt_free_table(MmStruct* mm, PageTable* table) {
  VM_BUG_ON(!table->empty());
  mm->pgtables_bytes.fetch_sub(sizeof(PageTable), std::memory_order_relaxed);
  mm->machine().stats().count(VmEvent::pgtable_free);
  delete table;
}

SpinLock* pt_lockptr(MmStruct* mm, PageTable* table) {
  // PGD and PUD entries: mm->page_table_lock; PMD and PTE entries: split ptl.
  if (table->level >= PUD_LEVEL) return &mm->page_table_lock;
  return &table->ptl;
}

void pt_defer_free(MmStruct* mm, PageTable* table) {
  SpinLocker l(mm->page_table_lock);
  mm->pt_deferred.push_back(table);
}

void pt_drain_deferred(MmStruct* mm) {
  std::vector<PageTable*> tables;
  {
    SpinLocker l(mm->page_table_lock);
    tables.swap(mm->pt_deferred);
  }
  if (!tables.empty()) pt_sync_lockless_walkers(mm);
  for (PageTable* t : tables) pt_free_table(mm, t);
}

size_t pt_deferred_count(MmStruct* mm) {
  SpinLocker l(mm->page_table_lock);
  return mm->pt_deferred.size();
}

namespace {

PtSlot make_slot(MmStruct* mm, PageTable* t, VirtAddr addr) {
  return PtSlot{t, &t->entries[addr.index(t->level)], pt_lockptr(mm, t)};
}

}  // namespace

PtSlot pt_lookup(MmStruct* mm, VirtAddr addr, unsigned level) {
  PageTable* t = mm->pgd;
  while (t->level > level) {
    Pte e = Pte(t->entries[addr.index(t->level)].load(std::memory_order_acquire));
    if (!e.is_table()) return {};
    t = e.table();
  }
  return make_slot(mm, t, addr);
}

PtSlot pt_alloc(MmStruct* mm, VirtAddr addr, unsigned level) {
  PageTable* t = mm->pgd;
  while (t->level > level) {
    PtSlot slot = make_slot(mm, t, addr);
    Pte e = slot.get();
    if (e.is_none()) {
      // Allocate outside the lock, install under the parent's lock unless a
      // racing fault installed one first (then free ours).
      PageTable* fresh = pt_alloc_table(mm, t->level - 1);
      {
        SpinLocker l(*slot.ptl);
        e = slot.get();
        if (e.is_none()) {
          slot.set(Pte::table(fresh));
          e = Pte::table(fresh);
          fresh = nullptr;
        }
      }
      if (fresh) pt_free_table(mm, fresh);
    }
    if (!e.is_table()) return {};
    t = e.table();
  }
  return make_slot(mm, t, addr);
}

namespace {

void free_below(MmStruct* mm, PageTable* t) {
  for (auto& e : t->entries) {
    Pte v(e.load(std::memory_order_relaxed));
    VM_BUG_ON(!v.is_none() && !v.is_table());
    if (v.is_table()) {
      free_below(mm, v.table());
      e.store(0, std::memory_order_relaxed);
      pt_free_table(mm, v.table());
    }
  }
}

void check_table(MmStruct* mm, PageTable* t, unsigned level) {
  VM_BUG_ON(t->level != level);
  for (const auto& e : t->entries) {
    Pte v(e.load(std::memory_order_relaxed));
    switch (v.kind()) {
      case Pte::Kind::kNone:
        VM_BUG_ON(v.raw() != 0);
        break;
      case Pte::Kind::kTable:
        VM_BUG_ON(level == PTE_LEVEL);
        check_table(mm, v.table(), level - 1);
        break;
      case Pte::Kind::kLeaf:
        VM_BUG_ON(level == PGD_LEVEL);
        VM_BUG_ON(!mm->machine().mem().pfn_valid(v.pfn()));
        VM_BUG_ON(!is_aligned(v.pfn().value(), 1ull << (9 * level)));
        break;
      case Pte::Kind::kSwap:
        VM_BUG_ON(level != PTE_LEVEL);
        break;
      default:
        VM_BUG_ON(true);
    }
  }
}

}  // namespace

void pt_free_all(MmStruct* mm) { free_below(mm, mm->pgd); }

void pt_check_invariants(MmStruct* mm) { check_table(mm, mm->pgd, PGD_LEVEL); }

}  // namespace smm
