// Faults: the zero page, write faults (reuse vs copy), shared memory, dax
// leaves, CPU access errors, and values surviving splits.

#include <gtest/gtest.h>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/mm/task_mmu.h"
#include "test_support.h"

namespace smm {
namespace {

using test::G1;
using test::K4;
using test::M1;
using test::M2;
using test::RW;
using test::TestMm;

// The mapping runs of [a, a+len) as "size/level prot" strings.
std::vector<std::string> runs(TestMm& t, VirtAddr a, uint64_t len) {
  std::vector<std::string> out;
  for (const MappingRun& r : mapping_runs(t.mm.get(), a, a + len)) {
    const char* lv = r.level == PTE_LEVEL ? "pte" : r.level == PMD_LEVEL ? "pmd" : "pud";
    out.push_back(test::rel(a, r.start) + "-" + test::rel(a, r.end) + " " + r.size_name() + "/" + lv + " " +
                  prot_name(r.prot));
  }
  return out;
}

TEST(Fault, ReadMapsTheZeroPageAndWriteCopiesIt) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  EXPECT_EQ(t.read(a), 0u);
  EXPECT_EQ(runs(t, a, 4 * K4), std::vector<std::string>{"0x0-0x1000 zero/pte r--"});
  EXPECT_EQ(t.machine.stats().get(VmEvent::fault_zero_page), 1u);
  t.write(a, 42);
  EXPECT_EQ(runs(t, a, 4 * K4), std::vector<std::string>{"0x0-0x1000 4K/pte rw-"});
  EXPECT_EQ(t.read(a), 42u);
  EXPECT_EQ(t.machine.stats().get(VmEvent::cow), 1u);
}

TEST(Fault, WithoutZeroPageAReadAllocatesAWritablePage) {
  TestMm t;
  t.machine.knobs().zero_page.store(false);
  VirtAddr a = t.map(4 * K4);
  EXPECT_EQ(t.read(a), 0u);
  EXPECT_EQ(runs(t, a, 4 * K4), std::vector<std::string>{"0x0-0x1000 4K/pte rw-"});
}

TEST(Fault, WriteToAReadOnlyExclusivePageReusesIt) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  t.write(a, 7);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 4 * K4, PROT_READ), 0);
  EXPECT_EQ(runs(t, a, 4 * K4), std::vector<std::string>{"0x0-0x1000 4K/pte r--"});
  // Back to rw: mprotect itself upgrades the exclusive anonymous page.
  ASSERT_EQ(do_mprotect(t.mm.get(), a, 4 * K4, RW), 0);
  EXPECT_EQ(runs(t, a, 4 * K4), std::vector<std::string>{"0x0-0x1000 4K/pte rw-"});
  t.write(a, 8);
  EXPECT_EQ(t.machine.stats().get(VmEvent::cow), 0u);
  EXPECT_EQ(t.read(a), 8u);
}

TEST(Fault, AccessErrorsAreEFAULTAndChangeNothing) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(4 * K4, PROT_READ);
  uint64_t v = 1;
  EXPECT_EQ(cpu_access(mm, a, Access::kWrite, &v), -EFAULT);
  EXPECT_EQ(cpu_access(mm, a + 64 * K4, Access::kRead, &v), -EFAULT) << "no VMA";
  VirtAddr none = t.map(4 * K4, PROT_NONE);
  EXPECT_EQ(cpu_access(mm, none, Access::kRead, &v), -EFAULT);
  EXPECT_EQ(cpu_touch(mm, a, 8 * K4, Access::kRead, std::nullopt), -EFAULT) << "the range runs into a hole";
  EXPECT_TRUE(mapping_runs(mm).empty()) << "nothing was faulted in";
  // A write-only VMA is readable on x86 (mapped rw-).
  VirtAddr wo = t.map(4 * K4, PROT_WRITE);
  t.write(wo, 3);
  EXPECT_EQ(t.read(wo), 3u);
  EXPECT_EQ(runs(t, wo, K4), std::vector<std::string>{"0x0-0x1000 4K/pte rw-"});
}

TEST(Fault, SharedMemoryKeepsValuesAcrossDontneed) {
  TestMm t;
  VirtAddr a = t.map(4 * K4, RW, MAP_SHARED | MAP_ANONYMOUS);
  t.write(a + K4, 99);
  EXPECT_EQ(runs(t, a, 4 * K4), std::vector<std::string>{"0x1000-0x2000 4K/pte rw-"});
  ASSERT_EQ(do_madvise(t.mm.get(), a, 4 * K4, MADV_DONTNEED), 0);
  EXPECT_TRUE(runs(t, a, 4 * K4).empty());
  EXPECT_EQ(t.read(a + K4), 99u) << "the page stayed in the shmem page cache";
  EXPECT_EQ(t.read(a), 0u);
}

TEST(Fault, PrivateDontneedLosesValues) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  t.write(a, 99);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 4 * K4, MADV_DONTNEED), 0);
  EXPECT_EQ(t.read(a), 0u);
}

