// File: shadowmm/pgtable/mmu_gather.h
//
// The mmu_gather (include/asm-generic/tlb.h, mm/mmu_gather.c): collects the
// address range whose CPU TLB entries must be flushed, the folio references
// dropped by the zap, and the page-table pages freed by it, so that nothing
// is freed before the TLB flush that makes it unreachable.
//
//   tlb_gather_mmu()           construct
//   tlb_flush_pte_range()      remove_tlb_entry(): extend the range to flush
//   __tlb_remove_folio_pages() remove_folio_pages(): queue reference drops;
//                              true when the batch is full (caller must flush)
//   tlb_remove_table()         remove_table(): free a table after the flush
//   tlb_flush_mmu_tlbonly()    flush_tlbonly(): flush the CPU TLB for the range
//   tlb_flush_mmu()            flush(): tlbonly, then free pages and tables
//   tlb_finish_mmu()           finish(): final flush
//
// A folio reference is dropped only after a flush whose range covered every
// address the folio was unmapped from; tests assert this ordering.

#pragma once

#include <cstdint>
#include <vector>

#include "shadowmm/base/types.h"
#include "shadowmm/pgtable/pgtable.h"
#include "shadowmm/phys/page.h"

namespace smm {

class MmStruct;

class MmuGather {
 public:
  // Linux: tlb_gather_mmu / tlb_gather_mmu_fullmm.
  explicit MmuGather(MmStruct* mm, bool fullmm = false);
  ~MmuGather();
  MmuGather(const MmuGather&) = delete;
  MmuGather& operator=(const MmuGather&) = delete;

  // Entries a batch holds before the zap must flush: the kernel's bundle of 8
  // plus MAX_GATHER_BATCH_COUNT (10000 / 510 = 19) batches of 510 pointers.
  static constexpr size_t kMaxBatch = 8 + 19 * 510;

  MmStruct* mm() const { return mm_; }
  bool fullmm() const { return fullmm_; }

  // Linux: tlb_start_vma / tlb_end_vma. x86 does not merge VMAs in one
  // gather: the end of each VMA flushes the TLB for what was gathered so far
  // (pages are still freed only at flush()/finish()).
  void start_vma() {}
  void end_vma();

  // Linux: tlb_flush_pte_range / tlb_remove_tlb_entry / tlb_remove_pmd_tlb_entry.
  void remove_tlb_entry(VirtAddr addr, uint64_t size);
  // Linux: __tlb_remove_folio_pages. Queues `nr_refs` references of `folio`
  // to drop after the flush. Returns true when the batch is full.
  bool remove_folio_pages(Folio folio, int32_t nr_refs);
  // Linux: pte_free_tlb / pmd_free_tlb / pud_free_tlb: free `table`, which
  // mapped the span starting at `addr`, after the flush. With
  // `under_read_lock`, the table was detached under mmap_lock held for read:
  // after the flush it goes to the mm's deferred list (mm_struct.h).
  void remove_table(PageTable* table, VirtAddr addr, bool under_read_lock = false);

  // Linux: tlb_flush_mmu_tlbonly. Flushes the accumulated range, if any.
  void flush_tlbonly();
  // Linux: tlb_flush_mmu. Flush, then drop the queued references and tables.
  void flush();
  // Linux: tlb_finish_mmu.
  void finish();

  bool has_pending_range() const { return end_ > start_; }
  size_t pending_folios() const { return folios_.size(); }

 private:
  struct Entry {
    Folio folio;
    int32_t refs;
  };

  MmStruct* mm_;
  bool fullmm_;
  bool finished_ = false;
  VirtAddr start_{~0ull};
  VirtAddr end_{0};
  std::vector<Entry> folios_;
  std::vector<PageTable*> tables_;
  std::vector<PageTable*> deferred_tables_;
};

}  // namespace smm
