// File: shadowmm/machine/knobs.h
//
// The machine's tunables: the THP sysfs knobs of
// /sys/kernel/mm/transparent_hugepage/ (mm/huge_memory.c: enabled,
// hugepages-<N>kB/enabled, use_zero_page, khugepaged/*) and the project's
// own mm switches (the "before the fix" knobs of S1-S5, vm.max_map_count).
// The order selection that reads the THP knobs (thp_vma_allowable_orders)
// is on the mm floor, in mm/huge_memory.h.
//
// Knobs are atomics: a script or a test may change them while faults run.

#pragma once

#include <atomic>
#include <cstdint>

namespace smm {

enum class ThpEnabled : uint8_t { kAlways, kMadvise, kNever };
// Per-size setting (hugepages-<N>kB/enabled).
enum class ThpSizeSetting : uint8_t { kNever, kAlways, kInherit, kMadvise };

class ThpPolicy {
 public:
  ThpPolicy();

  std::atomic<ThpEnabled> enabled{ThpEnabled::kMadvise};
  std::atomic<bool> use_zero_page{true};

  // khugepaged/* (used by the THP-collapse code).
  std::atomic<unsigned> max_ptes_none{511};
  std::atomic<unsigned> max_ptes_swap{64};
  std::atomic<unsigned> max_ptes_shared{256};
  std::atomic<unsigned> pages_to_scan{4096};
  std::atomic<unsigned> scan_sleep_millisecs{10000};
  std::atomic<unsigned> alloc_sleep_millisecs{60000};

  void set_size(unsigned order, ThpSizeSetting setting);
  ThpSizeSetting size(unsigned order) const;

  // Bitmasks of anon orders set to always / madvise / inherit.
  uint32_t always_orders() const { return always_.load(std::memory_order_relaxed); }
  uint32_t madvise_orders() const { return madvise_.load(std::memory_order_relaxed); }
  uint32_t inherit_orders() const { return inherit_.load(std::memory_order_relaxed); }

  // hugepage_global_enabled / hugepage_global_always.
  bool global_enabled() const { return enabled.load(std::memory_order_relaxed) != ThpEnabled::kNever; }
  bool global_always() const { return enabled.load(std::memory_order_relaxed) == ThpEnabled::kAlways; }

 private:
  std::atomic<uint32_t> always_{0};
  std::atomic<uint32_t> madvise_{0};
  std::atomic<uint32_t> inherit_{1u << 9};
};

// The project's mm knobs (scenario language `set mm.*`, `notifier.*`).
struct MmKnobs {
  enum class NotifyLevel : uint8_t { kPud, kPmd };
  enum class CollapseOrders : uint8_t { kMthp, kPmd };
  enum class CollapseFlush : uint8_t { kPmd, kRange };

  // [S3] kPmd = mprotect opens its PROTECTION_VMA range per PMD table
  // (before "mm/mprotect: push mmu notifier to PUDs"), missing PUD leaves.
  std::atomic<NotifyLevel> mprotect_notify_level{NotifyLevel::kPud};
  // [S2] khugepaged collapse orders, and the flush span of an mTHP collapse.
  std::atomic<CollapseOrders> collapse_orders{CollapseOrders::kMthp};
  std::atomic<CollapseFlush> collapse_flush{CollapseFlush::kPmd};
  // [S1] false = MMU_INTERVAL_NOTIFIER_BLOCK_THP is an unknown flag.
  std::atomic<bool> block_thp{true};
  // [S5] also call invalidate_secondary_tlbs from the classic end pass.
  std::atomic<bool> secondary_tlbs_at_end{true};
  // false = mm_forbids_zeropage: read faults allocate real pages, no huge
  // zero page either (as on hosts booted without a zero page).
  std::atomic<bool> zero_page{true};
  // sysctl vm.max_map_count.
  std::atomic<int> max_map_count{65530};
};

}  // namespace smm
