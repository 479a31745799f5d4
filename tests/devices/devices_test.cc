// The reference devices (mirror, kvm) under the coherence oracle, and the
// oracle catching each invariant with a deliberately broken driver.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "recording_subscriber.h"
#include "shadowmm/check/coherence_oracle.h"
#include "shadowmm/devices/device_page_table.h"
#include "shadowmm/devices/kvm.h"
#include "shadowmm/devices/mirror.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "test_support.h"

namespace smm {
namespace {

using test::G1;
using test::K4;
using test::M1;
using test::M2;
using test::RW;
using test::TestMm;

std::vector<std::string> invariants(const CoherenceOracle& o) {
  std::vector<std::string> out;
  for (const OracleViolation& v : o.violation_list()) out.push_back(v.invariant);
  return out;
}

TEST(MirrorDevice, FaultsInAndDropsOnInvalidation) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(16 * K4);
  Mirror dev("gpu0", t.mm.get(), 0);
  ASSERT_EQ(dev.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(dev.fault(a, 16 * K4, true), 0);
  EXPECT_EQ(dev.mapped_pages(), 16u);
  ASSERT_EQ(dev.write(a + K4, 99), 0);
  EXPECT_EQ(t.read(a + K4), 99u) << "the device wrote the page the CPU maps";
  t.write(a + 2 * K4, 5);
  uint64_t v = 0;
  ASSERT_EQ(dev.read(a + 2 * K4, &v), 0);
  EXPECT_EQ(v, 5u);
  ASSERT_EQ(do_munmap(t.mm.get(), a + 4 * K4, 4 * K4), 0);
  EXPECT_EQ(dev.mapped_pages(), 12u);
  auto ev = dev.take_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].event, "unmap");
  EXPECT_EQ(ev[0].start, a + 4 * K4);
  EXPECT_EQ(ev[0].end, a + 8 * K4);
  EXPECT_EQ(oracle.violations(), 0u);
  EXPECT_EQ(dev.fault(a + 32 * K4, K4, false), -EINVAL) << "outside the attached interval";
  EXPECT_EQ(dev.fault(a + 1, K4, false), -EINVAL);
  EXPECT_EQ(dev.fault(a + 4 * K4, K4, false), -EFAULT) << "no VMA there any more";
  ASSERT_EQ(dev.detach(), 0);
}

TEST(MirrorDevice, AThpIsMirroredPageByPageLikeTestHmm) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  Mirror dev("gpu0", t.mm.get(), 0);
  ASSERT_EQ(dev.attach(a, M2, false), 0);
  ASSERT_EQ(dev.fault(a, M2, true), 0);
  EXPECT_EQ(dev.mapped_pages(), 512u);
  EXPECT_EQ(dev.cached_translation(a + M1)->size, K4) << "test_hmm stores each pfn of the chunk";
  EXPECT_EQ(dev.cached_translation(a + M1)->pfn, dev.cached_translation(a)->pfn + M1 / K4);
  EXPECT_EQ(oracle.violations(), 0u);
}

TEST(MirrorDevice, ExitedMmIsEINVAL) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  Mirror dev("gpu0", t.mm.get(), 0);
  ASSERT_EQ(dev.attach(a, 4 * K4, false), 0);
  MmStruct* mm = t.mm.get();
  mm->mmgrab();
  t.mm.reset();
  EXPECT_EQ(dev.fault(a, K4, false), -EINVAL);
  uint64_t v;
  EXPECT_EQ(dev.read(a, &v), -EINVAL);
  auto ev = dev.take_events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].event, "release");
  EXPECT_EQ(ev[1].event, "unmap");
  dev.detach();
  mm->mmdrop();
}

TEST(KvmDevice, ZapsOnStartAndRefaults) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(16 * K4);
  Kvm vm("vm", t.mm.get());
  ASSERT_EQ(vm.attach(a, 16 * K4, false), 0);
  ASSERT_EQ(vm.fault(a, 16 * K4, true), 0);
  EXPECT_EQ(vm.mapped_pages(), 16u);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 8 * K4, PROT_READ), 0);
  EXPECT_EQ(vm.mapped_pages(), 8u);
  auto ev = vm.take_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].event, "protection_vma");
  EXPECT_EQ(vm.write(a, 1), -EFAULT) << "read-only now";
  uint64_t v;
  ASSERT_EQ(vm.read(a, &v), 0);
  EXPECT_EQ(oracle.violations(), 0u);
  ASSERT_EQ(vm.detach(), 0);
}

