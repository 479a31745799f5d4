// File: src/mm/vma.cc
//
// The VMA tree and the merge/split rules (mm/vma.c: __split_vma,
// vma_merge_existing_range, vma_merge_new_range, vma_modify_flags,
// is_mergeable_vma, is_mergeable_anon_vma; mm/huge_memory.c:
// vma_adjust_trans_huge; mm/rmap.c: anon_vma_prepare).
//
//   vma_modify_flags([start, end) of middle), when a merge is possible:
//
//     0123456789abc          left merge, range touches middle's start:
//     PPPPMMMMMMNNN            PPPPPPPMMMNNN   (prev grows, middle shrinks)
//         ^  ^
//       start end            right merge, range touches middle's end:
//                              PPPPMMMNNNNNN   (next grows backwards)
//
//   and when the range is all of middle and both neighbours are compatible,
//   prev absorbs middle and next: PPPPPPPPPPPPP.

#include "shadowmm/mm/vma.h"

#include "shadowmm/base/bug.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/pgtable/pgtable.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

// ---- protections ----

uint8_t vm_get_page_prot(vm_flags_t flags) {
  // x86 protection_map: no write-only or exec-only pages; private writable
  // mappings start read-only (PAGE_COPY) and get write per page on fault.
  bool shared = flags & VM_SHARED;
  uint8_t prot = 0;
  if (flags & VM_ACCESS_FLAGS) prot |= PTE_PROT_R;
  if ((flags & VM_WRITE) && shared) prot |= PTE_PROT_W;
  if (flags & VM_EXEC) prot |= PTE_PROT_X;
  return prot;
}

// ---- anon_vma ----

void anon_vma_prepare(MmStruct* mm, VmArea* vma) {
  // Faults call this with mmap_lock held for read: concurrent faults of one
  // VMA serialise on page_table_lock, as __anon_vma_prepare does.
  SpinLocker l(mm->page_table_lock);
  if (vma->anon_vma) return;
  // find_mergeable_anon_vma / reusable_anon_vma: reuse an adjacent VMA's
  // anon_vma when the two could merge apart from protections, so they stay
  // mergeable.
  auto linear_base = [](const VmArea* v) { return v->vm_pgoff - v->vm_start.vpn(); };
  for (VmArea* n : {mm->mm_mt.prev(vma), mm->mm_mt.next(vma)}) {
    if (!n || !n->anon_vma || n->anon_vma_chain.size() != 1) continue;
    bool adjacent = n->vm_end == vma->vm_start || n->vm_start == vma->vm_end;
    vm_flags_t mask = ~(VM_SOFTDIRTY | VM_ACCESS_FLAGS);
    if (adjacent && (n->vm_flags & mask) == (vma->vm_flags & mask) && n->vm_file == vma->vm_file &&
        linear_base(n) == linear_base(vma)) {
      vma->anon_vma_chain = n->anon_vma_chain;
      vma->anon_vma = n->anon_vma.load();
      return;
    }
  }
  auto av = std::make_shared<AnonVma>();
  vma->anon_vma = av.get();
  vma->anon_vma_chain.push_back(std::move(av));
}

// ---- mergeability (mm/vma.c) ----

