// File: shadowmm/base/result.h
//
// Error reporting. The syscall-like surface (do_mmap, do_munmap, do_mprotect,
// do_madvise, ...) returns int: 0 or a negative errno, exactly as Linux does.
// Internals that produce a value return Result<T>: the value or a positive
// errno (the role of the kernel's ERR_PTR). Errno values are Linux's, taken
// from <cerrno> since the model runs on Linux.

#pragma once

#include <cerrno>
#include <optional>
#include <string_view>
#include <utility>

#include "shadowmm/base/bug.h"

namespace smm {

// A failed Result: a positive errno.
struct Err {
  int errno_value;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Err e) : errno_(e.errno_value) {          // NOLINT
    VM_BUG_ON(errno_ <= 0);
  }

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  // Positive errno; only valid when !ok().
  int error() const { return errno_; }
  // 0 or the negative errno, for the syscall surface.
  int rc() const { return ok() ? 0 : -errno_; }

  T& value() {
    VM_BUG_ON(!ok());
    return *value_;
  }
  const T& value() const {
    VM_BUG_ON(!ok());
    return *value_;
  }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }

 private:
  std::optional<T> value_;
  int errno_ = 0;
};

// Name of an errno value ("EINVAL"), or nullptr when the model never uses it.
const char* errno_name(int errno_value);
// Inverse of errno_name; 0 when unknown.
int errno_from_name(std::string_view name);

}  // namespace smm
