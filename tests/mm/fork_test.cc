// fork: copy-on-write sharing, the PROTECTION_PAGE range on the parent,
// VM_DONTCOPY / VM_WIPEONFORK, shared memory, THPs and swap entries.

#include <gtest/gtest.h>

#include "shadowmm/mm/fork.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/prctl.h"
#include "shadowmm/mm/task_mmu.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RecordingObserver;
using test::RW;
using test::TestMm;

uint64_t peek(MmStruct* mm, VirtAddr a) {
  uint64_t v = 0;
  EXPECT_EQ(cpu_access(mm, a, Access::kRead, &v), 0);
  return v;
}

void poke(MmStruct* mm, VirtAddr a, uint64_t v) { ASSERT_EQ(cpu_access(mm, a, Access::kWrite, &v), 0); }

TEST(Fork, ChildSharesPagesCopyOnWrite) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  t.write(a, 1);
  t.write(a + K4, 2);
  RecordingObserver rec(t.machine);
  MmRef child(*dup_mm(t.mm.get(), "child"));
  EXPECT_EQ(rec.ranges(a), std::vector<std::string>{"protection_page [0x0,0x4000)"});
  EXPECT_EQ(t.machine.stats().get(VmEvent::tlb_flush), 1u) << "one parent flush after the copy";
  // Both sides read the shared, now read-only pages.
  EXPECT_EQ(mapping_runs(t.mm.get())[0].prot, PTE_PROT_R);
  EXPECT_EQ(peek(child.get(), a), 1u);
  poke(child.get(), a, 10);  // the child copies
  EXPECT_EQ(t.read(a), 1u);
  EXPECT_EQ(peek(child.get(), a), 10u);
  EXPECT_EQ(t.machine.stats().get(VmEvent::cow), 1u);
  t.write(a, 11);  // the parent is the only user now: reuse
  EXPECT_EQ(t.machine.stats().get(VmEvent::cow), 1u);
  EXPECT_EQ(t.machine.stats().get(VmEvent::wp_reuse), 1u);
  t.write(a + K4, 20);  // still shared with the child: copy
  EXPECT_EQ(peek(child.get(), a + K4), 2u);
  {
    ReadLocker l(child->mmap_lock);
    child->check_invariants();
  }
  child.reset();
  t.check();
}

TEST(Fork, UntouchedVmasAreNotCopiedAndDontcopyIsSkipped) {
  TestMm t;
  VirtAddr untouched = t.map(4 * K4);
  VirtAddr dontcopy = t.map(4 * K4, RW | PROT_EXEC);
  t.write(dontcopy, 5);
  ASSERT_EQ(do_madvise(t.mm.get(), dontcopy, 4 * K4, MADV_DONTFORK), 0);
  RecordingObserver rec(t.machine);
  MmRef child(*dup_mm(t.mm.get(), "child"));
  EXPECT_TRUE(rec.ranges(untouched).empty());
  uint64_t v;
  EXPECT_EQ(cpu_access(child.get(), dontcopy, Access::kRead, &v), -EFAULT) << "no VMA in the child";
  EXPECT_EQ(peek(child.get(), untouched), 0u);
}

TEST(Fork, WipeOnForkStartsEmpty) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  t.write(a, 5);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 4 * K4, MADV_WIPEONFORK), 0);
  MmRef child(*dup_mm(t.mm.get(), "child"));
  EXPECT_EQ(peek(child.get(), a), 0u);
  EXPECT_EQ(t.read(a), 5u);
}

TEST(Fork, SharedMemoryStaysShared) {
  TestMm t;
  VirtAddr a = t.map(4 * K4, RW, MAP_SHARED | MAP_ANONYMOUS);
  t.write(a, 5);
  MmRef child(*dup_mm(t.mm.get(), "child"));
  poke(child.get(), a, 6);
  EXPECT_EQ(t.read(a), 6u);
}

TEST(Fork, ThpIsSharedReadOnlyAndSplitOnWrite) {
  TestMm t;
  VirtAddr a = t.map(M2, RW, MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts{.align = M2});
  ASSERT_EQ(do_madvise(t.mm.get(), a, M2, MADV_HUGEPAGE), 0);
  ASSERT_EQ(cpu_touch(t.mm.get(), a, M2, Access::kWrite, std::nullopt), 0);
  MmRef child(*dup_mm(t.mm.get(), "child"));
  auto r = mapping_runs(child.get());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].size_name(), "2M");
  EXPECT_EQ(r[0].level, PMD_LEVEL);
  EXPECT_EQ(r[0].prot, PTE_PROT_R);
  poke(child.get(), a + K4, 9);  // not exclusive: split the child's PMD, copy one page
  EXPECT_EQ(peek(child.get(), a + K4), 9u);
  EXPECT_EQ(t.read(a + K4), (a + K4).value());
  EXPECT_EQ(mapping_runs(t.mm.get())[0].level, PMD_LEVEL) << "the parent keeps its PMD";
}

TEST(Fork, SwapEntriesAreShared) {
  TestMm t;
  VirtAddr a = t.map(4 * K4);
  t.write(a, 77);
  ASSERT_EQ(do_madvise(t.mm.get(), a, 4 * K4, MADV_PAGEOUT), 0);
  ASSERT_EQ(t.machine.swap().used(), 1u);
  MmRef child(*dup_mm(t.mm.get(), "child"));
  EXPECT_EQ(peek(child.get(), a), 77u);
  EXPECT_EQ(t.read(a), 77u);
  EXPECT_EQ(t.machine.swap().used(), 0u) << "both entries swapped in: the slot is free";
}

TEST(Fork, ThpDisableIsInherited) {
  TestMm t;
  ASSERT_EQ(prctl_set_thp_disable(t.mm.get(), 1, 0), 0);
  MmRef child(*dup_mm(t.mm.get(), "child"));
  EXPECT_TRUE(child->test_flag(MMF_DISABLE_THP_COMPLETELY));
}

}  // namespace
}  // namespace smm
