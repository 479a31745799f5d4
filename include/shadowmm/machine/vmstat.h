// File: shadowmm/machine/vmstat.h
//
// Event counters of one machine (include/linux/vm_event_item.h and the mTHP
// per-size stats of /sys/kernel/mm/transparent_hugepage/hugepages-*/stats),
// plus the model's own counters (notifier ranges by event, TLB flushes,
// secondary-TLB calls). `dump stats` prints them by name; names only grow.

#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace smm {

#define SMM_VM_EVENTS(X)                                                   \
  X(pgfault)                                                               \
  X(fault_4k)                                                              \
  X(fault_zero_page)                                                       \
  X(fault_huge_zero_page)                                                  \
  X(fault_shmem)                                                           \
  X(fault_dax_pmd)                                                         \
  X(fault_dax_pud)                                                         \
  X(fault_sigsegv)                                                         \
  X(fault_sigbus)                                                          \
  X(fault_oom)                                                             \
  X(thp_fault_alloc)                                                       \
  X(thp_fault_fallback)                                                    \
  X(mthp_fault_alloc_16K)                                                  \
  X(mthp_fault_alloc_32K)                                                  \
  X(mthp_fault_alloc_64K)                                                  \
  X(mthp_fault_alloc_128K)                                                 \
  X(mthp_fault_alloc_256K)                                                 \
  X(mthp_fault_alloc_512K)                                                 \
  X(mthp_fault_alloc_1M)                                                   \
  X(mthp_fault_fallback)                                                   \
  X(cow)                                                                   \
  X(wp_reuse)                                                              \
  X(thp_split_pmd)                                                         \
  X(thp_split_pud)                                                         \
  X(thp_zero_wp_alloc)                                                     \
  X(tlb_flush)                                                             \
  X(tlb_flush_pages)                                                       \
  X(pgtable_alloc)                                                         \
  X(pgtable_free)                                                          \
  X(notifier_range_unmap)                                                  \
  X(notifier_range_clear)                                                  \
  X(notifier_range_protection_vma)                                         \
  X(notifier_range_protection_page)                                        \
  X(notifier_range_soft_dirty)                                             \
  X(notifier_range_release)                                                \
  X(notifier_range_migrate)                                                \
  X(notifier_range_exclusive)                                              \
  X(secondary_tlb_calls)                                                   \
  X(device_invalidations)                                                  \
  X(device_invalidate_ns)                                                  \
  X(device_invalidate_ns_max)                                              \
  X(iotlb_fills)                                                           \
  X(iotlb_invalidations)                                                   \
  X(vma_split)                                                             \
  X(vma_merge)                                                             \
  X(pswpin)                                                                \
  X(pswpout)                                                               \
  X(pgsteal)                                                               \
  X(thp_collapse_alloc)                                                    \
  X(thp_collapse_alloc_failed)                                             \
  X(thp_scan_exceed_none_pte)                                              \
  X(thp_scan_exceed_swap_pte)                                              \
  X(thp_scan_exceed_shared_pte)                                            \
  X(khugepaged_full_scans)                                                 \
  X(khugepaged_pages_collapsed)                                            \
  X(collapse_16K)                                                          \
  X(collapse_32K)                                                          \
  X(collapse_64K)                                                          \
  X(collapse_128K)                                                         \
  X(collapse_256K)                                                         \
  X(collapse_512K)                                                         \
  X(collapse_1M)                                                           \
  X(collapse_2M)                                                           \
  X(collapse_fail)

enum class VmEvent : uint16_t {
#define SMM_ENUM(name) name,
  SMM_VM_EVENTS(SMM_ENUM)
#undef SMM_ENUM
      kCount
};

inline constexpr size_t kNrVmEvents = static_cast<size_t>(VmEvent::kCount);

std::string_view vm_event_name(VmEvent e);

class VmStats {
 public:
  void count(VmEvent e, uint64_t n = 1) {
    counters_[static_cast<size_t>(e)].fetch_add(n, std::memory_order_relaxed);
  }
  // Raises `e` to `v` if it is below (a high-water mark).
  void record_max(VmEvent e, uint64_t v) {
    auto& c = counters_[static_cast<size_t>(e)];
    uint64_t cur = c.load(std::memory_order_relaxed);
    while (cur < v && !c.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  }
  uint64_t get(VmEvent e) const {
    return counters_[static_cast<size_t>(e)].load(std::memory_order_relaxed);
  }
  void reset() {
    for (auto& c : counters_) c.store(0, std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> counters_[kNrVmEvents] = {};
};

// The mthp_fault_alloc_* event of an order (2..8).
VmEvent mthp_fault_alloc_event(unsigned order);
// The collapse_* event (successful collapses by folio size) of an order (2..9).
VmEvent collapse_event(unsigned order);

}  // namespace smm
