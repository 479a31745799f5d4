// File: shadowmm/mm/mmap.h
//
// mmap, munmap and address-space teardown (mm/mmap.c: do_mmap,
// get_unmapped_area, exit_mmap; mm/vma.c: do_vmi_munmap,
// do_vmi_align_munmap, unmap_region; mm/memory.c: unmap_vmas,
// free_pgtables).

#pragma once

#include <cstdint>

#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"
#include "shadowmm/base/uapi.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

// What the model adds to mmap's arguments.
struct MmapOpts {
  // Map a device-DAX region (a file-like mapping; requires MAP_SHARED).
  bool dax = false;
  // Alignment of the chosen address when the placement is free (0 = the
  // default: 4 KiB; dax: 2 MiB, or 1 GiB when len >= 1 GiB).
  uint64_t align = 0;
  // Access mode of the mapped file (dax only), as PROT_* bits: without
  // PROT_WRITE a shared mapping gets no VM_MAYWRITE (a descriptor opened
  // O_RDONLY), so mprotect(PROT_WRITE) fails with EACCES.
  int file_prot = PROT_READ | PROT_WRITE | PROT_EXEC;
};

// Linux: vm_mmap_pgoff -> do_mmap. Takes mmap_lock for write. Returns the
// start address or the kernel's errno: EINVAL (zero length, unaligned
// MAP_FIXED address or offset, bad map type), ENOMEM (overflowing length, no
// room, beyond TASK_SIZE, map count), EEXIST (MAP_FIXED_NOREPLACE over a
// mapping), EOVERFLOW (pgoff overflow), EACCES (file access mode).
Result<VirtAddr> do_mmap(MmStruct* mm, VirtAddr addr, uint64_t len, int prot, int flags, uint64_t offset,
                         const MmapOpts& opts = {}) EXCLUDES(mm->mmap_lock);

// Linux: vm_munmap -> do_vmi_munmap. Takes mmap_lock for write. 0, EINVAL
// (unaligned, zero length, beyond TASK_SIZE), ENOMEM (map count at a split).
// An empty range succeeds.
int do_munmap(MmStruct* mm, VirtAddr start, uint64_t len) EXCLUDES(mm->mmap_lock);
int do_munmap_locked(MmStruct* mm, VirtAddr start, uint64_t len) REQUIRES(mm->mmap_lock);

// Linux: get_unmapped_area without a hint: the highest free range of `len`
// bytes aligned to `align` below mm->mmap_base. ENOMEM when none.
Result<VirtAddr> do_mmap_find_area(MmStruct* mm, uint64_t len, uint64_t align) REQUIRES(mm->mmap_lock);

// Linux: exit_mmap. Releases notifier subscriptions, unmaps everything under
// one UNMAP range [0, ULONG_MAX), frees the page tables and the VMAs.
void exit_mmap(MmStruct* mm) EXCLUDES(mm->mmap_lock);

// Lowest address mmap hands out (mmap_min_addr).
inline constexpr uint64_t MMAP_MIN_ADDR = 0x10000;

}  // namespace smm
