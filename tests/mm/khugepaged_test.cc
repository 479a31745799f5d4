// khugepaged (spec d.2 "khugepaged PMD collapse", "[S2] khugepaged mTHP
// collapse"): every limit at and around its threshold at PMD and mTHP
// orders, the referenced and writable rules, the exact notifier range and
// flush of each collapse, page values across collapses, every failure path
// restoring the old table, VM_NOHUGEPAGE, pages_to_scan, the mm list and
// the background thread.

#include "mm/khugepaged_internal.h"
#include "shadowmm/mm/khugepaged.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "recording_subscriber.h"
#include "shadowmm/mm/fork.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "test_support.h"

namespace smm {
namespace {

using test::Call;
using test::CallLog;
using test::K4;
using test::M2;
using test::RecordingClassic;
using test::RecordingInterval;
using test::RecordingObserver;
using test::RW;
using test::TestMm;


// The value page `a` holds in these tests.
uint64_t val(VirtAddr a) { return a.value() * 3 + 7; }

// One 2 MiB-aligned anonymous area of `len` bytes in a fresh machine.
struct Area : TestMm {
  explicit Area(uint64_t l = M2) : len(l) {
    a = map(len, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  }
  // Writes val() into pages [first, first + n) of the area (4 KiB faults:
  // THP is `madvise` and the VMA has no VM_HUGEPAGE yet).
  void fill(unsigned first, unsigned n) {
    for (unsigned i = first; i < first + n; i++) write(page(i), val(page(i)));
  }
  VirtAddr page(unsigned i) const { return a + uint64_t{i} * K4; }
  // MADV_HUGEPAGE: sets VM_HUGEPAGE and puts the mm on khugepaged's list.
  void enroll() { ASSERT_EQ(do_madvise(mm.get(), a, len, MADV_HUGEPAGE), 0); }
  void scan(unsigned passes = 1) { khugepaged_scan_passes(machine, passes); }
  // Only 64 KiB mTHP (no PMD order): set after the pages were faulted.
  void only_64k() {
    machine.thp().set_size(HPAGE_PMD_ORDER, ThpSizeSetting::kNever);
    machine.thp().set_size(4, ThpSizeSetting::kAlways);
  }
  bool pmd_huge(unsigned block = 0) {
    PtSlot p = pt_lookup(mm.get(), a + uint64_t{block} * M2, PMD_LEVEL);
    return p && p.get().is_leaf();
  }
  // Order of the folio the PTE of page i maps; -1 for none/zero/swap or a
  // huge PMD.
  int pte_order(unsigned i) {
    PtSlot s = pt_lookup(mm.get(), page(i), PTE_LEVEL);
    if (!s) return -1;
    Pte e = s.get();
    if (!e.is_leaf() || e.special()) return -1;
    return static_cast<int>(machine.mem().pfn_folio(e.pfn()).order());
  }
  // Raw PTE values of the first PMD block.
  std::vector<uint64_t> raw_ptes() {
    std::vector<uint64_t> out;
    PtSlot pmd = pt_lookup(mm.get(), a, PMD_LEVEL);
    if (!pmd || !pmd.get().is_table()) return out;
    for (auto& e : pmd.get().table()->entries) out.push_back(e.load());
    return out;
  }
  // Every page of [first, first + n) reads back its val(), pages outside
  // `filled` read 0.
  void expect_values(unsigned first, unsigned n, unsigned filled_first, unsigned filled_n) {
    for (unsigned i = first; i < first + n; i++) {
      bool filled = i >= filled_first && i < filled_first + filled_n;
      ASSERT_EQ(read(page(i)), filled ? val(page(i)) : 0u) << "page " << i;
    }
  }
  uint64_t stat(VmEvent e) { return machine.stats().get(e); }
  uint64_t len;
  VirtAddr a;
};

// ---- PMD order: max_ptes_none ----

// 511 none PTEs with max_ptes_none 511 collapse; 512 (an empty table) do not.
TEST(KhugepagedPmd, MaxPtesNone511CollapsesOnePresentPage) {
  Area t;
  t.fill(0, 1);
  t.enroll();
  t.scan();
  EXPECT_TRUE(t.pmd_huge());
  EXPECT_EQ(t.stat(VmEvent::collapse_2M), 1u);
  t.expect_values(0, 512, 0, 1);
  EXPECT_EQ(t.mm->rss(MM_ANONPAGES), 512);
}

TEST(KhugepagedPmd, EmptyTableIs512NonePtesAndDoesNotCollapse) {
  Area t;
  t.fill(0, 1);
  ASSERT_EQ(do_madvise(t.mm.get(), t.a, K4, MADV_DONTNEED), 0);  // the table stays, all none
  t.enroll();
  t.scan();
  EXPECT_FALSE(t.pmd_huge());
  EXPECT_EQ(t.stat(VmEvent::thp_scan_exceed_none_pte), 1u);
  EXPECT_EQ(t.stat(VmEvent::thp_collapse_alloc), 0u);
}

// max_ptes_none = N: exactly N none PTEs collapse, N + 1 do not.
TEST(KhugepagedPmd, MaxPtesNoneThresholds) {
  for (unsigned n : {0u, 1u, 64u, 510u}) {
    for (unsigned none : {n, n + 1}) {
      SCOPED_TRACE("max_ptes_none " + std::to_string(n) + ", none PTEs " + std::to_string(none));
      Area t;
      t.machine.thp().max_ptes_none.store(n);
      t.fill(none, 512 - none);  // pages [0, none) stay none
      t.enroll();
      t.scan();
      EXPECT_EQ(t.pmd_huge(), none == n);
      EXPECT_EQ(t.stat(VmEvent::thp_scan_exceed_none_pte), none == n ? 0u : 1u);
      t.expect_values(0, 512, none, 512 - none);
    }
  }
}

// Zero-page PTEs count as none.
TEST(KhugepagedPmd, ZeroPagePtesCountAsNone) {
  for (unsigned zeros : {8u, 9u}) {
    Area t;
    t.machine.thp().max_ptes_none.store(8);
    t.fill(zeros, 512 - zeros);
    for (unsigned i = 0; i < zeros; i++) (void)t.read(t.page(i));  // read faults: zero page
    ASSERT_EQ(t.pte_order(0), -1);
    t.enroll();
    t.scan();
    EXPECT_EQ(t.pmd_huge(), zeros == 8) << zeros << " zero-page PTEs";
    t.expect_values(0, 512, zeros, 512 - zeros);
  }
}

// ---- PMD order: max_ptes_swap and the swap-in ----

// Pages [0, nswap) are swapped out (MADV_PAGEOUT), the rest stay young.
void swap_out(Area& t, unsigned first, unsigned n) {
  ASSERT_EQ(do_madvise(t.mm.get(), t.page(first), uint64_t{n} * K4, MADV_PAGEOUT), 0);
  ASSERT_EQ(t.mm->rss(MM_SWAPENTS), static_cast<int64_t>(n));
}

TEST(KhugepagedPmd, MaxPtesSwapThresholdAndSwapIn) {
  for (unsigned nswap : {64u, 65u}) {
    SCOPED_TRACE(std::to_string(nswap) + " swap PTEs, max_ptes_swap 64");
    Area t;
    t.fill(0, 512);
    swap_out(t, 0, nswap);
    t.enroll();
    t.scan();
    bool want = nswap == 64;
    EXPECT_EQ(t.pmd_huge(), want);
    EXPECT_EQ(t.stat(VmEvent::thp_scan_exceed_swap_pte), want ? 0u : 1u);
    EXPECT_EQ(t.stat(VmEvent::pswpin), want ? 64u : 0u);
    EXPECT_EQ(t.mm->rss(MM_SWAPENTS), want ? 0 : static_cast<int64_t>(nswap));
    t.expect_values(0, 512, 0, 512);  // swapped-out pages read back too
  }
}

// With swap PTEs, at least half the PMD (256 PTEs) must be referenced.
TEST(KhugepagedPmd, SwapNeedsHalfThePtesReferenced) {
  for (unsigned nswap : {256u, 257u}) {
    SCOPED_TRACE(std::to_string(nswap) + " swap PTEs");
    Area t;
    t.machine.thp().max_ptes_swap.store(511);
    t.fill(0, 512);
    swap_out(t, 0, nswap);
    t.enroll();
    t.scan();
    EXPECT_EQ(t.pmd_huge(), nswap == 256);  // 256 vs 255 referenced PTEs
    EXPECT_EQ(t.mm->rss(MM_SWAPENTS), nswap == 256 ? 0 : static_cast<int64_t>(nswap));
  }
}

// ---- PMD order: max_ptes_shared ----

// After fork every page is shared; the parent's writes un-share (COW) them.
TEST(KhugepagedPmd, MaxPtesSharedThreshold) {
  for (unsigned written : {256u, 255u}) {
    unsigned shared = 512 - written;
    SCOPED_TRACE(std::to_string(shared) + " shared PTEs, max_ptes_shared 256");
    Area t;
    t.fill(0, 512);
    t.enroll();
    Result<MmStruct*> child = dup_mm(t.mm.get(), "child");
    ASSERT_TRUE(child.ok());
    MmRef child_ref(*child);
    EXPECT_TRUE(t.khugepaged.has_mm(*child)) << "khugepaged_fork";
    for (unsigned i = 0; i < written; i++) t.write(t.page(i), val(t.page(i)) + 1);
    t.scan();
    EXPECT_EQ(t.pmd_huge(), shared == 256);
    // The child (on the list through khugepaged_fork) sees the same shared
    // pages: both scans stop there at 257.
    EXPECT_EQ(t.stat(VmEvent::thp_scan_exceed_shared_pte), shared == 256 ? 0u : 2u);
    for (unsigned i = 0; i < 512; i++) {
      uint64_t v = 0;
      ASSERT_EQ(cpu_access(t.mm.get(), t.page(i), Access::kRead, &v), 0);
      ASSERT_EQ(v, val(t.page(i)) + (i < written ? 1 : 0)) << "parent page " << i;
      ASSERT_EQ(cpu_access(*child, t.page(i), Access::kRead, &v), 0);
      ASSERT_EQ(v, val(t.page(i))) << "child page " << i;
    }
    // The child's PTEs are write-protected: SCAN_PAGE_RO, never collapsed.
    PtSlot cpmd = pt_lookup(*child, t.a, PMD_LEVEL);
    EXPECT_TRUE(cpmd && cpmd.get().is_table());
  }
}

// ---- referenced and writable ----

TEST(KhugepagedPmd, NotReferencedDoesNotCollapse) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(do_madvise(t.mm.get(), t.a, M2, MADV_COLD), 0);  // every PTE old
  t.enroll();
  t.scan();
  EXPECT_FALSE(t.pmd_huge());
  EXPECT_EQ(t.stat(VmEvent::thp_collapse_alloc), 0u);
  // One referenced folio is enough.
  Folio f = t.machine.mem().pfn_folio(pt_lookup(t.mm.get(), t.page(7), PTE_LEVEL).get().pfn());
  f.set(PG_referenced);
  t.scan();
  EXPECT_TRUE(t.pmd_huge());
  t.expect_values(0, 512, 0, 512);
}

// mmu_notifier_test_young: a secondary MMU that saw accesses makes the
// pages referenced.
TEST(KhugepagedPmd, SecondaryMmuYoungMakesReferenced) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(do_madvise(t.mm.get(), t.a, M2, MADV_COLD), 0);
  t.enroll();
  CallLog log;
  RecordingClassic kvm("kvm", &log, {.start_end = false, .young = true, .release = false});
  ASSERT_EQ(mmu_notifier_register(&kvm.sub, t.mm.get()), 0);
  t.scan();
  EXPECT_FALSE(t.pmd_huge());
  EXPECT_EQ(log.calls().size(), 512u) << "asked once per old PTE";
  EXPECT_EQ(log.calls()[5].op, "test_young");
  EXPECT_EQ(log.calls()[5].range.start, t.page(5));
  log.clear();
  kvm.young_result.store(1);
  t.scan();
  EXPECT_TRUE(t.pmd_huge());
  mmu_notifier_unregister(&kvm.sub, t.mm.get());
}

TEST(KhugepagedPmd, NoWritablePteDoesNotCollapse) {
  Area t;
  t.fill(0, 512);
  ASSERT_EQ(do_mprotect(t.mm.get(), t.a, M2, PROT_READ), 0);
  t.enroll();
  t.scan();
  EXPECT_FALSE(t.pmd_huge());
  EXPECT_EQ(t.stat(VmEvent::thp_collapse_alloc), 0u);
  t.expect_values(0, 512, 0, 512);
}

// ---- the notifier range and flush of a collapse ----

TEST(KhugepagedPmd, ExactNotifierRangeFlushAndOrder) {
  Area t(2 * M2);
  t.fill(512, 512);  // the second block only
  CallLog log;
  RecordingInterval dev("dev", &log);
  ASSERT_EQ(mmu_interval_notifier_insert(&dev.sub, t.mm.get(), t.a, 2 * M2, dev.ops()), 0);
  t.enroll();
  log.clear();
  RecordingObserver obs(t.machine);
  t.scan();
  ASSERT_TRUE(t.pmd_huge(1));
  VirtAddr h = t.a + M2;
  ASSERT_EQ(log.calls().size(), 1u);
  Call c = log.calls()[0];
  EXPECT_EQ(c.op, "invalidate");
  EXPECT_EQ(c.event, MMU_NOTIFY_CLEAR);
  EXPECT_EQ(c.range, (VaRange{h, h + M2}));
  EXPECT_TRUE(c.blockable);
  // Range start, the 2 MiB flush (pmdp_collapse_flush), range end, then the
  // old pages go and the huge PMD appears.
  using K = RecordingObserver::Event::Kind;
  std::vector<RecordingObserver::Event> ev = obs.events();
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev[0].kind, K::kRangeStart);
  EXPECT_EQ(ev[0].range, (VaRange{h, h + M2}));
  EXPECT_EQ(ev[1].kind, K::kFlush);
  EXPECT_EQ(ev[1].range, (VaRange{h, h + M2}));
  EXPECT_EQ(ev[2].kind, K::kRangeEnd);
  size_t frees = 0;
  for (size_t i = 3; i + 1 < ev.size(); i++) frees += ev[i].kind == K::kFree;
  EXPECT_EQ(frees, 512u);
  EXPECT_EQ(ev.back().kind, K::kPteInstall);
  EXPECT_EQ(ev.back().size, M2);
  EXPECT_TRUE(obs.balanced());
  mmu_interval_notifier_remove(&dev.sub);
}

