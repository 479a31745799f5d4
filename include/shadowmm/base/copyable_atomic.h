// File: shadowmm/base/copyable_atomic.h
//
// An atomic that can be copied (with a relaxed load), for fields of
// otherwise copyable kernel structures that are read locklessly (READ_ONCE)
// while another thread may write them under a lock, such as a VMA's
// anon_vma pointer. Copying is only done by the owner under its own lock.

#pragma once

#include <atomic>

namespace smm {

template <typename T>
class CopyableAtomic {
 public:
  CopyableAtomic(T v = T{}) : v_(v) {}  // NOLINT: implicit like std::atomic
  CopyableAtomic(const CopyableAtomic& o) : v_(o.load()) {}
  CopyableAtomic& operator=(const CopyableAtomic& o) {
    store(o.load());
    return *this;
  }
  CopyableAtomic& operator=(T v) {
    store(v);
    return *this;
  }
  T load() const { return v_.load(std::memory_order_acquire); }
  void store(T v) { v_.store(v, std::memory_order_release); }
  operator T() const { return load(); }  // NOLINT
  T operator->() const { return load(); }

 private:
  std::atomic<T> v_;
};

}  // namespace smm
