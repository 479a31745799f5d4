// File: shadowmm/base/lock_order.h
//
// The one lock hierarchy of the model (compare the "Lock ordering in mm:"
// tree at the top of Linux's mm/rmap.c). A lock may only be acquired while
// every lock the thread already holds is above it in this tree, i.e. has a
// strictly smaller rank. Test builds check this on every acquire
// (src/base/lockdep.cc); clang checks the GUARDED_BY/REQUIRES annotations.
//
//   khugepaged scan                         Khugepaged::scan_lock: one scanner
//                                           at a time (the kthread or a
//                                           synchronous `khugepaged` pass)
//   mmap_lock                               MmStruct::mmap_lock (rw-semaphore)
//     mmap_lock of a second mm              fork: child, taken nested
//     anon_vma->rwsem                        AnonVma::rwsem (khugepaged, rmap)
//       device lock                          a secondary MMU's driver lock: the
//                                            mirror's mutex, kvm's mmu_lock, the
//                                            gpus group lock (callbacks run under
//                                            mmap_lock and anon_vma)
//         device queue lock                  one GPU's work queue
//       mm->page_table_lock                  PGD/PUD entries, PUD leaves
//         PMD-table ptl                      split PMD lock (PMD entries)
//           PTE-table ptl                    split PTE lock; a second one nested
//                                            (fork copies src -> dst)
//             secondary TLB lock             IOTLB of a device that walks the
//                                            CPU page tables (called under PTL)
//     notifier subscriptions lock            MmuNotifierSubscriptions::lock
//     khugepaged_mm_lock                     the khugepaged mm list
//     i_pages lock                           a file's page cache (shmem, dax)
//     swap lock                              the swap space map
//     zone lock                              the frame allocator's free lists
//     device event log                       SecondaryMmu's log of received
//                                            invalidations (taken in callbacks)
//     oracle lock                            the coherence oracle's shadow state
//
// Locks not listed (the internal mutexes of WaitQueue, of the scenario
// runner's bookkeeping) are leaves that never nest and are unranked.

#pragma once

#include <cstdint>

namespace smm {

enum class LockRank : uint8_t {
  kUnranked = 0,
  kKhugepagedScan = 5,
  kMmapLock = 10,
  kAnonVma = 20,
  kDevice = 30,
  kDeviceQueue = 35,
  kPageTableLock = 40,
  kPmdPtl = 50,
  kPtePtl = 60,
  kSecondaryTlb = 70,
  kNotifierSubscriptions = 80,
  kKhugepagedMm = 85,
  kPageCache = 87,
  kSwap = 88,
  kZone = 90,
  kDeviceEvents = 95,
  kOracle = 100,
};

const char* lock_rank_name(LockRank rank);

}  // namespace smm
