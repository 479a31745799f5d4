// Page tables: entry encoding, allocation on demand, freeing on munmap, and
// the mmu_gather's rule that frames are freed only after the TLB flush that
// made them unreachable.

#include <gtest/gtest.h>

#include <map>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/pgtable/mmu_gather.h"
#include "shadowmm/pgtable/pgtable.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;
using test::TestMm;

TEST(Pte, EncodingRoundTrips) {
  Pte leaf = Pte::leaf(Pfn(0x12345), PTE_PROT_R | PTE_PROT_W).mkdirty().mkyoung();
  EXPECT_TRUE(leaf.is_leaf());
  EXPECT_EQ(leaf.pfn(), Pfn(0x12345));
  EXPECT_TRUE(leaf.readable() && leaf.writable() && leaf.dirty() && leaf.young());
  EXPECT_FALSE(leaf.special());
  Pte ro = leaf.wrprotect().mkclean().mkold();
  EXPECT_FALSE(ro.writable() || ro.dirty() || ro.young());
  EXPECT_EQ(ro.pfn(), leaf.pfn());
  EXPECT_TRUE(leaf.with_prot(PTE_PROT_NONE).protnone());
  Pte swp = Pte::swap(77, true);
  EXPECT_TRUE(swp.is_swap() && swp.swap_exclusive());
  EXPECT_EQ(swp.swap_offset(), 77u);
  EXPECT_TRUE(Pte::none().is_none());
}

int64_t tables(MmStruct* mm) { return mm->pgtables_bytes.load() / static_cast<int64_t>(sizeof(PageTable)); }

TEST(PageTables, AllocatedOnDemandAndFreedByMunmap) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  EXPECT_EQ(tables(mm), 1) << "a new mm has only its PGD";
  VirtAddr a = t.map(4 * M2);
  EXPECT_EQ(tables(mm), 1) << "mmap allocates no table";
  EXPECT_FALSE(pt_lookup(mm, a, PTE_LEVEL));
  t.write(a, 1);
  EXPECT_EQ(tables(mm), 4) << "PUD, PMD and PTE tables on the first fault";
  EXPECT_TRUE(pt_lookup(mm, a, PTE_LEVEL));
  t.write(a + 3 * M2, 2);
  EXPECT_EQ(tables(mm), 5) << "a second PTE table for the fourth 2 MiB block";
  ASSERT_EQ(do_munmap(mm, a, 4 * M2), 0);
  EXPECT_EQ(tables(mm), 1) << "munmap of the only mapping frees every table below the PGD";
}

TEST(PageTables, MunmapKeepsTablesSharedWithANeighbour) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(M2, test::RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  t.write(a, 1);
  t.write(a + M2 - K4, 2);
  // Split into two VMAs in one PTE table, then unmap the first: the table
  // still maps the second (floor/ceiling of free_pgd_range).
  ASSERT_EQ(do_mprotect(mm, a + M2 / 2, M2 / 2, PROT_READ), 0);
  ASSERT_EQ(do_munmap(mm, a, M2 / 2), 0);
  EXPECT_EQ(tables(mm), 4);
  EXPECT_EQ(t.read(a + M2 - K4), 2u);
  ASSERT_EQ(do_munmap(mm, a + M2 / 2, M2 / 2), 0);
  EXPECT_EQ(tables(mm), 1);
}

TEST(PageTables, DontneedReclaimsAnEmptiedPteTable) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(2 * M2, test::RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  t.write(a, 1);
  t.write(a + M2, 2);
  ASSERT_EQ(tables(mm), 5);
  // A partial zap keeps the table...
  ASSERT_EQ(do_madvise(mm, a + M2, M2 / 2, MADV_DONTNEED), 0);
  EXPECT_EQ(tables(mm), 5);
  // ...a zap of the whole 2 MiB detaches it (6.14+ page-table reclaim). It
  // was detached under mmap_lock held for read, so it is freed at the next
  // write lock, when no lockless walker can still see it.
  ASSERT_EQ(do_madvise(mm, a, M2, MADV_DONTNEED), 0);
  EXPECT_FALSE(pt_lookup(mm, a, PTE_LEVEL)) << "the PMD no longer points to a table";
  EXPECT_EQ(pt_deferred_count(mm), 1u);
  EXPECT_EQ(tables(mm), 5);
  ASSERT_EQ(do_mprotect(mm, a + M2, M2, RW), 0);  // takes mmap_lock for write
  EXPECT_EQ(pt_deferred_count(mm), 0u);
  EXPECT_EQ(tables(mm), 4);
  EXPECT_EQ(t.read(a), 0u) << "zero-filled again";
}

