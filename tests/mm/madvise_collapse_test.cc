// MADV_COLLAPSE (spec d.2 "MADV_COLLAPSE", f.3): eligibility and every
// errno, already-PMD-mapped as success, no max_ptes_* limits and no
// referenced rule, the notifier range per 2 MiB block, page values, and the
// VMA walk around it (holes, several VMAs).

#include <gtest/gtest.h>

#include "mm/khugepaged_internal.h"
#include "recording_subscriber.h"
#include "shadowmm/mm/fork.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/mm/prctl.h"
#include "shadowmm/mm/task_mmu.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "test_support.h"

namespace smm {
namespace {

using test::Call;
using test::CallLog;
using test::K4;
using test::M1;
using test::M2;
using test::RecordingInterval;
using test::RW;
using test::TestMm;

uint64_t val(VirtAddr a) { return a.value() ^ 0x5a5a5a5a; }

struct Area : TestMm {
  explicit Area(uint64_t l = M2, int flags = MAP_PRIVATE | MAP_ANONYMOUS) : len(l) {
    a = map(len, RW, flags, MmapOpts{.align = M2});
  }
  VirtAddr page(unsigned i) const { return a + uint64_t{i} * K4; }
  void fill(unsigned first, unsigned n) {
    for (unsigned i = first; i < first + n; i++) write(page(i), val(page(i)));
  }
  int collapse(uint64_t off = 0, uint64_t l = 0) {
    return do_madvise(mm.get(), a + off, l ? l : len, MADV_COLLAPSE);
  }
  bool pmd_huge(unsigned block = 0) {
    PtSlot p = pt_lookup(mm.get(), a + uint64_t{block} * M2, PMD_LEVEL);
    return p && p.get().is_leaf();
  }
  uint64_t anon_huge() {
    uint64_t n = 0;
    for (const VmaReport& r : smaps_report(mm.get())) n += r.anon_huge;
    return n;
  }
  void expect_values(unsigned n, unsigned filled_first, unsigned filled_n) {
    for (unsigned i = 0; i < n; i++) {
      bool filled = i >= filled_first && i < filled_first + filled_n;
      ASSERT_EQ(read(page(i)), filled ? val(page(i)) : 0u) << "page " << i;
    }
  }
  uint64_t len;
  VirtAddr a;
};

// ---- success ----

TEST(MadviseCollapse, FullyPopulatedBlock) {
  Area t;
  t.fill(0, 512);
  EXPECT_EQ(t.collapse(), 0);
  EXPECT_TRUE(t.pmd_huge());
  EXPECT_EQ(t.anon_huge(), M2);
  EXPECT_EQ(t.machine.stats().get(VmEvent::collapse_2M), 1u);
  EXPECT_EQ(t.machine.stats().get(VmEvent::khugepaged_pages_collapsed), 0u) << "not khugepaged";
  t.expect_values(512, 0, 512);
}

// No max_ptes_none for MADV_COLLAPSE: one page is enough, even with the
// khugepaged limit at 0; THP `never` does not matter either.
TEST(MadviseCollapse, OnePageIgnoresMaxPtesNoneAndSysfs) {
  Area t;
  t.machine.thp().max_ptes_none.store(0);
  t.machine.thp().enabled.store(ThpEnabled::kNever);
  t.fill(100, 1);
  EXPECT_EQ(t.collapse(), 0);
  EXPECT_TRUE(t.pmd_huge());
  EXPECT_EQ(t.mm->rss(MM_ANONPAGES), 512);
  t.expect_values(512, 100, 1);
}

TEST(MadviseCollapse, AlreadyPmdMappedIsSuccess) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(t.collapse(), 0);
  EXPECT_EQ(t.collapse(), 0);
  EXPECT_EQ(t.machine.stats().get(VmEvent::thp_collapse_alloc), 1u) << "nothing to do the second time";
  // A THP from a fault counts too.
  Area u;
  ASSERT_EQ(do_madvise(u.mm.get(), u.a, M2, MADV_HUGEPAGE), 0);
  u.fill(0, 1);
  ASSERT_TRUE(u.pmd_huge());
  EXPECT_EQ(u.collapse(), 0);
}

// No referenced rule, no max_ptes_swap, no max_ptes_shared.
TEST(MadviseCollapse, NoReferencedSwapOrSharedLimits) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(do_madvise(t.mm.get(), t.a, M2, MADV_COLD), 0);
  ASSERT_EQ(do_madvise(t.mm.get(), t.a, 300 * K4, MADV_PAGEOUT), 0);  // 300 > max_ptes_swap
  ASSERT_EQ(t.mm->rss(MM_SWAPENTS), 300);
  EXPECT_EQ(t.collapse(), 0);
  EXPECT_TRUE(t.pmd_huge());
  EXPECT_EQ(t.mm->rss(MM_SWAPENTS), 0);
  t.expect_values(512, 0, 512);