// ---- [S2] mTHP orders ----

TEST(KhugepagedMthp, MaxPtesNone511CollapsesAnyOccupied64kBlock) {
  Area t;
  t.fill(16, 1);  // one page in the second 64 KiB block
  t.only_64k();
  t.enroll();
  t.scan();
  EXPECT_FALSE(t.pmd_huge());
  for (unsigned i = 0; i < 512; i++) EXPECT_EQ(t.pte_order(i), i >= 16 && i < 32 ? 4 : -1) << i;
  EXPECT_EQ(t.stat(VmEvent::collapse_64K), 1u);
  t.expect_values(0, 512, 16, 1);
  EXPECT_EQ(t.mm->rss(MM_ANONPAGES), 16);
  // A second pass finds the block already 64 KiB: nothing is collapsed again.
  t.scan(2);
  EXPECT_EQ(t.stat(VmEvent::collapse_64K), 1u);
}

TEST(KhugepagedMthp, MaxPtesNone0NeedsAFullBlock) {
  for (unsigned present : {15u, 16u}) {
    Area t;
    t.machine.thp().max_ptes_none.store(0);
    t.fill(0, present);
    t.only_64k();
    t.enroll();
    t.scan();
    EXPECT_EQ(t.pte_order(0), present == 16 ? 4 : 0) << present << " of 16 pages present";
    t.expect_values(0, 32, 0, present);
  }
}

