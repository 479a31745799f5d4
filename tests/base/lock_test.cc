// Tests of the lock wrappers and the runtime lock checker (lockdep.h).

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "shadowmm/base/lock.h"
#include "shadowmm/base/lockdep.h"

namespace smm {
namespace {

std::vector<LockdepReport> g_reports;
void record(const LockdepReport& r) { g_reports.push_back(r); }

class LockdepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_reports.clear();
    old_ = lockdep_set_handler(record);
  }
  void TearDown() override { lockdep_set_handler(old_); }
  LockdepHandler old_ = nullptr;
};

TEST_F(LockdepTest, InOrderAcquireIsQuiet) {
  RwSem mmap_lock(LockRank::kMmapLock, "mmap_lock");
  SpinLock ptl(LockRank::kPtePtl, "ptl");
  {
    ReadLocker a(mmap_lock);
    SpinLocker b(ptl);
  }
  EXPECT_TRUE(g_reports.empty());
}

TEST_F(LockdepTest, InversionIsCaught) {
  if (!lockdep::kEnabled) GTEST_SKIP() << "lock ranks are only checked in builds with SHADOWMM_LOCKDEP";
  RwSem mmap_lock(LockRank::kMmapLock, "mmap_lock");
  Mutex device(LockRank::kDevice, "device");
  device.lock();
  mmap_lock.read_lock();  // device lock is below mmap_lock in lock_order.h
  mmap_lock.read_unlock();
  device.unlock();
  ASSERT_EQ(g_reports.size(), 1u);
  EXPECT_EQ(g_reports[0].kind, LockdepReport::Kind::kOrder);
  EXPECT_NE(g_reports[0].message.find("acquiring mmap_lock"), std::string::npos) << g_reports[0].message;
  EXPECT_NE(g_reports[0].message.find("while holding device"), std::string::npos) << g_reports[0].message;
}

TEST_F(LockdepTest, SameRankNeedsNestingSubclass) {
  if (!lockdep::kEnabled) GTEST_SKIP() << "lock ranks are only checked in builds with SHADOWMM_LOCKDEP";
  RwSem parent(LockRank::kMmapLock, "mmap_lock");
  RwSem child(LockRank::kMmapLock, "mmap_lock");
  parent.write_lock();
  child.write_lock_nested(1);  // fork's SINGLE_DEPTH_NESTING: allowed
  child.write_unlock();
  EXPECT_TRUE(g_reports.empty());
  child.write_lock();  // same rank without a subclass: caught
  child.write_unlock();
  parent.write_unlock();
  ASSERT_EQ(g_reports.size(), 1u);
  EXPECT_EQ(g_reports[0].kind, LockdepReport::Kind::kOrder);
}

TEST_F(LockdepTest, SleepingUnderSpinlockIsCaught) {
  SpinLock ptl(LockRank::kPtePtl, "ptl");
  Mutex m(LockRank::kSecondaryTlb, "iotlb_mutex");
  ptl.lock();
  EXPECT_TRUE(preempt::in_atomic());
  m.lock();  // a sleeping lock in atomic context
  m.unlock();
  ptl.unlock();
  EXPECT_FALSE(preempt::in_atomic());
  ASSERT_GE(g_reports.size(), 1u);
  EXPECT_EQ(g_reports[0].kind, LockdepReport::Kind::kSleepInAtomic);
}

TEST_F(LockdepTest, RecursiveLockingIsCaught) {
  if (!lockdep::kEnabled) GTEST_SKIP() << "lock ranks are only checked in builds with SHADOWMM_LOCKDEP";
  Mutex m(LockRank::kDevice, "device");
  m.lock();
  EXPECT_FALSE(m.try_lock());
  m.unlock();
  EXPECT_TRUE(g_reports.empty());
  EXPECT_EQ(lockdep::held_count(), 0);
}

TEST(RwSem, WriterIsNotStarvedByReaders) {
  RwSem sem(LockRank::kMmapLock, "mmap_lock");
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; i++) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        ReadLocker l(sem);
        reads++;
      }
    });
  }
  while (reads.load() < 100) std::this_thread::yield();
  // With reader preference this could spin forever; a waiting writer must
  // block new readers.
  for (int i = 0; i < 20; i++) {
    WriteLocker w(sem);
    EXPECT_TRUE(sem.is_write_locked());
  }
  stop = true;
  for (auto& t : readers) t.join();
}

TEST(RwSem, DowngradeKeepsWritersOutAndLetsReadersIn) {
  RwSem sem(LockRank::kMmapLock, "mmap_lock");
  sem.write_lock();
  sem.downgrade_write();
  bool other_read = false, other_write = true;
  std::thread t([&] {
    other_write = false;
    if (sem.try_write_lock()) {
      other_write = true;
      sem.write_unlock();
    }
    if (sem.try_read_lock()) {
      other_read = true;
      sem.read_unlock();
    }
  });
  t.join();
  EXPECT_FALSE(other_write);
  EXPECT_TRUE(other_read);
  sem.read_unlock();
  bool can_write = false;
  if (sem.try_write_lock()) {
    can_write = true;
    sem.write_unlock();
  }
  EXPECT_TRUE(can_write);
}

TEST(WaitQueue, WakesWaiterWhenPredicateChanges) {
  WaitQueue wq;
  std::atomic<int> seq{1};
  std::thread waiter([&] { wq.wait_event([&] { return seq.load() != 1; }); });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  seq = 2;
  wq.wake_up_all();
  waiter.join();
  EXPECT_EQ(seq.load(), 2);
}

}  // namespace
}  // namespace smm