  Area s;
  s.fill(0, 512);
  Result<MmStruct*> child = dup_mm(s.mm.get(), "child");
  ASSERT_TRUE(child.ok());
  MmRef child_ref(*child);
  s.write(s.page(0), val(s.page(0)));  // one writable PTE; 511 shared > 256
  EXPECT_EQ(s.collapse(), 0);
  EXPECT_TRUE(s.pmd_huge());
  s.expect_values(512, 0, 512);
  uint64_t v = 0;
  ASSERT_EQ(cpu_access(*child, s.page(300), Access::kRead, &v), 0);
  EXPECT_EQ(v, val(s.page(300)));
}

// A range holding no whole aligned 2 MiB block has nothing to collapse.
TEST(MadviseCollapse, NoWholeBlockInRangeIsSuccess) {
  Area t;
  t.fill(0, 512);
  EXPECT_EQ(t.collapse(0, M1), 0);
  EXPECT_EQ(t.collapse(K4, M2 - K4), 0);
  EXPECT_FALSE(t.pmd_huge());
}

TEST(MadviseCollapse, PrctlExceptAdvisedStillAllowsIt) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(prctl_set_thp_disable(t.mm.get(), 1, PR_THP_DISABLE_EXCEPT_ADVISED), 0);
  EXPECT_EQ(t.collapse(), 0) << "an explicit request is advice (6.18 forced collapse)";
  EXPECT_TRUE(t.pmd_huge());
}

// One CLEAR range per collapsed block, exactly the block, blockable.
TEST(MadviseCollapse, NotifierRangePerBlock) {
  Area t(3 * M2);
  t.fill(0, 3 * 512);
  CallLog log;
  RecordingInterval dev("dev", &log);
  ASSERT_EQ(mmu_interval_notifier_insert(&dev.sub, t.mm.get(), t.a, 3 * M2, dev.ops()), 0);
  ASSERT_EQ(t.collapse(), 0);
  std::vector<Call> calls = log.calls();
  ASSERT_EQ(calls.size(), 3u);
  for (unsigned b = 0; b < 3; b++) {
    EXPECT_EQ(calls[b].event, MMU_NOTIFY_CLEAR);
    EXPECT_EQ(calls[b].range, (VaRange{t.a + b * M2, t.a + (b + 1) * M2}));
    EXPECT_TRUE(calls[b].blockable);
  }
  mmu_interval_notifier_remove(&dev.sub);
  t.expect_values(3 * 512, 0, 3 * 512);
}

// ---- -EINVAL ----

TEST(MadviseCollapse, EinvalNohugepage) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(do_madvise(t.mm.get(), t.a, M2, MADV_NOHUGEPAGE), 0);
  EXPECT_EQ(t.collapse(), -EINVAL);
  EXPECT_FALSE(t.pmd_huge());
}

// [S1] BLOCK_THP protects its range through VM_NOHUGEPAGE.
TEST(MadviseCollapse, EinvalUnderBlockThp) {
  Area t;
  t.fill(0, 512);
  CallLog log;
  RecordingInterval dev("dev", &log);
  {
    MmapWriteLock l(t.mm.get());
    ASSERT_EQ(mmu_interval_notifier_insert_locked_flags(&dev.sub, t.mm.get(), t.a, M2, dev.ops(),
                                                         MMU_INTERVAL_NOTIFIER_BLOCK_THP),
              0);
  }
  EXPECT_EQ(t.collapse(), -EINVAL);
  EXPECT_FALSE(t.pmd_huge());
  EXPECT_TRUE(log.calls().empty());
  mmu_interval_notifier_remove(&dev.sub);
}

TEST(MadviseCollapse, EinvalPrctlThpDisable) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(prctl_set_thp_disable(t.mm.get(), 1, 0), 0);
  EXPECT_EQ(t.collapse(), -EINVAL);
}

TEST(MadviseCollapse, EinvalNoAnonVmaYet) {
  Area t;
  EXPECT_EQ(t.collapse(), -EINVAL);
}

TEST(MadviseCollapse, EinvalSharedAnonymous) {
  Area t(M2, MAP_SHARED | MAP_ANONYMOUS);
  t.fill(0, 512);
  EXPECT_EQ(t.collapse(), -EINVAL);
}

TEST(MadviseCollapse, EinvalEmptyBlockAfterAPopulatedOne) {
  Area t(2 * M2);
  t.fill(0, 1);
  EXPECT_EQ(t.collapse(), -EINVAL) << "the second PMD is none";
  EXPECT_TRUE(t.pmd_huge(0)) << "the first block was still collapsed";
}

