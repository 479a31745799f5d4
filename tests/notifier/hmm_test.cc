// hmm_range_fault (spec b.4): results per page, leaf orders, faulting as
// requested, and the -EBUSY / -EFAULT / -EPERM outcomes.

#include <gtest/gtest.h>

#include "recording_subscriber.h"
#include "shadowmm/hmm/hmm.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "test_support.h"

namespace smm {
namespace {

using test::CallLog;
using test::G1;
using test::K4;
using test::M2;
using test::RecordingInterval;
using test::RW;
using test::TestMm;

struct Snapshot {
  int ret;
  std::vector<uint64_t> pfns;
};

Snapshot snap(TestMm& t, RecordingInterval& s, VirtAddr start, uint64_t len, uint64_t flags,
              uint64_t mask = 0, std::vector<uint64_t> in = {}) {
  // Like a driver: retry from read_begin while the snapshot is invalidated
  // (its own faults may invalidate it, e.g. a COW of the zero page).
  Snapshot out;
  for (int attempt = 0; attempt < 10; attempt++) {
    out.pfns = in.empty() ? std::vector<uint64_t>(len / K4, 0) : in;
    HmmRange r;
    r.notifier = &s.sub;
    r.notifier_seq = mmu_interval_read_begin(&s.sub);
    r.start = start;
    r.end = start + len;
    r.hmm_pfns = out.pfns.data();
    r.default_flags = flags;
    r.pfn_flags_mask = mask;
    ReadLocker l(t.mm->mmap_lock);
    out.ret = hmm_range_fault(&r);
    if (out.ret != -EBUSY) break;
  }
  return out;
}

class HmmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mmu_interval_notifier_insert(&sub.sub, t.mm.get(), VirtAddr(0x10000), TASK_SIZE - 0x10000, sub.ops()), 0);
  }
  void TearDown() override { mmu_interval_notifier_remove(&sub.sub); }
  TestMm t;
  CallLog log;
  RecordingInterval sub{"mirror", &log};
};

