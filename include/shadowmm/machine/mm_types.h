// File: shadowmm/machine/mm_types.h
//
// The structures of an address space (include/linux/mm_types.h): the mm
// (mm_struct), the VMA (vm_area_struct), its anon_vma and file, and the
// mm's VMA tree. They sit on the machine floor, below the page-table and
// notifier floors that use them, as mm_types.h sits in include/linux. The
// operations are on the floors above: VMAs in mm/vma.h, page tables in
// pgtable/pgtable.h, the mm's lifetime (create, mmput, the final mmdrop)
// in src/mm/mm_struct.cc, as kernel/fork.c holds mm_alloc and __mmdrop.
//
// Lifetime and locking: a VmArea belongs to its MmStruct's VMA tree. Every
// field is protected by vm_mm->mmap_lock: written only with it held for
// write, read with it held at least for read. Pointers to VMAs stay valid
// until the next operation that holds mmap_lock for write (a split or merge
// may free the VMA they point to).

#pragma once

#include <absl/container/btree_map.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "shadowmm/base/copyable_atomic.h"
#include "shadowmm/base/lock.h"
#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"
#include "shadowmm/machine/pgtable_types.h"
#include "shadowmm/machine/vm_flags.h"
#include "shadowmm/phys/page.h"

namespace smm {

class MmStruct;
class Machine;
class MmuNotifierSubscriptions;

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

// mm->flags (include/linux/mm_types.h, MMF_*).
enum MmFlag : uint32_t {
  MMF_DISABLE_THP_COMPLETELY = 1u << 0,      // PR_SET_THP_DISABLE
  MMF_DISABLE_THP_EXCEPT_ADVISED = 1u << 1,  // ... with PR_THP_DISABLE_EXCEPT_ADVISED
  MMF_VM_HUGEPAGE = 1u << 2,                 // on khugepaged's list
  MMF_HUGE_ZERO_PAGE = 1u << 3,
  MMF_OOM_SKIP = 1u << 4,
};

// RSS counters (include/linux/mm_types_task.h: MM_FILEPAGES...).
enum MmCounter : unsigned { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, NR_MM_COUNTERS };

class MmStruct {
 public:
  // Linux: mm_alloc. mm_users = mm_count = 1.
  static MmStruct* create(Machine& machine, std::string name);

  MmStruct(const MmStruct&) = delete;
  MmStruct& operator=(const MmStruct&) = delete;

  Machine& machine() const { return machine_; }
  const std::string& name() const { return name_; }
  uint64_t id() const { return id_; }

  // mmget / mmget_not_zero / mmput / mmgrab / mmdrop. The last mmput tears
  // the address space down (exit_mmap) and the last mmdrop frees the
  // structure: both are defined on the mm floor (src/mm/mm_struct.cc), as
  // kernel/fork.c defines mmput and __mmdrop.
  void mmget() { mm_users.fetch_add(1, std::memory_order_relaxed); }
  bool mmget_not_zero() {
    int32_t users = mm_users.load(std::memory_order_relaxed);
    while (users > 0)
      if (mm_users.compare_exchange_weak(users, users + 1, std::memory_order_acquire)) return true;
    return false;
  }
  void mmput();
  void mmgrab() { mm_count.fetch_add(1, std::memory_order_relaxed); }
  void mmdrop();

  // ---- fields (kernel names) ----

  // Write: VMA tree and VMA flag changes, THP collapse install, notifier
  // registration. Read: faults, hmm_range_fault, madvise scans.
  RwSem mmap_lock{LockRank::kMmapLock, "mmap_lock"};
  VmaTree mm_mt GUARDED_BY(mmap_lock);
  // Number of VMAs (vm_area_struct count against sysctl_max_map_count).
  int map_count GUARDED_BY(mmap_lock) = 0;
  // Top of the top-down mmap area (mm->mmap_base).
  const uint64_t mmap_base;

  // Guards PGD/PUD entries and PUD leaves.
  SpinLock page_table_lock{LockRank::kPageTableLock, "page_table_lock"};
  PageTable* const pgd;

  std::atomic<int32_t> mm_users{1};
  std::atomic<int32_t> mm_count{1};
  std::atomic<uint32_t> flags{0};
  std::atomic<int64_t> pgtables_bytes{0};
  std::atomic<int64_t> rss_stat[NR_MM_COUNTERS] = {};

  // Page tables detached under mmap_lock held for read, freed at the next
  // write lock (pgtable/pgtable.h: pt_defer_free). Bounded by
  // kMaxDeferredTables.
  std::vector<PageTable*> pt_deferred GUARDED_BY(page_table_lock);
  static constexpr size_t kMaxDeferredTables = 256;
  // Notifier subscriptions (NULL until the first registration). Owned.
  std::atomic<MmuNotifierSubscriptions*> notifier_subscriptions{nullptr};

  bool test_flag(MmFlag f) const { return flags.load(std::memory_order_relaxed) & f; }
  void set_flag(MmFlag f) { flags.fetch_or(f, std::memory_order_relaxed); }
  void clear_flag(MmFlag f) { flags.fetch_and(~uint32_t{f}, std::memory_order_relaxed); }
  void add_rss(MmCounter c, int64_t n) { rss_stat[c].fetch_add(n, std::memory_order_relaxed); }
  int64_t rss(MmCounter c) const { return rss_stat[c].load(std::memory_order_relaxed); }

  // VMA tree, page tables and counters agree: every present leaf lies in a
  // VMA; rss counters equal what the page tables map; map_count matches.
  // Caller holds mmap_lock. Defined on the mm floor (it walks the page
  // tables).
  void check_invariants() REQUIRES_SHARED(mmap_lock);

 private:
  MmStruct(Machine& machine, std::string name);
  ~MmStruct();

  Machine& machine_;
  const std::string name_;
  const uint64_t id_;
};

// Holds one mm_users reference; mmput on destruction.
class MmRef {
 public:
  MmRef() = default;
  explicit MmRef(MmStruct* mm) : mm_(mm) {}
  ~MmRef() { reset(); }
  MmRef(MmRef&& o) noexcept : mm_(o.mm_) { o.mm_ = nullptr; }
  MmRef& operator=(MmRef&& o) noexcept {
    if (this != &o) {
      reset();
      mm_ = o.mm_;
      o.mm_ = nullptr;
    }
    return *this;
  }
  MmStruct* get() const { return mm_; }
  MmStruct* operator->() const { return mm_; }
  void reset() {
    if (mm_) mm_->mmput();
    mm_ = nullptr;
  }

 private:
  MmStruct* mm_ = nullptr;
};

// Default sysctl_max_map_count.
inline constexpr int DEFAULT_MAX_MAP_COUNT = 65530;
// Top of the deterministic mmap area (the scenario language's placement).
inline constexpr uint64_t MMAP_TOP = 0x7f0000000000ull;

}  // namespace smm
