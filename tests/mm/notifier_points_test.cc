// Where each mm path opens and closes its notifier ranges (spec table d.1),
// recorded before any subscriber exists: event, exact range, blockable,
// nesting, and ordering against TLB flushes and page-table changes.

#include <gtest/gtest.h>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "test_support.h"

namespace smm {
namespace {

using test::G1;
using test::K4;
using test::M1;
using test::M2;
using test::RecordingObserver;
using test::RW;
using test::TestMm;
using Strings = std::vector<std::string>;

// A 4 MiB hugepage mapping, 2 MiB aligned, fully written (two PMD THPs).
VirtAddr thp_area(TestMm& t) {
  VirtAddr a = t.map(4 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  EXPECT_EQ(do_madvise(t.mm.get(), a, 4 * M2, MADV_HUGEPAGE), 0);
  EXPECT_EQ(cpu_touch(t.mm.get(), a, 2 * M2, Access::kWrite, std::nullopt), 0);
  return a;
}

TEST(NotifierPoints, MunmapIsOneUnmapRangeForAllVmas) {
  TestMm t;
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(cpu_touch(t.mm.get(), a, 16 * K4, Access::kWrite, std::nullopt), 0);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 4 * K4, 4 * K4, PROT_READ), 0);
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_munmap(t.mm.get(), a + 2 * K4, 12 * K4), 0);
  EXPECT_EQ(rec.ranges(a), Strings{"unmap [0x2000,0xe000)"});
  EXPECT_TRUE(rec.balanced());
  EXPECT_TRUE(rec.events().front().blockable);
}

TEST(NotifierPoints, MunmapOfHalfATHPSplitsAtTheBoundaryFirst) {
  TestMm t;
  VirtAddr a = thp_area(t);
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_munmap(t.mm.get(), a + M1, M1), 0);
  EXPECT_EQ(rec.ranges(a), (Strings{"clear [0x0,0x200000)", "unmap [0x100000,0x200000)"}));
  EXPECT_TRUE(rec.balanced());
}

TEST(NotifierPoints, BoundarySplitIsNotifiedEvenWithoutATHP) {
  TestMm t;
  VirtAddr a = t.map(2 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  t.write(a, 1);  // 4K page: a PMD table now exists for [a, a+2M)
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + M1, K4, PROT_READ), 0);
  // Split at a+1M: CLEAR over its 2 MiB block although no THP is there; the
  // second boundary's block is no longer inside the VMA being split.
  EXPECT_EQ(rec.ranges(a), (Strings{"clear [0x0,0x200000)", "protection_vma [0x100000,0x101000)"}));
}

TEST(NotifierPoints, BoundarySplitNeedsAPmdTable) {
  TestMm t;
  VirtAddr a = t.map(2 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + M1, K4, PROT_READ), 0);
  EXPECT_TRUE(rec.ranges(a).empty()) << "no page table at all: nothing to split, no PUD: no range";
}

TEST(NotifierPoints, MprotectRangeOpensAtTheFirstNonNonePud) {
  TestMm t;
  VirtAddr a = thp_area(t);
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 4 * M2, PROT_READ), 0);
  // Whole VMA, whole THPs: no split, one PROTECTION_VMA range over the call.
  EXPECT_EQ(rec.ranges(a), Strings{"protection_vma [0x0,0x800000)"});
  // The downgrade was flushed after the range ended (tlb_end_vma).
  auto ev = rec.events();
  using Kind = RecordingObserver::Event::Kind;
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back().kind, Kind::kFlush);
  size_t end_idx = 0;
  for (size_t i = 0; i < ev.size(); i++)
    if (ev[i].kind == Kind::kRangeEnd) end_idx = i;
  for (size_t i = 0; i < end_idx; i++) EXPECT_NE(ev[i].kind, Kind::kFlush);
}

TEST(NotifierPoints, MprotectPmdLevelOpensPerPmdTable) {
  TestMm t;
  t.machine.knobs().mprotect_notify_level.store(MmKnobs::NotifyLevel::kPmd);
  VirtAddr a = t.map(4 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  t.write(a + M2 + K4, 1);  // the first PMD entry stays none
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 4 * M2, PROT_READ), 0);
  EXPECT_EQ(rec.ranges(a), Strings{"protection_vma [0x200000,0x800000)"});
  rec.clear();
  t.machine.knobs().mprotect_notify_level.store(MmKnobs::NotifyLevel::kPud);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 4 * M2, RW), 0);
  EXPECT_EQ(rec.ranges(a), Strings{"protection_vma [0x0,0x800000)"});
}