namespace {

// vma_had_uncowed_parents: an anon_vma inherited through fork.
bool had_uncowed_parents(const VmArea* vma) {
  return vma && vma->anon_vma && vma->anon_vma_chain.size() != 1;
}

// is_mergeable_anon_vma: `src_anon` is the anon_vma the merged range brings
// (with `src` its VMA, or nullptr for a new mapping), `tgt` the neighbour.
bool anon_mergeable(const AnonVma* src_anon, const VmArea* src, const VmArea* tgt) {
  if (!tgt->anon_vma && src_anon) return !had_uncowed_parents(src);
  if (tgt->anon_vma && !src_anon) return !had_uncowed_parents(tgt);
  return src_anon == tgt->anon_vma;
}

// is_mergeable_vma: flags equal ignoring VM_SOFTDIRTY, same file.
bool flags_file_mergeable(const VmArea* vma, vm_flags_t flags, const std::shared_ptr<VmFile>& file) {
  return ((vma->vm_flags ^ flags) & ~VM_SOFTDIRTY) == 0 && vma->vm_file == file;
}

// Properties of a range about to be merged.
struct MergeCandidate {
  VirtAddr start, end;
  vm_flags_t flags;
  uint64_t pgoff;
  std::shared_ptr<VmFile> file;
  const AnonVma* anon_vma;
  const VmArea* src;  // the VMA the range comes from (nullptr: new mapping)
};

bool can_merge_left(const MergeCandidate& c, const VmArea* prev) {
  return prev && prev->vm_end == c.start && flags_file_mergeable(prev, c.flags, c.file) &&
         prev->vm_pgoff + prev->pages() == c.pgoff && anon_mergeable(c.anon_vma, c.src, prev);
}

bool can_merge_right(const MergeCandidate& c, const VmArea* next, const VmArea* prev, bool left) {
  if (!next || next->vm_start != c.end || !flags_file_mergeable(next, c.flags, c.file) ||
      c.pgoff + ((c.end - c.start) >> PAGE_SHIFT) != next->vm_pgoff ||
      !anon_mergeable(c.anon_vma, c.src, next))
    return false;
  if (!left) return true;
  // Mergeable with each side does not make prev and next compatible.
  return !prev->anon_vma || !next->anon_vma || prev->anon_vma == next->anon_vma;
}

// Gives `dst` the anon_vma of `src` when it has none (dup_anon_vma).
void dup_anon_vma(VmArea* dst, const VmArea* src) {
  if (!dst->anon_vma && src && src->anon_vma) {
    dst->anon_vma = src->anon_vma;
    dst->anon_vma_chain = src->anon_vma_chain;
  }
}

void remove_vma_locked(MmStruct* mm, VmArea* vma) REQUIRES(mm->mmap_lock) {
  mm->mm_mt.erase(vma);
  mm->map_count--;
}

}  // namespace

bool vma_can_merge(const VmArea* a, const VmArea* b) {
  if (a->vm_end != b->vm_start || (a->vm_flags & VM_SPECIAL)) return false;
  MergeCandidate c{b->vm_start, b->vm_end, b->vm_flags, b->vm_pgoff, b->vm_file, b->anon_vma, b};
  return can_merge_left(c, a);
}

// ---- THP at moving boundaries ----

namespace {

void split_huge_pmd_if_needed(VmArea* vma, VirtAddr address) {
  if (address.is_aligned(PMD_SIZE)) return;
  VirtAddr haddr = address.align_down(PMD_SIZE);
  if (haddr < vma->vm_start || haddr + PMD_SIZE > vma->vm_end) return;
  split_huge_pmd_address(vma, address);
}

// Deviation from Linux: the model's dax maps 1 GiB PUD leaves next to 2 MiB
// PMD leaves in one VMA, so a 2 MiB-aligned VMA boundary may cut a PUD leaf.
// Split it like a PMD (Linux's devdax refuses splits below its alignment).
void split_huge_pud_if_needed(VmArea* vma, VirtAddr address) {
  if (address.is_aligned(PUD_SIZE)) return;
  VirtAddr haddr = address.align_down(PUD_SIZE);
  if (haddr < vma->vm_start || haddr + PUD_SIZE > vma->vm_end) return;
  split_huge_pud_address(vma, address);
}

}  // namespace

void vma_adjust_trans_huge(VmArea* vma, VirtAddr start, VirtAddr end, VmArea* next) {
  for (VirtAddr a : {start, end}) {
    split_huge_pud_if_needed(vma, a);
    split_huge_pmd_if_needed(vma, a);
  }
  if (next) {
    split_huge_pud_if_needed(next, end);
    split_huge_pmd_if_needed(next, end);
  }
}

// ---- split ----

Result<VmArea*> split_vma(MmStruct* mm, VmArea* vma, VirtAddr addr, NewBelow new_below) {
  VM_BUG_ON(addr <= vma->vm_start || addr >= vma->vm_end || !addr.is_aligned(PAGE_SIZE));
  // dev_dax_may_split: a dax VMA only splits on its 2 MiB alignment.
  if (vma->is_dax() && !addr.is_aligned(PMD_SIZE)) return Err{EINVAL};
  if (mm->map_count >= mm->machine().knobs().max_map_count.load()) return Err{ENOMEM};

  vma_adjust_trans_huge(vma, vma->vm_start, addr, nullptr);

  auto fresh = std::make_unique<VmArea>(*vma);
  uint64_t delta = (addr - vma->vm_start) >> PAGE_SHIFT;
  VirtAddr old_start = vma->vm_start;
  if (new_below == NewBelow::Yes) {
    fresh->vm_end = addr;
    vma->vm_start = addr;
    vma->vm_pgoff += delta;
    mm->mm_mt.rekey(vma, old_start);
  } else {
    fresh->vm_start = addr;
    fresh->vm_pgoff += delta;
    vma->vm_end = addr;
  }
  VmArea* created = mm->mm_mt.insert(std::move(fresh));
  mm->map_count++;
  mm->machine().stats().count(VmEvent::vma_split);
  return created;
}

