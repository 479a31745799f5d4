// Classic subscriptions (spec b.1, b.2, a.5): registration rules, callback
// order, start/end pairing, the non-blocking start, [S5] secondary TLBs,
// aging, release and the SRCU lifetime rules.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "recording_subscriber.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "test_support.h"

namespace smm {
namespace {

using test::CallLog;
using test::K4;
using test::M2;
using test::RecordingClassic;
using test::RW;
using test::TestMm;
using Strings = std::vector<std::string>;

TEST(ClassicNotifier, SecondaryTlbsWithStartEndIsRefused) {
  TestMm t;
  CallLog log;
  RecordingClassic both("x", &log, {.start_end = true, .secondary_tlbs = true});
  EXPECT_EQ(mmu_notifier_register(&both.sub, t.mm.get()), -EINVAL);
  EXPECT_EQ(warnings_count(), 1u);
  RecordingClassic again("y", &log, {.start_end = true, .secondary_tlbs = true});
  EXPECT_EQ(mmu_notifier_register(&again.sub, t.mm.get()), -EINVAL);
  EXPECT_EQ(warnings_count(), 1u) << "warns once";
  EXPECT_FALSE(both.sub.hashed);
}

TEST(ClassicNotifier, CallbacksRunNewestFirstAndPairStartWithEnd) {
  TestMm t;
  CallLog log;
  RecordingClassic a("a", &log, {}), b("b", &log, {});
  ASSERT_EQ(mmu_notifier_register(&a.sub, t.mm.get()), 0);
  ASSERT_EQ(mmu_notifier_register(&b.sub, t.mm.get()), 0);
  VirtAddr v = t.map(4 * K4);
  t.write(v, 1);
  log.clear();
  ASSERT_EQ(do_munmap(t.mm.get(), v, 4 * K4), 0);
  EXPECT_EQ(log.ops(), (Strings{"b range_start", "a range_start", "b range_end", "a range_end"}));
  auto calls = log.calls();
  EXPECT_EQ(calls[0].event, MMU_NOTIFY_UNMAP);
  EXPECT_EQ(calls[0].range, (VaRange{v, v + 4 * K4}));
  EXPECT_TRUE(calls[0].blockable);
  mmu_notifier_unregister(&a.sub, t.mm.get());
  mmu_notifier_unregister(&b.sub, t.mm.get());
}

TEST(ClassicNotifier, NonBlockingStartFailureEndsTheOthersAndSkipsTheFailedOne) {
  TestMm t;
  CallLog log;
  RecordingClassic ok("ok", &log, {});
  // A subscriber whose start can fail must have no end op.
  RecordingClassic failing("bad", &log, {.start_end = true});
  MmuNotifierOps no_end = *failing.sub.ops;
  no_end.invalidate_range_end = nullptr;
  failing.sub.ops = &no_end;
  failing.fail_start_with = -EAGAIN;
  ASSERT_EQ(mmu_notifier_register(&ok.sub, t.mm.get()), 0);
  ASSERT_EQ(mmu_notifier_register(&failing.sub, t.mm.get()), 0);
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_UNMAP, 0, t.mm.get(), VirtAddr(0x100000), VirtAddr(0x200000));
  EXPECT_EQ(mmu_notifier_invalidate_range_start_nonblock(&r), -EAGAIN);
  EXPECT_EQ(log.ops(), (Strings{"bad range_start fail", "ok range_start", "ok range_end"}));
  EXPECT_FALSE(log.calls()[1].blockable);
  EXPECT_EQ(warnings_count(), 0u) << "-EAGAIN on a non-blockable range is legal";
  mmu_notifier_unregister(&ok.sub, t.mm.get());
  mmu_notifier_unregister(&failing.sub, t.mm.get());
}

TEST(ClassicNotifier, IllegalStartFailureWarns) {
  TestMm t;
  CallLog log;
  RecordingClassic bad("bad", &log, {});  // has an end op and fails
  bad.fail_start_with = -EBUSY;
  ASSERT_EQ(mmu_notifier_register(&bad.sub, t.mm.get()), 0);
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, t.mm.get(), VirtAddr(0), VirtAddr(K4));
  EXPECT_EQ(mmu_notifier_invalidate_range_start_nonblock(&r), -EBUSY);
  EXPECT_EQ(warnings_count(), 2u) << "not -EAGAIN, and a failing start with an end op";
  mmu_notifier_unregister(&bad.sub, t.mm.get());
}