// Any max_ptes_none other than 0 and 511 warns once and counts as 0 for mTHP.
TEST(KhugepagedMthp, OtherMaxPtesNoneWarnsAndCountsAsZero) {
  Area t;
  t.machine.thp().max_ptes_none.store(100);
  t.fill(0, 15);
  t.fill(16, 16);
  t.only_64k();
  t.enroll();
  t.scan();
  EXPECT_EQ(t.pte_order(0), 0) << "15 of 16: not with 0 none allowed";
  EXPECT_EQ(t.pte_order(16), 4);
  EXPECT_EQ(warnings_count(), 1u);
  warnings_clear();
}

// The PMD order goes first; lower orders only when it does not qualify.
TEST(KhugepagedMthp, PmdOrderFirstThenHalves) {
  Area t;
  t.machine.thp().max_ptes_none.store(0);
  t.fill(0, 511);  // one hole at page 511
  t.machine.thp().set_size(4, ThpSizeSetting::kAlways);
  t.machine.thp().set_size(3, ThpSizeSetting::kAlways);
  t.enroll();  // 2M inherit + VM_HUGEPAGE: PMD order allowed
  t.scan();
  EXPECT_FALSE(t.pmd_huge());
  // 31 full 64 KiB blocks, then in the last one: 32 KiB, then 4 KiB pages
  // around the hole (16 KiB is not enabled).
  for (unsigned i = 0; i < 496; i++) ASSERT_EQ(t.pte_order(i), 4) << i;
  for (unsigned i = 496; i < 504; i++) ASSERT_EQ(t.pte_order(i), 3) << i;
  for (unsigned i = 504; i < 511; i++) ASSERT_EQ(t.pte_order(i), 0) << i;
  EXPECT_EQ(t.stat(VmEvent::collapse_64K), 31u);
  EXPECT_EQ(t.stat(VmEvent::collapse_32K), 1u);
  t.expect_values(0, 512, 0, 511);
}

