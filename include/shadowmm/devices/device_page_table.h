// File: shadowmm/devices/device_page_table.h
//
// A device's page table (test_hmm's xarray, KVM's SPTEs, an IOTLB): the
// translations it holds, indexed by address and by frame. Not thread-safe:
// the owning device guards it with its own lock.

#pragma once

#include <absl/container/btree_map.h>

#include <cstdint>
#include <optional>

#include "shadowmm/devices/secondary_mmu.h"

namespace smm {

class DevicePageTable {
 public:
  // Adds `t`, replacing every translation it overlaps.
  void insert(const DevTranslation& t);
  // Drops every translation intersecting `r`; returns how many.
  size_t erase_range(VaRange r);
  void clear();

  // The translation covering `a`, or nullptr.
  const DevTranslation* lookup(VirtAddr a) const;
  bool any_in(VaRange r) const;
  // Does some translation reach a frame of [first, first + nr)?
  const DevTranslation* find_pfn_range(Pfn first, uint64_t nr) const;
  // The same as copies.
  std::optional<DevTranslation> get(VirtAddr a) const {
    const DevTranslation* t = lookup(a);
    return t ? std::optional<DevTranslation>(*t) : std::nullopt;
  }
  std::optional<DevTranslation> get_pfn_range(Pfn first, uint64_t nr) const {
    const DevTranslation* t = find_pfn_range(first, nr);
    return t ? std::optional<DevTranslation>(*t) : std::nullopt;
  }

  uint64_t pages() const { return pages_; }
  size_t size() const { return by_addr_.size(); }
  template <typename F>
  void for_each(F f) const {
    for (const auto& [addr, t] : by_addr_) f(t);
  }

 private:
  absl::btree_map<uint64_t, DevTranslation>::iterator erase_entry(
      absl::btree_map<uint64_t, DevTranslation>::iterator it);

  absl::btree_map<uint64_t, DevTranslation> by_addr_;    // start address -> translation
  absl::btree_multimap<uint64_t, uint64_t> by_pfn_;      // first pfn -> start address
  uint64_t pages_ = 0;
  uint64_t max_pages_ = 1;  // largest translation ever held, in pages
};

}  // namespace smm
