// Interval notifiers: the sequence protocol (spec c.1-c.4), deferred insert
// and remove, read_begin's wait, every errno and warning, [S4] two-pass
// ordering (also on the -EAGAIN and release paths), and release at exit.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "recording_subscriber.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap_lock.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "test_support.h"

namespace smm {
namespace {

using test::CallLog;
using test::K4;
using test::M1;
using test::RecordingClassic;
using test::RecordingInterval;
using test::TestMm;
using Strings = std::vector<std::string>;

constexpr uint64_t kA = 0x100000;  // subscriptions sit at fixed addresses
constexpr uint64_t kB = 0x400000;

// An invalidation held open by the test.
class OpenRange {
 public:
  OpenRange(MmStruct* mm, uint64_t start, uint64_t end, MmuNotifyEvent ev = MMU_NOTIFY_CLEAR) {
    mmu_notifier_range_init(&r_, ev, 0, mm, VirtAddr(start), VirtAddr(end));
    mmu_notifier_invalidate_range_start(&r_);
  }
  ~OpenRange() { end(); }
  void end() {
    if (open_) mmu_notifier_invalidate_range_end(&r_);
    open_ = false;
  }

 private:
  MmuNotifierRange r_;
  bool open_ = true;
};

void insert(TestMm& t, RecordingInterval& s, uint64_t start, uint64_t len) {
  ASSERT_EQ(mmu_interval_notifier_insert(&s.sub, t.mm.get(), VirtAddr(start), len, s.ops()), 0);
}

IntervalNotifierState state(TestMm& t) { return mmu_interval_notifier_state(t.mm.get()); }

TEST(IntervalNotifier, SeqStartsAtTwoAndANewSubscriptionIsOneBelow) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log);
  insert(t, a, kA, M1);
  EXPECT_EQ(state(t).invalidate_seq, 2u);
  EXPECT_EQ(a.sub.invalidate_seq.load(), 1u);
  EXPECT_EQ(state(t).in_tree, 1u);
  EXPECT_EQ(mmu_interval_read_begin(&a.sub), 1u) << "not hit: no wait";
  mmu_interval_notifier_remove(&a.sub);
}

TEST(IntervalNotifier, AHitMakesTheSeqOddUntilTheLastActiveInvalidationEnds) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log);
  insert(t, a, kA, M1);
  uint64_t seq = mmu_interval_read_begin(&a.sub);
  {
    OpenRange hit(t.mm.get(), kA, kA + K4);
    EXPECT_EQ(state(t).invalidate_seq, 3u);
    ASSERT_EQ(log.calls().size(), 1u);
    EXPECT_EQ(log.calls()[0].seq, 3u) << "cur_seq is the odd mm seq";
    EXPECT_EQ(log.calls()[0].range, (VaRange{VirtAddr(kA), VirtAddr(kA + K4)}));
    EXPECT_TRUE(mmu_interval_read_retry(&a.sub, seq));
    EXPECT_TRUE(mmu_interval_check_retry(&a.sub, seq));
    OpenRange other(t.mm.get(), kB, kB + K4);  // a second, non-hitting one
    hit.end();
    EXPECT_EQ(state(t).invalidate_seq, 3u) << "still odd: one invalidation is active";
    EXPECT_EQ(state(t).active_invalidate_ranges, 1u);
  }
  EXPECT_EQ(state(t).invalidate_seq, 4u);
  EXPECT_EQ(state(t).active_invalidate_ranges, 0u);
  mmu_interval_notifier_remove(&a.sub);
}

