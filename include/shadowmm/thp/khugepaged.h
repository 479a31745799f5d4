// File: shadowmm/thp/khugepaged.h
//
// khugepaged registration (mm/khugepaged.c: khugepaged_enter_vma,
// __khugepaged_enter). An mm joins khugepaged's list (MMF_VM_HUGEPAGE) when
// one of its VMAs becomes eligible for PMD collapse: at mmap, on a PMD THP
// fault, on MADV_HUGEPAGE and on VMA merges.

#pragma once

#include "shadowmm/mm/vm_flags.h"

namespace smm {

struct VmArea;

// Registers vma->vm_mm with khugepaged when the VMA is eligible for PMD
// collapse under the sysfs settings.
void khugepaged_enter_vma(VmArea* vma, vm_flags_t vm_flags);

}  // namespace smm
