// File: shadowmm/machine/pgtable_types.h
//
// The page-table types every floor shares (arch/x86/include/asm/
// pgtable_types.h: pte_t, pmd_t, pud_t; include/linux/mm_types.h: the
// ptdesc of a table page): the entry encoding, a 512-entry table page with
// its split lock, and a slot (an entry plus the lock that guards it). The
// walkers, allocation and the flush primitives are on the page-table floor
// (pgtable/pgtable.h, pgtable/tlb.h).
//
// One 64-bit encoding serves every level (pte_t, pmd_t and pud_t):
//
//   bits 0..2   kind: none, table, leaf (present), swap entry
//   table       the next-level PageTable pointer | kind
//   leaf        bit 3 R, 4 W, 5 X, 6 dirty, 7 young, 8 special (zero page),
//               bits 12..51 pfn. R=W=X=0 is PROT_NONE: present but
//               inaccessible. A leaf in a PMD (PUD) slot maps 2 MiB (1 GiB).
//   swap        bit 3 exclusive, bits 12..62 swap offset
//
// Locking (split page-table locks, mm/memory.c): PGD and PUD entries are
// changed under mm->page_table_lock; PMD entries under the PMD table's ptl;
// PTE entries under the PTE table's ptl. Entries are atomics so lockless
// readers (hmm's PMD read, the walkers' "is it none?" checks) see whole values.

#pragma once

#include <atomic>
#include <cstdint>

#include "shadowmm/base/lock.h"
#include "shadowmm/base/types.h"

namespace smm {

struct PageTable;

inline constexpr unsigned PTE_LEVEL = 0;
inline constexpr unsigned PMD_LEVEL = 1;
inline constexpr unsigned PUD_LEVEL = 2;
inline constexpr unsigned PGD_LEVEL = 3;

// Bytes mapped by one entry of a table at `level`.
constexpr uint64_t level_size(unsigned level) { return PAGE_SIZE << (9 * level); }

// Access permissions of a leaf, as the `r`/`w`/`x` bits of a dump.
enum PteProt : uint8_t {
  PTE_PROT_NONE = 0,
  PTE_PROT_R = 1,
  PTE_PROT_W = 2,
  PTE_PROT_X = 4,
};

class Pte {
 public:
  enum class Kind : uint8_t { kNone = 0, kTable = 1, kLeaf = 2, kSwap = 3 };

  constexpr Pte() = default;
  constexpr explicit Pte(uint64_t raw) : raw_(raw) {}

  static Pte none() { return Pte(); }
  static Pte table(PageTable* t) { return Pte(reinterpret_cast<uint64_t>(t) | uint64_t{1}); }
  // A present leaf mapping `pfn` with permissions `prot` (PteProt bits).
  static Pte leaf(Pfn pfn, uint8_t prot) {
    return Pte((pfn.value() << 12) | (uint64_t{prot} << 3) | uint64_t{2});
  }
  static Pte swap(uint64_t offset, bool exclusive) {
    return Pte((offset << 12) | (exclusive ? kSwapExclusive : 0) | uint64_t{3});
  }

  uint64_t raw() const { return raw_; }
  Kind kind() const { return static_cast<Kind>(raw_ & 7); }
  bool is_none() const { return raw_ == 0; }
  bool is_table() const { return kind() == Kind::kTable; }
  bool is_leaf() const { return kind() == Kind::kLeaf; }  // pte_present / pmd_leaf
  bool is_swap() const { return kind() == Kind::kSwap; }

  PageTable* table() const { return reinterpret_cast<PageTable*>(raw_ & ~uint64_t{7}); }
  Pfn pfn() const { return Pfn((raw_ >> 12) & ((1ull << 40) - 1)); }
  uint64_t swap_offset() const { return raw_ >> 12; }
  bool swap_exclusive() const { return raw_ & kSwapExclusive; }

  uint8_t prot() const { return static_cast<uint8_t>((raw_ >> 3) & 7); }
  bool readable() const { return raw_ & kRead; }
  bool writable() const { return raw_ & kWrite; }
  bool dirty() const { return raw_ & kDirty; }
  bool young() const { return raw_ & kYoung; }
  bool special() const { return raw_ & kSpecial; }
  // PROT_NONE leaf: present but no access.
  bool protnone() const { return is_leaf() && prot() == PTE_PROT_NONE; }

  Pte with_prot(uint8_t prot) const { return Pte((raw_ & ~(uint64_t{7} << 3)) | (uint64_t{prot} << 3)); }
  Pte mkwrite() const { return Pte(raw_ | kWrite); }
  Pte wrprotect() const { return Pte(raw_ & ~kWrite); }
  Pte mkdirty() const { return Pte(raw_ | kDirty); }
  Pte mkclean() const { return Pte(raw_ & ~kDirty); }
  Pte mkyoung() const { return Pte(raw_ | kYoung); }
  Pte mkold() const { return Pte(raw_ & ~kYoung); }
  Pte mkspecial() const { return Pte(raw_ | kSpecial); }

  bool operator==(const Pte&) const = default;

 private:
  static constexpr uint64_t kRead = 1ull << 3;
  static constexpr uint64_t kWrite = 1ull << 4;
  static constexpr uint64_t kExec = 1ull << 5;
  static constexpr uint64_t kDirty = 1ull << 6;
  static constexpr uint64_t kYoung = 1ull << 7;
  static constexpr uint64_t kSpecial = 1ull << 8;
  static constexpr uint64_t kSwapExclusive = 1ull << 3;

  uint64_t raw_ = 0;
};

// One page-table page (the kernel's ptdesc plus its 4 KiB of entries).
struct PageTable {
  explicit PageTable(unsigned lvl)
      : ptl(lvl == PMD_LEVEL ? LockRank::kPmdPtl : LockRank::kPtePtl,
            lvl == PMD_LEVEL ? "pmd_ptl" : "pte_ptl"),
        level(static_cast<uint8_t>(lvl)) {}
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;

  std::atomic<uint64_t> entries[PTRS_PER_TABLE] = {};
  // Split lock: guards the entries of PMD and PTE tables. (PUD and PGD
  // entries are guarded by mm->page_table_lock instead.)
  SpinLock ptl;
  const uint8_t level;

  // True when every entry is none.
  bool empty() const;
};

// A slot of some table: where an entry lives, and the lock that guards it.
struct PtSlot {
  PageTable* table = nullptr;
  std::atomic<uint64_t>* entry = nullptr;
  SpinLock* ptl = nullptr;

  explicit operator bool() const { return entry != nullptr; }
  unsigned level() const { return table->level; }
  // ptep_get / pmdp_get_lockless: one atomic read.
  Pte get() const { return Pte(entry->load(std::memory_order_acquire)); }
  // set_pte_at / set_pmd_at. Caller holds *ptl.
  void set(Pte v) const { entry->store(v.raw(), std::memory_order_release); }
  // ptep_get_and_clear. Caller holds *ptl.
  Pte get_and_clear() const { return Pte(entry->exchange(0, std::memory_order_acq_rel)); }
};

}  // namespace smm
