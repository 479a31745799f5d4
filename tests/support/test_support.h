// File: tests/support/test_support.h
//
// Shared test helpers: a machine with one address space (TestMm), a
// recording observer of the mm core's notifier ranges, TLB flushes, entry
// changes and frees (RecordingObserver), and ASCII address maps of VMAs in
// the style of Linux's tools/testing/vma.

#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "shadowmm/base/bug.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/mmap.h"
#include "shadowmm/notifier/mmu_notifier.h"

namespace smm::test {

inline constexpr uint64_t K4 = 4096;
inline constexpr uint64_t M1 = 1ull << 20;
inline constexpr uint64_t M2 = 2ull << 20;
inline constexpr uint64_t G1 = 1ull << 30;
inline constexpr int RW = PROT_READ | PROT_WRITE;

// How long a threaded stress test runs: SHADOWMM_STRESS_SECONDS (make
// stress), else `default_ms`.
std::chrono::milliseconds stress_duration(int default_ms);

// One machine with one mm ("main") and a khugepaged. Checks every invariant
// on destruction.
class TestMm {
 public:
  explicit TestMm(MachineConfig config = {});
  ~TestMm();

  Machine machine;
  // The machine's khugepaged (the mm list, the scanner, the thread).
  Khugepaged khugepaged{machine};
  MmRef mm;

  // mmap that must succeed: private anonymous unless flags say otherwise.
  VirtAddr map(uint64_t len, int prot = RW, int flags = MAP_PRIVATE | MAP_ANONYMOUS, MmapOpts opts = {});
  // A fixed private anonymous mapping at `addr` (MAP_FIXED_NOREPLACE).
  VirtAddr map_at(VirtAddr addr, uint64_t len, int prot = RW);
  // Write/read one page's value through the CPU path; ASSERTs rc 0.
  void write(VirtAddr addr, uint64_t value);
  uint64_t read(VirtAddr addr);
  // Structure checks of the mm, its page tables and the allocator.
  void check();
  // Number of VMAs.
  size_t nr_vmas();
};

// Records everything the mm core reports, in order.
class RecordingObserver : public MmObserver {
 public:
  struct Event {
    enum class Kind { kRangeStart, kRangeEnd, kFlush, kFree, kPteChange, kPteInstall } kind;
    MmuNotifyEvent event = MMU_NOTIFY_UNMAP;
    VaRange range{};
    bool blockable = false;
    Pfn pfn{};
    uint64_t size = 0;
  };

  explicit RecordingObserver(Machine& m) : machine_(m) { m.add_observer(this); }
  ~RecordingObserver() override { machine_.remove_observer(this); }

  void on_range_start(const MmuNotifierRange& r) override;
  void on_range_end(const MmuNotifierRange& r) override;
  void on_tlb_flush(MmStruct* mm, VirtAddr start, VirtAddr end) override;
  void on_pte_change(MmStruct* mm, VirtAddr addr, uint64_t size, Pte old_pte, Pte new_pte) override;
  void on_pte_install(MmStruct* mm, VirtAddr addr, uint64_t size, Pte pte) override;
  void on_folio_free(Folio folio) override;

  std::vector<Event> events() const;
  void clear();
  // The ranges opened, in order, as "EVENT [start,end)" with addresses
  // relative to `base`, e.g. "clear [0x200000,0x400000)".
  std::vector<std::string> ranges(VirtAddr base) const;
  // Checks that ranges are properly nested (every start has its end).
  bool balanced() const;

 private:
  void add(Event e);
  Machine& machine_;
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

// An ASCII map of the VMAs of [base, base + columns * unit): one character
// per `unit`, a letter per VMA in address order ('A', 'B', ...), ' ' for a
// hole. E.g. "AAABB  CC".
std::string vma_map(MmStruct* mm, VirtAddr base, unsigned columns, uint64_t unit = K4);

// "0x1000" style relative hex.
std::string rel(VirtAddr base, VirtAddr a);

}  // namespace smm::test
