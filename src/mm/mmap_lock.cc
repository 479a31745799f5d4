// File: src/mm/mmap_lock.cc
//
// mmap_write_lock / mmap_write_unlock (include/linux/mmap_lock.h).

#include "shadowmm/mm/mmap_lock.h"

#include "shadowmm/pgtable/pgtable.h"

namespace smm {

MmapWriteLock::MmapWriteLock(MmStruct* mm) : mm_(mm) {
  mm->mmap_lock.write_lock();
  pt_drain_deferred(mm);
}

MmapWriteLock::~MmapWriteLock() { mm_->mmap_lock.write_unlock(); }

}  // namespace smm
