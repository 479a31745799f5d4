// The khugepaged thread collapsing under live users: CPU threads write and
// read back the pages they own, a mirror device faults (and, at PMD order,
// reads and writes its own pages), and a changer keeps making new collapse
// work without losing data (mprotect of a sub-range splits THPs, PAGEOUT
// swaps pages out). Every owner must read back exactly what it wrote last
// (no write is lost across a collapse), and the coherence oracle must record
// no violation. Bounded by SHADOWMM_STRESS_SECONDS (default 0.5 s per test).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "shadowmm/check/coherence_oracle.h"
#include "shadowmm/devices/mirror.h"
#include "shadowmm/devices/sva.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;

// A page's value: its index and the owner's sequence number.
uint64_t tag(unsigned page, uint64_t seq) { return (uint64_t{page} << 40) | seq; }

struct StressConfig {
  bool mthp;            // 64 KiB collapses only (else PMD order)
  bool device_access;   // the device also reads and writes its own pages
  bool flush_range = false;  // mm.collapse_flush range
  // An SVA device reads everywhere while its walker thread refills the
  // IOTLB: the flush span of a collapse matters to it (E5, E6).
  bool sva = false;
};

void run_khugepaged_stress(const StressConfig& cfg) {
  test::TestMm t;
  MmStruct* mm = t.mm.get();
  CoherenceOracle oracle(t.machine);
  const unsigned kPages = 4 * HPAGE_PMD_NR;
  const uint64_t len = uint64_t{kPages} * K4;
  VirtAddr a = t.map(len, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  auto page = [&](unsigned i) { return a + uint64_t{i} * K4; };

  // Owners: page i belongs to CPU thread i % 3, or to the device when
  // i % 4 == 3 and the device accesses pages. Start from 4 KiB pages.
  const unsigned kCpus = 3;
  auto device_owns = [&](unsigned i) { return cfg.device_access && i % 4 == 3; };
  std::vector<uint64_t> last(kPages, 0);
  for (unsigned i = 0; i < kPages; i++) {
    last[i] = tag(i, 1);
    uint64_t v = last[i];
    ASSERT_EQ(cpu_access(mm, page(i), Access::kWrite, &v), 0);
  }
  if (cfg.flush_range) t.machine.knobs().collapse_flush.store(MmKnobs::CollapseFlush::kRange);
  if (cfg.mthp) {
    t.machine.thp().set_size(HPAGE_PMD_ORDER, ThpSizeSetting::kNever);
    t.machine.thp().set_size(4, ThpSizeSetting::kAlways);
  }
  ASSERT_EQ(do_madvise(mm, a, len, MADV_HUGEPAGE), 0);  // onto khugepaged's list
  ASSERT_TRUE(t.khugepaged.has_mm(mm));

  Mirror dev("gpu0", mm, 0);
  ASSERT_EQ(dev.attach(a, len, false), 0);
  Sva iommu("iommu", mm, Sva::Callback::kSecondaryTlbs, 20000);
  if (cfg.sva) {
    ASSERT_EQ(iommu.attach(a, len, false), 0);
  }
  t.machine.thp().scan_sleep_millisecs.store(1);
  t.machine.thp().pages_to_scan.store(HPAGE_PMD_NR * 2);
  t.khugepaged.start();

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> cpu_ops{0}, device_ops{0}, changes{0};
  std::atomic<int> lost{0};

  auto cpu_loop = [&](unsigned id) {
    std::mt19937_64 rng(id + 1);
    uint64_t seq = 2;
    while (!stop.load(std::memory_order_relaxed)) {
      unsigned i = static_cast<unsigned>(rng() % kPages);
      if (i % kCpus != id || device_owns(i)) continue;
      uint64_t v = 0;
      if (rng() % 2) {
        v = tag(i, seq++);
        int rc = cpu_access(mm, page(i), Access::kWrite, &v);
        ASSERT_TRUE(rc == 0 || rc == -EFAULT) << rc;  // -EFAULT: mprotect'ed read-only now
        if (rc == 0) last[i] = v;
      } else {
        ASSERT_EQ(cpu_access(mm, page(i), Access::kRead, &v), 0);
        if (v != last[i]) lost++;
        ASSERT_EQ(v, last[i]) << "page " << i << " lost a write";
      }
      cpu_ops++;
    }
  };
  auto device_loop = [&] {
    std::mt19937_64 rng(99);
    uint64_t seq = 1ull << 30;
    while (!stop.load(std::memory_order_relaxed)) {
      unsigned i = static_cast<unsigned>(rng() % kPages);
      int rc;
      if (device_owns(i) && rng() % 2) {
        uint64_t v = tag(i, seq++);
        rc = dev.write(page(i), v);
        if (rc == 0) last[i] = v;
      } else if (device_owns(i)) {
        uint64_t v = 0;
        rc = dev.read(page(i), &v);
        if (rc == 0 && v != last[i]) lost++;
        ASSERT_TRUE(rc != 0 || v == last[i]) << "device page " << i << " lost a write";
      } else {
        unsigned n = 1 + static_cast<unsigned>(rng() % 32);
        n = std::min(n, kPages - i);
        rc = dev.fault(page(i), uint64_t{n} * K4, rng() % 2);
      }
      ASSERT_TRUE(rc == 0 || rc == -EPERM || rc == -EFAULT || rc == -EBUSY) << rc;
      device_ops++;
    }
  };
  // New collapse work that keeps every value: a read-only sub-range splits
  // a THP (and is made writable again); PAGEOUT swaps pages out (khugepaged
  // swaps them back in at PMD order; CPU faults do it otherwise).
  auto changer = [&] {
    std::mt19937_64 rng(7);
    while (!stop.load(std::memory_order_relaxed)) {
      unsigned i = static_cast<unsigned>(rng() % (kPages / 16)) * 16;
      switch (rng() % 3) {
        case 0:
          ASSERT_EQ(do_mprotect(mm, page(i), 16 * K4, PROT_READ), 0);
          std::this_thread::sleep_for(std::chrono::microseconds(50));
          ASSERT_EQ(do_mprotect(mm, page(i), 16 * K4, RW), 0);
          break;
        case 1:
          ASSERT_EQ(do_madvise(mm, page(i), 16 * K4, MADV_PAGEOUT), 0);
          break;
        default:
          ASSERT_EQ(do_madvise(mm, page(i), 4 * K4, MADV_COLD), 0);
          break;
      }
      changes++;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  };

  std::vector<std::thread> threads;
  for (unsigned c = 0; c < kCpus; c++) threads.emplace_back(cpu_loop, c);
  threads.emplace_back(device_loop);
  if (cfg.sva) {
    threads.emplace_back([&] {
      std::mt19937_64 rng(5);
      while (!stop.load(std::memory_order_relaxed)) {
        uint64_t v;
        int rc = iommu.read(page(static_cast<unsigned>(rng() % kPages)), &v);
        ASSERT_TRUE(rc == 0 || rc == -EFAULT || rc == -EBUSY) << rc;
      }
    });
  }
  threads.emplace_back(changer);
  std::this_thread::sleep_for(test::stress_duration(500));
  stop = true;
  for (auto& th : threads) th.join();
  t.khugepaged.stop();

  EXPECT_EQ(lost.load(), 0);
  EXPECT_GT(cpu_ops.load(), 100u);
  EXPECT_GT(device_ops.load(), 10u);
  EXPECT_GT(changes.load(), 10u);
  uint64_t collapses = t.machine.stats().get(cfg.mthp ? VmEvent::collapse_64K : VmEvent::collapse_2M);
  EXPECT_GT(collapses, 0u) << "khugepaged collapsed nothing";
  if (std::getenv("SMM_STRESS_VERBOSE"))
    std::printf("collapses %lu, failed %lu, cpu ops %lu, device ops %lu, changes %lu\n", (unsigned long)collapses,
                (unsigned long)t.machine.stats().get(VmEvent::collapse_fail), (unsigned long)cpu_ops.load(),
                (unsigned long)device_ops.load(), (unsigned long)changes.load());
  if (cfg.mthp) {
    EXPECT_EQ(t.machine.stats().get(VmEvent::collapse_2M), 0u);
  }
  // Every page reads back what its owner wrote last.
  for (unsigned i = 0; i < kPages; i++) {
    uint64_t v = 0;
    ASSERT_EQ(cpu_access(mm, page(i), Access::kRead, &v), 0);
    ASSERT_EQ(v, last[i]) << "page " << i;
  }
  std::vector<OracleViolation> v = oracle.violation_list();
  EXPECT_EQ(v.size(), 0u) << v[0].invariant << " " << v[0].device << " " << v[0].operation << ": " << v[0].detail;
  dev.detach();
  if (cfg.sva) iommu.detach();
  t.check();
}

TEST(KhugepagedStress, PmdCollapsesUnderCpuAndDeviceWriters) {
  run_khugepaged_stress({.mthp = false, .device_access = true});
}

// At mTHP orders a device translation outside the collapsed sub-range
// legitimately survives while the PMD is momentarily none (spec E9): the
// oracle looks into the detached table.
TEST(KhugepagedStress, MthpCollapsesUnderCpuAndDeviceWriters) {
  run_khugepaged_stress({.mthp = true, .device_access = true, .sva = true});
}

// Our own optimisation, `mm.collapse_flush range`, under the same load.
TEST(KhugepagedStress, MthpWithRangeFlush) {
  run_khugepaged_stress({.mthp = true, .device_access = true, .flush_range = true, .sva = true});
}

}  // namespace
}  // namespace smm
