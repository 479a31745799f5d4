// File: src/base/result.cc
//
// Errno names as the scenario language and the JSON output spell them.

#include "shadowmm/base/result.h"

#include <cstring>

namespace smm {
namespace {

struct ErrnoName {
  int value;
  const char* name;
};

constexpr ErrnoName kNames[] = {
    {EPERM, "EPERM"},   {ENOENT, "ENOENT"},       {ESRCH, "ESRCH"},   {EINTR, "EINTR"},
    {EIO, "EIO"},       {EBADF, "EBADF"},         {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"}, {EFAULT, "EFAULT"},       {EBUSY, "EBUSY"},   {EEXIST, "EEXIST"},
    {ENODEV, "ENODEV"}, {EINVAL, "EINVAL"},       {ENOSPC, "ENOSPC"}, {ERANGE, "ERANGE"},
    {ENOSYS, "ENOSYS"}, {EOVERFLOW, "EOVERFLOW"}, {EHWPOISON, "EHWPOISON"},
};

}  // namespace

const char* errno_name(int errno_value) {
  if (errno_value < 0) errno_value = -errno_value;
  for (const ErrnoName& e : kNames)
    if (e.value == errno_value) return e.name;
  return nullptr;
}

int errno_from_name(std::string_view name) {
  for (const ErrnoName& e : kNames)
    if (name == e.name) return e.value;
  return 0;
}

}  // namespace smm
