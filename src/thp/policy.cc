// File: src/thp/policy.cc
//
// THP order selection (mm/huge_memory.c: __thp_vma_allowable_orders;
// include/linux/huge_mm.h: thp_vma_allowable_orders, thp_vma_suitable_order,
// vma_thp_disabled).

#include "shadowmm/thp/policy.h"

#include "shadowmm/mm/machine.h"
#include "shadowmm/mm/mm_struct.h"
#include "shadowmm/mm/vma.h"

namespace smm {

ThpPolicy::ThpPolicy() = default;

void ThpPolicy::set_size(unsigned order, ThpSizeSetting setting) {
  uint32_t bit = 1u << order;
  // A store sets exactly one of the three masks, or none (never).
  always_.fetch_and(~bit);
  madvise_.fetch_and(~bit);
  inherit_.fetch_and(~bit);
  if (setting == ThpSizeSetting::kAlways) always_.fetch_or(bit);
  if (setting == ThpSizeSetting::kMadvise) madvise_.fetch_or(bit);
  if (setting == ThpSizeSetting::kInherit) inherit_.fetch_or(bit);
}

ThpSizeSetting ThpPolicy::size(unsigned order) const {
  uint32_t bit = 1u << order;
  if (always_orders() & bit) return ThpSizeSetting::kAlways;
  if (madvise_orders() & bit) return ThpSizeSetting::kMadvise;
  if (inherit_orders() & bit) return ThpSizeSetting::kInherit;
  return ThpSizeSetting::kNever;
}

bool vma_thp_disabled(const VmArea* vma, vm_flags_t vm_flags, bool forced_collapse) {
  if (vm_flags & VM_NOHUGEPAGE) return true;
  const MmStruct* mm = vma->vm_mm;
  if (mm->test_flag(MMF_DISABLE_THP_COMPLETELY)) return true;
  if (vm_flags & VM_HUGEPAGE) return false;
  if (forced_collapse) return false;
  return mm->test_flag(MMF_DISABLE_THP_EXCEPT_ADVISED);
}

bool thp_vma_suitable_order(const VmArea* vma, uint64_t addr, unsigned order) {
  uint64_t size = PAGE_SIZE << order;
  uint64_t haddr = align_down(addr, size);
  // File mappings also need the file offset aligned like the address.
  if (vma->vm_file && !is_aligned(vma->vm_start.vpn() - vma->vm_pgoff, 1ull << order)) return false;
  return haddr >= vma->vm_start.value() && haddr + size <= vma->vm_end.value();
}

uint32_t thp_vma_suitable_orders(const VmArea* vma, uint64_t addr, uint32_t orders) {
  uint32_t out = 0;
  for (uint32_t o = orders; o; o &= o - 1) {
    unsigned order = __builtin_ctz(o);
    if (thp_vma_suitable_order(vma, addr, order)) out |= 1u << order;
  }
  return out;
}

uint32_t thp_vma_allowable_orders(const VmArea* vma, vm_flags_t vm_flags, uint32_t tva_flags,
                                  uint32_t orders) {
  const bool smaps = tva_flags & TVA_SMAPS;
  const bool in_pf = tva_flags & TVA_IN_PF;
  const bool enforce_sysfs = tva_flags & TVA_ENFORCE_SYSFS;
  ThpPolicy& thp = vma->vm_mm->machine().thp();

  // The sysfs per-size settings (thp_vma_allowable_orders' inline part).
  if (enforce_sysfs && vma->is_anonymous()) {
    uint32_t mask = thp.always_orders();
    if (vm_flags & VM_HUGEPAGE) mask |= thp.madvise_orders();
    if (thp.global_always() || ((vm_flags & VM_HUGEPAGE) && thp.global_enabled()))
      mask |= thp.inherit_orders();
    orders &= mask;
    if (!orders) return 0;
  }

  // __thp_vma_allowable_orders.
  uint32_t supported = vma->is_anonymous() ? THP_ORDERS_ALL_ANON
                       : vma->is_dax()     ? THP_ORDERS_ALL_SPECIAL
                                           : 0;  // shmem: huge pages disabled (shmem_enabled never)
  orders &= supported;
  if (!orders) return 0;
  if (vma_thp_disabled(vma, vm_flags, tva_flags & TVA_FORCED_COLLAPSE)) return 0;
  if (vma->is_dax()) return in_pf ? orders : 0;
  if (!in_pf && !smaps && (vm_flags & VM_NO_KHUGEPAGED)) return 0;
  if (!in_pf) {
    // Keep the highest order that fits an aligned block ending at vm_end,
    // and every lower order.
    while (orders) {
      unsigned order = highest_order(orders);
      if (thp_vma_suitable_order(vma, vma->vm_end.value() - (PAGE_SIZE << order), order)) break;
      orders &= ~(1u << order);
    }
    if (!orders) return 0;
  }
  if (!vma->anon_vma) return (smaps || in_pf) ? orders : 0;
  return orders;
}

}  // namespace smm
