// File: shadowmm/mm/mm_types.h
//
// The structures of an address space (include/linux/mm_types.h): the VMA
// (vm_area_struct), its anon_vma and file, and the mm's VMA tree. The
// operations on them are declared in vma.h.
//
// Lifetime and locking: a VmArea belongs to its MmStruct's VMA tree. Every
// field is protected by vm_mm->mmap_lock: written only with it held for
// write, read with it held at least for read. Pointers to VMAs stay valid
// until the next operation that holds mmap_lock for write (a split or merge
// may free the VMA they point to).

#pragma once

#include <absl/container/btree_map.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "shadowmm/base/copyable_atomic.h"
#include "shadowmm/base/lock.h"
#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"
#include "shadowmm/mm/vm_flags.h"
#include "shadowmm/phys/page.h"

namespace smm {

class MmStruct;
class Machine;

// Linux: struct anon_vma (mm/rmap.c). The anon_vma chain of a VMA is the list
// of anon_vmas it is linked into; after fork a child VMA is linked to its
// parent's anon_vma and to its own.
struct AnonVma {
  AnonVma() = default;
  explicit AnonVma(std::shared_ptr<AnonVma> parent) : root(parent ? parent->root : nullptr) {}
  // Taken for write by khugepaged's collapse, for read by rmap walks.
  RwSem rwsem{LockRank::kAnonVma, "anon_vma"};
  // The root anon_vma whose rwsem serialises the whole family (nullptr = self).
  std::shared_ptr<AnonVma> root;
  RwSem& lock() { return root ? root->rwsem : rwsem; }
};

// Linux: struct file + struct address_space for the two kinds of file the
// model maps: the shmem object behind a MAP_SHARED|MAP_ANONYMOUS mapping
// (mm/shmem.c: shmem_zero_setup) and a device-DAX region (drivers/dax/
// device.c). Holds the page cache: page index -> folio.
class VmFile {
 public:
  enum class Kind { kShmem, kDax };
  VmFile(Machine& machine, Kind kind, uint64_t nr_pages, VirtAddr map_start);
  ~VmFile();

  Kind kind() const { return kind_; }
  uint64_t nr_pages() const { return nr_pages_; }

  // The folio holding page `index`, allocating (zeroed) on first use. shmem
  // allocates order 0; dax allocates a 1 GiB folio for every 1 GiB block
  // whose first page was mapped 1 GiB aligned at mmap time, 2 MiB folios
  // elsewhere. The page is folio.page_pfn(index - folio_index(index)).
  // ENOMEM when memory is exhausted.
  Result<Folio> get_folio(uint64_t index) EXCLUDES(lock_);
  // The folio holding `index` if one was allocated (ENOENT otherwise).
  Result<Folio> find_folio(uint64_t index) EXCLUDES(lock_);
  // Index of the first page of the folio that holds `index`.
  uint64_t folio_index(uint64_t index) const;
  // Order of the folio that does (or would) hold page `index`.
  unsigned folio_order(uint64_t index) const;

 private:
  Machine& machine_;
  const Kind kind_;
  const uint64_t nr_pages_;
  // Page index of the first 1 GiB-aligned page of the original mapping; dax
  // folios are laid out relative to it.
  const uint64_t pud_aligned_index_;
  SpinLock lock_{LockRank::kPageCache, "i_pages"};
  std::unordered_map<uint64_t, Folio> pages_ GUARDED_BY(lock_);  // head index -> folio
};

// Linux: struct vm_area_struct.
struct VmArea {
  VirtAddr vm_start;
  VirtAddr vm_end;
  vm_flags_t vm_flags = 0;
  // Page offset: for private anonymous memory vm_start >> PAGE_SHIFT at
  // creation, kept linear across splits so merges can check contiguity.
  uint64_t vm_pgoff = 0;
  MmStruct* vm_mm = nullptr;
  // PteProt bits new PTEs get (vma_set_page_prot). Private writable mappings
  // get read-only PTEs here: write permission is added per page on fault.
  uint8_t vm_page_prot = 0;
  // The anon_vma faulted-in pages are attached to (nullptr until the first
  // anonymous fault), and every anon_vma this VMA is linked into. Set by a
  // fault under mmap_lock (read) + page_table_lock, hence atomic.
  CopyableAtomic<AnonVma*> anon_vma{nullptr};
  std::vector<std::shared_ptr<AnonVma>> anon_vma_chain;
  std::shared_ptr<VmFile> vm_file;

  VaRange range() const { return {vm_start, vm_end}; }
  uint64_t pages() const { return (vm_end - vm_start) >> PAGE_SHIFT; }
  bool contains(VirtAddr a) const { return vm_start <= a && a < vm_end; }
  // vma_is_anonymous: no file (shared anonymous memory is shmem, not this).
  bool is_anonymous() const { return !vm_file; }
  bool is_shmem() const { return vm_file && vm_file->kind() == VmFile::Kind::kShmem; }
  bool is_dax() const { return vm_file && vm_file->kind() == VmFile::Kind::kDax; }
  bool is_accessible() const { return vm_flags & VM_ACCESS_FLAGS; }
  // Page index in the VMA's file (or anonymous linear index) of `addr`.
  uint64_t linear_page_index(VirtAddr addr) const {
    return ((addr - vm_start) >> PAGE_SHIFT) + vm_pgoff;
  }
};

// The mm's VMA tree (the maple tree mm->mm_mt), ordered by vm_start. Owns the
// VMAs. Protected by mm->mmap_lock (the owner annotates the member).
class VmaTree {
 public:
  using Map = absl::btree_map<uint64_t, std::unique_ptr<VmArea>>;
  class Iterator;

  // find_vma: the first VMA with vm_end > addr, or nullptr.
  VmArea* find(VirtAddr addr) const;
  // vma_lookup: the VMA containing addr, or nullptr.
  VmArea* lookup(VirtAddr addr) const;
  // The first VMA intersecting [start, end), or nullptr (vma_find).
  VmArea* find_intersection(VirtAddr start, VirtAddr end) const;
  VmArea* prev(const VmArea* vma) const;
  VmArea* next(const VmArea* vma) const;
  VmArea* first() const;
  // The last VMA starting below `addr` (find_vma_prev for a free `addr`).
  VmArea* prev_of(VirtAddr addr) const;

  VmArea* insert(std::unique_ptr<VmArea> vma);
  // Re-indexes `vma` after its vm_start changed from `old_start`.
  void rekey(VmArea* vma, VirtAddr old_start);
  // Removes `vma` from the tree and returns ownership.
  std::unique_ptr<VmArea> erase(VmArea* vma);

  size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  const Map& map() const { return map_; }

  // Every VMA in address order (safe only while the tree does not change).
  template <typename F>
  void for_each(F f) const {
    for (const auto& [start, vma] : map_) f(vma.get());
  }

  // VMAs are ordered, non-overlapping, non-empty, page aligned, keyed by
  // their start, below TASK_SIZE.
  void check_invariants() const;

 private:
  Map map_;
};

}  // namespace smm
