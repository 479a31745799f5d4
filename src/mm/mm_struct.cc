// File: src/mm/mm_struct.cc
//
// mm_struct lifetime (kernel/fork.c: mm_alloc, mmput, __mmdrop) and the
// cross-structure invariant check. MmStruct is declared on the machine floor
// (machine/mm_types.h); creating and freeing one needs the page-table and
// notifier floors, so its lifetime is defined here, as kernel/fork.c does.

#include "shadowmm/machine/mm_types.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/pgtable.h"

namespace smm {

MmStruct::MmStruct(Machine& machine, std::string name)
    : mmap_base(MMAP_TOP),
      pgd(new PageTable(PGD_LEVEL)),
      machine_(machine),
      name_(std::move(name)),
      id_(machine.next_mm_id()) {
  pgtables_bytes.fetch_add(sizeof(PageTable), std::memory_order_relaxed);
  machine_.live_mms.fetch_add(1, std::memory_order_relaxed);
}

MmStruct::~MmStruct() {
  mmu_notifier_subscriptions_destroy(this);
  {
    SpinLocker l(page_table_lock);
    for (PageTable* t : pt_deferred) pt_free_table(this, t);
    pt_deferred.clear();
  }
  pt_free_all(this);
  pt_free_table(this, pgd);
  machine_.live_mms.fetch_sub(1, std::memory_order_relaxed);
}

MmStruct* MmStruct::create(Machine& machine, std::string name) { return new MmStruct(machine, std::move(name)); }

void MmStruct::mmput() {
  int32_t old = mm_users.fetch_sub(1, std::memory_order_acq_rel);
  VM_BUG_ON(old <= 0);
  if (old == 1) {
    khugepaged_exit(this);
    exit_mmap(this);
    mmdrop();
  }
}

void MmStruct::mmdrop() {
  int32_t old = mm_count.fetch_sub(1, std::memory_order_acq_rel);
  VM_BUG_ON(old <= 0);
  if (old == 1) delete this;
}

namespace {

// Counts what the page tables map, by RSS counter, and checks every present
// leaf lies inside a VMA.
void walk_check(MmStruct* mm, PageTable* t, uint64_t base, int64_t* rss) REQUIRES_SHARED(mm->mmap_lock) {
  Machine& m = mm->machine();
  for (unsigned i = 0; i < PTRS_PER_TABLE; i++) {
    Pte e(t->entries[i].load(std::memory_order_relaxed));
    uint64_t addr = base + i * level_size(t->level);
    if (e.is_table()) {
      walk_check(mm, e.table(), addr, rss);
      continue;
    }
    if (e.is_swap()) {
      rss[MM_SWAPENTS]++;
      continue;
    }
    if (!e.is_leaf()) continue;
    VmArea* vma = mm->mm_mt.lookup(VirtAddr(addr));
    VM_BUG_ON(!vma || VirtAddr(addr + level_size(t->level)) > vma->vm_end);
    if (e.special()) continue;
    Folio folio = m.mem().pfn_folio(e.pfn());
    VM_BUG_ON(folio.refcount() <= 0);
    rss[mm_counter_of(folio)] += static_cast<int64_t>(level_size(t->level) >> PAGE_SHIFT);
  }
}

}  // namespace

void MmStruct::check_invariants() {
  mm_mt.check_invariants();
  VM_BUG_ON(static_cast<size_t>(map_count) != mm_mt.size());
  pt_check_invariants(this);
  int64_t rss[NR_MM_COUNTERS] = {};
  walk_check(this, pgd, 0, rss);
  for (unsigned c = 0; c < NR_MM_COUNTERS; c++) VM_BUG_ON(rss[c] != rss_stat[c].load());
}

}  // namespace smm
