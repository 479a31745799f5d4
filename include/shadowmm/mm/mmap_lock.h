// File: shadowmm/mm/mmap_lock.h
//
// Taking an mm's mmap_lock for write (include/linux/mmap_lock.h:
// mmap_write_lock / mmap_write_unlock) as a scoped guard.
//
// Taking the write lock is also the model's grace period for page tables
// detached under the read lock (pgtable/pgtable.h: pt_defer_free): they are
// freed here. Floors below mm (the notifier core) take the lock as a plain
// WriteLocker and leave the draining to the next writer on this floor.

#pragma once

#include "shadowmm/machine/mm_types.h"

namespace smm {

class SCOPED_CAPABILITY MmapWriteLock {
 public:
  explicit MmapWriteLock(MmStruct* mm) ACQUIRE(mm->mmap_lock);
  ~MmapWriteLock() RELEASE();
  MmapWriteLock(const MmapWriteLock&) = delete;
  MmapWriteLock& operator=(const MmapWriteLock&) = delete;

 private:
  MmStruct* mm_;
};

}  // namespace smm
