// File: src/thp/khugepaged_internal.h (private to src/thp/)
//
// Helpers shared by the collapse (khugepaged.cc) and the scanner
// (khugepaged_scan.cc), like Linux's mm/internal.h.

#pragma once

#include "shadowmm/mm/mm_struct.h"

namespace smm {

// Linux: hpage_collapse_test_exit_or_disable. The mm is exiting, or
// PR_SET_THP_DISABLE turned THP off for all of it.
inline bool hpage_collapse_test_exit_or_disable(const MmStruct* mm) {
  return mm->mm_users.load(std::memory_order_relaxed) == 0 || mm->test_flag(MMF_DISABLE_THP_COMPLETELY);
}

}  // namespace smm
