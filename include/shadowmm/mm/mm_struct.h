// File: shadowmm/mm/mm_struct.h
//
// The address space (include/linux/mm_types.h: struct mm_struct;
// kernel/fork.c: mm_alloc, mmget, mmput, mmgrab, mmdrop).
//
// Lifetime: mm_users counts users of the address space (a task, a device
// holding mmget for a fault); when it drops to zero the mm is torn down
// (exit_mmap). mm_count counts references to the structure itself (notifier
// subscriptions pin it with mmgrab); the object is deleted when it drops to
// zero. All of mm_users holds a single mm_count reference.

#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/mm/mm_types.h"
#include "shadowmm/pgtable/pgtable.h"

namespace smm {

class Machine;
class MmuNotifierSubscriptions;

// mm->flags (include/linux/mm_types.h, MMF_*).
enum MmFlag : uint32_t {
  MMF_DISABLE_THP_COMPLETELY = 1u << 0,      // PR_SET_THP_DISABLE
  MMF_DISABLE_THP_EXCEPT_ADVISED = 1u << 1,  // ... with PR_THP_DISABLE_EXCEPT_ADVISED
  MMF_VM_HUGEPAGE = 1u << 2,                 // on khugepaged's list
  MMF_HUGE_ZERO_PAGE = 1u << 3,
  MMF_OOM_SKIP = 1u << 4,
};

// RSS counters (include/linux/mm_types_task.h: MM_FILEPAGES...).
enum MmCounter : unsigned { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, NR_MM_COUNTERS };

class MmStruct {
 public:
  // Linux: mm_alloc. mm_users = mm_count = 1.
  static MmStruct* create(Machine& machine, std::string name);

  MmStruct(const MmStruct&) = delete;
  MmStruct& operator=(const MmStruct&) = delete;

  Machine& machine() const { return machine_; }
  const std::string& name() const { return name_; }
  uint64_t id() const { return id_; }

  // mmget / mmget_not_zero / mmput / mmgrab / mmdrop.
  void mmget() { mm_users.fetch_add(1, std::memory_order_relaxed); }
  bool mmget_not_zero();
  void mmput();
  void mmgrab() { mm_count.fetch_add(1, std::memory_order_relaxed); }
  void mmdrop();

  // ---- fields (kernel names) ----

  // Write: VMA tree and VMA flag changes, THP collapse install, notifier
  // registration. Read: faults, hmm_range_fault, madvise scans.
  RwSem mmap_lock{LockRank::kMmapLock, "mmap_lock"};
  VmaTree mm_mt GUARDED_BY(mmap_lock);
  // Number of VMAs (vm_area_struct count against sysctl_max_map_count).
  int map_count GUARDED_BY(mmap_lock) = 0;
  // Top of the top-down mmap area (mm->mmap_base).
  const uint64_t mmap_base;

  // Guards PGD/PUD entries and PUD leaves.
  SpinLock page_table_lock{LockRank::kPageTableLock, "page_table_lock"};
  PageTable* const pgd;

  std::atomic<int32_t> mm_users{1};
  std::atomic<int32_t> mm_count{1};
  std::atomic<uint32_t> flags{0};
  std::atomic<int64_t> pgtables_bytes{0};
  std::atomic<int64_t> rss_stat[NR_MM_COUNTERS] = {};

  // Page tables detached while mmap_lock was held only for read (the
  // empty-PTE-table reclaim of MADV_DONTNEED). Lockless walkers holding
  // mmap_lock for read may still look at them, so they are freed only once
  // mmap_lock is next taken for write: the model's RCU grace period for
  // page tables (Linux frees them with RCU). Bounded by kMaxDeferredTables.
  std::vector<PageTable*> pt_deferred GUARDED_BY(page_table_lock);
  static constexpr size_t kMaxDeferredTables = 256;
  // Queues `table` (already detached) for freeing at the next write lock.
  void pt_defer_free(PageTable* table) EXCLUDES(page_table_lock);
  // Frees the deferred tables. Caller holds mmap_lock for write.
  void pt_drain_deferred() REQUIRES(mmap_lock) EXCLUDES(page_table_lock);
  size_t pt_deferred_count() EXCLUDES(page_table_lock);

  // Notifier subscriptions (NULL until the first registration). Owned.
  std::atomic<MmuNotifierSubscriptions*> notifier_subscriptions{nullptr};

  bool test_flag(MmFlag f) const { return flags.load(std::memory_order_relaxed) & f; }
  void set_flag(MmFlag f) { flags.fetch_or(f, std::memory_order_relaxed); }
  void clear_flag(MmFlag f) { flags.fetch_and(~uint32_t{f}, std::memory_order_relaxed); }
  void add_rss(MmCounter c, int64_t n) { rss_stat[c].fetch_add(n, std::memory_order_relaxed); }
  int64_t rss(MmCounter c) const { return rss_stat[c].load(std::memory_order_relaxed); }

  // VMA tree, page tables and counters agree: every present leaf lies in a
  // VMA; rss counters equal what the page tables map; map_count matches.
  // Caller holds mmap_lock.
  void check_invariants() REQUIRES_SHARED(mmap_lock);

 private:
  MmStruct(Machine& machine, std::string name);
  ~MmStruct();

  Machine& machine_;
  const std::string name_;
  const uint64_t id_;
};

// Linux: mmap_write_lock / mmap_write_unlock, as a scoped guard. Taking the
// write lock is a grace period for page tables detached under the read
// lock; they are freed here.
class SCOPED_CAPABILITY MmapWriteLock {
 public:
  explicit MmapWriteLock(MmStruct* mm) ACQUIRE(mm->mmap_lock) : mm_(mm) {
    mm_->mmap_lock.write_lock();
    mm_->pt_drain_deferred();
  }
  ~MmapWriteLock() RELEASE() { mm_->mmap_lock.write_unlock(); }
  MmapWriteLock(const MmapWriteLock&) = delete;
  MmapWriteLock& operator=(const MmapWriteLock&) = delete;

 private:
  MmStruct* mm_;
};

// Holds one mm_users reference; mmput on destruction.
class MmRef {
 public:
  MmRef() = default;
  explicit MmRef(MmStruct* mm) : mm_(mm) {}
  ~MmRef() { reset(); }
  MmRef(MmRef&& o) noexcept : mm_(o.mm_) { o.mm_ = nullptr; }
  MmRef& operator=(MmRef&& o) noexcept {
    if (this != &o) {
      reset();
      mm_ = o.mm_;
      o.mm_ = nullptr;
    }
    return *this;
  }
  MmStruct* get() const { return mm_; }
  MmStruct* operator->() const { return mm_; }
  void reset() {
    if (mm_) mm_->mmput();
    mm_ = nullptr;
  }

 private:
  MmStruct* mm_ = nullptr;
};

// Default sysctl_max_map_count.
inline constexpr int DEFAULT_MAX_MAP_COUNT = 65530;
// Top of the deterministic mmap area (the scenario language's placement).
inline constexpr uint64_t MMAP_TOP = 0x7f0000000000ull;

}  // namespace smm
