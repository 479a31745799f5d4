// Threaded stress of the notifier core with real devices: a mirror and a
// kvm device fault, read and write in loops while other threads munmap,
// mmap, mprotect and madvise the same range and CPUs touch it. The oracle
// must record no violation. Bounded by SHADOWMM_STRESS_SECONDS (default
// 0.4 s per test); runs under TSan in `make test`.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include "shadowmm/check/coherence_oracle.h"
#include "shadowmm/devices/gpus.h"
#include "shadowmm/devices/kvm.h"
#include "shadowmm/devices/mirror.h"
#include "shadowmm/devices/sva.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;

bool acceptable(int rc) { return rc == 0 || rc == -EFAULT || rc == -EPERM || rc == -EBUSY || rc == -ENOMEM; }

// Devices fault, read and write in loops while a CPU thread accesses and
// another changes the address space (mprotect, dontneed, pageout, munmap +
// mmap, free, hugepage/nohugepage). `make` creates the devices on the mm.
void run_device_stress(const std::function<std::vector<std::unique_ptr<SecondaryMmu>>(MmStruct*)>& make) {
  test::TestMm t;
  MmStruct* mm = t.mm.get();
  CoherenceOracle oracle(t.machine);
  t.machine.thp().set_size(4, ThpSizeSetting::kAlways);
  const uint64_t len = 4 * M2;
  VirtAddr a = t.map(len, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(mm, a, len / 2, MADV_HUGEPAGE), 0);
  std::vector<std::unique_ptr<SecondaryMmu>> devices = make(mm);
  for (auto& dev : devices) ASSERT_EQ(dev->attach(a, len, false), 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> device_ops{0}, changes{0};

  auto device_loop = [&](SecondaryMmu* dev, int seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      VirtAddr p = a + (rng() % (len / K4)) * K4;
      int rc;
      switch (rng() % 3) {
        case 0:
          rc = dev->fault(p, std::min<uint64_t>((1 + rng() % 64) * K4, a + len - p), rng() % 2);
          break;
        case 1: {
          uint64_t v;
          rc = dev->read(p, &v);
          if (rc == 0) {
            ASSERT_TRUE(v == 0 || (v & ~0xffull) == p.value()) << std::hex << v;
          }
          break;
        }
        default:
          rc = dev->write(p, p.value() | (rng() & 0xff));
      }
      ASSERT_TRUE(acceptable(rc)) << dev->name() << " rc " << rc;
      device_ops++;
    }
  };
  auto cpu_loop = [&](int seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      VirtAddr p = a + (rng() % (len / K4)) * K4;
      uint64_t v = p.value();
      int rc = cpu_access(mm, p, rng() % 2 ? Access::kWrite : Access::kRead, &v);
      ASSERT_TRUE(rc == 0 || rc == -EFAULT) << rc;
    }
  };
  auto changer = [&](int seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t off = (rng() % (len / (16 * K4))) * 16 * K4;
      uint64_t n = std::min<uint64_t>((1 + rng() % 32) * 16 * K4, len - off);
      switch (rng() % 6) {
        case 0:
          ASSERT_EQ(do_mprotect(mm, a + off, n, rng() % 2 ? PROT_READ : RW), 0);
          break;
        case 1:
          do_madvise(mm, a + off, n, MADV_DONTNEED);
          break;
        case 2:
          do_madvise(mm, a + off, n, MADV_PAGEOUT);
          break;
        case 3: {
          ASSERT_EQ(do_munmap(mm, a + off, n), 0);
          Result<VirtAddr> r = do_mmap(mm, a + off, n, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, 0);
          ASSERT_TRUE(r.ok() || r.error() == EEXIST);
          break;
        }
        case 4:
          do_madvise(mm, a + off, n, MADV_FREE);
          break;
        case 5:
          do_madvise(mm, a + off, n, rng() % 2 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
          break;
      }
      changes++;
    }
  };

  std::vector<std::thread> threads;
  for (size_t i = 0; i < devices.size(); i++) threads.emplace_back(device_loop, devices[i].get(), 1 + i);
  threads.emplace_back(cpu_loop, 100);
  threads.emplace_back(changer, 101);
  // Run for the duration, and on a loaded machine (sanitizers, parallel
  // ctest) until every side made some progress, up to a hard cap.
  std::this_thread::sleep_for(test::stress_duration(400));
  auto cap = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((changes.load() <= 10 || device_ops.load() <= 10) && std::chrono::steady_clock::now() < cap)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_GT(device_ops.load(), 10u);
  EXPECT_GT(changes.load(), 10u);
  std::vector<OracleViolation> v = oracle.violation_list();
  EXPECT_EQ(v.size(), 0u) << v[0].invariant << " " << v[0].device << " " << v[0].operation << ": " << v[0].detail;
  for (auto& dev : devices) dev->detach();
  t.check();
}