TEST(IntervalNotifier, ReadBeginWaitsForTheLastActiveInvalidation) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log);
  insert(t, a, kA, M1);
  auto hit = std::make_unique<OpenRange>(t.mm.get(), kA, kA + K4);
  auto other = std::make_unique<OpenRange>(t.mm.get(), kB, kB + K4);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> got{0};
  std::thread reader([&] {
    got = mmu_interval_read_begin(&a.sub);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(done.load());
  hit.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(done.load()) << "waits for the last one, not the one that hit";
  other.reset();
  reader.join();
  EXPECT_EQ(got.load(), 3u);
  EXPECT_FALSE(mmu_interval_read_retry(&a.sub, got.load()));
  mmu_interval_notifier_remove(&a.sub);
}

TEST(IntervalNotifier, InsertDuringAHittingInvalidationIsDeferred) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log), b("b", &log);
  insert(t, a, kA, M1);
  {
    OpenRange hit(t.mm.get(), kA, kA + K4);
    insert(t, b, kA, M1);
    EXPECT_EQ(state(t).deferred, 1u);
    EXPECT_EQ(state(t).in_tree, 1u);
    EXPECT_FALSE(b.sub.interval_tree.in_tree());
    EXPECT_EQ(b.sub.invalidate_seq.load(), 3u) << "equal to the mm seq: read_begin will wait";
  }
  EXPECT_EQ(state(t).deferred, 0u);
  EXPECT_EQ(state(t).in_tree, 2u);
  EXPECT_TRUE(b.sub.interval_tree.in_tree());
  EXPECT_EQ(mmu_interval_read_begin(&b.sub), 3u);
  mmu_interval_notifier_remove(&a.sub);
  mmu_interval_notifier_remove(&b.sub);
}

TEST(IntervalNotifier, InsertDuringANonHittingInvalidationForcesTheSeqOdd) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log), b("b", &log);
  insert(t, a, kA, M1);
  {
    OpenRange miss(t.mm.get(), kB, kB + K4);
    EXPECT_EQ(state(t).invalidate_seq, 2u);
    insert(t, b, kB, M1);
    EXPECT_EQ(state(t).invalidate_seq, 3u) << "the in-flight invalidation may cover b unseen";
    EXPECT_TRUE(b.sub.interval_tree.in_tree());
    EXPECT_EQ(b.sub.invalidate_seq.load(), 3u);
  }
  EXPECT_EQ(state(t).invalidate_seq, 4u);
  mmu_interval_notifier_remove(&a.sub);
  mmu_interval_notifier_remove(&b.sub);
}

TEST(IntervalNotifier, RemoveDuringAHittingInvalidationWaitsForTheEnd) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log);
  insert(t, a, kA, M1);
  auto hit = std::make_unique<OpenRange>(t.mm.get(), kA, kA + K4);
  std::atomic<bool> removed{false};
  std::thread remover([&] {
    mmu_interval_notifier_remove(&a.sub);
    removed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(removed.load());
  EXPECT_EQ(state(t).deferred, 1u);
  hit.reset();
  remover.join();
  EXPECT_FALSE(a.sub.interval_tree.in_tree());
  EXPECT_EQ(state(t).in_tree, 0u);
}

TEST(IntervalNotifier, RemovingADeferredInsertDoesNotWait) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log), b("b", &log);
  insert(t, a, kA, M1);
  {
    OpenRange hit(t.mm.get(), kA, kA + K4);
    insert(t, b, kB, M1);
    mmu_interval_notifier_remove(&b.sub);  // returns at once
    EXPECT_EQ(state(t).deferred, 0u);
  }
  EXPECT_FALSE(b.sub.interval_tree.in_tree());
  EXPECT_EQ(b.calls.load(), 0);
  mmu_interval_notifier_remove(&a.sub);
}

TEST(IntervalNotifier, InsertErrnos) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log);
  EXPECT_EQ(mmu_interval_notifier_insert(&a.sub, t.mm.get(), VirtAddr(kA), 0, a.ops()), -EOVERFLOW);
  EXPECT_EQ(mmu_interval_notifier_insert(&a.sub, t.mm.get(), VirtAddr(2), ~0ull, a.ops()), -EOVERFLOW);
  ASSERT_EQ(mmu_interval_notifier_insert(&a.sub, t.mm.get(), VirtAddr(1), ~0ull, a.ops()), 0)
      << "[1, ULONG_MAX] does not overflow";
  mmu_interval_notifier_remove(&a.sub);
  // An mm without users: warn, -EINVAL.
  MmStruct* mm = t.mm.get();
  mm->mmgrab();
  {
    MmapWriteLock l(mm);
    ASSERT_EQ(__mmu_notifier_register(nullptr, mm), 0);
  }
  t.mm.reset();
  warnings_clear();
  EXPECT_EQ(mmu_interval_notifier_insert(&a.sub, mm, VirtAddr(kA), M1, a.ops()), -EINVAL);
  EXPECT_EQ(warnings_count(), 1u);
  mm->mmdrop();
}

