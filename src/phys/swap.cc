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
    if (values_.size() <= off) values_.resize(off + 1);
  } else {
    return Err{ENOMEM};
  }
  values_[off] = value;
  used_++;
  return off;
}

uint64_t SwapSpace::read(uint64_t offset) const {
  SpinLocker l(lock_);
  VM_BUG_ON(offset == 0 || offset >= values_.size());
  return values_[offset];
}

void SwapSpace::free(uint64_t offset) {
  SpinLocker l(lock_);
  VM_BUG_ON(offset == 0 || offset >= values_.size() || used_ == 0);
  free_.push_back(offset);
  used_--;
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
