// File: shadowmm/mm/task_mmu.h
//
// What /proc/PID/maps and /proc/PID/smaps report (fs/proc/task_mmu.c:
// show_map_vma, show_smap, smaps_pte_range), plus the "mapping runs" view of
// the page tables the scenario language dumps and checks.

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shadowmm/base/types.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

struct VmaReport {
  VirtAddr start;
  VirtAddr end;
  vm_flags_t flags;
  bool anon;  // an anonymous mapping (private, or shared = shmem)
  bool dax;
  uint64_t pgoff;
  uint64_t rss;        // bytes mapped by present entries of normal pages (no zero pages)
  uint64_t anon_huge;  // bytes of anonymous folios mapped by PMDs (AnonHugePages)
  bool thp_eligible;   // smaps THPeligible
};

// Every VMA of `mm` in address order. Takes mmap_lock for read.
std::vector<VmaReport> smaps_report(MmStruct* mm) EXCLUDES(mm->mmap_lock);

// How one run of pages is mapped (see the scenario language's `mappings`).
struct MappingRun {
  VirtAddr start;
  VirtAddr end;
  enum class Kind { kFolio, kZero, kHugeZero } kind;
  uint64_t folio_size;  // bytes (kFolio)
  unsigned level;       // PTE_LEVEL, PMD_LEVEL or PUD_LEVEL
  uint8_t prot;         // PteProt bits of the entries

  // "4K".."1G", "zero", "zero2M".
  std::string size_name() const;
};

// The runs of present pages of [start, end) (the whole address space by
// default) in address order. A run ends where the next page is not present,
// differs in folio size, level or protection, or where a large folio is
// entered or left without being mapped completely inside the run. Takes
// mmap_lock for read.
std::vector<MappingRun> mapping_runs(MmStruct* mm, VirtAddr start = VirtAddr(0),
                                     VirtAddr end = VirtAddr(TASK_SIZE)) EXCLUDES(mm->mmap_lock);

// The value a CPU read of `addr` would return, without faulting or changing
// anything: the mapped frame's value, a swapped-out page's value, the file's
// page for shmem/dax, zero for untouched anonymous memory. nullopt when no
// VMA covers `addr`. Takes mmap_lock for read.
std::optional<uint64_t> peek_value(MmStruct* mm, VirtAddr addr) EXCLUDES(mm->mmap_lock);

// "4K", "64K", "2M", "1G"... for a power-of-two size.
std::string size_name(uint64_t bytes);
// "rw-", "r-x", "---"... for PteProt bits.
std::string prot_name(uint8_t prot);

}  // namespace smm
