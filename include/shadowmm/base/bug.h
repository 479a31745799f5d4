// File: shadowmm/base/bug.h
//
// Kernel-named assertions (include/linux/mmdebug.h, include/asm-generic/bug.h).
// VM_BUG_ON aborts with the condition and location: a programmer error in the
// model, never a modelled failure. WARN_ON / WARN_ON_ONCE record a warning the
// way the kernel prints one; tests can read and clear the recorded warnings,
// because several APIs (the notifier core in particular) are specified by the
// warnings they emit.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace smm {

[[noreturn]] void bug_fail(const char* cond, const char* file, int line);
// Records a kernel-style warning; returns true so it can be used in `if`.
bool warn_record(const char* cond, const char* file, int line);
// Records the warning unless this call site already warned since the last
// warnings_clear().
void warn_once_record(const char* cond, const char* file, int line);

// Warnings recorded so far (in this process), oldest first.
std::vector<std::string> warnings_snapshot();
uint64_t warnings_count();
void warnings_clear();

}  // namespace smm

#define VM_BUG_ON(cond)                                                   \
  do {                                                                    \
    if (__builtin_expect(!!(cond), 0)) ::smm::bug_fail(#cond, __FILE__, __LINE__); \
  } while (0)
#define BUG_ON(cond) VM_BUG_ON(cond)

#define WARN_ON(cond) \
  (__builtin_expect(!!(cond), 0) ? ::smm::warn_record(#cond, __FILE__, __LINE__) : false)

// Warn only the first time this call site triggers, like the kernel's
// WARN_ON_ONCE. warnings_clear() re-arms every site, so each test sees the
// warnings it causes.
#define WARN_ON_ONCE(cond)                                                   \
  (__builtin_expect(!!(cond), 0) ? (::smm::warn_once_record(#cond, __FILE__, __LINE__), true) \
                                 : false)
