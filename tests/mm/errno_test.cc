// The errno of every invalid argument of mmap, munmap, mprotect and madvise,
// with the values and orders of checks Linux uses (verified against the
// host kernel by tests/host/host_differential_test.cc).

#include <gtest/gtest.h>

#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/mprotect.h"
#include "test_support.h"

namespace smm {
namespace {

using test::K4;
using test::M2;
using test::RW;
using test::TestMm;

constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS;

int mmap_rc(TestMm& t, uint64_t addr, uint64_t len, int prot, int flags, uint64_t off = 0, MmapOpts o = {}) {
  return do_mmap(t.mm.get(), VirtAddr(addr), len, prot, flags, off, o).rc();
}

TEST(MmapErrno, ArgumentsAreCheckedLikeLinux) {
  TestMm t;
  VirtAddr a = t.map(16 * K4);
  EXPECT_EQ(mmap_rc(t, 0, 0, RW, kAnon), -EINVAL) << "zero length";
  EXPECT_EQ(mmap_rc(t, 0, ~0ull - 100, RW, kAnon), -ENOMEM) << "length overflows when page aligned";
  EXPECT_EQ(mmap_rc(t, 0, 1ull << 62, RW, kAnon), -ENOMEM) << "larger than the address space";
  EXPECT_EQ(mmap_rc(t, a.value() + 1, K4, RW, kAnon | MAP_FIXED), -EINVAL) << "unaligned MAP_FIXED";
  EXPECT_EQ(mmap_rc(t, a.value() + 1, K4, RW, kAnon | MAP_FIXED_NOREPLACE), -EINVAL);
  EXPECT_EQ(mmap_rc(t, a.value(), K4, RW, kAnon | MAP_FIXED_NOREPLACE), -EEXIST) << "over a mapping";
  EXPECT_EQ(mmap_rc(t, 0x800000000000, K4, RW, kAnon | MAP_FIXED), -ENOMEM) << "beyond TASK_SIZE";
  EXPECT_EQ(mmap_rc(t, 0, K4, RW, MAP_ANONYMOUS), -EINVAL) << "neither shared nor private";
  EXPECT_EQ(mmap_rc(t, 0, K4, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS), -EINVAL) << "SHARED|PRIVATE";
  EXPECT_EQ(mmap_rc(t, 0, K4, RW, kAnon, 100), -EINVAL) << "unaligned offset";
  EXPECT_EQ(mmap_rc(t, 0, K4, RW, kAnon, ~0ull & ~(K4 - 1)), 0) << "the offset of anonymous memory is unused";
  EXPECT_EQ(mmap_rc(t, 0, K4, 0x10, kAnon), 0) << "unknown prot bits are ignored by mmap";
  EXPECT_EQ(mmap_rc(t, 0, M2, RW, kAnon, 0, MmapOpts{.dax = true}), -EINVAL) << "dax must be shared";
  EXPECT_EQ(mmap_rc(t, 0, M2 + K4, RW, MAP_SHARED, 0, MmapOpts{.dax = true}), -EINVAL) << "dax alignment";
  EXPECT_EQ(mmap_rc(t, 0, M2, RW, MAP_SHARED, 0, MmapOpts{.dax = true, .file_prot = PROT_READ}), -EACCES)
      << "writable shared mapping of a read-only file";
}

TEST(MunmapErrno, ArgumentsAreCheckedLikeLinux) {
  TestMm t;
  VirtAddr a = t.map(16 * K4);
  MmStruct* mm = t.mm.get();
  EXPECT_EQ(do_munmap(mm, a + 1, K4), -EINVAL) << "unaligned";
  EXPECT_EQ(do_munmap(mm, a, 0), -EINVAL) << "zero length";
  EXPECT_EQ(do_munmap(mm, a, ~0ull - 4095), -EINVAL) << "overflowing length";
  EXPECT_EQ(do_munmap(mm, VirtAddr(0xffff800000000000), K4), -EINVAL) << "beyond TASK_SIZE";
  EXPECT_EQ(do_munmap(mm, VirtAddr(TASK_SIZE), K4), -EINVAL);
  EXPECT_EQ(do_munmap(mm, VirtAddr(TASK_SIZE - K4), 2 * K4), -EINVAL);
  EXPECT_EQ(do_munmap(mm, VirtAddr(TASK_SIZE - K4), K4), 0) << "unmapped, ends at TASK_SIZE";
  EXPECT_EQ(do_munmap(mm, a + 32 * K4, K4), 0) << "nothing mapped there";
  EXPECT_EQ(do_munmap(mm, a, 100), 0) << "length rounded up to a page";
  EXPECT_EQ(t.nr_vmas(), 1u);
}

TEST(MprotectErrno, ArgumentsAreCheckedLikeLinux) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_munmap(mm, a + 8 * K4, 2 * K4), 0);  // hole at pages 8..9
  EXPECT_EQ(do_mprotect(mm, a + 1, K4, PROT_READ), -EINVAL) << "unaligned";
  EXPECT_EQ(do_mprotect(mm, a, 0, 0x10), 0) << "zero length wins over bad prot";
  EXPECT_EQ(do_mprotect(mm, a + 100 * K4, 0, PROT_READ), 0) << "zero length, unmapped";
  EXPECT_EQ(do_mprotect(mm, a, ~0ull - 4095, PROT_READ), -ENOMEM) << "overflowing length";
  EXPECT_EQ(do_mprotect(mm, a, K4, 0x10), -EINVAL) << "unknown prot bit";
  EXPECT_EQ(do_mprotect(mm, a, K4, PROT_READ | PROT_GROWSDOWN), -EINVAL) << "not a grows-down VMA";
  EXPECT_EQ(do_mprotect(mm, a, K4, PROT_GROWSDOWN | PROT_GROWSUP), -EINVAL);
  EXPECT_EQ(do_mprotect(mm, a + 8 * K4, 4 * K4, PROT_READ), -ENOMEM) << "starts in the hole";
  EXPECT_EQ(test::vma_map(mm, a, 16), "AAAAAAAA  BBBBBB") << "nothing changed";
  EXPECT_EQ(do_mprotect(mm, a + 4 * K4, 8 * K4, PROT_READ), -ENOMEM) << "hole inside the range";
  EXPECT_EQ(test::vma_map(mm, a, 16), "AAAABBBB  CCCCCC") << "the part before the hole changed";
  EXPECT_EQ(do_mprotect(mm, a + 12 * K4, 8 * K4, PROT_READ), -ENOMEM) << "runs past the last VMA";
  EXPECT_EQ(test::vma_map(mm, a, 16), "AAAABBBB  CCDDDD");
}