// Every freed frame must have been unmapped, and that address flushed,
// before the free.
void expect_frees_after_flushes(const std::vector<test::RecordingObserver::Event>& ev, size_t min_frees) {
  using Kind = test::RecordingObserver::Event::Kind;
  std::map<uint64_t, VirtAddr> unmapped_at;  // pfn -> address it was unmapped from
  std::vector<VaRange> flushed;
  size_t frees = 0;
  for (const auto& e : ev) {
    if (e.kind == Kind::kPteChange) unmapped_at[e.pfn.value()] = e.range.start;
    if (e.kind == Kind::kFlush) flushed.push_back(e.range);
    if (e.kind == Kind::kFree) {
      frees++;
      auto it = unmapped_at.find(e.pfn.value());
      ASSERT_NE(it, unmapped_at.end()) << "pfn freed without being unmapped";
      bool covered = false;
      for (const VaRange& r : flushed) covered |= r.contains(it->second);
      EXPECT_TRUE(covered) << "pfn " << e.pfn.value() << " freed before a flush covered " << std::hex
                           << it->second.value();
    }
  }
  EXPECT_GE(frees, min_frees);
}

TEST(MmuGather, MunmapFreesFramesOnlyAfterTheFlush) {
  TestMm t;
  VirtAddr a = t.map(64 * K4);
  ASSERT_EQ(cpu_touch(t.mm.get(), a, 64 * K4, Access::kWrite, std::nullopt), 0);
  test::RecordingObserver rec(t.machine);
  ASSERT_EQ(do_munmap(t.mm.get(), a, 64 * K4), 0);
  expect_frees_after_flushes(rec.events(), 64);
  EXPECT_EQ(rec.ranges(a), std::vector<std::string>{"unmap [0x0,0x40000)"});
}

TEST(MmuGather, AFullBatchForcesAFlushInsideTheZap) {
  TestMm t;
  uint64_t pages = MmuGather::kMaxBatch + 1000;
  VirtAddr a = t.map(pages * K4);
  ASSERT_EQ(cpu_touch(t.mm.get(), a, pages * K4, Access::kWrite, std::nullopt), 0);
  test::RecordingObserver rec(t.machine);
  ASSERT_EQ(do_munmap(t.mm.get(), a, pages * K4), 0);
  auto ev = rec.events();
  expect_frees_after_flushes(ev, pages);
  // Some frames were freed before the UNMAP range ended: the batch filled up
  // and zap_pte_range flushed and freed it early.
  using Kind = test::RecordingObserver::Event::Kind;
  size_t frees_before_end = 0;
  for (const auto& e : ev) {
    if (e.kind == Kind::kRangeEnd) break;
    if (e.kind == Kind::kFree) frees_before_end++;
  }
  EXPECT_EQ(frees_before_end, MmuGather::kMaxBatch);
}

TEST(MmuGather, DontneedFreesAfterTheFlushAndAfterEveryRangeEnds) {
  TestMm t;
  VirtAddr a = t.map(32 * K4);
  ASSERT_EQ(cpu_touch(t.mm.get(), a, 32 * K4, Access::kWrite, std::nullopt), 0);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 16 * K4, 16 * K4, PROT_READ), 0);  // two VMAs
  test::RecordingObserver rec(t.machine);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 32 * K4, MADV_DONTNEED), 0);
  auto ev = rec.events();
  expect_frees_after_flushes(ev, 32);
  EXPECT_EQ(rec.ranges(a), (std::vector<std::string>{"clear [0x0,0x10000)", "clear [0x10000,0x20000)"}));
  using Kind = test::RecordingObserver::Event::Kind;
  size_t last_end = 0, first_free = ev.size();
  for (size_t i = 0; i < ev.size(); i++) {
    if (ev[i].kind == Kind::kRangeEnd) last_end = i;
    if (ev[i].kind == Kind::kFree && first_free == ev.size()) first_free = i;
  }
  EXPECT_GT(first_free, last_end) << "madvise_finish_tlb frees after every range ended";
}

}  // namespace
}  // namespace smm
