// File: shadowmm/mm/vma.h
//
// The VMA merge/split machinery (mm/vma.h, mm/vma.c: vma_merge_new_range,
// vma_merge_existing_range, vma_modify_flags, __split_vma; mm/huge_memory.c:
// vma_adjust_trans_huge; mm/rmap.c: anon_vma_prepare). The structures are in
// mm_types.h.

#pragma once

#include "shadowmm/machine/mm_types.h"

namespace smm {

// ---- merge / split (mm/vma.c) ----

// Can `a` (ending at b->vm_start) and `b` be one VMA? Flags equal except
// VM_SOFTDIRTY, same file, contiguous pgoff, compatible anon_vmas (g).
bool vma_can_merge(const VmArea* a, const VmArea* b);

// Linux: __split_vma. Splits `vma` at `addr` (strictly inside it); the part
// below addr keeps the VmArea when `new_below` is No, else the new VMA is the
// lower part. Calls vma_adjust_trans_huge (THP at the boundary is split,
// with its CLEAR notifier range). Returns the new VMA. ENOMEM at the map-count
// limit; EINVAL when a dax VMA would be split off its 2 MiB alignment.
enum class NewBelow { No, Yes };
Result<VmArea*> split_vma(MmStruct* mm, VmArea* vma, VirtAddr addr, NewBelow new_below)
    REQUIRES(mm->mmap_lock);

// Linux: vma_modify_flags. Prepares [start, end) of `vma` (start/end inside it)
// to get `new_flags`: merges it with a compatible neighbour when it touches
// that neighbour's edge and the merged VMA would have identical flags, else
// splits it off. Returns the VMA that now spans exactly [start, end) (or a
// merged VMA containing it) with its flags already set to `new_flags`.
Result<VmArea*> vma_modify_flags(MmStruct* mm, VmArea* vma, VirtAddr start, VirtAddr end,
                                 vm_flags_t new_flags) REQUIRES(mm->mmap_lock);

// Linux: vma_merge_new_range + vma_expand. Tries to add a new mapping
// [start, end) with the given properties by extending a neighbour. `src` is
// the VMA the range's pages come from (mremap's copy_vma), whose anon_vma
// must be compatible, or nullptr for a fresh mapping. Returns the VMA that
// now covers the range (holding src's anon_vma), or nullptr when no merge
// is possible.
VmArea* vma_merge_new_range(MmStruct* mm, VirtAddr start, VirtAddr end, vm_flags_t flags,
                            uint64_t pgoff, const std::shared_ptr<VmFile>& file, const VmArea* src = nullptr)
    REQUIRES(mm->mmap_lock);

// Linux: vma_adjust_trans_huge. Splits the PMD mapping around each of
// `start`, `end` (and next->vm_start when next is given) when that address is
// not 2 MiB aligned and its 2 MiB block lies inside the VMA.
void vma_adjust_trans_huge(VmArea* vma, VirtAddr start, VirtAddr end, VmArea* next);

// Linux: vma_set_page_prot / vm_get_page_prot (x86 protection_map).
uint8_t vm_get_page_prot(vm_flags_t flags);

// Linux: anon_vma_prepare. Gives `vma` an anon_vma (reusing a mergeable
// neighbour's, as find_mergeable_anon_vma does). Caller holds mmap_lock
// (read is enough: faults call it).
void anon_vma_prepare(MmStruct* mm, VmArea* vma) REQUIRES_SHARED(mm->mmap_lock);

}  // namespace smm