TEST(KvmDevice, AgingGoesThroughTheNotifier) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  Kvm vm("vm", t.mm.get());
  ASSERT_EQ(vm.attach(a, 4 * K4, false), 0);
  ASSERT_EQ(vm.fault(a, K4, false), 0);
  EXPECT_EQ(mmu_notifier_test_young(t.mm.get(), a), 1);
  EXPECT_EQ(mmu_notifier_clear_flush_young(t.mm.get(), a, a + 4 * K4), 1);
  EXPECT_EQ(mmu_notifier_test_young(t.mm.get(), a), 0);
  ASSERT_EQ(vm.detach(), 0);
}

// [S3] A dax 1 GiB PUD mapping under mprotect: notified at PUD level, missed
// at PMD level, where the oracle reports it.
TEST(Oracle, PmdLevelMprotectMissesADaxPudAndTheOracleSeesIt) {
  for (auto level : {MmKnobs::NotifyLevel::kPud, MmKnobs::NotifyLevel::kPmd}) {
    TestMm t;
    CoherenceOracle oracle(t.machine);
    t.machine.knobs().mprotect_notify_level.store(level);
    VirtAddr a = t.map(G1, RW, MAP_SHARED, MmapOpts{.dax = true, .align = G1});
    Mirror dev("gpu0", t.mm.get(), 0);
    ASSERT_EQ(dev.attach(a, G1, false), 0);
    ASSERT_EQ(dev.fault(a, 64 * K4, true), 0);
    ASSERT_EQ(do_mprotect(t.mm.get(), a, G1, PROT_READ), 0);
    auto ev = dev.take_events();
    if (level == MmKnobs::NotifyLevel::kPud) {
      ASSERT_EQ(ev.size(), 1u);
      EXPECT_EQ(ev[0].event, "protection_vma");
      EXPECT_EQ(dev.mapped_pages(), 0u);
      EXPECT_EQ(oracle.violations(), 0u);
    } else {
      EXPECT_TRUE(ev.empty()) << "the PUD leaf changed silently";
      EXPECT_EQ(dev.mapped_pages(), 64u) << "the device kept its writable translation";
      ASSERT_EQ(dev.write(a, 7), 0);  // writes through the stale translation
      EXPECT_EQ(invariants(oracle), (std::vector<std::string>{"E1", "E2"}));
      OracleViolation v = oracle.violation_list()[0];
      EXPECT_EQ(v.operation, "mprotect");
      EXPECT_EQ(v.address, a);
    }
    dev.detach();
  }
}

// A broken interval driver for E2/E3/E4: it can skip dropping translations
// and program whatever it is told.
class BrokenDevice : public SecondaryMmu {
 public:
  BrokenDevice(MmStruct* mm) : SecondaryMmu("broken", "broken", mm) { sub.priv = this; }
  ~BrokenDevice() override { detach(); }
  int attach(VirtAddr start, uint64_t len, bool) override {
    int r = mmu_interval_notifier_insert(&sub, mm(), start, len, &kOps);
    if (!r) report_attached();
    attached_ = !r;
    return r;
  }
  int detach() override {
    if (!attached_) return 0;
    mmu_interval_notifier_remove(&sub);
    report_detached();
    attached_ = false;
    return 0;
  }
  int fault(VirtAddr, uint64_t, bool) override { return -EINVAL; }
  int read(VirtAddr, uint64_t*) override { return -EINVAL; }
  int write(VirtAddr, uint64_t) override { return -EINVAL; }
  std::vector<const void*> subscriptions() const override { return {&sub}; }

  void program(VirtAddr a, Pfn pfn, bool writable, uint64_t seq) {
    DevTranslation t{a, K4, pfn, machine().mem().generation(pfn), writable};
    report_interval_establish(&sub, seq, t);
    pt.insert(t);
  }