TEST(KhugepagedMthp, SwapPteRefusesItsBlock) {
  Area t;
  t.fill(0, 512);
  swap_out(t, 3, 1);
  t.only_64k();
  t.enroll();
  t.scan();
  for (unsigned i = 0; i < 16; i++) EXPECT_EQ(t.pte_order(i), i == 3 ? -1 : 0) << i;
  for (unsigned i = 16; i < 512; i++) ASSERT_EQ(t.pte_order(i), 4) << i;
  EXPECT_EQ(t.mm->rss(MM_SWAPENTS), 1) << "no swap-in below PMD order";
  EXPECT_EQ(t.stat(VmEvent::pswpin), 0u);
  t.expect_values(0, 512, 0, 512);
}

TEST(KhugepagedMthp, SharedPageRefusesItsBlock) {
  Area t;
  t.fill(0, 512);
  t.enroll();
  Result<MmStruct*> child = dup_mm(t.mm.get(), "child");
  ASSERT_TRUE(child.ok());
  MmRef child_ref(*child);
  for (unsigned i = 0; i < 512; i++)
    if (i != 20) t.write(t.page(i), val(t.page(i)));  // COW: exclusive again
  t.only_64k();
  t.scan();
  for (unsigned i = 16; i < 32; i++) EXPECT_EQ(t.pte_order(i), 0) << i;
  for (unsigned i = 0; i < 16; i++) ASSERT_EQ(t.pte_order(i), 4) << i;
  for (unsigned i = 32; i < 512; i++) ASSERT_EQ(t.pte_order(i), 4) << i;
  t.expect_values(0, 512, 0, 512);
}