TEST(NotifierStress, DevicesStayCoherentWhileTheMmChanges) {
  run_device_stress([](MmStruct* mm) {
    std::vector<std::unique_ptr<SecondaryMmu>> d;
    d.push_back(std::make_unique<Mirror>("gpu0", mm, 0));
    d.push_back(std::make_unique<Kvm>("vm", mm));
    return d;
  });
}

// [S4] and [S5]: a two-pass GPU group (with few finish objects, so the
// single-pass fallback runs too) and an SVA device whose walker thread
// refills its IOTLB at any time.
TEST(NotifierStress, GpusAndSvaStayCoherentWhileTheMmChanges) {
  run_device_stress([](MmStruct* mm) {
    std::vector<std::unique_ptr<SecondaryMmu>> d;
    d.push_back(std::make_unique<GpuGroup>("gpus", mm, 3, 2000, 2, 1));
    d.push_back(std::make_unique<GpuGroup>("gpus1", mm, 2, 2000, 1));
    d.push_back(std::make_unique<Sva>("iommu", mm, Sva::Callback::kSecondaryTlbs, 20000));
    return d;
  });
}

TEST(NotifierStress, InsertAndRemoveRaceWithInvalidations) {
  test::TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(64 * K4);
  std::atomic<bool> stop{false};
  std::thread changer([&] {
    std::mt19937_64 rng(7);
    while (!stop.load()) {
      uint64_t off = (rng() % 64) * K4;
      do_mprotect(mm, a + off, K4, rng() % 2 ? PROT_READ : RW);
    }
  });
  std::vector<std::thread> users;
  for (int i = 0; i < 2; i++) {
    users.emplace_back([&, i] {
      std::mt19937_64 rng(i);
      auto end = std::chrono::steady_clock::now() + test::stress_duration(400);
      static const MmuIntervalNotifierOps ops = {
          .invalidate = [](MmuIntervalNotifier* s, const MmuNotifierRange*, uint64_t seq) {
            mmu_interval_set_seq(s, seq);
            return true;
          }};
      while (std::chrono::steady_clock::now() < end) {
        MmuIntervalNotifier sub;
        uint64_t off = (rng() % 60) * K4;
        ASSERT_EQ(mmu_interval_notifier_insert(&sub, mm, a + off, 4 * K4, &ops), 0);
        uint64_t seq = mmu_interval_read_begin(&sub);
        EXPECT_EQ(seq & 1, 1u) << "subscription seqs are odd";
        mmu_interval_notifier_remove(&sub);
      }
    });
  }
  for (auto& u : users) u.join();
  stop = true;
  changer.join();
  IntervalNotifierState st = mmu_interval_notifier_state(mm);
  EXPECT_EQ(st.active_invalidate_ranges, 0u);
  EXPECT_EQ(st.invalidate_seq % 2, 0u);
  EXPECT_EQ(st.in_tree, 0u);
  EXPECT_EQ(st.deferred, 0u);
}

}  // namespace
}  // namespace smm
