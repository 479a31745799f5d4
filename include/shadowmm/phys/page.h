// File: shadowmm/phys/page.h
//
// struct page and the folio view (include/linux/mm_types.h,
// include/linux/page-flags.h, include/linux/mm.h).
//
// The memory map keeps one 12-byte Page per 4 KiB frame plus, in a separate
// array, the frame's 64-bit contents (what `write`/`read`/`touch` store and
// load). Together with the 8-byte PTE a mapped page costs 28 bytes; the kernel
// spends 72 (PTE + 64-byte struct page).
//
// Like the kernel's struct folio, a folio is its head page plus fields that
// large folios keep in their first tail page: page[1].refcount holds the
// entire (PMD/PUD) mapcount.
//
// Deviation from Linux: folios carry no ->mapping/->index. Reverse mapping is
// limited to folios mapped once (found from the mapping being changed);
// MADV_PAGEOUT, the only reclaim the model performs, skips shared folios in
// Linux too. Per-page mapcounts are kept for every folio (Linux 6.15+ can
// drop them for large folios).

#pragma once

#include <atomic>
#include <cstdint>

#include "shadowmm/base/bug.h"
#include "shadowmm/base/types.h"

namespace smm {

class FrameAllocator;

// Page/folio flags (11 bits of Page::info). Folio-wide flags live on the head
// page; PG_anon_exclusive is per page, like PageAnonExclusive.
enum PageFlag : uint32_t {
  PG_locked = 1u << 0,
  PG_lru = 1u << 1,
  PG_dirty = 1u << 2,
  PG_referenced = 1u << 3,
  PG_swapbacked = 1u << 4,  // anon folio that needs swap to be reclaimed
  PG_swapcache = 1u << 5,
  PG_anon = 1u << 6,        // folio_test_anon (PAGE_MAPPING_ANON in ->mapping)
  PG_buddy = 1u << 7,       // free block head in the buddy allocator
  PG_anon_exclusive = 1u << 8,
  PG_reserved = 1u << 9,    // the zero pages: never freed, never written
  PG_devmap = 1u << 10,     // device (DAX) memory
};
inline constexpr uint32_t kPageFlagMask = (1u << 11) - 1;
inline constexpr unsigned kPageOrderShift = 11;
inline constexpr uint32_t kPageOrderMask = 0x1fu << kPageOrderShift;
inline constexpr unsigned kPageGenShift = 16;

// Linux: struct page. Fields are plain integers accessed through atomic_ref so
// the whole memory map can live in zero-filled, lazily committed memory.
struct Page {
  int32_t refcount;  // head: folio refcount; page[1] of a large folio: entire mapcount;
                     // free block head: previous free block (pfn) or -1
  int32_t mapcount;  // PTE mappings of this page; free block head: next free block or -1
  uint32_t info;     // flags (bits 0..10) | order (11..15) | generation (16..31)
};
static_assert(sizeof(Page) == 12);

inline std::atomic_ref<int32_t> aref(int32_t& v) { return std::atomic_ref<int32_t>(v); }
inline std::atomic_ref<uint32_t> aref(uint32_t& v) { return std::atomic_ref<uint32_t>(v); }

// A view of a folio: the allocator and the head pfn. Cheap to copy. A default
// constructed Folio is null.
class Folio {
 public:
  Folio() = default;
  Folio(FrameAllocator* mem, Pfn head) : mem_(mem), pfn_(head) {}

  explicit operator bool() const { return mem_ != nullptr; }
  bool operator==(const Folio& o) const { return mem_ == o.mem_ && pfn_ == o.pfn_; }

  FrameAllocator* allocator() const { return mem_; }
  Pfn pfn() const { return pfn_; }
  Pfn page_pfn(uint64_t i) const { return pfn_ + i; }
  unsigned order() const;
  uint64_t nr_pages() const { return 1ull << order(); }
  uint64_t size() const { return PAGE_SIZE << order(); }
  bool is_large() const { return order() > 0; }

  // Reference counting (folio_get / folio_put). The last put frees the folio.
  int32_t refcount() const;
  void get(int32_t n = 1) const;
  void put(int32_t n = 1) const;
  // Linux: folio_put_testzero. Drops references; true when that was the
  // last one and the caller must free the folio (FrameAllocator::free_folios).
  [[nodiscard]] bool put_testzero(int32_t n = 1) const;

  // Mapcounts. page_mapcount(i) counts PTE mappings of page i only;
  // entire_mapcount() counts PMD/PUD mappings of the whole folio.
  int32_t page_mapcount(uint64_t i) const;
  void add_page_mapcount(uint64_t i, int32_t delta) const;
  int32_t entire_mapcount() const;
  void add_entire_mapcount(int32_t delta) const;
  // Sum over pages of PTE mappings plus nr_pages() per entire mapping.
  int64_t total_mapcount() const;
  // Some page is mapped by PTEs, or the folio by a PMD/PUD.
  bool mapped() const;
  // folio_maybe_mapped_shared: some page is mapped more than once.
  bool maybe_mapped_shared() const;

  // Folio-wide flags (head page).
  uint32_t flags() const;
  bool test(PageFlag f) const;
  void set(PageFlag f) const;
  void clear(PageFlag f) const;
  bool test_and_clear(PageFlag f) const;
  // folio_trylock / folio_unlock (PG_locked as a bit lock).
  bool trylock() const;
  void unlock() const;

  // Per-page PageAnonExclusive.
  bool page_anon_exclusive(uint64_t i) const;
  void set_page_anon_exclusive(uint64_t i, bool exclusive) const;

  // Contents of page i.
  uint64_t read(uint64_t i) const;
  void write(uint64_t i, uint64_t v) const;

 private:
  FrameAllocator* mem_ = nullptr;
  Pfn pfn_;
};

}  // namespace smm