TEST(KhugepagedMthp, CollapseOrdersPmdKnobDisablesMthp) {
  {
    // Before S2, khugepaged has nothing to do in a VMA where only mTHP
    // sizes are enabled: the mm is not even registered.
    Area t;
    t.fill(0, 512);
    t.machine.knobs().collapse_orders.store(MmKnobs::CollapseOrders::kPmd);
    t.only_64k();
    t.enroll();
    EXPECT_FALSE(t.khugepaged.has_mm(t.mm.get()));
  }
  Area t;
  t.fill(0, 512);
  t.only_64k();
  t.enroll();
  EXPECT_TRUE(t.khugepaged.has_mm(t.mm.get()));
  t.machine.knobs().collapse_orders.store(MmKnobs::CollapseOrders::kPmd);
  t.scan();
  EXPECT_EQ(t.pte_order(0), 0) << "mm.collapse_orders pmd: no mTHP collapse";
  EXPECT_EQ(t.stat(VmEvent::thp_collapse_alloc), 0u);
  t.machine.knobs().collapse_orders.store(MmKnobs::CollapseOrders::kMthp);
  t.scan();
  EXPECT_EQ(t.pte_order(0), 4);
  EXPECT_EQ(t.stat(VmEvent::collapse_64K), 32u);
}

