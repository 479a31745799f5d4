// The multi-GPU group ([S4] two-pass ordering, the finish pass on -EAGAIN
// and release, the single-pass fallback) and the SVA device ([S5]: the
// secondary-TLB driver stays coherent, the start/end driver is caught).

#include <gtest/gtest.h>

#include <thread>

#include "shadowmm/check/coherence_oracle.h"
#include "shadowmm/devices/gpus.h"
#include "shadowmm/devices/sva.h"
#include "shadowmm/machine/mm_observer.h"
#include "shadowmm/mm/fork.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;
using test::TestMm;
using Strings = std::vector<std::string>;

Strings ops(const GpuGroup& g) {
  Strings out;
  for (const auto& e : g.trace()) out.push_back(e.what);
  return out;
}

// Index of the first trace entry equal to `what`.
size_t pos(const Strings& s, const std::string& what) {
  return static_cast<size_t>(std::find(s.begin(), s.end(), what) - s.begin());
}

constexpr uint64_t kUs = 1000;

TEST(GpuGroup, OnePassFlushesOneGpuAfterTheOther) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(16 * K4);
  GpuGroup g("gpus", t.mm.get(), 3, 50 * kUs, 1);
  ASSERT_EQ(g.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(g.fault(a, 16 * K4, true), 0);
  EXPECT_EQ(g.mapped_pages(), 16u);
  ASSERT_EQ(do_munmap(t.mm.get(), a, 4 * K4), 0);
  EXPECT_EQ(ops(g), (Strings{"invalidate", "submit 0", "complete 0", "submit 1", "complete 1", "submit 2",
                             "complete 2"}));
  auto ev = g.take_events();
  ASSERT_EQ(ev.size(), 1u) << "a group counts once per invalidation";
  EXPECT_EQ(ev[0].event, "unmap");
  EXPECT_EQ(ev[0].start, a);
  EXPECT_EQ(ev[0].end, a + 4 * K4);
  EXPECT_GT(ev[0].wall_ns, 0u);
  EXPECT_EQ(g.mapped_pages(), 12u);
  EXPECT_FALSE(g.has_translation_in({a, a + 4 * K4}));
  EXPECT_EQ(g.stats().invalidations, 1u);
  EXPECT_EQ(t.machine.stats().get(VmEvent::device_invalidations), 1u);
  EXPECT_EQ(oracle.violations(), 0u);
}

TEST(GpuGroup, TwoPassSubmitsToEveryGpuBeforeWaiting) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(16 * K4);
  // A long latency so that the submissions (microseconds) certainly all
  // happen before the first completion.
  GpuGroup g("gpus", t.mm.get(), 4, 20000 * kUs, 2);
  ASSERT_EQ(g.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(g.fault(a, 16 * K4, true), 0);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 8 * K4, MADV_DONTNEED), 0);
  Strings s = ops(g);
  ASSERT_EQ(s.size(), 10u);
  EXPECT_EQ(s[0], "start");
  for (unsigned i = 0; i < 4; i++) {
    EXPECT_LT(pos(s, "submit " + std::to_string(i)), pos(s, "finish"));
    EXPECT_GT(pos(s, "complete " + std::to_string(i)), pos(s, "finish"));
  }
  auto ev = g.take_events();
  ASSERT_EQ(ev.size(), 1u) << "one start/finish pair is one invalidation";
  EXPECT_EQ(ev[0].event, "clear");
  EXPECT_EQ(ev[0].end, a + 8 * K4);
  EXPECT_EQ(g.mapped_pages(), 8u);
  EXPECT_EQ(g.stats().fallbacks, 0u);
  EXPECT_EQ(oracle.violations(), 0u) << "E2 holds after the finish pass";
}