// ---- vma_modify_flags ----

Result<VmArea*> vma_modify_flags(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end,
                                 vm_flags_t new_flags) {
  VM_BUG_ON(start < vma->vm_start || end > vma->vm_end || start >= end);
  VmArea* prev = mm->mm_mt.prev(vma);
  VmArea* next = mm->mm_mt.next(vma);
  bool touches_start = start == vma->vm_start;
  bool touches_end = end == vma->vm_end;

  // vma_merge_existing_range.
  if (!(new_flags & VM_SPECIAL) && (touches_start || touches_end)) {
    MergeCandidate c{start, end, new_flags, vma->linear_page_index(start), vma->vm_file, vma->anon_vma, vma};
    bool left = touches_start && can_merge_left(c, prev);
    bool right = touches_end && can_merge_right(c, next, prev, left);
    if (left || right) {
      mm->machine().stats().count(VmEvent::vma_merge);
      if (left && right) {
        // prev absorbs middle and next.
        dup_anon_vma(prev, vma);
        dup_anon_vma(prev, next);
        prev->vm_end = next->vm_end;
        remove_vma_locked(mm, vma);
        remove_vma_locked(mm, next);
        return prev;
      }
      if (left) {
        dup_anon_vma(prev, vma);
        if (touches_end) {
          prev->vm_end = vma->vm_end;
          remove_vma_locked(mm, vma);
        } else {
          // The boundary moves into middle: split a THP straddling it.
          vma_adjust_trans_huge(vma, start, end, nullptr);
          VirtAddr old_start = vma->vm_start;
          prev->vm_end = end;
          vma->vm_pgoff += (end - vma->vm_start) >> PAGE_SHIFT;
          vma->vm_start = end;
          mm->mm_mt.rekey(vma, old_start);
        }
        return prev;
      }
      // right
      dup_anon_vma(next, vma);
      VirtAddr old_next_start = next->vm_start;
      if (touches_start) {
        next->vm_start = vma->vm_start;
        next->vm_pgoff = vma->vm_pgoff;
        remove_vma_locked(mm, vma);
      } else {
        vma_adjust_trans_huge(vma, start, end, nullptr);
        vma->vm_end = start;
        next->vm_start = start;
        next->vm_pgoff = c.pgoff;
      }
      mm->mm_mt.rekey(next, old_next_start);
      return next;
    }
  }

  // No merge: split off the parts outside [start, end).
  if (vma->vm_start < start) {
    Result<VmArea*> r = split_vma(mm, vma, start, NewBelow::Yes);
    if (!r.ok()) return r;
  }
  if (vma->vm_end > end) {
    Result<VmArea*> r = split_vma(mm, vma, end, NewBelow::No);
    if (!r.ok()) return r;
  }
  vma->vm_flags = new_flags;
  return vma;
}

// ---- new mappings ----

VmArea* vma_merge_new_range(MmStruct* mm, VirtAddr start, VirtAddr end, vm_flags_t flags,
                            uint64_t pgoff, const std::shared_ptr<VmFile>& file, const VmArea* src) {
  if (flags & VM_SPECIAL) return nullptr;
  VmArea* next = mm->mm_mt.find(start);
  VmArea* prev = mm->mm_mt.prev_of(start);
  if (next && next->vm_start < end) return nullptr;  // not a free range
  MergeCandidate c{start, end, flags, pgoff, file, src ? src->anon_vma.load() : nullptr, src};
  bool left = can_merge_left(c, prev);
  bool right = can_merge_right(c, next, prev, left);
  if (!left && !right) return nullptr;
  mm->machine().stats().count(VmEvent::vma_merge);
  VmArea* merged;
  if (left && right) {
    dup_anon_vma(prev, next);
    prev->vm_end = next->vm_end;
    remove_vma_locked(mm, next);
    merged = prev;
  } else if (left) {
    prev->vm_end = end;
    merged = prev;
  } else {
    VirtAddr old_start = next->vm_start;
    next->vm_start = start;
    next->vm_pgoff = pgoff;
    mm->mm_mt.rekey(next, old_start);
    merged = next;
  }
  dup_anon_vma(merged, src);
  return merged;
}

}  // namespace smm
