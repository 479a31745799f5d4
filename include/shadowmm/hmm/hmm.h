// File: shadowmm/hmm/hmm.h
//
// hmm_range_fault (include/linux/hmm.h, mm/hmm.c): snapshot the CPU page
// tables of a range for a device, faulting pages in as requested.
//
// Each entry of range->hmm_pfns is an input (request flags) and an output
// (pfn | flags). Input: HMM_PFN_REQ_FAULT (fault the page in if it is not
// valid) and HMM_PFN_REQ_WRITE (and make it writable), combined with
// default_flags and pfn_flags_mask as in Linux. Output: the pfn with
// HMM_PFN_VALID, HMM_PFN_WRITE, the map order of the leaf (PMD: 9, PUD: 18)
// or HMM_PFN_ERROR.

#pragma once

#include <cstdint>

#include "shadowmm/base/types.h"

namespace smm {

class MmStruct;
struct MmuIntervalNotifier;

inline constexpr uint64_t HMM_PFN_VALID = 1ull << 63;
inline constexpr uint64_t HMM_PFN_WRITE = 1ull << 62;
inline constexpr uint64_t HMM_PFN_ERROR = 1ull << 61;
inline constexpr unsigned HMM_PFN_ORDER_SHIFT = 56;
inline constexpr uint64_t HMM_PFN_ORDER_MASK = 0x1full << HMM_PFN_ORDER_SHIFT;
inline constexpr uint64_t HMM_PFN_FLAGS = HMM_PFN_VALID | HMM_PFN_WRITE | HMM_PFN_ERROR | HMM_PFN_ORDER_MASK;
inline constexpr uint64_t HMM_PFN_INOUT_FLAGS = HMM_PFN_VALID | HMM_PFN_WRITE | HMM_PFN_ERROR;
inline constexpr uint64_t HMM_PFN_REQ_FAULT = HMM_PFN_VALID;
inline constexpr uint64_t HMM_PFN_REQ_WRITE = HMM_PFN_WRITE;

inline Pfn hmm_pfn_to_pfn(uint64_t hmm_pfn) { return Pfn(hmm_pfn & ~HMM_PFN_FLAGS); }
inline unsigned hmm_pfn_to_map_order(uint64_t hmm_pfn) {
  return static_cast<unsigned>((hmm_pfn & HMM_PFN_ORDER_MASK) >> HMM_PFN_ORDER_SHIFT);
}

// struct hmm_range.
struct HmmRange {
  MmuIntervalNotifier* notifier = nullptr;
  uint64_t notifier_seq = 0;  // from mmu_interval_read_begin
  VirtAddr start;
  VirtAddr end;
  uint64_t* hmm_pfns = nullptr;  // (end - start) / PAGE_SIZE entries
  uint64_t default_flags = 0;
  uint64_t pfn_flags_mask = 0;
  const void* dev_private_owner = nullptr;
};

// Linux: hmm_range_fault. Caller holds mmap_lock of notifier->mm (read is
// enough). Returns 0; -EBUSY when the notifier's sequence moved (retry from
// read_begin); -EFAULT (a requested page has no VMA, a VM_IO/VM_PFNMAP or
// unreadable VMA, or the fault failed); -EPERM (write requested on a VMA
// without VM_WRITE).
int hmm_range_fault(HmmRange* range);

}  // namespace smm