TEST(IntervalNotifier, FalseOnABlockableRangeWarnsAndContinues) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log), b("b", &log);
  a.fail_always = true;
  insert(t, a, kA, M1);
  insert(t, b, kA, M1);
  { OpenRange r(t.mm.get(), kA, kA + K4); }
  EXPECT_EQ(log.ops(), (Strings{"a invalidate fail", "b invalidate"}));
  EXPECT_EQ(warnings_count(), 1u);
  mmu_interval_notifier_remove(&a.sub);
  mmu_interval_notifier_remove(&b.sub);
}

TEST(IntervalNotifier, NonBlockingFailureIsEagainAndEndsTheIntervalPass) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log);
  RecordingClassic c("c", &log, {});
  a.fail_nonblocking = true;
  insert(t, a, kA, M1);
  ASSERT_EQ(mmu_notifier_register(&c.sub, t.mm.get()), 0);
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_UNMAP, 0, t.mm.get(), VirtAddr(kA), VirtAddr(kA + K4));
  EXPECT_EQ(mmu_notifier_invalidate_range_start_nonblock(&r), -EAGAIN);
  EXPECT_EQ(log.ops(), Strings{"a invalidate fail"}) << "classic subscribers are not called";
  EXPECT_EQ(state(t).active_invalidate_ranges, 0u) << "inv_end already ran";
  EXPECT_EQ(state(t).invalidate_seq, 4u);
  EXPECT_EQ(warnings_count(), 0u);
  mmu_notifier_unregister(&c.sub, t.mm.get());
  mmu_interval_notifier_remove(&a.sub);
}

TEST(IntervalNotifier, AFailedClassicNonBlockingStartLeaksTheActiveCount) {
  // Spec c.7: the interval pass succeeded, a classic start failed; the
  // caller skips the end, so the odd seq is never released.
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log);
  RecordingClassic c("c", &log, {});
  MmuNotifierOps no_end = *c.sub.ops;
  no_end.invalidate_range_end = nullptr;
  c.sub.ops = &no_end;
  c.fail_start_with = -EAGAIN;
  insert(t, a, kA, M1);
  ASSERT_EQ(mmu_notifier_register(&c.sub, t.mm.get()), 0);
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_UNMAP, 0, t.mm.get(), VirtAddr(kA), VirtAddr(kA + K4));
  EXPECT_EQ(mmu_notifier_invalidate_range_start_nonblock(&r), -EAGAIN);
  EXPECT_EQ(state(t).active_invalidate_ranges, 1u);
  EXPECT_EQ(state(t).invalidate_seq, 3u);
  mmu_notifier_unregister(&c.sub, t.mm.get());
  // Close the leak by hand so the test can tear down.
  mmu_notifier_invalidate_range_end(&r);
  mmu_interval_notifier_remove(&a.sub);
}

TEST(IntervalNotifier, TwoPassStartsInTreeOrderThenFinishesInTheSameOrder) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log, true), b("b", &log), c("c", &log, true);
  insert(t, c, kA + 2 * K4, M1);
  insert(t, a, kA, M1);
  insert(t, b, kA + K4, M1);
  test::RecordingObserver rec(t.machine);
  { OpenRange r(t.mm.get(), kA, kA + 4 * K4); }
  EXPECT_EQ(log.ops(), (Strings{"a start", "b invalidate", "c start", "a finish", "c finish"}));
  // The finish pass completed inside range start, before the observers
  // (and the mm) saw the range open.
  EXPECT_EQ(rec.events().front().kind, test::RecordingObserver::Event::Kind::kRangeStart);
  mmu_interval_notifier_remove(&a.sub);
  mmu_interval_notifier_remove(&b.sub);
  mmu_interval_notifier_remove(&c.sub);
}