TEST(GpuGroup, TwoGroupsStartInTreeOrderAndFinishInTheSameOrder) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(16 * K4);
  GpuGroup g1("g1", t.mm.get(), 2, 10 * kUs, 2);
  GpuGroup g2("g2", t.mm.get(), 2, 10 * kUs, 2);
  ASSERT_EQ(g2.attach(a + 4 * K4, 12 * K4, false), 0);
  ASSERT_EQ(g1.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(g1.fault(a, 16 * K4, false), 0);
  ASSERT_EQ(g2.fault(a + 4 * K4, 12 * K4, false), 0);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 16 * K4, PROT_READ), 0);
  // Merge the two traces by their global sequence number.
  std::vector<std::pair<uint64_t, std::string>> all;
  for (const auto& e : g1.trace())
    if (e.what == "start" || e.what == "finish") all.emplace_back(e.seq, "g1 " + e.what);
  for (const auto& e : g2.trace())
    if (e.what == "start" || e.what == "finish") all.emplace_back(e.seq, "g2 " + e.what);
  std::sort(all.begin(), all.end());
  Strings order;
  for (auto& [seq, what] : all) order.push_back(what);
  EXPECT_EQ(order, (Strings{"g1 start", "g2 start", "g1 finish", "g2 finish"}))
      << "g1's interval starts lower in the tree";
  EXPECT_EQ(g1.mapped_pages(), 0u);
  EXPECT_EQ(g2.mapped_pages(), 0u);
  EXPECT_EQ(oracle.violations(), 0u);
}

TEST(GpuGroup, FinishPassRunsOnTheEagainPath) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(16 * K4);
  GpuGroup g1("g1", t.mm.get(), 2, 10 * kUs, 2);
  GpuGroup g2("g2", t.mm.get(), 2, 10 * kUs, 2);
  ASSERT_EQ(g1.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(g2.attach(a + 8 * K4, 8 * K4, false), 0);
  ASSERT_EQ(g1.fault(a, 16 * K4, true), 0);
  // g2's driver lock is busy: its non-blocking start must fail.
  std::atomic<bool> held{false}, release{false};
  std::thread holder([&] {
    g2.driver_lock().lock();
    held = true;
    while (!release) std::this_thread::yield();
    g2.driver_lock().unlock();
  });
  while (!held) std::this_thread::yield();
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, t.mm.get(), a, a + 16 * K4);
  EXPECT_EQ(mmu_notifier_invalidate_range_start_nonblock(&r), -EAGAIN);
  release = true;
  holder.join();
  Strings s = ops(g1);
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s.front(), "start");
  EXPECT_NE(pos(s, "finish"), s.size()) << "the finish pass ran although the start pass failed";
  EXPECT_TRUE(ops(g2).empty());
  EXPECT_EQ(g1.mapped_pages(), 0u) << "g1 completed its invalidation";
  IntervalNotifierState st = mmu_interval_notifier_state(t.mm.get());
  EXPECT_EQ(st.active_invalidate_ranges, 0u) << "inv_end ran: the caller calls no range end";
  EXPECT_EQ(st.invalidate_seq % 2, 0u);
  std::vector<OracleViolation> vs = oracle.violation_list();
  EXPECT_EQ(vs.size(), 0u) << vs[0].invariant << " " << vs[0].device << ": " << vs[0].detail;
}

TEST(GpuGroup, ReleaseAtExitRunsBothPasses) {
  TestMm t;
  VirtAddr a = t.map(16 * K4);
  GpuGroup g("gpus", t.mm.get(), 2, 10 * kUs, 2);
  ASSERT_EQ(g.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(g.fault(a, 16 * K4, true), 0);
  MmStruct* mm = t.mm.get();
  mm->mmgrab();
  t.mm.reset();  // exit: release, then unmap
  auto ev = g.take_events();
  ASSERT_GE(ev.size(), 1u);
  EXPECT_EQ(ev[0].event, "release");
  EXPECT_EQ(ev[0].start, VirtAddr(0));
  Strings s = ops(g);
  EXPECT_EQ(s.front(), "start");
  EXPECT_LT(pos(s, "start"), pos(s, "finish"));
  EXPECT_EQ(g.mapped_pages(), 0u);
  uint64_t v;
  EXPECT_EQ(g.read(a, &v), -EINVAL);
  g.detach();
  mm->mmdrop();
}

TEST(GpuGroup, NoFinishObjectFallsBackToOnePass) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(16 * K4);
  GpuGroup g("gpus", t.mm.get(), 2, 10 * kUs, 2, /*finish_slots=*/0);
  ASSERT_EQ(g.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(g.fault(a, 16 * K4, true), 0);
  ASSERT_EQ(do_munmap(t.mm.get(), a, 16 * K4), 0);
  Strings s = ops(g);
  EXPECT_EQ(s.front(), "start");
  EXPECT_EQ(pos(s, "finish"), s.size()) << "no finish object was handed back";
  EXPECT_NE(pos(s, "fallback"), s.size());
  EXPECT_NE(pos(s, "complete 0"), s.size());
  EXPECT_NE(pos(s, "complete 1"), s.size());
  EXPECT_EQ(g.stats().fallbacks, 1u);
  EXPECT_EQ(g.stats().invalidations, 1u);
  EXPECT_EQ(g.mapped_pages(), 0u);
  EXPECT_EQ(oracle.violations(), 0u) << "E2 holds when start returns without a finish";
}

TEST(GpuGroup, EveryGpuHoldsTheFaultedTranslations) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(8 * K4);
  GpuGroup g("gpus", t.mm.get(), 4, 0, 2);
  ASSERT_EQ(g.attach(a, 8 * K4, false), 0);
  ASSERT_EQ(g.write(a + K4, 77), 0);
  EXPECT_EQ(t.read(a + K4), 77u);
  uint64_t n = 0;
  g.for_each_translation([&](const DevTranslation&) { n++; });
  EXPECT_EQ(n, 4u) << "one translation per GPU";
  EXPECT_EQ(g.mapped_pages(), 1u) << "mapped_pages counts one GPU";
  EXPECT_EQ(oracle.violations(), 0u);
}