  void with_table(const std::function<void(const DevicePageTable&)>& fn) override { fn(pt); }

  MmuIntervalNotifier sub;
  DevicePageTable pt;  // single-threaded test: no lock
  bool drop = true;
  bool attached_ = false;
  std::function<void()> in_callback;

 private:
  static bool invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* r, uint64_t seq) {
    auto* d = static_cast<BrokenDevice*>(s->priv);
    mmu_interval_set_seq(s, seq);
    if (d->drop) d->pt.erase_range(r->range());
    if (d->in_callback) d->in_callback();
    return true;
  }
  static constexpr MmuIntervalNotifierOps kOps = {.invalidate = &BrokenDevice::invalidate};
};

Pfn cpu_pfn(TestMm& t, VirtAddr a) {
  PtSlot s = pt_lookup(t.mm.get(), a, PTE_LEVEL);
  return s.get().pfn();
}

// A broken interval driver on 4 pages, the first one written by the CPU.
class OracleBrokenDriver : public ::testing::Test {
 protected:
  void SetUp() override {
    a = t.map(4 * K4);
    t.write(a, 1);
    ASSERT_EQ(dev.attach(a, 4 * K4, false), 0);
  }
  TestMm t;
  CoherenceOracle oracle{t.machine};
  VirtAddr a;
  BrokenDevice dev{t.mm.get()};
};

TEST_F(OracleBrokenDriver, E2ATranslationKeptAfterTheCallbackReturned) {
  dev.program(a, cpu_pfn(t, a), true, mmu_interval_read_begin(&dev.sub));
  EXPECT_EQ(oracle.violations(), 0u);
  dev.drop = false;
  ASSERT_EQ(do_madvise(t.mm.get(), a, 4 * K4, MADV_DONTNEED), 0);
  ASSERT_EQ(invariants(oracle).size(), 2u);
  EXPECT_EQ(invariants(oracle)[0], "E2");
  EXPECT_EQ(invariants(oracle)[1], "E5") << "and the page was freed under it";
  dev.pt.clear();
}

TEST_F(OracleBrokenDriver, E3ProgrammingWithAStaleSeq) {
  uint64_t seq = mmu_interval_read_begin(&dev.sub);
  t.write(a + K4, 2);  // no invalidation: still valid
  ASSERT_EQ(do_mprotect(t.mm.get(), a + 2 * K4, K4, PROT_READ), 0);  // one that moved the seq
  dev.program(a, cpu_pfn(t, a), true, seq);  // no read_retry: stale seq
  EXPECT_EQ(invariants(oracle), std::vector<std::string>{"E3"});
}

TEST_F(OracleBrokenDriver, E4ProgrammingWhatTheCpuDoesNotMap) {
  t.write(a + K4, 2);
  dev.program(a, cpu_pfn(t, a + K4), true, mmu_interval_read_begin(&dev.sub));
  EXPECT_EQ(invariants(oracle), std::vector<std::string>{"E4"});
  dev.pt.clear();
}

TEST_F(OracleBrokenDriver, E7TranslationKeptOrEstablishedAfterRelease) {
  dev.program(a, cpu_pfn(t, a), true, mmu_interval_read_begin(&dev.sub));
  EXPECT_EQ(oracle.violations(), 0u);
  dev.drop = false;  // its RELEASE invalidation keeps everything
  MmStruct* mm = t.mm.get();
  mm->mmgrab();
  t.mm.reset();
  std::vector<std::string> inv = invariants(oracle);
  ASSERT_FALSE(inv.empty());
  EXPECT_EQ(inv[0], "E2") << "the RELEASE callback returned holding a translation";
  EXPECT_NE(std::find(inv.begin(), inv.end(), "E7"), inv.end());
  dev.pt.clear();
  dev.detach();
  mm->mmdrop();
}

TEST_F(OracleBrokenDriver, E8SubscriptionSeqMustBeOdd) {
  uint64_t seq = mmu_interval_read_begin(&dev.sub);
  mmu_interval_set_seq(&dev.sub, seq + 1);  // a driver corrupting its seq
  dev.program(a, cpu_pfn(t, a), true, seq + 1);
  EXPECT_EQ(invariants(oracle), std::vector<std::string>{"E8"});
  mmu_interval_set_seq(&dev.sub, seq);
  dev.pt.clear();
}