TEST_F(HmmTest, FaultsAsRequestedAndReportsPfnsAndPermissions) {
  VirtAddr a = t.map(4 * K4);
  Snapshot s = snap(t, sub, a, 4 * K4, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
  ASSERT_EQ(s.ret, 0);
  for (uint64_t p : s.pfns) {
    EXPECT_TRUE(p & HMM_PFN_VALID);
    EXPECT_TRUE(p & HMM_PFN_WRITE);
    EXPECT_EQ(hmm_pfn_to_map_order(p), 0u);
  }
  EXPECT_EQ(t.machine.stats().get(VmEvent::fault_4k), 4u) << "faulted in with write";
}

TEST_F(HmmTest, ReadFaultReportsTheZeroPageReadOnly) {
  VirtAddr a = t.map(K4);
  Snapshot s = snap(t, sub, a, K4, HMM_PFN_REQ_FAULT);
  ASSERT_EQ(s.ret, 0);
  EXPECT_EQ(hmm_pfn_to_pfn(s.pfns[0]), t.machine.zero_folio().pfn());
  EXPECT_TRUE(s.pfns[0] & HMM_PFN_VALID);
  EXPECT_FALSE(s.pfns[0] & HMM_PFN_WRITE);
}

TEST_F(HmmTest, WithoutRequestsNothingIsFaulted) {
  VirtAddr a = t.map(4 * K4);
  t.write(a + K4, 1);
  Snapshot s = snap(t, sub, a, 4 * K4, 0);
  ASSERT_EQ(s.ret, 0);
  EXPECT_EQ(s.pfns[0], 0u);
  EXPECT_TRUE(s.pfns[1] & HMM_PFN_VALID);
  EXPECT_EQ(t.machine.stats().get(VmEvent::pgfault), 1u);
}

TEST_F(HmmTest, PerPageRequestsThroughTheMask) {
  VirtAddr a = t.map(8 * K4);
  t.write(a + 7 * K4, 1);  // the PTE table exists: requests are looked at page by page
  std::vector<uint64_t> in = {0, HMM_PFN_REQ_FAULT, 0, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE};
  Snapshot s = snap(t, sub, a, 4 * K4, 0, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, in);
  ASSERT_EQ(s.ret, 0);
  EXPECT_EQ(s.pfns[0], 0u) << "not requested, not present";
  EXPECT_TRUE(s.pfns[1] & HMM_PFN_VALID);
  EXPECT_FALSE(s.pfns[1] & HMM_PFN_WRITE) << "a read fault maps the zero page";
  // hmm_vma_fault faults from the first page that needs it to the end of
  // the walk step, requested or not, as Linux does.
  EXPECT_TRUE(s.pfns[2] & HMM_PFN_VALID);
  EXPECT_TRUE(s.pfns[3] & HMM_PFN_WRITE);
}

TEST_F(HmmTest, AHoleIsFaultedWholeWithTheUnionOfTheRequests) {
  VirtAddr a = t.map(4 * K4);  // no page table yet: one hole
  std::vector<uint64_t> in = {0, 0, 0, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE};
  Snapshot s = snap(t, sub, a, 4 * K4, 0, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, in);
  ASSERT_EQ(s.ret, 0);
  for (uint64_t p : s.pfns) EXPECT_TRUE(p & HMM_PFN_WRITE) << "hmm_vma_walk_hole faults [addr, end)";
}

TEST_F(HmmTest, HugeLeavesReportTheirOrder) {
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  Snapshot s = snap(t, sub, a + 64 * K4, 4 * K4, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
  ASSERT_EQ(s.ret, 0);
  EXPECT_EQ(hmm_pfn_to_map_order(s.pfns[0]), 9u);
  EXPECT_EQ(hmm_pfn_to_pfn(s.pfns[1]), hmm_pfn_to_pfn(s.pfns[0]) + 1);
  VirtAddr d = t.map(G1, RW, MAP_SHARED, MmapOpts{.dax = true, .align = G1});
  Snapshot sd = snap(t, sub, d, K4, HMM_PFN_REQ_FAULT);
  ASSERT_EQ(sd.ret, 0);
  EXPECT_EQ(hmm_pfn_to_map_order(sd.pfns[0]), 18u);
}

TEST_F(HmmTest, Errnos) {
  VirtAddr ro = t.map(K4, PROT_READ);
  EXPECT_EQ(snap(t, sub, ro, K4, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE).ret, -EPERM);
  VirtAddr none = t.map(K4, PROT_NONE);
  EXPECT_EQ(snap(t, sub, none, K4, HMM_PFN_REQ_FAULT).ret, -EFAULT);
  Snapshot s = snap(t, sub, none, K4, 0);
  EXPECT_EQ(s.ret, 0);
  EXPECT_EQ(s.pfns[0], HMM_PFN_ERROR) << "not requested: marked as an error";
  EXPECT_EQ(snap(t, sub, VirtAddr(0x20000), K4, HMM_PFN_REQ_FAULT).ret, -EFAULT) << "no VMA";
}

TEST_F(HmmTest, InvalidatedSnapshotIsEbusy) {
  VirtAddr a = t.map(4 * K4);
  std::vector<uint64_t> pfns(4, 0);
  HmmRange r;
  r.notifier = &sub.sub;
  r.notifier_seq = mmu_interval_read_begin(&sub.sub);
  r.start = a;
  r.end = a + 4 * K4;
  r.hmm_pfns = pfns.data();
  r.default_flags = HMM_PFN_REQ_FAULT;
  ASSERT_EQ(do_munmap(t.mm.get(), a + 3 * K4, K4), 0);  // an invalidation hits the interval
  ReadLocker l(t.mm->mmap_lock);
  EXPECT_EQ(hmm_range_fault(&r), -EBUSY);
}

}  // namespace
}  // namespace smm