// The notifier range is exactly the 64 KiB; the flush covers the PMD, or
// only the 64 KiB with `mm.collapse_flush range`.
TEST(KhugepagedMthp, SubRangeNotifierAndFlushSpan) {
  for (auto flush : {MmKnobs::CollapseFlush::kPmd, MmKnobs::CollapseFlush::kRange}) {
    Area t;
    t.machine.knobs().collapse_flush.store(flush);
    t.fill(48, 16);  // the fourth 64 KiB block
    CallLog log;
    RecordingInterval dev("dev", &log);
    ASSERT_EQ(mmu_interval_notifier_insert(&dev.sub, t.mm.get(), t.a, M2, dev.ops()), 0);
    t.only_64k();
    t.enroll();
    log.clear();
    RecordingObserver obs(t.machine);
    t.scan();
    ASSERT_EQ(t.pte_order(48), 4);
    VaRange sub{t.page(48), t.page(64)};
    ASSERT_EQ(log.calls().size(), 1u);
    EXPECT_EQ(log.calls()[0].range, sub);
    EXPECT_EQ(log.calls()[0].event, MMU_NOTIFY_CLEAR);
    EXPECT_TRUE(log.calls()[0].blockable);
    using K = RecordingObserver::Event::Kind;
    std::vector<RecordingObserver::Event> ev = obs.events();
    ASSERT_GE(ev.size(), 3u);
    EXPECT_EQ(ev[0].kind, K::kRangeStart);
    EXPECT_EQ(ev[0].range, sub);
    EXPECT_EQ(ev[1].kind, K::kFlush);
    EXPECT_EQ(ev[1].range, flush == MmKnobs::CollapseFlush::kPmd ? (VaRange{t.a, t.a + M2}) : sub);
    EXPECT_EQ(ev[2].kind, K::kRangeEnd);
    size_t installs = 0;
    for (const auto& e : ev) installs += e.kind == K::kPteInstall;
    EXPECT_EQ(installs, 16u);
    mmu_interval_notifier_remove(&dev.sub);
  }
}

// ---- failure paths ----

TEST(KhugepagedFailure, AllocationFailureLeavesEverything) {
  Area t;
  t.fill(0, 512);
  t.enroll();
  std::vector<uint64_t> before = t.raw_ptes();
  t.machine.mem().inject_failures(1u << HPAGE_PMD_ORDER, 1);
  t.scan();
  EXPECT_FALSE(t.pmd_huge());
  EXPECT_EQ(t.raw_ptes(), before);
  EXPECT_EQ(t.stat(VmEvent::thp_collapse_alloc_failed), 1u);
  t.expect_values(0, 512, 0, 512);
  t.scan();  // the failure was transient
  EXPECT_TRUE(t.pmd_huge());
}

// A failure after the PMD was cleared (isolation) puts the old table back:
// same table, same entries, same values. Driven through collapse_huge_page
// directly, with the state changed after the scan.
struct IsolationCase {
  const char* name;
  ScanResult want;
  unsigned order;
};