TEST(ClassicNotifier, SecondaryTlbsAtEveryFlushAndAtEnd) {
  TestMm t;
  CallLog log;
  RecordingClassic iommu("iommu", &log, {.start_end = false, .secondary_tlbs = true});
  ASSERT_EQ(mmu_notifier_register(&iommu.sub, t.mm.get()), 0);
  VirtAddr v = t.map(4 * K4);
  t.write(v, 1);
  log.clear();
  // munmap: the gather's flush at the VMA end, the classic end pass, then
  // the flush that frees the page tables (tlb_finish_mmu).
  ASSERT_EQ(do_munmap(t.mm.get(), v, 4 * K4), 0);
  auto calls = log.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].op, "secondary_tlbs");
  EXPECT_EQ(calls[0].range, (VaRange{v, v + K4})) << "the gather flushed the one present page";
  EXPECT_EQ(calls[1].range, (VaRange{v, v + 4 * K4})) << "the end pass covers the range";
  EXPECT_TRUE(calls[2].range.contains(v.align_down(PMD_SIZE))) << "the freed PTE table";
  // Knob off: mainline behaviour, only the flushes.
  t.machine.knobs().secondary_tlbs_at_end.store(false);
  VirtAddr w = t.map(4 * K4);
  t.write(w, 1);
  log.clear();
  ASSERT_EQ(do_munmap(t.mm.get(), w, 4 * K4), 0);
  calls = log.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].range, (VaRange{w, w + K4}));
  EXPECT_TRUE(calls[1].range.contains(w.align_down(PMD_SIZE)));
  EXPECT_EQ(t.machine.stats().get(VmEvent::secondary_tlb_calls), 5u);
  mmu_notifier_unregister(&iommu.sub, t.mm.get());
}

TEST(ClassicNotifier, CowInvalidatesSecondaryTlbsUnderThePtlOnly) {
  TestMm t;
  CallLog log;
  RecordingClassic iommu("iommu", &log, {.start_end = false, .secondary_tlbs = true});
  ASSERT_EQ(mmu_notifier_register(&iommu.sub, t.mm.get()), 0);
  VirtAddr v = t.map(4 * K4);
  EXPECT_EQ(t.read(v), 0u);  // zero page
  log.clear();
  t.write(v, 1);  // wp_page_copy: clear+flush under the PTL, then only_end
  ASSERT_EQ(log.calls().size(), 1u) << "only the flush under the PTL; the end is only_end";
  EXPECT_EQ(log.calls()[0].range, (VaRange{v, v + K4}));
  mmu_notifier_unregister(&iommu.sub, t.mm.get());
}

TEST(ClassicNotifier, AgingOrsAndFirstNonZero) {
  TestMm t;
  CallLog log;
  RecordingClassic a("a", &log, {.start_end = false, .young = true});
  RecordingClassic b("b", &log, {.start_end = false, .young = true});
  ASSERT_EQ(mmu_notifier_register(&a.sub, t.mm.get()), 0);
  ASSERT_EQ(mmu_notifier_register(&b.sub, t.mm.get()), 0);
  a.young_result = 1;
  EXPECT_EQ(mmu_notifier_clear_flush_young(t.mm.get(), VirtAddr(0), VirtAddr(K4)), 1);
  EXPECT_EQ(log.ops(), (Strings{"b young", "a young"})) << "everyone is asked";
  log.clear();
  b.young_result = 1;
  EXPECT_EQ(mmu_notifier_test_young(t.mm.get(), VirtAddr(0)), 1);
  EXPECT_EQ(log.ops(), Strings{"b test_young"}) << "stops at the first young answer";
  mmu_notifier_unregister(&a.sub, t.mm.get());
  mmu_notifier_unregister(&b.sub, t.mm.get());
}

TEST(ClassicNotifier, ExitCallsReleaseAndUnhashes) {
  TestMm t;
  CallLog log;
  RecordingClassic a("a", &log, {});
  ASSERT_EQ(mmu_notifier_register(&a.sub, t.mm.get()), 0);
  VirtAddr v = t.map(4 * K4);
  t.write(v, 1);
  log.clear();
  MmStruct* mm = t.mm.get();
  mm->mmgrab();  // keep the structure for unregister after exit
  t.mm.reset();  // mmput: exit_mmap
  EXPECT_EQ(log.ops(), Strings{"a release"}) << "release, then the UNMAP reaches nobody";
  EXPECT_FALSE(a.sub.hashed);
  mmu_notifier_unregister(&a.sub, mm);  // unhashed already: only waits
  EXPECT_EQ(log.ops().size(), 1u) << "no second release";
  mm->mmdrop();
}

