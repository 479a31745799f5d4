// File: shadowmm/machine/vm_flags.h
//
// VMA flags (include/linux/mm.h). Values are the kernel's.

#pragma once

#include <cstdint>
#include <string>

namespace smm {

using vm_flags_t = uint64_t;

inline constexpr vm_flags_t VM_NONE = 0;
inline constexpr vm_flags_t VM_READ = 0x00000001;
inline constexpr vm_flags_t VM_WRITE = 0x00000002;
inline constexpr vm_flags_t VM_EXEC = 0x00000004;
inline constexpr vm_flags_t VM_SHARED = 0x00000008;
inline constexpr vm_flags_t VM_MAYREAD = 0x00000010;
inline constexpr vm_flags_t VM_MAYWRITE = 0x00000020;
inline constexpr vm_flags_t VM_MAYEXEC = 0x00000040;
inline constexpr vm_flags_t VM_MAYSHARE = 0x00000080;
inline constexpr vm_flags_t VM_GROWSDOWN = 0x00000100;
inline constexpr vm_flags_t VM_PFNMAP = 0x00000400;
inline constexpr vm_flags_t VM_LOCKED = 0x00002000;
inline constexpr vm_flags_t VM_IO = 0x00004000;
inline constexpr vm_flags_t VM_SEQ_READ = 0x00008000;
inline constexpr vm_flags_t VM_RAND_READ = 0x00010000;
inline constexpr vm_flags_t VM_DONTCOPY = 0x00020000;
inline constexpr vm_flags_t VM_DONTEXPAND = 0x00040000;
inline constexpr vm_flags_t VM_ACCOUNT = 0x00100000;
inline constexpr vm_flags_t VM_NORESERVE = 0x00200000;
inline constexpr vm_flags_t VM_HUGETLB = 0x00400000;
inline constexpr vm_flags_t VM_WIPEONFORK = 0x02000000;
inline constexpr vm_flags_t VM_DONTDUMP = 0x04000000;
inline constexpr vm_flags_t VM_SOFTDIRTY = 0x08000000;
inline constexpr vm_flags_t VM_MIXEDMAP = 0x10000000;
inline constexpr vm_flags_t VM_HUGEPAGE = 0x20000000;
inline constexpr vm_flags_t VM_NOHUGEPAGE = 0x40000000;
inline constexpr vm_flags_t VM_MERGEABLE = 0x80000000;

inline constexpr vm_flags_t VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;
inline constexpr vm_flags_t VM_MAY_FLAGS = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
// Never merge, never collapse (include/linux/mm.h).
inline constexpr vm_flags_t VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
inline constexpr vm_flags_t VM_NO_KHUGEPAGED = VM_SPECIAL | VM_HUGETLB;

// Kernel-style "calc_vm_prot_bits": PROT_* -> VM_READ/WRITE/EXEC.
vm_flags_t calc_vm_prot_bits(int prot);

// The names used by `expect vma` and the JSON dump (anon, shared, dax,
// hugepage, nohugepage, account, locked...), space separated.
std::string vm_flags_names(vm_flags_t flags, bool anon, bool dax);
// The bit for one dump flag name; 0 when unknown. `anon` and `dax` are not VMA
// flag bits and are answered by the caller.
vm_flags_t vm_flag_from_name(const std::string& name);

}  // namespace smm