class KhugepagedIsolation : public ::testing::TestWithParam<IsolationCase> {};

TEST_P(KhugepagedIsolation, RestoresTheOldTable) {
  const IsolationCase& p = GetParam();
  Area t;
  t.fill(0, 512);
  if (p.order != HPAGE_PMD_ORDER) t.only_64k();
  t.enroll();
  // The folio the case acts on (the hole case frees page 9; check page 10).
  unsigned fpage = p.want == SCAN_EXCEED_NONE_PTE ? 10 : 9;
  Folio f = t.machine.mem().pfn_folio(pt_lookup(t.mm.get(), t.page(fpage), PTE_LEVEL).get().pfn());
  CollapseControl cc;
  switch (p.want) {
    case SCAN_PAGE_LOCK: ASSERT_TRUE(f.trylock()); break;
    case SCAN_PAGE_COUNT: f.get(); break;  // a pin
    case SCAN_LACK_REFERENCED_PAGE: ASSERT_EQ(do_madvise(t.mm.get(), t.a, M2, MADV_COLD), 0); break;
    case SCAN_PAGE_RO: ASSERT_EQ(do_mprotect(t.mm.get(), t.a, M2, PROT_READ), 0); break;
    case SCAN_EXCEED_NONE_PTE:
      ASSERT_EQ(do_madvise(t.mm.get(), t.page(9), K4, MADV_DONTNEED), 0);
      t.machine.thp().max_ptes_none.store(0);
      break;
    default: FAIL();
  }
  std::vector<uint64_t> before = t.raw_ptes();
  PageTable* table = pt_lookup(t.mm.get(), t.a, PMD_LEVEL).get().table();
  CallLog log;
  RecordingInterval dev("dev", &log);
  ASSERT_EQ(mmu_interval_notifier_insert(&dev.sub, t.mm.get(), t.a, M2, dev.ops()), 0);
  {
    ReadLocker l(t.mm->mmap_lock);
    cc.enabled_orders = collapse_allowable_orders(t.mm->mm_mt.lookup(t.a), true);
  }
  ASSERT_NE(cc.enabled_orders & (1u << p.order), 0u);
  EXPECT_EQ(collapse_huge_page(t.mm.get(), t.a, 512, 0, &cc, p.order), p.want) << p.name;
  // The range was opened (the PMD was cleared) before isolation failed.
  ASSERT_EQ(log.calls().size(), 1u);
  EXPECT_EQ(log.calls()[0].range, (VaRange{t.a, t.a + (K4 << p.order)}));
  EXPECT_EQ(pt_lookup(t.mm.get(), t.a, PMD_LEVEL).get(), Pte::table(table));
  EXPECT_EQ(t.raw_ptes(), before);
  EXPECT_EQ(t.stat(VmEvent::collapse_fail), 1u);
  EXPECT_EQ(t.stat(VmEvent::thp_collapse_alloc), 1u) << "the new folio was freed again";
  if (p.want == SCAN_PAGE_LOCK) {
    EXPECT_TRUE(f.test(PG_locked)) << "the test's lock is untouched";
    f.unlock();
  }
  if (p.want == SCAN_PAGE_COUNT) f.put();
  EXPECT_TRUE(f.test(PG_lru)) << "back on the LRU";
  for (unsigned i = 0; i < 512; i++) {
    uint64_t v = 0;
    ASSERT_EQ(cpu_access(t.mm.get(), t.page(i), Access::kRead, &v), 0);
    ASSERT_EQ(v, p.want == SCAN_EXCEED_NONE_PTE && i == 9 ? 0 : val(t.page(i))) << i;
  }
  mmu_interval_notifier_remove(&dev.sub);
}

