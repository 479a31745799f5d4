// File: src/machine/vma_file.cc
//
// The page cache of the two file kinds the model maps: the shmem object of a
// shared anonymous mapping (mm/shmem.c: shmem_zero_setup, shmem_get_folio)
// and a device-DAX region (drivers/dax/device.c).
//
// Deviation from Linux: a real devdax instance has one alignment (4K, 2M or
// 1G) for all its mappings. The model's dax region mixes sizes: 1 GiB folios
// where the mapping had a 1 GiB-aligned block at mmap time, 2 MiB folios
// elsewhere, so one script can show both PUD and PMD mappings.

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

namespace {
constexpr uint64_t kPudPages = 1ull << HPAGE_PUD_ORDER;
}

VmFile::VmFile(Machine& machine, Kind kind, uint64_t nr_pages, VirtAddr map_start)
    : machine_(machine),
      kind_(kind),
      nr_pages_(nr_pages),
      pud_aligned_index_((map_start.align_up(PUD_SIZE) - map_start) >> PAGE_SHIFT) {}

VmFile::~VmFile() {
  std::unordered_map<uint64_t, Folio> pages;
  {
    SpinLocker l(lock_);
    pages.swap(pages_);
  }
  for (auto& [index, folio] : pages) folio.put();
}

unsigned VmFile::folio_order(uint64_t index) const {
  if (kind_ == Kind::kShmem) return 0;
  if (index >= pud_aligned_index_) {
    uint64_t head = pud_aligned_index_ + align_down(index - pud_aligned_index_, kPudPages);
    if (head + kPudPages <= nr_pages_) return HPAGE_PUD_ORDER;
  }
  return HPAGE_PMD_ORDER;
}

uint64_t VmFile::folio_index(uint64_t index) const {
  unsigned order = folio_order(index);
  if (order == HPAGE_PUD_ORDER)
    return pud_aligned_index_ + align_down(index - pud_aligned_index_, kPudPages);
  return align_down(index, 1ull << order);
}

Result<Folio> VmFile::find_folio(uint64_t index) {
  if (index >= nr_pages_) return Err{ENOENT};
  SpinLocker l(lock_);
  auto it = pages_.find(folio_index(index));
  if (it == pages_.end()) return Err{ENOENT};
  return it->second;
}

Result<Folio> VmFile::get_folio(uint64_t index) {
  VM_BUG_ON(index >= nr_pages_);
  uint64_t head = folio_index(index);
  {
    SpinLocker l(lock_);
    auto it = pages_.find(head);
    if (it != pages_.end()) return it->second;
  }
  uint32_t flags = kind_ == Kind::kDax ? PG_devmap : (PG_swapbacked | PG_lru);
  Result<Folio> fresh = machine_.mem().alloc_folio(folio_order(index), flags);
  if (!fresh.ok()) return fresh;
  Folio winner;
  bool inserted;
  {
    SpinLocker l(lock_);
    auto [it, ins] = pages_.emplace(head, *fresh);
    winner = it->second;
    inserted = ins;
  }
  if (!inserted) fresh->put();  // lost a race with another fault
  return winner;
}

}  // namespace smm