TEST(Oracle, E10SleepingInANonBlockableCallback) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  test::CallLog log;
  test::RecordingInterval s("s", &log);
  s.sleep_ns = 1000;
  ASSERT_EQ(mmu_interval_notifier_insert(&s.sub, t.mm.get(), VirtAddr(0x100000), M1, s.ops()), 0);
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_UNMAP, 0, t.mm.get(), VirtAddr(0x100000), VirtAddr(0x101000));
  ASSERT_EQ(mmu_notifier_invalidate_range_start_nonblock(&r), 0);
  mmu_notifier_invalidate_range_end(&r);
  EXPECT_EQ(invariants(oracle), std::vector<std::string>{"E10"});
  mmu_interval_notifier_remove(&s.sub);
}

TEST(Oracle, E10ReadBeginFromACallback) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(4 * K4);
  BrokenDevice dev(t.mm.get()), other(t.mm.get());
  ASSERT_EQ(dev.attach(a, 4 * K4, false), 0);
  ASSERT_EQ(other.attach(a + 64 * K4, K4, false), 0);
  // read_begin from inside a callback: on the subscription being invalidated
  // it would wait for its own invalidation forever (a deadlock in Linux);
  // even on another one it breaks the rule. The oracle reports it.
  dev.in_callback = [&] {
    dev.in_callback = nullptr;
    EXPECT_EQ(mmu_interval_read_begin(&other.sub) & 1, 1u);
  };
  t.write(a, 1);
  ASSERT_EQ(do_munmap(t.mm.get(), a + K4, K4), 0);
  EXPECT_EQ(invariants(oracle), std::vector<std::string>{"E10"});
}

TEST(Oracle, CorrectDevicesStayCleanAcrossEveryOperation) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  t.machine.thp().enabled.store(ThpEnabled::kAlways);
  VirtAddr a = t.map(8 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  Mirror gpu("gpu0", t.mm.get(), 0);
  Kvm vm("vm", t.mm.get());
  ASSERT_EQ(gpu.attach(a, 8 * M2, false), 0);
  ASSERT_EQ(vm.attach(a, 8 * M2, false), 0);
  // Read faults: part of the range goes read-only below.
  auto touch_all = [&] {
    ASSERT_EQ(gpu.fault(a, 8 * M2, false), 0);
    ASSERT_EQ(vm.fault(a, 64 * K4, false), 0);
  };
  ASSERT_EQ(gpu.fault(a, 8 * M2, true), 0);
  touch_all();
  ASSERT_EQ(do_mprotect(t.mm.get(), a + M1, 3 * M2, PROT_READ), 0);
  touch_all();
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 8 * M2, RW), 0);
  touch_all();
  ASSERT_EQ(do_madvise(t.mm.get(), a + 2 * M2, M2 + 64 * K4, MADV_DONTNEED), 0);
  touch_all();
  ASSERT_EQ(do_madvise(t.mm.get(), a, 4 * M2, MADV_PAGEOUT), 0);
  touch_all();
  ASSERT_EQ(do_munmap(t.mm.get(), a + 5 * M2, M1), 0);
  for (uint64_t off = 0; off < 5 * M2; off += 64 * K4) {
    uint64_t v = 0;
    ASSERT_EQ(gpu.read(a + off, &v), 0);
    ASSERT_EQ(vm.write(a + off % (64 * K4), v), 0);
    ASSERT_EQ(gpu.write(a + off, v + 1), 0);
    EXPECT_EQ(t.read(a + off), v + 1);
  }
  EXPECT_EQ(oracle.violations(), 0u) << oracle.violation_list()[0].detail;
  gpu.detach();
  vm.detach();
}

}  // namespace
}  // namespace smm

