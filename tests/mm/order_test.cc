// Fault-time order selection for every combination of the THP knobs, the
// VMA's THP flags and the mm's THP-disable state (spec f.2, f.3, d.2), and
// smaps' THPeligible.

#include <gtest/gtest.h>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/prctl.h"
#include "shadowmm/mm/task_mmu.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;
using test::TestMm;

enum class VmaThp { kNone, kHuge, kNoHuge };
enum class Prctl { kNone, kDisable, kExceptAdvised };

const ThpEnabled kEnabled[] = {ThpEnabled::kAlways, ThpEnabled::kMadvise, ThpEnabled::kNever};
const ThpSizeSetting kSettings[] = {ThpSizeSetting::kNever, ThpSizeSetting::kAlways, ThpSizeSetting::kInherit,
                                    ThpSizeSetting::kMadvise};

// The spec's rule, written independently of the model's code: is `setting`
// for a size in force for a VMA with VM_HUGEPAGE = `huge`?
bool size_allowed(ThpEnabled global, ThpSizeSetting setting, bool huge) {
  switch (setting) {
    case ThpSizeSetting::kNever: return false;
    case ThpSizeSetting::kAlways: return true;
    case ThpSizeSetting::kMadvise: return huge;
    case ThpSizeSetting::kInherit: return global == ThpEnabled::kAlways || (global == ThpEnabled::kMadvise && huge);
  }
  return false;
}

TEST(FaultOrder, EveryKnobAndFlagCombination) {
  int cases = 0;
  for (ThpEnabled global : kEnabled)
    for (ThpSizeSetting s64k : kSettings)
      for (ThpSizeSetting s2m : kSettings)
        for (VmaThp vflag : {VmaThp::kNone, VmaThp::kHuge, VmaThp::kNoHuge})
          for (Prctl pr : {Prctl::kNone, Prctl::kDisable, Prctl::kExceptAdvised})
            for (bool write : {true, false}) {
              TestMm t;
              t.machine.thp().enabled.store(global);
              t.machine.thp().set_size(4, s64k);
              t.machine.thp().set_size(9, s2m);
              VirtAddr a = t.map(2 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
              int advice = vflag == VmaThp::kHuge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
              if (vflag != VmaThp::kNone) {
                ASSERT_EQ(do_madvise(t.mm.get(), a, 2 * M2, advice), 0);
              }
              unsigned long pr_flags = pr == Prctl::kExceptAdvised ? PR_THP_DISABLE_EXCEPT_ADVISED : 0;
              if (pr != Prctl::kNone) {
                ASSERT_EQ(prctl_set_thp_disable(t.mm.get(), 1, pr_flags), 0);
              }
              uint64_t v = 1;
              ASSERT_EQ(cpu_access(t.mm.get(), a + 3 * K4, write ? Access::kWrite : Access::kRead, &v), 0);

              bool huge = vflag == VmaThp::kHuge;
              bool disabled = vflag == VmaThp::kNoHuge || pr == Prctl::kDisable ||
                              (pr == Prctl::kExceptAdvised && !huge);
              std::string want;
              if (!disabled && size_allowed(global, s2m, huge))
                want = write ? "2M/pmd" : "zero2M/pmd";
              else if (!write)
                want = "zero/pte";  // mTHP never maps on a read fault: the zero page
              else if (!disabled && size_allowed(global, s64k, huge))
                want = "64K/pte";
              else
                want = "4K/pte";
              std::vector<MappingRun> r = mapping_runs(t.mm.get(), a, a + 2 * M2);
              ASSERT_EQ(r.size(), 1u);
              std::string got = r[0].size_name() + (r[0].level == PMD_LEVEL ? "/pmd" : "/pte");
              EXPECT_EQ(got, want) << "enabled=" << int(global) << " 64K=" << int(s64k) << " 2M=" << int(s2m)
                                   << " vma=" << int(vflag) << " prctl=" << int(pr) << " write=" << write;
              cases++;
            }
  EXPECT_EQ(cases, 3 * 4 * 4 * 3 * 3 * 2);
}

TEST(FaultOrder, MthpNeedsAnAlignedEmptyRunInsideTheVma) {
  TestMm t;
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  t.write(a + 2 * K4, 1);  // a 4K page inside the first 64K block
  t.machine.thp().set_size(4, ThpSizeSetting::kAlways);  // 64K
  t.machine.thp().set_size(2, ThpSizeSetting::kAlways);  // 16K
  t.write(a + 5 * K4, 2);  // its 64K block is not empty: 16K at 0x4000
  std::vector<MappingRun> r = mapping_runs(t.mm.get(), a + 4 * K4, a + 8 * K4);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].size_name(), "16K");
  EXPECT_EQ(r[0].start, a + 4 * K4);
  EXPECT_EQ(t.read(a + 2 * K4), 1u);
  // A 32K VMA gets no 64K folio. (rwx: it must not merge with `a`.)
  VirtAddr b = t.map(8 * K4, RW | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = 16 * K4});
  t.write(b, 3);
  EXPECT_EQ(mapping_runs(t.mm.get(), b, b + 8 * K4)[0].size_name(), "16K");
}

TEST(ThpEligible, FollowsSmapsRules) {
  TestMm t;
  auto eligible = [&](VirtAddr a) {
    for (const VmaReport& r : smaps_report(t.mm.get()))
      if (r.start == a) return r.thp_eligible;
    ADD_FAILURE() << "no VMA";
    return false;
  };
  VirtAddr plain = t.map(4 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  EXPECT_FALSE(eligible(plain)) << "enabled=madvise and no VM_HUGEPAGE";
  ASSERT_EQ(do_madvise(t.mm.get(), plain, 4 * M2, MADV_HUGEPAGE), 0);
  EXPECT_TRUE(eligible(plain));
  VirtAddr small = t.map(M2 / 2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), small, M2 / 2, MADV_HUGEPAGE), 0);
  EXPECT_FALSE(eligible(small)) << "no aligned 2 MiB block fits";
  t.machine.thp().set_size(4, ThpSizeSetting::kAlways);
  EXPECT_TRUE(eligible(small)) << "a 64K order fits";
  VirtAddr shared = t.map(4 * M2, RW, MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_FALSE(eligible(shared)) << "shmem with shmem_enabled=never";
  VirtAddr dax = t.map(M2, RW, MAP_SHARED, MmapOpts{.dax = true});
  EXPECT_FALSE(eligible(dax)) << "dax is huge at fault time only";
}

}  // namespace
}  // namespace smm
