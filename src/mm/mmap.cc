// File: src/mm/mmap.cc
//
// mmap, munmap and exit (mm/mmap.c: do_mmap, __get_unmapped_area,
// exit_mmap; mm/vma.c: __mmap_region, do_vmi_munmap, do_vmi_align_munmap,
// vms_gather_munmap_vmas, vms_clear_ptes; mm/memory.c: unmap_vmas,
// free_pgtables).
//
// Deviation from Linux: munmap keeps mmap_lock for write through the zap
// (Linux may downgrade it to read first; the spec allows either).

#include "shadowmm/mm/mmap.h"

#include <vector>

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/vma.h"
#include "shadowmm/notifier/mmu_notifier.h"
#include "shadowmm/pgtable/mmu_gather.h"

namespace smm {

namespace {

// Linux: unmapped_area_topdown. The highest `align`-aligned start of a free
// range of `len` bytes below mm->mmap_base.
Result<VirtAddr> unmapped_area_topdown(MmStruct* mm, uint64_t len, uint64_t align)
    REQUIRES(mm->mmap_lock) {
  const auto& map = mm->mm_mt.map();
  uint64_t gap_end = mm->mmap_base;
  auto it = map.lower_bound(gap_end);
  for (;;) {
    const VmArea* below = it == map.begin() ? nullptr : std::prev(it)->second.get();
    uint64_t gap_start = below ? std::max(below->vm_end.value(), MMAP_MIN_ADDR) : MMAP_MIN_ADDR;
    if (below && below->vm_end.value() > gap_end) {
      gap_end = std::min(gap_end, below->vm_start.value());
      --it;
      continue;
    }
    if (gap_end >= gap_start && gap_end - gap_start >= len) {
      uint64_t cand = align_down(gap_end - len, align);
      if (cand >= gap_start) return VirtAddr(cand);
    }
    if (!below) return Err{ENOMEM};
    gap_end = std::min(gap_end, below->vm_start.value());
    --it;
  }
}

// Linux: accountable_mapping. Private writable memory is charged (VM_ACCOUNT)
// unless MAP_NORESERVE.
bool accountable_mapping(vm_flags_t flags) {
  return (flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE;
}

// Linux: unmap_vmas. One UNMAP range over [start, end) for all the VMAs.
void unmap_vmas(MmuGather* tlb, const std::vector<VmArea*>& vmas, VirtAddr start, VirtAddr end) {
  if (vmas.empty()) return;
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, vmas.front()->vm_mm, start, end);
  mmu_notifier_invalidate_range_start(&range);
  for (VmArea* vma : vmas) {
    VirtAddr s = std::max(start, vma->vm_start);
    VirtAddr e = std::min(end, vma->vm_end);
    if (s < e) unmap_page_range(tlb, vma, s, e, ZapDetails{});
  }
  mmu_notifier_invalidate_range_end(&range);
}

// Linux: free_pgtables. Groups VMAs that lie within a PMD of each other and
// frees their page tables between `floor` and `ceiling`.
void free_pgtables(MmuGather* tlb, const std::vector<VmArea*>& vmas, VirtAddr floor, VirtAddr ceiling) {
  for (size_t i = 0; i < vmas.size();) {
    size_t j = i;
    while (j + 1 < vmas.size() && vmas[j + 1]->vm_start <= vmas[j]->vm_end + PMD_SIZE) j++;
    VirtAddr next = j + 1 < vmas.size() ? vmas[j + 1]->vm_start : ceiling;
    free_pgd_range(tlb, vmas[i]->vm_start, vmas[j]->vm_end, floor, next);
    i = j + 1;
  }
}

// Linux: do_vmi_align_munmap. `vma` is the first VMA intersecting
// [start, end), both page aligned.
int do_vmi_align_munmap(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end) REQUIRES(mm->mmap_lock) {
  // vms_gather_munmap_vmas: split at the boundaries, detach the VMAs.
  if (start > vma->vm_start) {
    if (end < vma->vm_end && mm->map_count >= mm->machine().knobs().max_map_count.load())
      return -ENOMEM;
    Result<VmArea*> r = split_vma(mm, vma, start, NewBelow::Yes);
    if (!r.ok()) return r.rc();
  }
  std::vector<VmArea*> detach;
  for (VmArea* v = vma; v && v->vm_start < end; v = mm->mm_mt.next(v)) {
    if (v->vm_end > end) {
      Result<VmArea*> r = split_vma(mm, v, end, NewBelow::No);
      if (!r.ok()) return r.rc();
    }
    detach.push_back(v);
  }
  VmArea* prev = mm->mm_mt.prev(detach.front());
  VmArea* next = mm->mm_mt.next(detach.back());
  VirtAddr floor = prev ? prev->vm_end : VirtAddr(0);
  VirtAddr ceiling = next ? next->vm_start : VirtAddr(0);
  std::vector<std::unique_ptr<VmArea>> owned;
  for (VmArea* v : detach) owned.push_back(mm->mm_mt.erase(v));
  mm->map_count -= static_cast<int>(detach.size());

  // vms_clear_ptes: zap under one UNMAP range, free the tables, flush, free.
  MmuGather tlb(mm);
  unmap_vmas(&tlb, detach, start, end);
  free_pgtables(&tlb, detach, floor, ceiling);
  tlb.finish();
  return 0;
}

}  // namespace

Result<VirtAddr> do_mmap_find_area(MmStruct* mm, uint64_t len, uint64_t align) {
  return unmapped_area_topdown(mm, len, align);
}

int do_munmap_locked(MmStruct* mm, VirtAddr start, uint64_t len) {
  if (!start.is_aligned(PAGE_SIZE) || start.value() > TASK_SIZE || len > TASK_SIZE - start.value())
    return -EINVAL;
  VirtAddr end = start + align_up(len, PAGE_SIZE);
  if (end == start) return -EINVAL;
  VmArea* vma = mm->mm_mt.find_intersection(start, end);
  if (!vma) return 0;
  return do_vmi_align_munmap(mm, vma, start, end);
}

int do_munmap(MmStruct* mm, VirtAddr start, uint64_t len) {
  MmOpScope op("munmap");
  MmapWriteLock l(mm);
  return do_munmap_locked(mm, start, len);
}

namespace {

Result<VirtAddr> do_mmap_locked(MmStruct* mm, VirtAddr addr, uint64_t len, int prot, int flags,
                                uint64_t pgoff, const MmapOpts& opts) REQUIRES(mm->mmap_lock) {
  Machine& m = mm->machine();
  if (!len) return Err{EINVAL};
  if (flags & MAP_FIXED_NOREPLACE) flags |= MAP_FIXED;
  if (!(flags & MAP_FIXED)) addr = addr.align_down(PAGE_SIZE);
  len = align_up(len, PAGE_SIZE);
  if (!len) return Err{ENOMEM};
  if (pgoff + (len >> PAGE_SHIFT) < pgoff) return Err{EOVERFLOW};
  if (mm->map_count > m.knobs().max_map_count.load()) return Err{ENOMEM};

  // calc_vm_prot_bits + the mapping type. Unknown prot bits are ignored.
  vm_flags_t vm_flags = calc_vm_prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  int type = flags & MAP_TYPE;
  if (opts.dax) {
    if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE) return Err{EINVAL};  // check_vma
    if ((prot & PROT_READ) && !(opts.file_prot & PROT_READ)) return Err{EACCES};
    if ((prot & PROT_WRITE) && !(opts.file_prot & PROT_WRITE)) return Err{EACCES};
    vm_flags |= VM_SHARED | VM_MAYSHARE;
    if (!(opts.file_prot & PROT_WRITE)) vm_flags &= ~(VM_MAYWRITE | VM_SHARED);
    if (!(opts.file_prot & PROT_EXEC)) vm_flags &= ~VM_MAYEXEC;
    // dax_mmap: the device asks for huge pages, and its alignment.
    vm_flags |= VM_HUGEPAGE;
    if (!is_aligned(len, PMD_SIZE)) return Err{EINVAL};
  } else if (type == MAP_SHARED) {
    vm_flags |= VM_SHARED | VM_MAYSHARE;
    pgoff = 0;
  } else if (type == MAP_PRIVATE) {
    // pgoff is set from the address below.
  } else {
    return Err{EINVAL};
  }
  if ((flags & MAP_NORESERVE)) vm_flags |= VM_NORESERVE;

