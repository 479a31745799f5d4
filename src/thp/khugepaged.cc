// File: src/thp/khugepaged.cc
//
// khugepaged (mm/khugepaged.c).

#include "shadowmm/thp/khugepaged.h"

#include "shadowmm/mm/machine.h"
#include "shadowmm/mm/mm_struct.h"
#include "shadowmm/thp/policy.h"

namespace smm {

void khugepaged_enter_vma(VmArea* vma, vm_flags_t vm_flags) {
  MmStruct* mm = vma->vm_mm;
  if (mm->test_flag(MMF_VM_HUGEPAGE)) return;
  // hugepage_pmd_enabled() && thp_vma_allowable_order(vma, vm_flags,
  // TVA_ENFORCE_SYSFS, PMD_ORDER).
  if (thp_vma_allowable_order(vma, vm_flags, TVA_ENFORCE_SYSFS, HPAGE_PMD_ORDER)) mm->set_flag(MMF_VM_HUGEPAGE);
}

}  // namespace smm