TEST(ClassicNotifier, UnregisterCallsReleaseAndWaitsForRunningCallbacks) {
  TestMm t;
  CallLog log;
  RecordingClassic slow("slow", &log, {});
  slow.sleep_ns = 30'000'000;  // 30 ms inside range_start
  ASSERT_EQ(mmu_notifier_register(&slow.sub, t.mm.get()), 0);
  VirtAddr v = t.map(4 * K4);
  std::atomic<bool> in_munmap{false};
  std::thread th([&] {
    in_munmap = true;
    EXPECT_EQ(do_munmap(t.mm.get(), v, 4 * K4), 0);
  });
  while (!in_munmap.load() || log.calls().empty()) std::this_thread::yield();
  mmu_notifier_unregister(&slow.sub, t.mm.get());
  // When unregister returns, the callback that was running has finished.
  Strings ops = log.ops();
  ASSERT_GE(ops.size(), 2u);
  EXPECT_EQ(ops[0], "slow range_start");
  th.join();
  size_t after = log.ops().size();
  VirtAddr w = t.map(4 * K4);
  ASSERT_EQ(do_munmap(t.mm.get(), w, 4 * K4), 0);
  EXPECT_EQ(log.ops().size(), after) << "no callback after unregister returned";
}

// get/put with alloc_notifier/free_notifier.
struct Counted {
  static std::atomic<int> allocs, frees;
  MmuNotifier sub;
};
std::atomic<int> Counted::allocs{0}, Counted::frees{0};

Result<MmuNotifier*> alloc_counted(MmStruct*) {
  Counted::allocs++;
  return &(new Counted)->sub;
}
void free_counted(MmuNotifier* sub) {
  Counted::frees++;
  delete reinterpret_cast<Counted*>(sub);
}
const MmuNotifierOps kCountedOps = {.alloc_notifier = &alloc_counted, .free_notifier = &free_counted};

TEST(ClassicNotifier, GetReusesAndLastPutFreesAfterAGracePeriod) {
  TestMm t;
  Counted::allocs = Counted::frees = 0;
  Result<MmuNotifier*> a = mmu_notifier_get(&kCountedOps, t.mm.get());
  Result<MmuNotifier*> b = mmu_notifier_get(&kCountedOps, t.mm.get());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ((*a)->users, 2u);
  EXPECT_EQ(Counted::allocs.load(), 1);
  mmu_notifier_put(*a);
  mmu_notifier_put(*b);
  mmu_notifier_synchronize(t.machine);
  EXPECT_EQ(Counted::frees.load(), 1);
  EXPECT_EQ(t.mm->mm_count.load(), 1) << "the put dropped the mmgrab";
}

TEST(ClassicNotifier, GetOverflowsAtUintMax) {
  TestMm t;
  Counted::allocs = Counted::frees = 0;
  MmuNotifier* sub = *mmu_notifier_get(&kCountedOps, t.mm.get());
  sub->users = UINT32_MAX;
  EXPECT_EQ(mmu_notifier_get(&kCountedOps, t.mm.get()).error(), EOVERFLOW);
  sub->users = 1;
  mmu_notifier_put(sub);
  mmu_notifier_synchronize(t.machine);
  EXPECT_EQ(Counted::frees.load(), 1);
}

TEST(ClassicNotifier, PutBelowZeroWarns) {
  TestMm t;
  Counted::allocs = Counted::frees = 0;
  MmuNotifier* sub = *mmu_notifier_get(&kCountedOps, t.mm.get());
  sub->users = 0;
  mmu_notifier_put(sub);
  EXPECT_EQ(warnings_count(), 1u);
  EXPECT_TRUE(sub->hashed) << "a put at zero does nothing else";
  sub->users = 1;
  mmu_notifier_put(sub);
  mmu_notifier_synchronize(t.machine);
  EXPECT_EQ(Counted::frees.load(), 1);
}

}  // namespace
}  // namespace smm
