// File: src/devices/device_page_table.cc

#include "shadowmm/devices/device_page_table.h"

#include "shadowmm/base/bug.h"

namespace smm {

absl::btree_map<uint64_t, DevTranslation>::iterator DevicePageTable::erase_entry(
    absl::btree_map<uint64_t, DevTranslation>::iterator it) {
  const DevTranslation& t = it->second;
  auto range = by_pfn_.equal_range(t.pfn.value());
  for (auto p = range.first; p != range.second; ++p) {
    if (p->second == t.addr.value()) {
      by_pfn_.erase(p);
      break;
    }
  }
  pages_ -= t.size >> PAGE_SHIFT;
  return by_addr_.erase(it);
}

void DevicePageTable::insert(const DevTranslation& t) {
  VM_BUG_ON(!t.addr.is_aligned(t.size));
  erase_range({t.addr, t.addr + t.size});
  by_addr_.emplace(t.addr.value(), t);
  by_pfn_.emplace(t.pfn.value(), t.addr.value());
  pages_ += t.size >> PAGE_SHIFT;
  max_pages_ = std::max(max_pages_, t.size >> PAGE_SHIFT);
}

size_t DevicePageTable::erase_range(VaRange r) {
  size_t n = 0;
  // Entries that start below r.start but reach into it.
  auto it = by_addr_.upper_bound(r.start.value());
  if (it != by_addr_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.addr + prev->second.size > r.start) {
      erase_entry(prev);
      n++;
    }
  }
  it = by_addr_.lower_bound(r.start.value());
  while (it != by_addr_.end() && it->first < r.end.value()) {
    it = erase_entry(it);
    n++;
  }
  return n;
}

void DevicePageTable::clear() {
  by_addr_.clear();
  by_pfn_.clear();
  pages_ = 0;
}

const DevTranslation* DevicePageTable::lookup(VirtAddr a) const {
  auto it = by_addr_.upper_bound(a.value());
  if (it == by_addr_.begin()) return nullptr;
  --it;
  return a < it->second.addr + it->second.size ? &it->second : nullptr;
}

bool DevicePageTable::any_in(VaRange r) const {
  if (lookup(r.start)) return true;
  auto it = by_addr_.lower_bound(r.start.value());
  return it != by_addr_.end() && it->first < r.end.value();
}

const DevTranslation* DevicePageTable::find_pfn_range(Pfn first, uint64_t nr) const {
  uint64_t lo = first.value() >= max_pages_ ? first.value() - max_pages_ + 1 : 0;
  for (auto it = by_pfn_.lower_bound(lo); it != by_pfn_.end() && it->first < first.value() + nr; ++it) {
    const DevTranslation& t = by_addr_.at(it->second);
    if (t.pfn.value() + (t.size >> PAGE_SHIFT) > first.value()) return &t;
  }
  return nullptr;
}

}  // namespace smm
