// mremap: errnos, growing in place, moving (with its UNMAP range over the
// old range), THPs moving whole to an aligned target, values preserved.

#include <gtest/gtest.h>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mremap.h"
#include "shadowmm/mm/task_mmu.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M1;
using test::M2;
using test::RecordingObserver;
using test::RW;
using test::TestMm;

int rc(Result<VirtAddr> r) { return r.rc(); }

TEST(Mremap, ErrnosLikeLinux) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(4 * K4);
  EXPECT_EQ(rc(do_mremap(mm, a, 4 * K4, 0, 0, VirtAddr(0))), -EINVAL) << "new_len 0";
  EXPECT_EQ(rc(do_mremap(mm, a + 1, 4 * K4, 8 * K4, 0, VirtAddr(0))), -EINVAL) << "unaligned";
  EXPECT_EQ(rc(do_mremap(mm, a, 4 * K4, 8 * K4, 0x40, VirtAddr(0))), -EINVAL) << "unknown flag";
  EXPECT_EQ(rc(do_mremap(mm, a, 4 * K4, 4 * K4, MREMAP_FIXED, a + M2)), -EINVAL) << "FIXED needs MAYMOVE";
  EXPECT_EQ(rc(do_mremap(mm, a, 4 * K4, 4 * K4, MREMAP_FIXED | MREMAP_MAYMOVE, a + K4)), -EINVAL)
      << "overlapping ranges";
  EXPECT_EQ(rc(do_mremap(mm, a + M2, 4 * K4, 8 * K4, 0, VirtAddr(0))), -EFAULT) << "nothing mapped";
  EXPECT_EQ(rc(do_mremap(mm, a, 0, 8 * K4, MREMAP_MAYMOVE, VirtAddr(0))), -EINVAL) << "old_len 0, private";
  EXPECT_EQ(rc(do_mremap(mm, a, 8 * K4, 16 * K4, 0, VirtAddr(0))), -EFAULT) << "old range past the VMA";
  EXPECT_EQ(rc(do_mremap(mm, a, 8 * K4, 8 * K4, 0, VirtAddr(0))), 0) << "same length: nothing to check";
}

TEST(Mremap, GrowsInPlaceShrinksAndMovesWhenBlocked) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr base = t.map(16 * K4);
  ASSERT_EQ(do_munmap(mm, base, 12 * K4), 0);  // free space below the last 4 pages
  VirtAddr a = t.map_at(base, 4 * K4);         // [0,4)  A, [12,16) B
  EXPECT_EQ(test::vma_map(mm, base, 16), "AAAA        BBBB");
  Result<VirtAddr> r = do_mremap(mm, a, 4 * K4, 8 * K4, 0, VirtAddr(0));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, a);
  EXPECT_EQ(test::vma_map(mm, base, 16), "AAAAAAAA    BBBB");
  EXPECT_EQ(rc(do_mremap(mm, a, 8 * K4, 16 * K4, 0, VirtAddr(0))), -ENOMEM) << "blocked, no MAYMOVE";
  ASSERT_EQ(do_mremap(mm, a, 8 * K4, 12 * K4, 0, VirtAddr(0)).rc(), 0) << "grows up to B and merges";
  EXPECT_EQ(test::vma_map(mm, base, 16), "AAAAAAAAAAAAAAAA");
  ASSERT_EQ(do_mremap(mm, a, 16 * K4, 2 * K4, 0, VirtAddr(0)).rc(), 0) << "shrink";
  EXPECT_EQ(test::vma_map(mm, base, 16), "AA              ");
}

TEST(Mremap, MoveKeepsValuesAndNotifiesTheOldRange) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(8 * K4);
  ASSERT_EQ(cpu_touch(mm, a, 8 * K4, Access::kWrite, std::nullopt), 0);
  t.map_at(a + 8 * K4, 4 * K4, PROT_READ);  // blocks growing
  RecordingObserver rec(t.machine);
  Result<VirtAddr> r = do_mremap(mm, a, 8 * K4, 16 * K4, MREMAP_MAYMOVE, VirtAddr(0));
  ASSERT_TRUE(r.ok());
  EXPECT_NE(*r, a);
  auto ranges = rec.ranges(a);
  ASSERT_GE(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], "unmap [0x0,0x8000)");
  for (uint64_t i = 0; i < 8; i++) EXPECT_EQ(t.read(*r + i * K4), (a + i * K4).value());
  EXPECT_EQ(t.read(*r + 12 * K4), 0u) << "the grown part is fresh memory";
  uint64_t v;
  EXPECT_EQ(cpu_access(mm, a, Access::kRead, &v), -EFAULT) << "the old range is gone";
}

TEST(Mremap, ThpMovesWholeToAnAlignedTargetAndSplitsOtherwise) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(mm, a, M2, MADV_HUGEPAGE), 0);
  ASSERT_EQ(cpu_touch(mm, a, M2, Access::kWrite, std::nullopt), 0);
  VirtAddr target = a - 4 * M2;
  Result<VirtAddr> r = do_mremap(mm, a, M2, M2, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  ASSERT_TRUE(r.ok());
  auto runs = mapping_runs(mm, target, target + M2);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].level, PMD_LEVEL);
  EXPECT_EQ(t.read(target + M1), (a + M1).value());
  // 4K off a 2 MiB boundary: the THP is split and moves as PTEs.
  VirtAddr off = target - 2 * M2 + K4;
  r = do_mremap(mm, target, M2, M2, MREMAP_MAYMOVE | MREMAP_FIXED, off);
  ASSERT_TRUE(r.ok());
  runs = mapping_runs(mm, off, off + M2);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].level, PTE_LEVEL);
  EXPECT_EQ(runs[0].size_name(), "2M");
  EXPECT_EQ(t.read(off + M1), (a + M1).value());
}

}  // namespace
}  // namespace smm