TEST(MprotectErrno, BeyondVmMayIsEACCES) {
  TestMm t;
  // A dax region opened read-only: no VM_MAYWRITE.
  VirtAddr a = t.map(M2, PROT_READ, MAP_SHARED, MmapOpts{.dax = true, .file_prot = PROT_READ | PROT_EXEC});
  EXPECT_EQ(do_mprotect(t.mm.get(), a, M2, RW), -EACCES);
  EXPECT_EQ(do_mprotect(t.mm.get(), a, M2, PROT_READ | PROT_EXEC), 0);
  VirtAddr b = t.map(M2, PROT_READ, MAP_SHARED, MmapOpts{.dax = true, .file_prot = PROT_READ});
  EXPECT_EQ(do_mprotect(t.mm.get(), b, M2, PROT_READ | PROT_EXEC), -EACCES) << "no VM_MAYEXEC";
}

TEST(MadviseErrno, ArgumentsAreCheckedLikeLinux) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr a = t.map(16 * K4);
  ASSERT_EQ(do_munmap(mm, a + 4 * K4, 2 * K4), 0);  // hole at pages 4..5
  EXPECT_EQ(do_madvise(mm, a, K4, 999), -EINVAL) << "unknown advice";
  EXPECT_EQ(do_madvise(mm, a, 0, 999), -EINVAL) << "advice checked before length";
  EXPECT_EQ(do_madvise(mm, a, 0, MADV_DONTNEED), 0) << "zero length";
  EXPECT_EQ(do_madvise(mm, a + 1, K4, MADV_DONTNEED), -EINVAL) << "unaligned";
  EXPECT_EQ(do_madvise(mm, a, ~0ull - 10, MADV_DONTNEED), -EINVAL) << "length rounds up to zero";
  EXPECT_EQ(do_madvise(mm, a, (0 - a.value()) + K4, MADV_DONTNEED), -EINVAL) << "range wraps";
  EXPECT_EQ(do_madvise(mm, VirtAddr(TASK_SIZE), K4, MADV_DONTNEED), -ENOMEM) << "no VMA up there";
  EXPECT_EQ(do_madvise(mm, a, 16 * K4, MADV_HUGEPAGE), -ENOMEM) << "a hole";
  EXPECT_EQ(test::vma_map(mm, a, 16), "AAAA  BBBBBBBBBB") << "both sides were processed";
  ReadLocker l(mm->mmap_lock);
  EXPECT_TRUE(mm->mm_mt.lookup(a)->vm_flags & VM_HUGEPAGE);
  EXPECT_TRUE(mm->mm_mt.lookup(a + 8 * K4)->vm_flags & VM_HUGEPAGE);
}

TEST(MadviseErrno, PerVmaRefusals) {
  TestMm t;
  MmStruct* mm = t.mm.get();
  VirtAddr shared = t.map(4 * K4, RW, MAP_SHARED | MAP_ANONYMOUS);
  EXPECT_EQ(do_madvise(mm, shared, 4 * K4, MADV_FREE), -EINVAL) << "MADV_FREE needs anonymous memory";
  EXPECT_EQ(do_madvise(mm, shared, 4 * K4, MADV_DONTNEED), 0);
  VirtAddr ro = t.map(4 * K4, PROT_READ);
  EXPECT_EQ(do_madvise(mm, ro, 4 * K4, MADV_POPULATE_WRITE), -EINVAL) << "write without VM_WRITE";
  EXPECT_EQ(do_madvise(mm, ro, 4 * K4, MADV_POPULATE_READ), 0);
  VirtAddr none = t.map(4 * K4, PROT_NONE);
  EXPECT_EQ(do_madvise(mm, none, 4 * K4, MADV_POPULATE_READ), -EINVAL) << "read without VM_READ";
  VirtAddr wo = t.map(4 * K4, PROT_WRITE);
  EXPECT_EQ(do_madvise(mm, wo, 4 * K4, MADV_POPULATE_READ), -EINVAL) << "GUP reads need VM_READ";
  VirtAddr rw = t.map(8 * K4);
  ASSERT_EQ(do_munmap(mm, rw + 4 * K4, 2 * K4), 0);
  EXPECT_EQ(do_madvise(mm, rw, 8 * K4, MADV_POPULATE_WRITE), -ENOMEM) << "populate stops at the hole";
  EXPECT_EQ(do_madvise(mm, rw, 8 * K4, MADV_COLD), -ENOMEM);
  EXPECT_EQ(do_madvise(mm, rw, 4 * K4, MADV_WILLNEED), 0);
}

}  // namespace
}  // namespace smm
