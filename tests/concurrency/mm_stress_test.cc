// Threaded stress of the mm core: CPU threads fault and write pages while
// others mprotect, MADV_DONTNEED, MADV_FREE and munmap/mmap the same range.
// Afterwards every structure must be consistent and nothing leaked. Runs in
// every build and under TSan; bounded by SHADOWMM_STRESS_SECONDS (default a
// fraction of a second per test).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;

TEST(MmStress, FaultsRaceWithMprotectMadviseAndMunmap) {
  test::TestMm t;
  MmStruct* mm = t.mm.get();
  t.machine.thp().set_size(4, ThpSizeSetting::kAlways);  // 64K mTHP too
  const uint64_t len = 8 * M2;
  VirtAddr a = t.map(len, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(mm, a, len / 2, MADV_HUGEPAGE), 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> accesses{0}, changes{0};

  auto cpu = [&](int seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      VirtAddr p = a + (rng() % (len / K4)) * K4;
      uint64_t v = p.value();
      Access acc = rng() % 3 ? Access::kWrite : Access::kRead;
      int rc = cpu_access(mm, p, acc, &v);
      // The page may be unmapped or read-only right now: only these errors.
      ASSERT_TRUE(rc == 0 || rc == -EFAULT) << rc;
      if (rc == 0 && acc == Access::kRead) {
        ASSERT_TRUE(v == 0 || v == p.value()) << std::hex << v;
      }
      accesses++;
    }
  };
  auto changer = [&](int seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t off = (rng() % (len / (64 * K4))) * 64 * K4;
      uint64_t n = (1 + rng() % 64) * 16 * K4;
      if (off + n > len) n = len - off;
      switch (rng() % 5) {
        case 0:
          ASSERT_EQ(do_mprotect(mm, a + off, n, rng() % 2 ? PROT_READ : RW), 0);
          break;
        case 1:
          do_madvise(mm, a + off, n, MADV_DONTNEED);  // may meet a hole: ENOMEM
          break;
        case 2:
          do_madvise(mm, a + off, n, MADV_FREE);
          break;
        case 3: {
          ASSERT_EQ(do_munmap(mm, a + off, n), 0);
          Result<VirtAddr> r =
              do_mmap(mm, a + off, n, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, 0);
          ASSERT_TRUE(r.ok() || r.error() == EEXIST) << r.rc();
          break;
        }
        case 4:
          do_madvise(mm, a + off, n, rng() % 2 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
          break;
      }
      changes++;
    }
  };

  std::vector<std::thread> threads;
  threads.emplace_back(cpu, 1);
  threads.emplace_back(cpu, 2);
  threads.emplace_back(changer, 3);
  std::this_thread::sleep_for(test::stress_duration(400));
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_GT(accesses.load(), 100u);
  EXPECT_GT(changes.load(), 10u);
  t.check();
}

TEST(MmStress, ConcurrentFaultsOnOnePmdInstallOneThp) {
  for (int round = 0; round < 20; round++) {
    test::TestMm t;
    VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
    ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; i++) {
      threads.emplace_back([&, i] {
        uint64_t v = i;
        ASSERT_EQ(cpu_access(t.mm.get(), a + i * 100 * K4, Access::kWrite, &v), 0);
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(t.machine.stats().get(VmEvent::thp_fault_alloc), 1u) << "one PMD, one THP";
    for (int i = 0; i < 4; i++) EXPECT_EQ(t.read(a + i * 100 * K4), uint64_t(i));
  }
}

}  // namespace
}  // namespace smm