namespace smm {
namespace {

TEST(Oracle, ThpInvariantWatchesEveryNewLargeMapping) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  t.machine.thp().set_size(4, ThpSizeSetting::kAlways);  // 64K mTHP
  VirtAddr a = t.map(4 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  ASSERT_EQ(do_madvise(t.mm.get(), a + M2, M2, MADV_NOHUGEPAGE), 0);
  t.write(a, 1);       // a PMD THP in a VM_HUGEPAGE VMA
  t.write(a + M2, 2);  // VM_NOHUGEPAGE: 4 KiB
  t.write(a + 2 * M2, 3);  // 64K mTHP
  EXPECT_EQ(oracle.violations(), 0u);
  // A path that ignored VM_NOHUGEPAGE would report this:
  vm_flags_t flags;
  {
    ReadLocker l(t.mm->mmap_lock);
    VmArea* vma = t.mm->mm_mt.lookup(a + M2);
    ASSERT_NE(vma, nullptr);
    flags = vma->vm_flags;
  }
  EXPECT_TRUE(flags & VM_NOHUGEPAGE);
  oracle.on_large_folio_mapped(t.mm.get(), flags, a + M2, 4);
  std::vector<OracleViolation> v = oracle.violation_list();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].invariant, "THP");
  EXPECT_EQ(v[0].address, a + M2);
  EXPECT_NE(v[0].detail.find("64K folio"), std::string::npos) << v[0].detail;
}

}  // namespace
}  // namespace smm

namespace smm {
namespace {

TEST(Oracle, ValueCheckAcrossACollapseWindow) {
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  for (uint64_t i = 0; i < 16; i++) t.write(a + i * K4, 100 + i);
  PageTable* table;
  {
    ReadLocker l(t.mm->mmap_lock);
    PtSlot pmd = pt_lookup(t.mm.get(), a, PMD_LEVEL);
    ASSERT_TRUE(pmd.get().is_table());
    table = pmd.get().table();
  }
  // A window in which nothing changes: clean.
  oracle.on_pmd_table_detached(t.mm.get(), a, table, {a, a + 16 * K4});
  oracle.on_pmd_table_reattached(t.mm.get(), a);
  EXPECT_EQ(oracle.violations(), 0u);
  // A collapse that maps a page without its last write: VALUE.
  oracle.on_pmd_table_detached(t.mm.get(), a, table, {a, a + 16 * K4});
  t.machine.mem().value(cpu_pfn(t, a + 5 * K4)).store(0, std::memory_order_relaxed);
  oracle.on_pmd_table_reattached(t.mm.get(), a);
  std::vector<OracleViolation> v = oracle.violation_list();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].invariant, "VALUE");
  EXPECT_EQ(v[0].address, a + 5 * K4);
  EXPECT_NE(v[0].detail.find("0x69"), std::string::npos) << v[0].detail;
}

}  // namespace
}  // namespace smm

namespace smm {
namespace {

TEST(MirrorDevice, ItsOwnMigrationIsNotAnInvalidation) {
  // test_hmm ignores MIGRATE ranges whose owner is the device itself (it
  // updates its table as part of the migration); spec E9 excuses them.
  TestMm t;
  CoherenceOracle oracle(t.machine);
  VirtAddr a = t.map(4 * K4);
  Mirror dev("gpu0", t.mm.get(), 0);
  ASSERT_EQ(dev.attach(a, 4 * K4, false), 0);
  ASSERT_EQ(dev.fault(a, 4 * K4, true), 0);
  MmuNotifierRange r;
  mmu_notifier_range_init_owner(&r, MMU_NOTIFY_MIGRATE, 0, t.mm.get(), a, a + 4 * K4, &dev);
  mmu_notifier_invalidate_range_start(&r);
  mmu_notifier_invalidate_range_end(&r);
  EXPECT_EQ(dev.mapped_pages(), 4u);
  EXPECT_EQ(oracle.violations(), 0u);
  mmu_notifier_range_init_owner(&r, MMU_NOTIFY_MIGRATE, 0, t.mm.get(), a, a + 4 * K4, nullptr);
  mmu_notifier_invalidate_range_start(&r);
  mmu_notifier_invalidate_range_end(&r);
  EXPECT_EQ(dev.mapped_pages(), 0u) << "someone else's migration";
  EXPECT_EQ(oracle.violations(), 0u);
}

}  // namespace
}  // namespace smm
