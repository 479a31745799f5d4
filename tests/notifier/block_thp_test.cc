// [S1] MMU_INTERVAL_NOTIFIER_BLOCK_THP: flag validation, the VMA policy
// pass, MADV_HUGEPAGE ignored while active, set_flags, range_block_thp,
// and the flag staying after remove.

#include <gtest/gtest.h>

#include "recording_subscriber.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/mm/task_mmu.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "test_support.h"

namespace smm {
namespace {

using test::CallLog;
using test::K4;
using test::M2;
using test::RecordingInterval;
using test::RW;
using test::TestMm;
using test::vma_map;

int insert_flags(TestMm& t, RecordingInterval& s, VirtAddr start, uint64_t len, unsigned flags) {
  MmapWriteLock l(t.mm.get());
  return mmu_interval_notifier_insert_locked_flags(&s.sub, t.mm.get(), start, len, s.ops(), flags);
}

vm_flags_t flags_at(TestMm& t, VirtAddr a) {
  ReadLocker l(t.mm->mmap_lock);
  return t.mm->mm_mt.lookup(a)->vm_flags;
}

TEST(BlockThp, FlagChecksComeFirstInTheirOrder) {
  TestMm t;
  CallLog log;
  RecordingInterval s("s", &log);
  EXPECT_EQ(insert_flags(t, s, VirtAddr(0x100000), K4, 1u << 5), -EINVAL) << "unknown bit";
  EXPECT_EQ(insert_flags(t, s, VirtAddr(0x100000), 0, MMU_INTERVAL_NOTIFIER_BLOCK_THP), -EOVERFLOW);
  EXPECT_EQ(insert_flags(t, s, VirtAddr(~0ull - K4), 2 * K4, MMU_INTERVAL_NOTIFIER_BLOCK_THP), -EOVERFLOW)
      << "start + length overflows";
  EXPECT_FALSE(mm_has_notifiers(t.mm.get())) << "nothing was registered";
  t.machine.knobs().block_thp.store(false);
  EXPECT_EQ(insert_flags(t, s, VirtAddr(0x100000), K4, MMU_INTERVAL_NOTIFIER_BLOCK_THP), -EINVAL)
      << "before the series the flag is unknown";
}

TEST(BlockThp, PolicyPassMarksSplitsAndSkipsSpecialVmas) {
  TestMm t;
  CallLog log;
  RecordingInterval s("s", &log);
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 16 * K4, MADV_HUGEPAGE), 0);
  ASSERT_EQ(insert_flags(t, s, a + 4 * K4, 8 * K4, MMU_INTERVAL_NOTIFIER_BLOCK_THP), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAABBBBBBBBCCCC");
  EXPECT_TRUE(flags_at(t, a + 4 * K4) & VM_NOHUGEPAGE);
  EXPECT_FALSE(flags_at(t, a + 4 * K4) & VM_HUGEPAGE);
  EXPECT_TRUE(flags_at(t, a) & VM_HUGEPAGE) << "outside the range";
  EXPECT_TRUE(mmu_interval_notifier_range_block_thp(t.mm.get(), a + 5 * K4, a + 6 * K4));
  EXPECT_FALSE(mmu_interval_notifier_range_block_thp(t.mm.get(), a, a + 4 * K4));
  EXPECT_FALSE(mmu_interval_notifier_range_block_thp(t.mm.get(), a + 5 * K4, a + 5 * K4)) << "empty range";
  mmu_interval_notifier_remove(&s.sub);
  EXPECT_TRUE(flags_at(t, a + 4 * K4) & VM_NOHUGEPAGE) << "removing keeps the flag";
  EXPECT_FALSE(mmu_interval_notifier_range_block_thp(t.mm.get(), a + 5 * K4, a + 6 * K4));
}

TEST(BlockThp, UnalignedRangesCoverWholePages) {
  TestMm t;
  CallLog log;
  RecordingInterval s("s", &log);
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(insert_flags(t, s, a + 4 * K4 + 100, 4 * K4, MMU_INTERVAL_NOTIFIER_BLOCK_THP), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAABBBBBCCCCCCC") << "[round_down(start), round_up(end))";
  EXPECT_EQ(s.sub.interval_tree.start, (a + 4 * K4 + 100).value()) << "the interval itself stays as given";
  mmu_interval_notifier_remove(&s.sub);
}

TEST(BlockThp, MadviseHugepageIsIgnoredWhileActiveNohugepageStillWorks) {
  TestMm t;
  CallLog log;
  RecordingInterval s("s", &log);
  VirtAddr a = t.map(2 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(insert_flags(t, s, a, M2, MMU_INTERVAL_NOTIFIER_BLOCK_THP), 0);
  EXPECT_EQ(do_madvise(t.mm.get(), a, 2 * M2, MADV_HUGEPAGE), 0);
  EXPECT_TRUE(flags_at(t, a) & VM_NOHUGEPAGE) << "silently ignored where a BLOCK_THP notifier is";
  EXPECT_TRUE(flags_at(t, a + M2) & VM_HUGEPAGE) << "applied elsewhere";
  t.write(a, 1);
  EXPECT_EQ(mapping_runs(t.mm.get(), a, a + M2)[0].size_name(), "4K") << "no THP under the notifier";
  mmu_interval_notifier_remove(&s.sub);
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  EXPECT_TRUE(flags_at(t, a) & VM_HUGEPAGE) << "after remove, the advice applies again";
}

TEST(BlockThp, DeferredInsertIsNotSeenByRangeBlockThp) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log), s("s", &log);
  VirtAddr v = t.map(16 * K4);
  ASSERT_EQ(mmu_interval_notifier_insert(&a.sub, t.mm.get(), v, 16 * K4, a.ops()), 0);
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, t.mm.get(), v, v + K4);
  mmu_notifier_invalidate_range_start(&r);
  ASSERT_EQ(insert_flags(t, s, v, 16 * K4, MMU_INTERVAL_NOTIFIER_BLOCK_THP), 0);
  EXPECT_FALSE(mmu_interval_notifier_range_block_thp(t.mm.get(), v, v + K4)) << "deferred: not in the tree";
  EXPECT_TRUE(flags_at(t, v) & VM_NOHUGEPAGE) << "the policy pass already ran";
  mmu_notifier_invalidate_range_end(&r);
  EXPECT_TRUE(mmu_interval_notifier_range_block_thp(t.mm.get(), v, v + K4));
  mmu_interval_notifier_remove(&a.sub);
  mmu_interval_notifier_remove(&s.sub);
}

