// File: src/mm/prctl.cc
//
// PR_SET_THP_DISABLE (kernel/sys.c: prctl_set_thp_disable).

#include "shadowmm/mm/prctl.h"

#include "shadowmm/base/uapi.h"
#include "shadowmm/mm/mmap_lock.h"

namespace smm {

int prctl_set_thp_disable(MmStruct* mm, unsigned long disable, unsigned long flags) {
  if (disable > 1 || (flags & ~static_cast<unsigned long>(PR_THP_DISABLE_EXCEPT_ADVISED))) return -EINVAL;
  if (!disable && flags) return -EINVAL;
  MmapWriteLock l(mm);
  mm->clear_flag(MMF_DISABLE_THP_COMPLETELY);
  mm->clear_flag(MMF_DISABLE_THP_EXCEPT_ADVISED);
  if (disable)
    mm->set_flag(flags ? MMF_DISABLE_THP_EXCEPT_ADVISED : MMF_DISABLE_THP_COMPLETELY);
  return 0;
}

}  // namespace smm
