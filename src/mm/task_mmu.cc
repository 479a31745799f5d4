// File: src/mm/task_mmu.cc
//
// /proc/PID/smaps figures and mapping runs (fs/proc/task_mmu.c).

#include "shadowmm/mm/task_mmu.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/huge_memory.h"

namespace smm {

std::string size_name(uint64_t bytes) {
  if (bytes >= (1ull << 30) && is_aligned(bytes, 1ull << 30)) return std::to_string(bytes >> 30) + "G";
  if (bytes >= (1ull << 20) && is_aligned(bytes, 1ull << 20)) return std::to_string(bytes >> 20) + "M";
  return std::to_string(bytes >> 10) + "K";
}

std::string prot_name(uint8_t prot) {
  std::string s = "---";
  if (prot & PTE_PROT_R) s[0] = 'r';
  if (prot & PTE_PROT_W) s[1] = 'w';
  if (prot & PTE_PROT_X) s[2] = 'x';
  return s;
}

std::string MappingRun::size_name() const {
  if (kind == Kind::kZero) return "zero";
  if (kind == Kind::kHugeZero) return "zero2M";
  return smm::size_name(folio_size);
}

namespace {

// One present leaf as the walk sees it.
struct Leaf {
  VirtAddr addr;
  unsigned level;
  Pte pte;
};

// Visits the present leaves of [start, end) in address order.
template <typename F>
void walk_leaves(MmStruct* mm, PageTable* t, uint64_t base, VirtAddr start, VirtAddr end, F&& f) {
  uint64_t size = level_size(t->level);
  for (unsigned i = 0; i < PTRS_PER_TABLE; i++) {
    uint64_t a = base + i * size;
    if (a + size <= start.value() || a >= end.value()) continue;
    Pte e(t->entries[i].load(std::memory_order_acquire));
    if (e.is_table())
      walk_leaves(mm, e.table(), a, start, end, f);
    else if (e.is_leaf())
      f(Leaf{VirtAddr(a), t->level, e});
  }
}

}  // namespace

std::vector<VmaReport> smaps_report(MmStruct* mm) {
  Machine& m = mm->machine();
  ReadLocker l(mm->mmap_lock);
  std::vector<VmaReport> out;
  mm->mm_mt.for_each([&](VmArea* vma) {
    VmaReport r{vma->vm_start, vma->vm_end, vma->vm_flags, !vma->vm_file || vma->is_shmem(),
                vma->is_dax(), vma->vm_pgoff, 0, 0, false};
    walk_leaves(mm, mm->pgd, 0, vma->vm_start, vma->vm_end, [&](const Leaf& leaf) {
      if (leaf.pte.special()) return;  // vm_normal_page: zero pages do not count
      uint64_t size = level_size(leaf.level);
      r.rss += size;
      if (leaf.level == PMD_LEVEL && m.mem().pfn_folio(leaf.pte.pfn()).test(PG_anon)) r.anon_huge += size;
    });
    r.thp_eligible = thp_vma_allowable_orders(vma, vma->vm_flags, TVA_SMAPS | TVA_ENFORCE_SYSFS,
                                              THP_ORDERS_ALL_ANON | THP_ORDERS_ALL_SPECIAL) != 0;
    out.push_back(r);
  });
  return out;
}

std::vector<MappingRun> mapping_runs(MmStruct* mm, VirtAddr start, VirtAddr end) {
  Machine& m = mm->machine();
  ReadLocker l(mm->mmap_lock);
  std::vector<MappingRun> runs;
  // Where the current run's last leaf ended inside its folio.
  Pfn folio_head;
  uint64_t folio_pages = 0;
  uint64_t next_index = 0;
  walk_leaves(mm, mm->pgd, 0, start, end, [&](const Leaf& leaf) {
    uint64_t size = level_size(leaf.level);
    MappingRun unit{leaf.addr, leaf.addr + size, MappingRun::Kind::kFolio, 0, leaf.level, leaf.pte.prot()};
    Pfn head = leaf.pte.pfn();
    uint64_t pages = 1, index = 0;
    if (leaf.pte.special()) {
      unit.kind = m.is_zero_pfn(leaf.pte.pfn()) ? MappingRun::Kind::kZero : MappingRun::Kind::kHugeZero;
      pages = size >> PAGE_SHIFT;
    } else {
      Folio folio = m.mem().pfn_folio(leaf.pte.pfn());
      unit.folio_size = folio.size();
      head = folio.pfn();
      pages = folio.nr_pages();
      index = leaf.pte.pfn() - folio.pfn();
    }
    // Clip the leaf to [start, end).
    uint64_t skip = unit.start < start ? (start - unit.start) >> PAGE_SHIFT : 0;
    if (skip) unit.start = start;
    if (unit.end > end) unit.end = end;
    index += skip;
    uint64_t span = (unit.end - unit.start) >> PAGE_SHIFT;

    bool joins = false;
    if (!runs.empty()) {
      MappingRun& r = runs.back();
      bool same = r.end == unit.start && r.kind == unit.kind && r.folio_size == unit.folio_size &&
                  r.level == unit.level && r.prot == unit.prot;
      if (same) {
        if (head == folio_head && index == next_index)
          joins = true;  // continuing the same folio
        else
          joins = next_index == folio_pages && index == 0;  // previous folio complete, new one starts
      }
    }
    if (joins)
      runs.back().end = unit.end;
    else
      runs.push_back(unit);
    folio_head = head;
    folio_pages = pages;
    next_index = index + span;
  });
  return runs;
}

std::optional<uint64_t> peek_value(MmStruct* mm, VirtAddr addr) {
  Machine& m = mm->machine();
  ReadLocker l(mm->mmap_lock);
  VmArea* vma = mm->mm_mt.lookup(addr);
  if (!vma) return std::nullopt;
  for (unsigned level = PUD_LEVEL;; level--) {
    PtSlot slot = pt_lookup(mm, addr, level);
    if (!slot) break;
    Pte e = slot.get();
    if (e.is_table()) continue;
    if (e.is_leaf()) {
      uint64_t page = (addr.value() & (level_size(level) - 1)) >> PAGE_SHIFT;
      return m.mem().value(e.pfn() + page).load(std::memory_order_relaxed);
    }
    if (e.is_swap()) return m.swap().read(e.swap_offset());
    break;
  }
  if (vma->vm_file) {
    uint64_t index = vma->linear_page_index(addr);
    Result<Folio> folio = vma->vm_file->find_folio(index);
    if (folio.ok()) return folio->read(index - vma->vm_file->folio_index(index));
  }
  return 0;
}

}  // namespace smm
