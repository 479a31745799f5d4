// File: shadowmm/mm/prctl.h
//
// prctl(PR_SET_THP_DISABLE) (kernel/sys.c, 6.18 with
// PR_THP_DISABLE_EXCEPT_ADVISED).

#pragma once

#include "shadowmm/machine/mm_types.h"

namespace smm {

// PR_SET_THP_DISABLE: `disable` 1 sets MMF_DISABLE_THP_COMPLETELY, or with
// `flags` = PR_THP_DISABLE_EXCEPT_ADVISED MMF_DISABLE_THP_EXCEPT_ADVISED;
// 0 clears both (flags must then be 0). EINVAL for other values.
int prctl_set_thp_disable(MmStruct* mm, unsigned long disable, unsigned long flags) EXCLUDES(mm->mmap_lock);

}  // namespace smm