  // get_unmapped_area.
  uint64_t align = opts.align ? opts.align : PAGE_SIZE;
  if (opts.dax && !opts.align) align = len >= PUD_SIZE ? PUD_SIZE : PMD_SIZE;
  if (len > TASK_SIZE - MMAP_MIN_ADDR) return Err{ENOMEM};
  if (flags & MAP_FIXED) {
    if (!addr.is_aligned(PAGE_SIZE)) return Err{EINVAL};
    if (addr.value() > TASK_SIZE - len) return Err{ENOMEM};
    if (opts.dax && !addr.is_aligned(PMD_SIZE)) return Err{EINVAL};
    if ((flags & MAP_FIXED_NOREPLACE) && mm->mm_mt.find_intersection(addr, addr + len)) return Err{EEXIST};
  } else {
    bool hint_ok = addr.value() >= MMAP_MIN_ADDR && addr.value() <= TASK_SIZE - len &&
                   addr.is_aligned(align) && !mm->mm_mt.find_intersection(addr, addr + len);
    if (!hint_ok) {
      Result<VirtAddr> area = unmapped_area_topdown(mm, len, align);
      if (!area.ok()) return area;
      addr = *area;
    }
  }
  VirtAddr end = addr + len;

  // MAP_FIXED replaces what was there exactly as munmap would.
  if ((flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE)) {
    int rc = do_munmap_locked(mm, addr, len);
    if (rc) return Err{-rc};
  }
  if (mm->map_count >= m.knobs().max_map_count.load()) return Err{ENOMEM};

