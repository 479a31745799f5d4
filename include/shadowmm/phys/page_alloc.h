// File: shadowmm/phys/page_alloc.h
//
// The model's physical memory: the memory map (one Page and one 64-bit value
// per 4 KiB frame) and a buddy allocator handing out naturally aligned folios
// of any order up to 1 GiB (mm/page_alloc.c: __rmqueue_smallest, expand,
// __free_one_page).
//
// The memory map is reserved up front with MAP_NORESERVE and committed by the
// host only where frames are used, and fresh memory joins the free lists
// lazily, so a machine with 64 GiB of model memory costs nothing until it
// maps pages.
//
// Every free bumps a 16-bit generation in each page of the folio, so a stale
// (pfn, generation) pair held by a secondary MMU is detectable after the frame
// is reused. (Wrap-around needs 65536 frees of one frame; the oracle also
// checks at free time that nobody can still reach the frame.)
//
// Deviation from Linux: one allocator serves every order up to PUD order (18).
// Linux's buddy allocator stops at MAX_PAGE_ORDER (10); 1 GiB folios come from
// hugetlb, CMA or device memory (devdax), which the model folds into it.
//
// Thread safety: the free lists are guarded by the zone lock. Page fields of
// allocated folios are accessed atomically by their users.

#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "shadowmm/base/lock.h"
#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"
#include "shadowmm/phys/page.h"

namespace smm {

inline constexpr unsigned MAX_FOLIO_ORDER = HPAGE_PUD_ORDER;  // 18

enum class AllocZero { No, Yes };

struct FrameAllocatorStats {
  uint64_t allocs[MAX_FOLIO_ORDER + 1] = {};
  uint64_t alloc_failures[MAX_FOLIO_ORDER + 1] = {};
  uint64_t frees = 0;
  uint64_t pages_in_use = 0;
};

class FrameAllocator {
 public:
  // `nr_frames` 4 KiB frames of model memory (default 64 GiB).
  explicit FrameAllocator(uint64_t nr_frames = kDefaultFrames);
  ~FrameAllocator();
  FrameAllocator(const FrameAllocator&) = delete;
  FrameAllocator& operator=(const FrameAllocator&) = delete;

  static constexpr uint64_t kDefaultFrames = (64ull << 30) >> PAGE_SHIFT;

  // Allocates a folio of 2^order pages with refcount 1, no mappings and the
  // given flags. Returns ENOMEM when no block is free or a failure is injected.
  [[nodiscard]] Result<Folio> alloc_folio(unsigned order, uint32_t flags = 0,
                                          AllocZero zero = AllocZero::Yes) EXCLUDES(zone_lock_);

  // Returns a folio whose refcount dropped to zero to the free lists. Called by
  // Folio::put; direct calls are for the allocator's own tests.
  void free_folio(Pfn head) EXCLUDES(zone_lock_);
  // Frees several folios (each with refcount zero) under one acquisition of
  // the zone lock (Linux: free_unref_folios, as release_pages uses it).
  void free_folios(const Pfn* heads, size_t n) EXCLUDES(zone_lock_);

  // Fault injection, per allocator (so per test): after `after` more
  // successful allocations of an order in `order_mask`, the next `times`
  // allocations of such orders fail with ENOMEM.
  void inject_failures(uint32_t order_mask, uint64_t times, uint64_t after = 0) EXCLUDES(zone_lock_);
  void clear_injected_failures() EXCLUDES(zone_lock_);

  // Memory map access.
  uint64_t nr_frames() const { return nr_frames_; }
  bool pfn_valid(Pfn pfn) const { return pfn.value() < nr_frames_; }
  Page& page(Pfn pfn) const {
    VM_BUG_ON(!pfn_valid(pfn));
    return pages_[pfn.value()];
  }
  std::atomic_ref<uint64_t> value(Pfn pfn) const {
    VM_BUG_ON(!pfn_valid(pfn));
    return std::atomic_ref<uint64_t>(values_[pfn.value()]);
  }
  // The folio containing `pfn` (page_folio). Only meaningful for allocated frames.
  Folio pfn_folio(Pfn pfn) const;
  uint16_t generation(Pfn pfn) const;
  bool is_free(Pfn pfn) const;

  FrameAllocatorStats stats() const EXCLUDES(zone_lock_);
  uint64_t pages_in_use() const { return pages_in_use_.load(std::memory_order_relaxed); }
  uint64_t free_pages() const EXCLUDES(zone_lock_);

  // Optional observer of every free, called before the frames go back to the
  // free lists (the coherence oracle checks E5 there).
  using FreeObserver = std::function<void(Folio)>;
  void set_free_observer(FreeObserver observer) { free_observer_ = std::move(observer); }

  // Buddy structure checks: every free block is aligned, inside memory, on the
  // list of its order, not overlapping another; counts add up.
  void check_invariants() const EXCLUDES(zone_lock_);

 private:
  // Marks a folio's pages free (generation bump); returns its order.
  unsigned prepare_free(Pfn head);
  void merge_free_locked(uint64_t pfn, unsigned order) REQUIRES(zone_lock_);
  void list_add_locked(uint64_t pfn, unsigned order) REQUIRES(zone_lock_);
  void list_del_locked(uint64_t pfn, unsigned order) REQUIRES(zone_lock_);
  bool should_fail_locked(unsigned order) REQUIRES(zone_lock_);
  // Moves the next block of never-used memory onto a free list.
  bool carve_locked() REQUIRES(zone_lock_);

  uint64_t nr_frames_;
  Page* pages_;
  uint64_t* values_;
  size_t map_bytes_;

  mutable SpinLock zone_lock_{LockRank::kZone, "zone_lock"};
  int64_t free_head_[MAX_FOLIO_ORDER + 1] GUARDED_BY(zone_lock_);
  uint64_t nr_free_[MAX_FOLIO_ORDER + 1] GUARDED_BY(zone_lock_) = {};
  FrameAllocatorStats stats_ GUARDED_BY(zone_lock_);
  uint32_t fail_order_mask_ GUARDED_BY(zone_lock_) = 0;
  uint64_t fail_after_ GUARDED_BY(zone_lock_) = 0;
  uint64_t fail_times_ GUARDED_BY(zone_lock_) = 0;
  // Frames at or above this pfn have never been on a free list (lazily
  // carved: untouched memory costs the host nothing).
  uint64_t next_uncarved_ GUARDED_BY(zone_lock_) = 1;
  std::atomic<uint64_t> pages_in_use_{0};
  FreeObserver free_observer_;
};

// Page-info helpers shared by the allocator and Folio.
inline unsigned page_info_order(uint32_t info) { return (info & kPageOrderMask) >> kPageOrderShift; }
inline uint16_t page_info_gen(uint32_t info) { return static_cast<uint16_t>(info >> kPageGenShift); }

}  // namespace smm
