// File: shadowmm/mm/memory.h
//
// Page faults, zapping and CPU accesses (mm/memory.c: handle_mm_fault,
// __handle_mm_fault, handle_pte_fault, do_anonymous_page, alloc_anon_folio,
// do_wp_page, wp_page_copy, do_fault; unmap_page_range, zap_pte_range,
// unmap_vmas, free_pgtables, free_pgd_range).

#pragma once

#include <cstdint>
#include <optional>

#include "shadowmm/base/thread_annotations.h"
#include "shadowmm/base/types.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/pgtable/mmu_gather.h"

namespace smm {

// enum fault_flag (subset).
inline constexpr unsigned FAULT_FLAG_WRITE = 1u << 0;
inline constexpr unsigned FAULT_FLAG_REMOTE = 1u << 1;  // on behalf of a device (hmm) or GUP
inline constexpr unsigned FAULT_FLAG_UNSHARE = 1u << 2;

// vm_fault_t bits (include/linux/mm_types.h).
using vm_fault_t = unsigned;
inline constexpr vm_fault_t VM_FAULT_OOM = 1u << 0;
inline constexpr vm_fault_t VM_FAULT_SIGBUS = 1u << 1;
inline constexpr vm_fault_t VM_FAULT_SIGSEGV = 1u << 2;
inline constexpr vm_fault_t VM_FAULT_NOPAGE = 1u << 3;
inline constexpr vm_fault_t VM_FAULT_RETRY = 1u << 4;
inline constexpr vm_fault_t VM_FAULT_FALLBACK = 1u << 5;
inline constexpr vm_fault_t VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV;

// Linux: handle_mm_fault. Resolves a fault at `addr` of `vma` (which the
// caller looked up under mmap_lock). Returns 0 when the caller should retry
// the access (the entry may or may not be present now), or VM_FAULT_* bits.
vm_fault_t handle_mm_fault(MmStruct* mm, VmArea* vma, VirtAddr addr, unsigned flags)
    REQUIRES_SHARED(mm->mmap_lock);

// ---- CPU accesses (the scenario's touch / read / write) ----

enum class Access { kRead, kWrite };

// One CPU access of the page at `addr`: read its value into *value, or store
// *value. Faults as the kernel would. Returns 0, -EFAULT where the kernel
// would raise SIGSEGV/SIGBUS (no VMA, no permission, bad dax fault), or
// -ENOMEM when the fault ran out of memory (the OOM killer's victim).
int cpu_access(MmStruct* mm, VirtAddr addr, Access access, uint64_t* value) EXCLUDES(mm->mmap_lock);

// Accesses every page of [start, start+len). Writes store `value` or, when
// it is empty, each page's own address. Checks first that every page is
// accessible (-EFAULT, nothing changed, when one is not).
int cpu_touch(MmStruct* mm, VirtAddr start, uint64_t len, Access access,
              std::optional<uint64_t> value) EXCLUDES(mm->mmap_lock);

// ---- zapping ----

struct ZapDetails {
  // MADV_DONTNEED: free a PTE table emptied by the zap (6.14+ pt_reclaim),
  // when the zap covered the whole table.
  bool reclaim_pt = false;
};

// Linux: unmap_page_range. Zaps [start, end) of `vma` into `tlb`; calls
// tlb->start_vma()/end_vma(). Splits huge entries that the range covers only
// partly (each split opens its own CLEAR range). Caller opened the notifier
// range.
void unmap_page_range(MmuGather* tlb, VmArea* vma, VirtAddr start, VirtAddr end,
                      const ZapDetails& details);

// Linux: free_pgd_range. Frees the page tables mapping [addr, end) that no
// VMA outside [floor, ceiling) can use (ceiling 0 = top of the address space).
void free_pgd_range(MmuGather* tlb, VirtAddr addr, VirtAddr end, VirtAddr floor, VirtAddr ceiling);

// ---- shared helpers of the fault and zap paths ----

// Linux: folio_add_rmap_ptes / folio_remove_rmap_ptes. Map counts of `nr`
// pages starting at page `first` (references are taken and dropped by the
// caller: a mapping holds one folio reference per PTE).
void folio_add_rmap_ptes(Folio folio, uint64_t first, uint64_t nr);
void folio_remove_rmap_ptes(Folio folio, uint64_t first, uint64_t nr);
// Linux: folio_add_rmap_pmd/pud and their removal. A leaf covering the whole
// folio is an entire mapping; a leaf covering part of a larger (dax) folio
// maps each of its pages. A huge leaf holds one folio reference.
void folio_add_rmap_leaf(Folio folio, uint64_t first, uint64_t nr);
void folio_remove_rmap_leaf(Folio folio, uint64_t first, uint64_t nr);

// The RSS counter a folio's mappings are charged to (mm_counter).
MmCounter mm_counter_of(Folio folio);

}  // namespace smm