TEST(MadviseCollapse, EinvalNoWritablePte) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(do_mprotect(t.mm.get(), t.a, M2, PROT_READ), 0);
  EXPECT_EQ(t.collapse(), -EINVAL);
  EXPECT_FALSE(t.pmd_huge());
}

// ---- -ENOMEM, -EAGAIN, -EBUSY ----

TEST(MadviseCollapse, EnomemAllocationFailure) {
  Area t;
  t.fill(0, 512);
  t.machine.mem().inject_failures(1u << HPAGE_PMD_ORDER, 1);
  EXPECT_EQ(t.collapse(), -ENOMEM);
  EXPECT_FALSE(t.pmd_huge());
  t.expect_values(512, 0, 512);
  EXPECT_EQ(t.collapse(), 0);
}

TEST(MadviseCollapse, EagainPinnedOrLockedPage) {
  for (bool pin : {true, false}) {
    Area t;
    t.fill(0, 512);
    Folio f = t.machine.mem().pfn_folio(pt_lookup(t.mm.get(), t.page(17), PTE_LEVEL).get().pfn());
    if (pin)
      f.get();
    else
      ASSERT_TRUE(f.trylock());
    EXPECT_EQ(t.collapse(), -EAGAIN) << (pin ? "pinned" : "locked");
    EXPECT_FALSE(t.pmd_huge());
    if (pin)
      f.put();
    else
      f.unlock();
    EXPECT_EQ(t.collapse(), 0) << "transient: trying again succeeds";
  }
}

// A transient failure in one block does not stop the next one.
TEST(MadviseCollapse, EagainInOneBlockTheOtherCollapses) {
  Area t(2 * M2);
  t.fill(0, 1024);
  Folio f = t.machine.mem().pfn_folio(pt_lookup(t.mm.get(), t.page(3), PTE_LEVEL).get().pfn());
  f.get();
  EXPECT_EQ(t.collapse(), -EAGAIN);
  EXPECT_FALSE(t.pmd_huge(0));
  EXPECT_TRUE(t.pmd_huge(1));
  f.put();
}

// -EBUSY comes from too many none PTEs (only a userfaultfd-armed VMA has a
// limit for MADV_COLLAPSE) or a memcg charge failure: neither is modelled,
// so the mapping itself is what can be checked.
TEST(MadviseCollapse, ErrnoOfEveryScanResult) {
  EXPECT_EQ(madvise_collapse_errno(SCAN_ALLOC_HUGE_PAGE_FAIL), -ENOMEM);
  EXPECT_EQ(madvise_collapse_errno(SCAN_EXCEED_NONE_PTE), -EBUSY);
  EXPECT_EQ(madvise_collapse_errno(SCAN_PAGE_COUNT), -EAGAIN);
  EXPECT_EQ(madvise_collapse_errno(SCAN_PAGE_LOCK), -EAGAIN);
  EXPECT_EQ(madvise_collapse_errno(SCAN_PAGE_LRU), -EAGAIN);
  EXPECT_EQ(madvise_collapse_errno(SCAN_DEL_PAGE_LRU), -EAGAIN);
  EXPECT_EQ(madvise_collapse_errno(SCAN_PAGE_RO), -EINVAL);
  EXPECT_EQ(madvise_collapse_errno(SCAN_PMD_NONE), -EINVAL);
  EXPECT_EQ(madvise_collapse_errno(SCAN_VMA_CHECK), -EINVAL);
}

// ---- the VMA walk ----

TEST(MadviseCollapse, HoleIsEnomemAfterTheMappedParts) {
  Area t(3 * M2);
  t.fill(0, 3 * 512);
  ASSERT_EQ(do_munmap(t.mm.get(), t.a + M2, M2), 0);
  EXPECT_EQ(t.collapse(), -ENOMEM);
  EXPECT_TRUE(t.pmd_huge(0));
  EXPECT_TRUE(t.pmd_huge(2));
}

TEST(MadviseCollapse, AcrossTwoVmas) {
  Area t(2 * M2);
  t.fill(0, 1024);
  ASSERT_EQ(do_madvise(t.mm.get(), t.a + M2, M2, MADV_HUGEPAGE), 0);  // splits the VMA
  ASSERT_EQ(t.nr_vmas(), 2u);
  EXPECT_EQ(t.collapse(), 0);
  EXPECT_TRUE(t.pmd_huge(0));
  EXPECT_TRUE(t.pmd_huge(1));
  t.expect_values(1024, 0, 1024);
}

}  // namespace
}  // namespace smm
