// File: src/pgtable/mmu_gather.cc
//
// mm/mmu_gather.c: batching of TLB flushes, page and page-table frees.

#include "shadowmm/pgtable/mmu_gather.h"

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/pgtable/tlb.h"

namespace smm {

MmuGather::MmuGather(MmStruct* mm, bool fullmm) : mm_(mm), fullmm_(fullmm) {
  folios_.reserve(64);
}

MmuGather::~MmuGather() {
  if (!finished_) finish();
}

void MmuGather::remove_tlb_entry(VirtAddr addr, uint64_t size) {
  if (addr < start_) start_ = addr;
  if (addr + size > end_) end_ = addr + size;
}

bool MmuGather::remove_folio_pages(Folio folio, int32_t nr_refs) {
  // Consecutive pages of one folio share an entry (a folio batch).
  if (!folios_.empty() && folios_.back().folio == folio)
    folios_.back().refs += nr_refs;
  else
    folios_.push_back(Entry{folio, nr_refs});
  return folios_.size() >= kMaxBatch;
}

void MmuGather::remove_table(PageTable* table, VirtAddr addr, bool under_read_lock) {
  remove_tlb_entry(addr, PAGE_SIZE);
  (under_read_lock ? deferred_tables_ : tables_).push_back(table);
}

void MmuGather::end_vma() {
  if (fullmm_) return;
  flush_tlbonly();
}

void MmuGather::flush_tlbonly() {
  if (end_ <= start_) return;
  if (fullmm_)
    flush_tlb_mm_range(mm_, VirtAddr(0), VirtAddr(~0ull));
  else
    flush_tlb_mm_range(mm_, start_, end_);
  start_ = VirtAddr(~0ull);
  end_ = VirtAddr(0);
}

void MmuGather::flush() {
  flush_tlbonly();
  // Everything queued was unmapped before the flush above (or an earlier
  // one): only now may the references go.
  std::vector<Entry> folios;
  folios.swap(folios_);
  // release_pages: drop the references, free the folios that hit zero under
  // one zone lock.
  std::vector<Pfn> to_free;
  for (const Entry& e : folios)
    if (e.folio.put_testzero(e.refs)) to_free.push_back(e.folio.pfn());
  if (!to_free.empty()) mm_->machine().mem().free_folios(to_free.data(), to_free.size());
  std::vector<PageTable*> tables;
  tables.swap(tables_);
  if (!tables.empty()) pt_sync_lockless_walkers(mm_);
  for (PageTable* t : tables) pt_free_table(mm_, t);
  for (PageTable* t : deferred_tables_) pt_defer_free(mm_, t);
  deferred_tables_.clear();
}

void MmuGather::finish() {
  flush();
  finished_ = true;
}

}  // namespace smm
