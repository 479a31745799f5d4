// File: shadowmm/base/uapi.h
//
// The user ABI constants of the syscall-like surface: PROT_*, MAP_*, MADV_*,
// MREMAP_*, PR_*. The model runs on Linux, so it uses the C library's own
// definitions (same values as the kernel's uapi headers) and adds those that
// glibc 2.36 lacks.

#pragma once

#include <sys/mman.h>
#include <sys/prctl.h>

#ifndef PROT_SEM
#define PROT_SEM 0x8
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PR_SET_THP_DISABLE
#define PR_SET_THP_DISABLE 41
#endif
#ifndef PR_THP_DISABLE_EXCEPT_ADVISED
#define PR_THP_DISABLE_EXCEPT_ADVISED (1 << 1)
#endif