// ---- sva ----

// A CPU write replaces the zero page the device was reading (wp_page_copy:
// clear and flush under the PTL, then the new PTE).
TEST(SvaDevice, ZeroPageReplacementUnderBothDrivers) {
  for (Sva::Callback cb : {Sva::Callback::kSecondaryTlbs, Sva::Callback::kStartEnd}) {
    SCOPED_TRACE(cb == Sva::Callback::kSecondaryTlbs ? "secondary_tlbs" : "start_end");
    TestMm t;
    CoherenceOracle oracle(t.machine);
    VirtAddr a = t.map(4 * K4);
    Sva iommu("iommu", t.mm.get(), cb, /*walk_period_ns=*/0);
    ASSERT_EQ(iommu.attach(a, 4 * K4, false), 0);
    uint64_t v = 1;
    ASSERT_EQ(iommu.read(a, &v), 0) << "a page request maps the zero page";
    EXPECT_EQ(v, 0u);
    EXPECT_EQ(iommu.mapped_pages(), 1u);
    iommu.take_events();
    t.write(a, 42);
    std::vector<OracleViolation> vs = oracle.violation_list();
    if (cb == Sva::Callback::kStartEnd) {
      // The walker refilled the zero page after start: caught at the new PTE.
      ASSERT_GE(vs.size(), 1u);
      EXPECT_EQ(vs[0].invariant, "E6");
      EXPECT_EQ(vs[0].device, "iommu");
      EXPECT_EQ(vs[0].address, a);
      EXPECT_NE(vs[0].detail.find("still caches pfn"), std::string::npos) << vs[0].detail;
      continue;
    }
    auto ev = iommu.take_events();
    ASSERT_GE(ev.size(), 1u);
    EXPECT_EQ(ev[0].event, "secondary_tlbs");
    EXPECT_EQ(ev[0].start, a);
    EXPECT_EQ(ev[0].end, a + K4);
    EXPECT_FALSE(ev[0].blockable);
    ASSERT_EQ(iommu.read(a, &v), 0);
    EXPECT_EQ(v, 42u) << "the walker refilled the new page";
    EXPECT_TRUE(vs.empty());
  }
}

TEST(SvaDevice, StartEndDriverKeepsAFrameAliveAcrossCowAfterFork) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(4 * K4);
  t.write(a, 1);
  Result<MmStruct*> child = dup_mm(t.mm.get(), "child");
  ASSERT_TRUE(child.ok());
  MmRef child_ref(*child);
  Sva iommu("iommu", t.mm.get(), Sva::Callback::kStartEnd, 0);
  ASSERT_EQ(iommu.attach(a, 4 * K4, false), 0);
  uint64_t v;
  ASSERT_EQ(iommu.read(a, &v), 0);
  EXPECT_EQ(v, 1u);
  t.write(a, 2);  // COW in the parent: the PTE moves to a copy
  ASSERT_GE(oracle.violations(), 1u);
  EXPECT_EQ(oracle.violation_list()[0].invariant, "E6");
}

