// File: shadowmm/thp/policy.h
//
// THP policy: the sysfs knobs of /sys/kernel/mm/transparent_hugepage/
// (mm/huge_memory.c: enabled, hugepages-<N>kB/enabled, use_zero_page,
// khugepaged/*) and the order selection thp_vma_allowable_orders
// (include/linux/huge_mm.h, mm/huge_memory.c: __thp_vma_allowable_orders).
//
// Knobs are atomics: a script or a test may change them while faults run.

#pragma once

#include <atomic>
#include <cstdint>

#include "shadowmm/base/types.h"
#include "shadowmm/mm/vm_flags.h"

namespace smm {

struct VmArea;

enum class ThpEnabled : uint8_t { kAlways, kMadvise, kNever };
// Per-size setting (hugepages-<N>kB/enabled).
enum class ThpSizeSetting : uint8_t { kNever, kAlways, kInherit, kMadvise };

inline constexpr unsigned THP_MIN_ANON_ORDER = 2;  // order 1 is never used for anon
// Orders 2..9: the anonymous THP orders on x86-64.
inline constexpr uint32_t THP_ORDERS_ALL_ANON = ((1u << (9 + 1)) - 1) & ~3u;
// Orders of special huge mappings (DAX): PMD and PUD.
inline constexpr uint32_t THP_ORDERS_ALL_SPECIAL = (1u << 9) | (1u << 18);

// tva_flags (include/linux/huge_mm.h).
enum TvaFlags : uint32_t {
  TVA_SMAPS = 1u << 0,          // /proc/pid/smaps THPeligible
  TVA_IN_PF = 1u << 1,          // page fault
  TVA_ENFORCE_SYSFS = 1u << 2,  // obey the sysfs enabled settings
  // MADV_COLLAPSE (6.18's TVA_FORCED_COLLAPSE): an explicit request passes
  // PR_THP_DISABLE_EXCEPT_ADVISED (vma_thp_disabled's forced_collapse).
  TVA_FORCED_COLLAPSE = 1u << 3,
};

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

// Linux: thp_vma_allowable_orders. The orders of `orders` allowed for `vma`
// with flags `vm_flags` for the caller described by `tva_flags`.
uint32_t thp_vma_allowable_orders(const VmArea* vma, vm_flags_t vm_flags, uint32_t tva_flags,
                                  uint32_t orders);
inline bool thp_vma_allowable_order(const VmArea* vma, vm_flags_t vm_flags, uint32_t tva_flags,
                                    unsigned order) {
  return thp_vma_allowable_orders(vma, vm_flags, tva_flags, 1u << order) != 0;
}

// Linux: thp_vma_suitable_order. The naturally aligned block of `order`
// around `addr` lies inside the VMA.
bool thp_vma_suitable_order(const VmArea* vma, uint64_t addr, unsigned order);
// The subset of `orders` suitable at `addr`.
uint32_t thp_vma_suitable_orders(const VmArea* vma, uint64_t addr, uint32_t orders);

// Linux: vma_thp_disabled (6.18 form with PR_THP_DISABLE_EXCEPT_ADVISED).
bool vma_thp_disabled(const VmArea* vma, vm_flags_t vm_flags, bool forced_collapse);

inline unsigned highest_order(uint32_t orders) { return 31 - __builtin_clz(orders); }

}  // namespace smm
