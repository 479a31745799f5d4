// VMA merge and split (mm/vma.c rules, spec section g), drawn as ASCII
// address maps: one column per 4 KiB page, a letter per VMA.
//
//   0123456789abcdef
//   AAAABBBBCCCCCCCC   three VMAs after mprotect of pages 4..7

#include <gtest/gtest.h>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;
using test::TestMm;
using test::vma_map;

TEST(VmaSplit, MprotectMiddleMakesThreeAndRestoringMerges) {
  TestMm t;
  VirtAddr a = t.map(16 * K4);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAAAAAAAAAAAAAA");
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 4 * K4, 4 * K4, PROT_READ), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAABBBBCCCCCCCC");
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 4 * K4, 4 * K4, RW), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAAAAAAAAAAAAAA");
}

TEST(VmaMerge, AdjacentNewMappingsMerge) {
  TestMm t;
  VirtAddr base = t.map(16 * K4);
  ASSERT_EQ(do_munmap(t.mm.get(), base + 4 * K4, 8 * K4), 0);
  EXPECT_EQ(vma_map(t.mm.get(), base, 16), "AAAA        BBBB");
  t.map_at(base + 4 * K4, 4 * K4);  // touches the left neighbour: merges
  EXPECT_EQ(vma_map(t.mm.get(), base, 16), "AAAAAAAA    BBBB");
  t.map_at(base + 8 * K4, 4 * K4);  // fills the hole: all three merge
  EXPECT_EQ(vma_map(t.mm.get(), base, 16), "AAAAAAAAAAAAAAAA");
}

TEST(VmaMerge, DifferentAnonVmasDoNotMerge) {
  TestMm t;
  VirtAddr base = t.map(16 * K4);
  ASSERT_EQ(do_munmap(t.mm.get(), base + 8 * K4, 8 * K4), 0);
  t.write(base, 1);  // A gets an anon_vma
  // B: read-only (no VM_ACCOUNT, so it cannot share A's anon_vma) and
  // read-faulted, which gives it its own anon_vma when the zero page is off.
  t.machine.knobs().zero_page.store(false);
  Result<VirtAddr> b = do_mmap(t.mm.get(), base + 8 * K4, 8 * K4, PROT_READ,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, 0);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(vma_map(t.mm.get(), base, 16), "AAAAAAAABBBBBBBB");
  EXPECT_EQ(t.read(base + 8 * K4), 0u);
  ASSERT_EQ(do_mprotect(t.mm.get(), base + 8 * K4, 8 * K4, RW), 0);
  EXPECT_EQ(vma_map(t.mm.get(), base, 16), "AAAAAAAABBBBBBBB") << "same flags, two anon_vmas: no merge";
}

TEST(VmaMerge, HugepageAdviceSplitsAndMerges) {
  TestMm t;
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 8 * K4, MADV_HUGEPAGE), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAAAAAABBBBBBBB");
  ASSERT_EQ(do_madvise(t.mm.get(), a + 8 * K4, 8 * K4, MADV_HUGEPAGE), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAAAAAAAAAAAAAA");
  ASSERT_EQ(do_madvise(t.mm.get(), a + 4 * K4, 4 * K4, MADV_NOHUGEPAGE), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAABBBBCCCCCCCC");
  // MADV_NORMAL does not touch the THP flags: no change, no merge.
  ASSERT_EQ(do_madvise(t.mm.get(), a, 16 * K4, MADV_NORMAL), 0);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAABBBBCCCCCCCC");
}

TEST(VmaMerge, SharedMappingsNeverMerge) {
  TestMm t;
  VirtAddr a = t.map(8 * K4, RW, MAP_SHARED | MAP_ANONYMOUS);
  Result<VirtAddr> b =
      do_mmap(t.mm.get(), a + 8 * K4, 8 * K4, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, 0);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAAAAAABBBBBBBB") << "each shmem mapping is its own file";
}

// Reference: with untouched private anonymous memory every VMA boundary
// that remains is a change of protection, so the VMAs are exactly the
// maximal runs of pages with equal protection.
std::string runs_of(const std::vector<int>& prot) {
  std::string out;
  char letter = 'A';
  for (size_t i = 0; i < prot.size(); i++) {
    if (i > 0 && prot[i] != prot[i - 1]) letter++;
    out += letter;
  }
  return out;
}

class VmaExhaustive : public ::testing::TestWithParam<bool> {};

TEST_P(VmaExhaustive, EveryPairOfMprotectRangesOverEightPages) {
  const bool touched = GetParam();
  const int prots[] = {PROT_READ, RW, PROT_NONE};
  int cases = 0;
  for (unsigned s1 = 0; s1 < 8; s1++)
    for (unsigned e1 = s1 + 1; e1 <= 8; e1++)
      for (unsigned s2 = 0; s2 < 8; s2++)
        for (unsigned e2 = s2 + 1; e2 <= 8; e2++)
          for (int p1 : prots)
            for (int p2 : prots) {
              TestMm t;
              VirtAddr a = t.map(8 * K4);
              if (touched) {
                ASSERT_EQ(cpu_touch(t.mm.get(), a, 8 * K4, Access::kWrite, std::nullopt), 0);
              }
              std::vector<int> ref(8, RW);
              ASSERT_EQ(do_mprotect(t.mm.get(), a + s1 * K4, (e1 - s1) * K4, p1), 0);
              for (unsigned i = s1; i < e1; i++) ref[i] = p1;
              ASSERT_EQ(do_mprotect(t.mm.get(), a + s2 * K4, (e2 - s2) * K4, p2), 0);
              for (unsigned i = s2; i < e2; i++) ref[i] = p2;
              ASSERT_EQ(vma_map(t.mm.get(), a, 8), runs_of(ref))
                  << "mprotect [" << s1 << "," << e1 << ") " << p1 << " then [" << s2 << "," << e2 << ") " << p2;
              cases++;
            }
  EXPECT_EQ(cases, 36 * 36 * 9);
}

INSTANTIATE_TEST_SUITE_P(UntouchedAndTouched, VmaExhaustive, ::testing::Bool());

TEST(VmaSplit, MapCountLimitGivesENOMEMAndEAGAINForMadvise) {
  TestMm t;
  t.machine.knobs().max_map_count.store(2);
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 8 * K4, 8 * K4, PROT_READ), 0);  // 2 VMAs
  EXPECT_EQ(do_mprotect(t.mm.get(), a + 2 * K4, 2 * K4, PROT_NONE), -ENOMEM);
  EXPECT_EQ(do_madvise(t.mm.get(), a + 2 * K4, 2 * K4, MADV_HUGEPAGE), -EAGAIN);
  EXPECT_EQ(vma_map(t.mm.get(), a, 16), "AAAAAAAABBBBBBBB");
}

}  // namespace
}  // namespace smm