TEST(SvaDevice, StartEndDriverIsCaughtInsideAHugeReplacement) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  Sva iommu("iommu", t.mm.get(), Sva::Callback::kStartEnd, 0);
  ASSERT_EQ(iommu.attach(a, M2, false), 0);
  uint64_t v;
  ASSERT_EQ(iommu.read(a + 2 * K4, &v), 0) << "a page request maps the huge zero page";
  t.write(a, 1);  // the huge zero PMD is replaced by a THP
  std::vector<OracleViolation> vs = oracle.violation_list();
  ASSERT_GE(vs.size(), 1u);
  EXPECT_EQ(vs[0].invariant, "E6");
  EXPECT_EQ(vs[0].address, a + 2 * K4) << "found at its offset inside the 2 MiB entry";
}

// The device uses its IOTLB right after the CPU TLB flush of a COW (under
// the PTL, before range end): the start_end driver still has the stale
// entry then (E2); the secondary-TLB driver dropped it at the flush.
class UseIotlbAtFlush : public MmObserver {
 public:
  UseIotlbAtFlush(Machine& m, CoherenceOracle& o, Sva& dev, VirtAddr a) : m_(m), o_(o), dev_(dev), a_(a) {
    m_.add_observer(this);
  }
  ~UseIotlbAtFlush() override { m_.remove_observer(this); }
  void on_tlb_flush(MmStruct*, VirtAddr start, VirtAddr end) override {
    if (start > a_ || end <= a_) return;
    if (std::optional<DevTranslation> t = dev_.cached_translation(a_)) o_.on_device_access(&dev_, *t, false);
  }

 private:
  Machine& m_;
  CoherenceOracle& o_;
  Sva& dev_;
  VirtAddr a_;
};

TEST(SvaDevice, UsingAnIotlbEntryAfterItsFlushIsE2) {
  for (Sva::Callback cb : {Sva::Callback::kSecondaryTlbs, Sva::Callback::kStartEnd}) {
    TestMm t;
    CoherenceOracle oracle(t.machine);
    VirtAddr a = t.map(4 * K4);
    Sva iommu("iommu", t.mm.get(), cb, 0);
    ASSERT_EQ(iommu.attach(a, 4 * K4, false), 0);
    uint64_t v;
    ASSERT_EQ(iommu.read(a, &v), 0);
    UseIotlbAtFlush use(t.machine, oracle, iommu, a);
    t.write(a, 7);  // zero page -> new page: clear, flush, new PTE
    std::vector<std::string> inv;
    for (const OracleViolation& x : oracle.violation_list()) inv.push_back(x.invariant);
    if (cb == Sva::Callback::kSecondaryTlbs) {
      EXPECT_TRUE(inv.empty());
    } else {
      ASSERT_FALSE(inv.empty());
      EXPECT_EQ(inv[0], "E2");
    }
  }
}

TEST(SvaDevice, SecondaryTlbsDriverFlushesBeforeFramesAreFreed) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(64 * K4);
  Sva iommu("iommu", t.mm.get(), Sva::Callback::kSecondaryTlbs, 0);
  ASSERT_EQ(iommu.attach(a, 64 * K4, false), 0);
  ASSERT_EQ(iommu.fault(a, 64 * K4, true), 0);
  EXPECT_EQ(iommu.mapped_pages(), 64u);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 32 * K4, MADV_DONTNEED), 0);
  EXPECT_EQ(iommu.mapped_pages(), 32u);
  iommu.walk_working_set();  // the walker finds the zapped pages gone
  EXPECT_EQ(iommu.mapped_pages(), 32u);
  ASSERT_EQ(do_munmap(t.mm.get(), a, 64 * K4), 0);
  EXPECT_EQ(iommu.mapped_pages(), 0u);
  EXPECT_EQ(iommu.fault(a, K4, false), -EFAULT);
  EXPECT_EQ(oracle.violations(), 0u);
}

TEST(SvaDevice, WriteToAReadOnlyMappingIsEPERM) {
  TestMm t;
  VirtAddr a = t.map(4 * K4, PROT_READ);
  Sva iommu("iommu", t.mm.get(), Sva::Callback::kSecondaryTlbs, 0);
  ASSERT_EQ(iommu.attach(a, 4 * K4, false), 0);
  EXPECT_EQ(iommu.write(a, 1), -EPERM);
  EXPECT_EQ(iommu.attach(a, K4, false), -EBUSY);
  EXPECT_EQ(iommu.write(a + 1, 1), -EINVAL);
  Sva other("other", t.mm.get(), Sva::Callback::kSecondaryTlbs, 0);
  EXPECT_EQ(other.attach(a, K4, true), -EINVAL) << "BLOCK_THP is for interval notifiers";
}

}  // namespace
}  // namespace smm
