// File: shadowmm/phys/swap.h
//
// The model's swap device (mm/swapfile.c, reduced): slots of one 4 KiB page
// each, holding the page's 64-bit value and a count of the swap entries
// that refer to it (swap_map: fork duplicates entries). A slot is allocated
// when reclaim writes a page out and freed when its last entry goes (swap-in
// or zap).
//
// Deviation from Linux: no swap cache. Swap-in reads the slot and frees it at
// once, so PG_swapcache is never set on a mapped folio.

#pragma once

#include <cstdint>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/base/result.h"

namespace smm {

class SwapSpace {
 public:
  // `nr_slots` pages of swap (0 = no swap device: reclaim cannot write
  // anonymous pages out, as on a machine without swap).
  explicit SwapSpace(uint64_t nr_slots);

  // Writes `value` to a free slot and returns its offset (ENOMEM when full).
  [[nodiscard]] Result<uint64_t> alloc(uint64_t value) EXCLUDES(lock_);
  uint64_t read(uint64_t offset) const EXCLUDES(lock_);
  // Linux: swap_duplicate (fork copies a swap entry).
  void dup(uint64_t offset) EXCLUDES(lock_);
  // Linux: swap_free. Drops one entry's reference; the slot is freed with the last.
  void free(uint64_t offset) EXCLUDES(lock_);
  // References to the slot (swap_count).
  uint32_t count(uint64_t offset) const EXCLUDES(lock_);

  uint64_t nr_slots() const { return nr_slots_; }
  uint64_t used() const EXCLUDES(lock_);
  void set_size(uint64_t nr_slots) EXCLUDES(lock_);

 private:
  mutable SpinLock lock_{LockRank::kSwap, "swap_lock"};
  uint64_t nr_slots_;
  std::vector<uint64_t> values_ GUARDED_BY(lock_);
  std::vector<uint32_t> counts_ GUARDED_BY(lock_);
  std::vector<uint64_t> free_ GUARDED_BY(lock_);
  uint64_t next_ GUARDED_BY(lock_) = 1;  // offset 0 is never used (a zero swap entry)
  uint64_t used_ GUARDED_BY(lock_) = 0;
};

}  // namespace smm