INSTANTIATE_TEST_SUITE_P(
    All, KhugepagedIsolation,
    ::testing::Values(IsolationCase{"locked", SCAN_PAGE_LOCK, 9}, IsolationCase{"pinned", SCAN_PAGE_COUNT, 9},
                      IsolationCase{"old", SCAN_LACK_REFERENCED_PAGE, 9}, IsolationCase{"ro", SCAN_PAGE_RO, 9},
                      IsolationCase{"hole", SCAN_EXCEED_NONE_PTE, 9}, IsolationCase{"locked64k", SCAN_PAGE_LOCK, 4},
                      IsolationCase{"pinned64k", SCAN_PAGE_COUNT, 4}, IsolationCase{"old64k", SCAN_LACK_REFERENCED_PAGE, 4},
                      IsolationCase{"ro64k", SCAN_PAGE_RO, 4}, IsolationCase{"hole64k", SCAN_EXCEED_NONE_PTE, 4}),
    [](const ::testing::TestParamInfo<IsolationCase>& i) { return std::string(i.param.name); });

// ---- eligibility, the mm list, pages_to_scan, the thread ----

TEST(Khugepaged, SkipsNohugepageVmas) {
  Area t;
  t.fill(0, 512);
  t.enroll();
  ASSERT_EQ(do_madvise(t.mm.get(), t.a, M2, MADV_NOHUGEPAGE), 0);
  EXPECT_TRUE(t.khugepaged.has_mm(t.mm.get())) << "the mm stays on the list";
  t.machine.thp().enabled.store(ThpEnabled::kAlways);
  t.scan(2);
  EXPECT_FALSE(t.pmd_huge());
  EXPECT_EQ(t.stat(VmEvent::thp_collapse_alloc), 0u);
}

TEST(Khugepaged, MmLeavesTheListAtExit) {
  Machine m;
  Khugepaged k(m);
  MmStruct* mm = MmStruct::create(m, "x");
  VirtAddr a = *do_mmap(mm, VirtAddr(0), M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0, MmapOpts{.align = M2});
  uint64_t v = 1;
  ASSERT_EQ(cpu_access(mm, a, Access::kWrite, &v), 0);
  ASSERT_EQ(do_madvise(mm, a, M2, MADV_HUGEPAGE), 0);
  EXPECT_EQ(k.nr_mms(), 1u);
  EXPECT_EQ(mm->mm_count.load(), 2) << "the list pins the structure";
  mm->mmput();
  EXPECT_EQ(k.nr_mms(), 0u);
  EXPECT_EQ(m.live_mms.load(), 0);
  k.scan_passes(1);  // an empty list is no work
}

TEST(Khugepaged, PagesToScanBoundsOneWakeUp) {
  Area t(2 * M2);
  t.fill(0, 1024);
  t.enroll();
  t.machine.thp().pages_to_scan.store(512);
  t.khugepaged.do_scan();
  EXPECT_TRUE(t.pmd_huge(0));
  EXPECT_FALSE(t.pmd_huge(1));
  t.khugepaged.do_scan();
  EXPECT_TRUE(t.pmd_huge(1));
  EXPECT_EQ(t.khugepaged.full_scans(), 0u);
  t.khugepaged.do_scan();  // the end of the VMA list
  EXPECT_EQ(t.khugepaged.full_scans(), 1u);
  t.expect_values(0, 1024, 0, 1024);
}

TEST(Khugepaged, BackgroundThreadCollapses) {
  Area t(2 * M2);
  t.fill(0, 1024);
  t.enroll();
  t.machine.thp().scan_sleep_millisecs.store(1);
  t.khugepaged.start();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (t.stat(VmEvent::collapse_2M) < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  t.khugepaged.stop();
  EXPECT_FALSE(t.khugepaged.running());
  EXPECT_EQ(t.stat(VmEvent::collapse_2M), 2u);
  t.expect_values(0, 1024, 0, 1024);
}

TEST(Khugepaged, ScanResultNames) {
  EXPECT_STREQ(scan_result_name(SCAN_SUCCEED), "succeeded");
  EXPECT_STREQ(scan_result_name(SCAN_EXCEED_NONE_PTE), "exceed_none_pte");
  EXPECT_STREQ(scan_result_name(SCAN_ALLOC_HUGE_PAGE_FAIL), "alloc_huge_page_failed");
}

}  // namespace
}  // namespace smm
