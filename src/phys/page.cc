// File: src/phys/page.cc
//
// Folio accessors (include/linux/mm.h: folio_get/folio_put, folio_mapcount,
// folio_entire_mapcount; include/linux/page-flags.h).

#include "shadowmm/phys/page.h"

#include "shadowmm/phys/page_alloc.h"

namespace smm {

namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}

unsigned Folio::order() const { return page_info_order(aref(mem_->page(pfn_).info).load(kRelaxed)); }

int32_t Folio::refcount() const { return aref(mem_->page(pfn_).refcount).load(std::memory_order_acquire); }

void Folio::get(int32_t n) const {
  int32_t old = aref(mem_->page(pfn_).refcount).fetch_add(n, kRelaxed);
  VM_BUG_ON(old <= 0);
}

void Folio::put(int32_t n) const {
  if (put_testzero(n)) mem_->free_folio(pfn_);
}

bool Folio::put_testzero(int32_t n) const {
  if (test(PG_reserved)) return false;
  int32_t old = aref(mem_->page(pfn_).refcount).fetch_sub(n, std::memory_order_acq_rel);
  VM_BUG_ON(old < n);
  return old == n;
}

int32_t Folio::page_mapcount(uint64_t i) const { return aref(mem_->page(pfn_ + i).mapcount).load(kRelaxed); }

void Folio::add_page_mapcount(uint64_t i, int32_t delta) const {
  int32_t old = aref(mem_->page(pfn_ + i).mapcount).fetch_add(delta, kRelaxed);
  VM_BUG_ON(old + delta < 0);
}

int32_t Folio::entire_mapcount() const {
  if (!is_large()) return 0;
  return aref(mem_->page(pfn_ + 1).refcount).load(kRelaxed);
}

void Folio::add_entire_mapcount(int32_t delta) const {
  VM_BUG_ON(!is_large());
  int32_t old = aref(mem_->page(pfn_ + 1).refcount).fetch_add(delta, kRelaxed);
  VM_BUG_ON(old + delta < 0);
}

int64_t Folio::total_mapcount() const {
  uint64_t nr = nr_pages();
  int64_t total = int64_t{entire_mapcount()} * static_cast<int64_t>(nr);
  for (uint64_t i = 0; i < nr; i++) total += page_mapcount(i);
  return total;
}

bool Folio::mapped() const {
  if (entire_mapcount() > 0) return true;
  uint64_t nr = nr_pages();
  for (uint64_t i = 0; i < nr; i++)
    if (page_mapcount(i) > 0) return true;
  return false;
}

bool Folio::maybe_mapped_shared() const {
  int32_t entire = entire_mapcount();
  if (entire > 1) return true;
  uint64_t nr = nr_pages();
  for (uint64_t i = 0; i < nr; i++)
    if (page_mapcount(i) + entire > 1) return true;
  return false;
}

uint32_t Folio::flags() const { return aref(mem_->page(pfn_).info).load(kRelaxed) & kPageFlagMask; }
bool Folio::test(PageFlag f) const { return aref(mem_->page(pfn_).info).load(kRelaxed) & f; }
void Folio::set(PageFlag f) const { aref(mem_->page(pfn_).info).fetch_or(f, kRelaxed); }
void Folio::clear(PageFlag f) const { aref(mem_->page(pfn_).info).fetch_and(~uint32_t{f}, kRelaxed); }
bool Folio::test_and_clear(PageFlag f) const {
  return aref(mem_->page(pfn_).info).fetch_and(~uint32_t{f}, kRelaxed) & f;
}

bool Folio::trylock() const {
  return !(aref(mem_->page(pfn_).info).fetch_or(PG_locked, std::memory_order_acquire) & PG_locked);
}
void Folio::unlock() const {
  uint32_t old = aref(mem_->page(pfn_).info).fetch_and(~uint32_t{PG_locked}, std::memory_order_release);
  VM_BUG_ON(!(old & PG_locked));
}

bool Folio::page_anon_exclusive(uint64_t i) const {
  return aref(mem_->page(pfn_ + i).info).load(kRelaxed) & PG_anon_exclusive;
}
void Folio::set_page_anon_exclusive(uint64_t i, bool exclusive) const {
  if (exclusive)
    aref(mem_->page(pfn_ + i).info).fetch_or(PG_anon_exclusive, kRelaxed);
  else
    aref(mem_->page(pfn_ + i).info).fetch_and(~uint32_t{PG_anon_exclusive}, kRelaxed);
}

uint64_t Folio::read(uint64_t i) const { return mem_->value(pfn_ + i).load(kRelaxed); }
void Folio::write(uint64_t i, uint64_t v) const {
  VM_BUG_ON(test(PG_reserved));
  mem_->value(pfn_ + i).store(v, kRelaxed);
}

}  // namespace smm