TEST(Fault, DaxMapsPudWhereAGigabyteFitsAndPmdElsewhere) {
  TestMm t;
  // 1 GiB + 4 MiB starting 1 GiB aligned: one PUD leaf, then PMD leaves.
  VirtAddr a = t.map(G1 + 2 * M2, RW, MAP_SHARED, MmapOpts{.dax = true, .align = G1});
  ASSERT_EQ(cpu_touch(t.mm.get(), a, G1 + 2 * M2, Access::kWrite, std::nullopt), 0);
  EXPECT_EQ(runs(t, a, G1 + 2 * M2),
            (std::vector<std::string>{"0x0-0x40000000 1G/pud rw-", "0x40000000-0x40400000 2M/pmd rw-"}));
  EXPECT_EQ(t.read(a + G1 + M2), (a + G1 + M2).value());
  // A 2 MiB-aligned split inside the PUD leaf zaps it; refaults map PMDs of
  // the same 1 GiB folio, values intact.
  ASSERT_EQ(do_mprotect(t.mm.get(), a + M2, M2, PROT_READ), 0);
  EXPECT_EQ(t.read(a + M2 + K4), (a + M2 + K4).value());
  EXPECT_EQ(t.read(a), a.value());
  auto r = runs(t, a, 2 * M2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], "0x0-0x200000 1G/pmd rw-");
  EXPECT_EQ(r[1], "0x200000-0x400000 1G/pmd r--");
  // A split off the device alignment is refused (dev_dax_may_split)...
  EXPECT_EQ(do_mprotect(t.mm.get(), a + G1 + M1, K4, PROT_READ), -EINVAL);
  // ...but a merge that moves a boundary is not a split: Linux allows it.
  EXPECT_EQ(do_mprotect(t.mm.get(), a + M1, M1, PROT_READ), 0);
  EXPECT_EQ(test::vma_map(t.mm.get(), a, 4, M1), "ABBB");
}

TEST(Fault, DaxPteFaultIsSigbus) {
  TestMm t;
  VirtAddr a = t.map(M2, RW, MAP_SHARED, MmapOpts{.dax = true});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_NOHUGEPAGE), 0);
  uint64_t v = 0;
  EXPECT_EQ(cpu_access(t.mm.get(), a, Access::kRead, &v), -EFAULT) << "no huge fault allowed: SIGBUS";
}

TEST(Fault, ValuesSurviveThpSplitAndPartialMunmap) {
  TestMm t;
  VirtAddr a = t.map(2 * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, 2 * M2, MADV_HUGEPAGE), 0);
  ASSERT_EQ(cpu_touch(t.mm.get(), a, M2, Access::kWrite, std::nullopt), 0);
  EXPECT_EQ(runs(t, a, 2 * M2), std::vector<std::string>{"0x0-0x200000 2M/pmd rw-"});
  ASSERT_EQ(do_munmap(t.mm.get(), a + M1, M1), 0);
  EXPECT_EQ(runs(t, a, 2 * M2), std::vector<std::string>{"0x0-0x100000 2M/pte rw-"});
  for (uint64_t off = 0; off < M1; off += 64 * K4) EXPECT_EQ(t.read(a + off), (a + off).value());
  EXPECT_EQ(t.machine.stats().get(VmEvent::thp_split_pmd), 1u);
}

TEST(Fault, HugeZeroPageOnReadThenThpOnWrite) {
  TestMm t;
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  EXPECT_EQ(t.read(a + 5 * K4), 0u);
  EXPECT_EQ(runs(t, a, M2), std::vector<std::string>{"0x0-0x200000 zero2M/pmd r--"});
  t.write(a + 5 * K4, 1);
  EXPECT_EQ(runs(t, a, M2), std::vector<std::string>{"0x0-0x200000 2M/pmd rw-"});
  t.machine.thp().use_zero_page.store(false);
  VirtAddr b = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), b, M2, MADV_HUGEPAGE), 0);
  EXPECT_EQ(t.read(b), 0u);
  EXPECT_EQ(runs(t, b, M2), std::vector<std::string>{"0x0-0x200000 2M/pmd rw-"});
}

TEST(Fault, HugeZeroSplitLeavesZeroPtes) {
  TestMm t;
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  EXPECT_EQ(t.read(a), 0u);
  ASSERT_EQ(do_mprotect(t.mm.get(), a, M1, PROT_READ), 0);
  EXPECT_EQ(runs(t, a, M2), std::vector<std::string>{"0x0-0x200000 zero/pte r--"});
}

TEST(Fault, AllocationFailureFallsBackOrderByOrder) {
  TestMm t;
  t.machine.thp().set_size(4, ThpSizeSetting::kAlways);  // 64K
  t.machine.thp().set_size(3, ThpSizeSetting::kAlways);  // 32K
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  t.machine.mem().inject_failures(1u << 4, 1);
  t.write(a, 1);
  EXPECT_EQ(runs(t, a, M2), std::vector<std::string>{"0x0-0x8000 32K/pte rw-"});
  EXPECT_EQ(t.machine.stats().get(VmEvent::mthp_fault_fallback), 1u);
  uint64_t v = 1;
  t.machine.mem().inject_failures((1u << 4) | (1u << 3) | 1u, 3);
  EXPECT_EQ(cpu_access(t.mm.get(), a + M1, Access::kWrite, &v), -ENOMEM) << "every order failed: OOM";
}

}  // namespace
}  // namespace smm