  std::shared_ptr<VmFile> file;
  if (opts.dax)
    file = std::make_shared<VmFile>(m, VmFile::Kind::kDax, len >> PAGE_SHIFT, addr);
  else if (vm_flags & VM_SHARED)
    file = std::make_shared<VmFile>(m, VmFile::Kind::kShmem, len >> PAGE_SHIFT, addr);
  if (!file) pgoff = addr.vpn();
  if (accountable_mapping(vm_flags)) vm_flags |= VM_ACCOUNT;

  VmArea* vma = vma_merge_new_range(mm, addr, end, vm_flags, pgoff, file);
  if (!vma) {
    auto fresh = std::make_unique<VmArea>();
    fresh->vm_start = addr;
    fresh->vm_end = end;
    fresh->vm_flags = vm_flags;
    fresh->vm_pgoff = pgoff;
    fresh->vm_mm = mm;
    fresh->vm_file = file;
    fresh->vm_page_prot = vm_get_page_prot(vm_flags);
    vma = mm->mm_mt.insert(std::move(fresh));
    mm->map_count++;
  }
  khugepaged_enter_vma(vma, vma->vm_flags);
  return addr;
}

}  // namespace

Result<VirtAddr> do_mmap(MmStruct* mm, VirtAddr addr, uint64_t len, int prot, int flags, uint64_t offset,
                         const MmapOpts& opts) {
  MmOpScope op("mmap");
  if (!is_aligned(offset, PAGE_SIZE)) return Err{EINVAL};  // sys_mmap
  MmapWriteLock l(mm);
  return do_mmap_locked(mm, addr, len, prot, flags, offset >> PAGE_SHIFT, opts);
}

void exit_mmap(MmStruct* mm) {
  MmOpScope op("exit");
  mmu_notifier_release(mm);
  MmapWriteLock l(mm);
  std::vector<VmArea*> vmas;
  mm->mm_mt.for_each([&](VmArea* v) { vmas.push_back(v); });
  {
    MmuGather tlb(mm, /*fullmm=*/true);
    unmap_vmas(&tlb, vmas, VirtAddr(0), VirtAddr(~0ull));
    free_pgtables(&tlb, vmas, VirtAddr(0), VirtAddr(0));
    tlb.finish();
  }
  mm->set_flag(MMF_OOM_SKIP);
  for (VmArea* v : vmas) mm->mm_mt.erase(v);
  mm->map_count = 0;
}

}  // namespace smm
