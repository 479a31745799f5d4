// Tests of the buddy allocator and folio metadata (phys/).

#include <gtest/gtest.h>

#include <set>

#include "shadowmm/phys/page_alloc.h"
#include "shadowmm/phys/swap.h"

namespace smm {
namespace {

TEST(FrameAllocator, EveryOrderIsNaturallyAligned) {
  FrameAllocator mem((4ull << 30) >> PAGE_SHIFT);  // 4 GiB
  std::vector<Folio> folios;
  for (unsigned order : {0u, 2u, 4u, 9u, 18u, 0u, 9u, 3u}) {
    Result<Folio> f = mem.alloc_folio(order);
    ASSERT_TRUE(f.ok()) << "order " << order;
    EXPECT_EQ(f->order(), order);
    EXPECT_TRUE(is_aligned(f->pfn().value(), 1ull << order));
    EXPECT_EQ(f->refcount(), 1);
    EXPECT_EQ(f->read(f->nr_pages() - 1), 0u) << "zeroed";
    folios.push_back(*f);
  }
  mem.check_invariants();
  // Pages of distinct folios never overlap.
  std::set<uint64_t> seen;
  for (const Folio& f : folios)
    for (uint64_t i = 0; i < f.nr_pages(); i += 512) EXPECT_TRUE(seen.insert(f.pfn().value() + i).second);
  for (const Folio& f : folios) f.put();
  mem.check_invariants();
  EXPECT_EQ(mem.pages_in_use(), 0u);
}

TEST(FrameAllocator, FreeMergesBuddiesBackToTheTopOrder) {
  FrameAllocator mem((2ull << 30) >> PAGE_SHIFT);
  uint64_t free_before = mem.free_pages();
  std::vector<Folio> small;
  for (int i = 0; i < 1000; i++) small.push_back(*mem.alloc_folio(0));
  Result<Folio> big = mem.alloc_folio(18);
  ASSERT_TRUE(big.ok()) << "one 1 GiB block must remain";
  for (const Folio& f : small) f.put();
  big->put();
  mem.check_invariants();
  EXPECT_EQ(mem.free_pages(), free_before);
  // Everything merged: two 1 GiB blocks are available again (frame 0 is
  // reserved, so the first GiB is in smaller blocks; ask for the second).
  Result<Folio> again = mem.alloc_folio(18);
  EXPECT_TRUE(again.ok());
  again->put();
}

TEST(FrameAllocator, GenerationChangesOnEveryFree) {
  FrameAllocator mem(1 << 16);
  Folio f = *mem.alloc_folio(2);
  Pfn tail = f.page_pfn(3);
  uint16_t g0 = mem.generation(tail);
  f.put();
  EXPECT_NE(mem.generation(tail), g0);
  EXPECT_TRUE(mem.is_free(tail));
}

TEST(FrameAllocator, InjectedFailuresHitOnlyTheChosenOrders) {
  FrameAllocator mem(1 << 16);
  mem.inject_failures(1u << 9, /*times=*/2, /*after=*/1);
  Result<Folio> a = mem.alloc_folio(9);  // the one allowed success
  EXPECT_TRUE(a.ok());
  EXPECT_EQ(mem.alloc_folio(9).error(), ENOMEM);
  Result<Folio> small = mem.alloc_folio(0);  // other orders unaffected
  EXPECT_TRUE(small.ok());
  EXPECT_EQ(mem.alloc_folio(9).error(), ENOMEM);
  Result<Folio> b = mem.alloc_folio(9);  // budget used up
  EXPECT_TRUE(b.ok());
  EXPECT_EQ(mem.stats().alloc_failures[9], 2u);
  a->put();
  b->put();
  small->put();
}

TEST(FrameAllocator, ExhaustionIsENOMEM) {
  FrameAllocator mem(64);
  std::vector<Folio> all;
  for (;;) {
    Result<Folio> f = mem.alloc_folio(0);
    if (!f.ok()) {
      EXPECT_EQ(f.error(), ENOMEM);
      break;
    }
    all.push_back(*f);
  }
  EXPECT_EQ(all.size(), 63u);  // frame 0 is never handed out
  for (const Folio& f : all) f.put();
  mem.check_invariants();
}

TEST(Folio, MapcountsAndSharing) {
  FrameAllocator mem(1 << 16);
  Folio f = *mem.alloc_folio(9);
  EXPECT_FALSE(f.mapped());
  f.add_entire_mapcount(1);
  EXPECT_TRUE(f.mapped());
  EXPECT_EQ(f.total_mapcount(), 512);
  EXPECT_FALSE(f.maybe_mapped_shared());
  f.add_page_mapcount(7, 1);
  EXPECT_TRUE(f.maybe_mapped_shared()) << "page 7 mapped by the PMD and a PTE";
  f.add_page_mapcount(7, -1);
  f.add_entire_mapcount(-1);
  EXPECT_TRUE(f.trylock());
  EXPECT_FALSE(f.trylock());
  f.unlock();
  f.write(5, 0xabc);
  EXPECT_EQ(f.read(5), 0xabcu);
  f.put();
}

TEST(SwapSpace, SlotsHoldValuesAndAreReused) {
  SwapSpace swap(2);
  uint64_t a = *swap.alloc(11);
  uint64_t b = *swap.alloc(22);
  EXPECT_EQ(swap.alloc(33).error(), ENOMEM);
  EXPECT_EQ(swap.read(a), 11u);
  EXPECT_EQ(swap.read(b), 22u);
  swap.free(a);
  EXPECT_EQ(swap.used(), 1u);
  uint64_t c = *swap.alloc(44);
  EXPECT_EQ(c, a);
  EXPECT_EQ(swap.read(c), 44u);
}

}  // namespace
}  // namespace smm
