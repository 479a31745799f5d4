// File: src/phys/swap.cc
//
// Swap slots (mm/swapfile.c: get_swap_pages, swap_free, reduced).

#include "shadowmm/phys/swap.h"

#include "shadowmm/base/bug.h"

namespace smm {

SwapSpace::SwapSpace(uint64_t nr_slots) : nr_slots_(nr_slots) {}

Result<uint64_t> SwapSpace::alloc(uint64_t value) {
  SpinLocker l(lock_);
  uint64_t off;
  if (!free_.empty()) {
    off = free_.back();
    free_.pop_back();
  } else if (next_ <= nr_slots_) {
    off = next_++;
    if (values_.size() <= off) {
      values_.resize(off + 1);
      counts_.resize(off + 1);
    }
  } else {
    return Err{ENOMEM};
  }
  values_[off] = value;
  counts_[off] = 1;
  used_++;
  return off;
}

uint64_t SwapSpace::read(uint64_t offset) const {
  SpinLocker l(lock_);
  VM_BUG_ON(offset == 0 || offset >= values_.size());
  return values_[offset];
}

void SwapSpace::dup(uint64_t offset) {
  SpinLocker l(lock_);
  VM_BUG_ON(offset == 0 || offset >= counts_.size() || counts_[offset] == 0);
  counts_[offset]++;
}

void SwapSpace::free(uint64_t offset) {
  SpinLocker l(lock_);
  VM_BUG_ON(offset == 0 || offset >= counts_.size() || counts_[offset] == 0);
  if (--counts_[offset]) return;
  free_.push_back(offset);
  used_--;
}

uint32_t SwapSpace::count(uint64_t offset) const {
  SpinLocker l(lock_);
  VM_BUG_ON(offset == 0 || offset >= counts_.size());
  return counts_[offset];
}

uint64_t SwapSpace::used() const {
  SpinLocker l(lock_);
  return used_;
}

void SwapSpace::set_size(uint64_t nr_slots) {
  SpinLocker l(lock_);
  nr_slots_ = nr_slots;
}

}  // namespace smm