TEST(IntervalNotifier, TwoPassWithoutAFinishObjectIsSinglePass) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log, true);
  a.no_finish = true;
  insert(t, a, kA, M1);
  { OpenRange r(t.mm.get(), kA, kA + K4); }
  EXPECT_EQ(log.ops(), Strings{"a start"});
  mmu_interval_notifier_remove(&a.sub);
}

TEST(IntervalNotifier, FinishPassRunsOnTheEagainPath) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log, true), b("b", &log);
  b.fail_nonblocking = true;
  insert(t, a, kA, M1);
  insert(t, b, kA + K4, M1);
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, t.mm.get(), VirtAddr(kA), VirtAddr(kA + 4 * K4));
  EXPECT_EQ(mmu_notifier_invalidate_range_start_nonblock(&r), -EAGAIN);
  EXPECT_EQ(log.ops(), (Strings{"a start", "b invalidate fail", "a finish"}));
  mmu_interval_notifier_remove(&a.sub);
  mmu_interval_notifier_remove(&b.sub);
}

TEST(IntervalNotifier, InsertWarnsOnceForStartWithoutFinish) {
  TestMm t;
  static const MmuIntervalNotifierOps broken = {
      .invalidate_start = [](MmuIntervalNotifier*, const MmuNotifierRange*, uint64_t,
                             MmuIntervalNotifierFinish**) { return true; }};
  MmuIntervalNotifier s1, s2;
  ASSERT_EQ(mmu_interval_notifier_insert(&s1, t.mm.get(), VirtAddr(kA), M1, &broken), 0);
  ASSERT_EQ(mmu_interval_notifier_insert(&s2, t.mm.get(), VirtAddr(kB), M1, &broken), 0);
  EXPECT_EQ(warnings_count(), 1u);
  mmu_interval_notifier_remove(&s1);
  mmu_interval_notifier_remove(&s2);
}

TEST(IntervalNotifier, ExitSendsReleaseThenUnmapAndTwoPassFinishesOnRelease) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log, true);
  insert(t, a, kA, M1);
  ASSERT_EQ(do_mmap(t.mm.get(), VirtAddr(kA), M1, test::RW,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, 0).rc(), 0);
  t.write(VirtAddr(kA), 1);
  log.clear();
  MmStruct* mm = t.mm.get();
  mm->mmgrab();
  t.mm.reset();  // exit
  auto calls = log.calls();
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(log.ops(), (Strings{"a start", "a finish", "a start", "a finish"}));
  EXPECT_EQ(calls[0].event, MMU_NOTIFY_RELEASE);
  EXPECT_EQ(calls[0].range, (VaRange{VirtAddr(0), VirtAddr(~0ull)}));
  EXPECT_EQ(calls[2].event, MMU_NOTIFY_UNMAP);
  EXPECT_EQ(calls[2].range, (VaRange{VirtAddr(0), VirtAddr(~0ull)}));
  mmu_interval_notifier_remove(&a.sub);
  mm->mmdrop();
}

TEST(IntervalNotifier, MmPathsNotifyIntersectingSubscriptionsOnly) {
  TestMm t;
  CallLog log;
  RecordingInterval a("a", &log), b("b", &log);
  VirtAddr v = t.map(16 * K4);
  insert(t, a, v.value(), 4 * K4);
  insert(t, b, (v + 8 * K4).value(), 4 * K4);
  ASSERT_EQ(cpu_touch(t.mm.get(), v, 16 * K4, Access::kWrite, std::nullopt), 0);
  log.clear();
  ASSERT_EQ(do_mprotect(t.mm.get(), v, 16 * K4, PROT_READ), 0);
  EXPECT_EQ(log.ops(), (Strings{"a invalidate", "b invalidate"}));
  EXPECT_EQ(log.calls()[0].event, MMU_NOTIFY_PROTECTION_VMA);
  EXPECT_EQ(log.calls()[0].range, (VaRange{v, v + 16 * K4})) << "the callback gets the whole range";
  log.clear();
  ASSERT_EQ(do_munmap(t.mm.get(), v + 12 * K4, 4 * K4), 0);
  EXPECT_TRUE(log.calls().empty()) << "no interval there";
  mmu_interval_notifier_remove(&a.sub);
  mmu_interval_notifier_remove(&b.sub);
}

}  // namespace
}  // namespace smm