TEST(BlockThp, SetFlagsTurnsItOnAndOff) {
  TestMm t;
  CallLog log;
  RecordingInterval s("s", &log);
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 16 * K4, MADV_HUGEPAGE), 0);
  ASSERT_EQ(mmu_interval_notifier_insert(&s.sub, t.mm.get(), a, 8 * K4, s.ops()), 0);
  EXPECT_TRUE(flags_at(t, a) & VM_HUGEPAGE);
  {
    MmapWriteLock l(t.mm.get());
    EXPECT_EQ(mmu_interval_notifier_set_flags_locked(&s.sub, 1u << 3), -EINVAL);
    EXPECT_EQ(mmu_interval_notifier_set_flags_locked(&s.sub, MMU_INTERVAL_NOTIFIER_BLOCK_THP), 0);
  }
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAAAAAABBBBBBBB");
  EXPECT_TRUE(flags_at(t, a) & VM_NOHUGEPAGE);
  EXPECT_TRUE(mmu_interval_notifier_range_block_thp(t.mm.get(), a, a + K4));
  {
    MmapWriteLock l(t.mm.get());
    EXPECT_EQ(mmu_interval_notifier_set_flags_locked(&s.sub, 0), 0);
  }
  EXPECT_FALSE(mmu_interval_notifier_range_block_thp(t.mm.get(), a, a + K4));
  EXPECT_TRUE(flags_at(t, a) & VM_NOHUGEPAGE) << "turning it off restores nothing";
  mmu_interval_notifier_remove(&s.sub);
}

TEST(BlockThp, SetFlagsOnAWholeRangeIntervalOverflows) {
  TestMm t;
  CallLog log;
  RecordingInterval s("s", &log);
  ASSERT_EQ(mmu_interval_notifier_insert(&s.sub, t.mm.get(), VirtAddr(1), ~0ull, s.ops()), 0);
  {
    MmapWriteLock l(t.mm.get());
    EXPECT_EQ(mmu_interval_notifier_set_flags_locked(&s.sub, MMU_INTERVAL_NOTIFIER_BLOCK_THP), -EOVERFLOW);
  }
  mmu_interval_notifier_remove(&s.sub);
}

TEST(BlockThp, MapCountExhaustionIsENOMEMAndMayLeaveVmasChanged) {
  TestMm t;
  CallLog log;
  RecordingInterval s("s", &log);
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 8 * K4, 8 * K4, PROT_READ), 0);  // 2 VMAs
  t.machine.knobs().max_map_count.store(3);
  // The first VMA can be split once (3 VMAs); the second cannot.
  EXPECT_EQ(insert_flags(t, s, a + 4 * K4, 8 * K4, MMU_INTERVAL_NOTIFIER_BLOCK_THP), -ENOMEM);
  EXPECT_TRUE(flags_at(t, a + 4 * K4) & VM_NOHUGEPAGE) << "the first part was already changed";
  EXPECT_FALSE(flags_at(t, a + 8 * K4) & VM_NOHUGEPAGE);
}

}  // namespace
}  // namespace smm

namespace smm {
namespace {

TEST(BlockThp, SetFlagsChecksUnknownBitsBeforeTheMm) {
  // A subscription never inserted has no mm: unknown bits are -EINVAL
  // without the warning; known flags then hit the missing mm (warns once).
  MmuIntervalNotifier sub;
  warnings_clear();
  EXPECT_EQ(mmu_interval_notifier_set_flags_locked(&sub, 1u << 5), -EINVAL);
  EXPECT_EQ(warnings_count(), 0u);
  EXPECT_EQ(mmu_interval_notifier_set_flags_locked(&sub, MMU_INTERVAL_NOTIFIER_BLOCK_THP), -EINVAL);
  EXPECT_EQ(warnings_count(), 1u);
  warnings_clear();
}

}  // namespace
}  // namespace smm