TEST(NotifierPoints, MprotectOfNothingPopulatedOpensNoRange) {
  TestMm t;
  VirtAddr a = t.map(4 * M2);
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 4 * M2, PROT_READ), 0);
  EXPECT_TRUE(rec.ranges(a).empty());
}

TEST(NotifierPoints, MprotectOfAPartialTHPNestsTheSplit) {
  TestMm t;
  VirtAddr a = thp_area(t);
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + M1, M1 + M2, PROT_READ), 0);
  // The VMA split at a+1M splits the first THP (CLEAR); the change then
  // covers the second THP wholly: changed in place, no nested split.
  EXPECT_EQ(rec.ranges(a), (Strings{"clear [0x0,0x200000)", "protection_vma [0x100000,0x400000)"}));
  EXPECT_TRUE(rec.balanced());
}

TEST(NotifierPoints, DontneedOpensOneClearRangePerVmaPart) {
  TestMm t;
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 8 * K4, 8 * K4, PROT_READ), 0);
  ASSERT_EQ(do_munmap(t.mm.get(), a + 4 * K4, 2 * K4), 0);  // a hole
  RecordingObserver rec(t.machine);
  EXPECT_EQ(do_madvise(t.mm.get(), a, 16 * K4, MADV_DONTNEED), -ENOMEM);
  EXPECT_EQ(rec.ranges(a),
            (Strings{"clear [0x0,0x4000)", "clear [0x6000,0x8000)", "clear [0x8000,0x10000)"}));
}

TEST(NotifierPoints, DontneedOfAPartialTHPSplitsInsideTheClearRange) {
  TestMm t;
  VirtAddr a = thp_area(t);
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_madvise(t.mm.get(), a + M1, K4, MADV_DONTNEED), 0);
  EXPECT_EQ(rec.ranges(a), (Strings{"clear [0x100000,0x101000)", "clear [0x0,0x200000)"}));
  EXPECT_TRUE(rec.balanced());
}

TEST(NotifierPoints, CowOpensAOnePageClearAndFlushesUnderIt) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  EXPECT_EQ(t.read(a), 0u);  // zero page
  RecordingObserver rec(t.machine);
  t.write(a, 5);  // zero page -> new page: wp_page_copy
  EXPECT_EQ(rec.ranges(a), Strings{"clear [0x0,0x1000)"});
  using Kind = RecordingObserver::Event::Kind;
  std::vector<Kind> kinds;
  for (const auto& e : rec.events()) kinds.push_back(e.kind);
  EXPECT_EQ(kinds, (std::vector<Kind>{Kind::kRangeStart, Kind::kPteChange, Kind::kFlush, Kind::kPteInstall,
                                      Kind::kRangeEnd}));
}

TEST(NotifierPoints, HugeZeroWriteReplacesThePmdUnderAClearRange) {
  TestMm t;
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  EXPECT_EQ(t.read(a + K4), 0u);  // huge zero PMD
  RecordingObserver rec(t.machine);
  t.write(a, 1);
  EXPECT_EQ(rec.ranges(a), Strings{"clear [0x0,0x200000)"});
  EXPECT_EQ(t.machine.stats().get(VmEvent::thp_zero_wp_alloc), 1u);
}

TEST(NotifierPoints, DaxPudMprotectIsNotifiedOnlyAtPudLevel) {
  TestMm t;
  VirtAddr a = t.map(G1, RW, MAP_SHARED, MmapOpts{.dax = true, .align = G1});
  t.write(a, 1);
  ASSERT_EQ(t.machine.stats().get(VmEvent::fault_dax_pud), 1u);
  RecordingObserver rec(t.machine);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, G1, PROT_READ), 0);
  EXPECT_EQ(rec.ranges(a), Strings{"protection_vma [0x0,0x40000000)"});
  rec.clear();
  t.machine.knobs().mprotect_notify_level.store(MmKnobs::NotifyLevel::kPmd);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, G1, RW), 0);
  EXPECT_TRUE(rec.ranges(a).empty()) << "before S3 the PUD leaf change was not notified";
  // ...but the leaf did change: a write-protect would have been missed too.
  using Kind = RecordingObserver::Event::Kind;
  ASSERT_EQ(do_mprotect(t.mm.get(), a, G1, PROT_READ), 0);
  bool downgraded = false;
  for (const auto& e : rec.events()) downgraded |= e.kind == Kind::kPteChange && e.size == G1;
  EXPECT_TRUE(downgraded);
  EXPECT_TRUE(rec.ranges(a).empty());
}

}  // namespace
}  // namespace smm
