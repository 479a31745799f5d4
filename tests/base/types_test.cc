// Tests of the strong address types, Result and errno names.

#include <gtest/gtest.h>

#include "shadowmm/base/bug.h"
#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"

namespace smm {
namespace {

TEST(VirtAddr, AlignmentAndIndices) {
  VirtAddr a(0x7f0000201000);
  EXPECT_FALSE(a.is_aligned(PMD_SIZE));
  EXPECT_EQ(a.align_down(PMD_SIZE), VirtAddr(0x7f0000200000));
  EXPECT_EQ(a.align_up(PMD_SIZE), VirtAddr(0x7f0000400000));
  EXPECT_EQ(a.index(0), 1u);            // PTE index
  EXPECT_EQ(a.index(1), 1u);            // PMD index: 0x200000 >> 21 = 1
  EXPECT_EQ(a.index(2), 0x7f0000000000ull >> 30 & 511);
  EXPECT_EQ((a + PAGE_SIZE) - a, PAGE_SIZE);
}

TEST(VaRange, HalfOpenOverlapAndIntersection) {
  VaRange r{VirtAddr(0x1000), VirtAddr(0x3000)};
  EXPECT_TRUE(r.contains(VirtAddr(0x1000)));
  EXPECT_FALSE(r.contains(VirtAddr(0x3000)));
  EXPECT_FALSE(r.overlaps({VirtAddr(0x3000), VirtAddr(0x4000)}));
  EXPECT_TRUE(r.overlaps({VirtAddr(0x2fff), VirtAddr(0x4000)}));
  EXPECT_EQ(r.intersect({VirtAddr(0x2000), VirtAddr(0x5000)}), (VaRange{VirtAddr(0x2000), VirtAddr(0x3000)}));
  EXPECT_TRUE(r.intersect({VirtAddr(0x4000), VirtAddr(0x5000)}).empty());
}

TEST(Result, ValueOrErrno) {
  Result<int> ok = 7;
  Result<int> bad = Err{EINVAL};
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);
  EXPECT_EQ(ok.rc(), 0);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.rc(), -EINVAL);
}

TEST(Errno, NamesRoundTrip) {
  for (int e : {EINVAL, ENOMEM, EAGAIN, EFAULT, EPERM, EACCES, EOVERFLOW, EBUSY, EEXIST, ESRCH}) {
    ASSERT_NE(errno_name(e), nullptr);
    EXPECT_EQ(errno_from_name(errno_name(e)), e);
    EXPECT_STREQ(errno_name(-e), errno_name(e));
  }
  EXPECT_STREQ(errno_name(EINVAL), "EINVAL");
  EXPECT_EQ(errno_from_name("ENOTAREALERRNO"), 0);
}

TEST(Warnings, OnceSitesRearmOnClear) {
  warnings_clear();
  for (int i = 0; i < 3; i++) WARN_ON_ONCE(i >= 0);
  EXPECT_EQ(warnings_count(), 1u);
  warnings_clear();
  WARN_ON_ONCE(true);
  EXPECT_EQ(warnings_count(), 1u);
  warnings_clear();
}

}  // namespace
}  // namespace smm
