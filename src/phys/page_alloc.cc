// File: src/phys/page_alloc.cc
//
// Buddy allocator over the model's memory map (mm/page_alloc.c). Free blocks
// are linked through the Page fields of their head page, as the kernel links
// them through page->buddy_list: refcount = previous, mapcount = next.

#include "shadowmm/phys/page_alloc.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

namespace smm {
namespace {

constexpr int32_t kNil = -1;

uint32_t make_info(uint32_t flags, unsigned order, uint16_t gen) {
  return (flags & kPageFlagMask) | (order << kPageOrderShift) | (uint32_t{gen} << kPageGenShift);
}

}  // namespace

FrameAllocator::FrameAllocator(uint64_t nr_frames) : nr_frames_(nr_frames) {
  VM_BUG_ON(nr_frames < 2 || nr_frames > (1ull << 31));
  map_bytes_ = nr_frames * (sizeof(Page) + sizeof(uint64_t));
  void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  values_ = static_cast<uint64_t*>(p);
  pages_ = reinterpret_cast<Page*>(values_ + nr_frames);

  SpinLocker l(zone_lock_);
  for (int64_t& h : free_head_) h = kNil;
  // Frame 0 is never handed out, so a zero pfn can never alias a real page.
  aref(pages_[0].info).store(make_info(PG_reserved, 0, 0), std::memory_order_relaxed);
  next_uncarved_ = 1;
}

bool FrameAllocator::carve_locked() {
  // Fresh memory joins the free lists one naturally aligned block at a time,
  // the largest that fits, so untouched memory is never written.
  if (next_uncarved_ >= nr_frames_) return false;
  unsigned order = 0;
  while (order < MAX_FOLIO_ORDER && is_aligned(next_uncarved_, 2ull << order) &&
         next_uncarved_ + (2ull << order) <= nr_frames_)
    order++;
  list_add_locked(next_uncarved_, order);
  next_uncarved_ += 1ull << order;
  return true;
}

FrameAllocator::~FrameAllocator() { munmap(values_, map_bytes_); }

void FrameAllocator::list_add_locked(uint64_t pfn, unsigned order) {
  Page& p = pages_[pfn];
  uint16_t gen = page_info_gen(aref(p.info).load(std::memory_order_relaxed));
  aref(p.info).store(make_info(PG_buddy, order, gen), std::memory_order_relaxed);
  int64_t old = free_head_[order];
  aref(p.refcount).store(kNil, std::memory_order_relaxed);
  aref(p.mapcount).store(static_cast<int32_t>(old), std::memory_order_relaxed);
  if (old != kNil) aref(pages_[old].refcount).store(static_cast<int32_t>(pfn), std::memory_order_relaxed);
  free_head_[order] = static_cast<int64_t>(pfn);
  nr_free_[order]++;
}

void FrameAllocator::list_del_locked(uint64_t pfn, unsigned order) {
  Page& p = pages_[pfn];
  int32_t prev = aref(p.refcount).load(std::memory_order_relaxed);
  int32_t next = aref(p.mapcount).load(std::memory_order_relaxed);
  if (prev != kNil)
    aref(pages_[prev].mapcount).store(next, std::memory_order_relaxed);
  else
    free_head_[order] = next;
  if (next != kNil) aref(pages_[next].refcount).store(prev, std::memory_order_relaxed);
  uint16_t gen = page_info_gen(aref(p.info).load(std::memory_order_relaxed));
  aref(p.info).store(make_info(0, 0, gen), std::memory_order_relaxed);
  aref(p.refcount).store(0, std::memory_order_relaxed);
  aref(p.mapcount).store(0, std::memory_order_relaxed);
  nr_free_[order]--;
}

bool FrameAllocator::should_fail_locked(unsigned order) {
  if (!(fail_order_mask_ & (1u << order)) || fail_times_ == 0) return false;
  if (fail_after_ > 0) {
    fail_after_--;
    return false;
  }
  fail_times_--;
  return true;
}

Result<Folio> FrameAllocator::alloc_folio(unsigned order, uint32_t flags, AllocZero zero) {
  VM_BUG_ON(order > MAX_FOLIO_ORDER);
  uint64_t pfn;
  {
    SpinLocker l(zone_lock_);
    unsigned cur = order;
    for (;;) {
      while (cur <= MAX_FOLIO_ORDER && free_head_[cur] == kNil) cur++;
      if (cur <= MAX_FOLIO_ORDER || !carve_locked()) break;
      cur = order;
    }
    if (cur > MAX_FOLIO_ORDER || should_fail_locked(order)) {
      stats_.alloc_failures[order]++;
      return Err{ENOMEM};
    }
    pfn = static_cast<uint64_t>(free_head_[cur]);
    list_del_locked(pfn, cur);
    // Split: keep the lower half, give the upper halves back (expand()).
    while (cur > order) {
      cur--;
      list_add_locked(pfn + (1ull << cur), cur);
    }
    stats_.allocs[order]++;
    stats_.pages_in_use += 1ull << order;
  }
  pages_in_use_.fetch_add(1ull << order, std::memory_order_relaxed);

  // The block is ours now: initialise its pages without the zone lock.
  uint64_t nr = 1ull << order;
  for (uint64_t i = 0; i < nr; i++) {
    Page& p = pages_[pfn + i];
    uint16_t gen = page_info_gen(aref(p.info).load(std::memory_order_relaxed));
    aref(p.info).store(make_info(i == 0 ? flags : 0, order, gen), std::memory_order_relaxed);
    aref(p.refcount).store(i == 0 ? 1 : 0, std::memory_order_relaxed);
    aref(p.mapcount).store(0, std::memory_order_relaxed);
  }
  if (zero == AllocZero::Yes) std::memset(values_ + pfn, 0, nr * sizeof(uint64_t));
  return Folio(this, Pfn(pfn));
}

unsigned FrameAllocator::prepare_free(Pfn head) {
  Folio folio(this, head);
  VM_BUG_ON(folio.test(PG_reserved));
  if (free_observer_) free_observer_(folio);
  unsigned order = folio.order();
  uint64_t nr = 1ull << order;
  uint64_t pfn = head.value();
  for (uint64_t i = 0; i < nr; i++) {
    Page& p = pages_[pfn + i];
    VM_BUG_ON(aref(p.mapcount).load(std::memory_order_relaxed) != 0);
    uint16_t gen = page_info_gen(aref(p.info).load(std::memory_order_relaxed));
    aref(p.info).store(make_info(0, 0, static_cast<uint16_t>(gen + 1)), std::memory_order_relaxed);
    aref(p.refcount).store(0, std::memory_order_relaxed);
  }
  return order;
}

void FrameAllocator::merge_free_locked(uint64_t pfn, unsigned order) {
  stats_.frees++;
  stats_.pages_in_use -= 1ull << order;
  // __free_one_page: merge with the buddy while it is free at the same order.
  while (order < MAX_FOLIO_ORDER) {
    uint64_t buddy = pfn ^ (1ull << order);
    if (buddy >= nr_frames_) break;
    uint32_t binfo = aref(pages_[buddy].info).load(std::memory_order_relaxed);
    if (!(binfo & PG_buddy) || page_info_order(binfo) != order) break;
    list_del_locked(buddy, order);
    pfn = pfn < buddy ? pfn : buddy;
    order++;
  }
  list_add_locked(pfn, order);
}

void FrameAllocator::free_folio(Pfn head) {
  unsigned order = prepare_free(head);
  pages_in_use_.fetch_sub(1ull << order, std::memory_order_relaxed);
  SpinLocker l(zone_lock_);
  merge_free_locked(head.value(), order);
}

void FrameAllocator::free_folios(const Pfn* heads, size_t n) {
  if (n == 0) return;
  unsigned orders[64];
  for (size_t done = 0; done < n;) {
    size_t batch = std::min<size_t>(n - done, 64);
    uint64_t pages = 0;
    for (size_t i = 0; i < batch; i++) {
      orders[i] = prepare_free(heads[done + i]);
      pages += 1ull << orders[i];
    }
    pages_in_use_.fetch_sub(pages, std::memory_order_relaxed);
    SpinLocker l(zone_lock_);
    for (size_t i = 0; i < batch; i++) merge_free_locked(heads[done + i].value(), orders[i]);
    done += batch;
  }
}

void FrameAllocator::inject_failures(uint32_t order_mask, uint64_t times, uint64_t after) {
  SpinLocker l(zone_lock_);
  fail_order_mask_ = order_mask;
  fail_times_ = times;
  fail_after_ = after;
}

void FrameAllocator::clear_injected_failures() { inject_failures(0, 0, 0); }

Folio FrameAllocator::pfn_folio(Pfn pfn) const {
  uint32_t info = aref(page(pfn).info).load(std::memory_order_relaxed);
  unsigned order = page_info_order(info);
  return Folio(const_cast<FrameAllocator*>(this), Pfn(align_down(pfn.value(), 1ull << order)));
}

uint16_t FrameAllocator::generation(Pfn pfn) const {
  return page_info_gen(aref(page(pfn).info).load(std::memory_order_relaxed));
}

bool FrameAllocator::is_free(Pfn pfn) const {
  SpinLocker l(zone_lock_);
  if (pfn.value() >= next_uncarved_) return true;
  for (unsigned k = 0; k <= MAX_FOLIO_ORDER; k++) {
    uint64_t head = align_down(pfn.value(), 1ull << k);
    uint32_t info = aref(pages_[head].info).load(std::memory_order_relaxed);
    if ((info & PG_buddy) && page_info_order(info) >= k) return true;
  }
  return false;
}

FrameAllocatorStats FrameAllocator::stats() const {
  SpinLocker l(zone_lock_);
  return stats_;
}

uint64_t FrameAllocator::free_pages() const {
  SpinLocker l(zone_lock_);
  uint64_t n = nr_frames_ - next_uncarved_;
  for (unsigned k = 0; k <= MAX_FOLIO_ORDER; k++) n += nr_free_[k] << k;
  return n;
}

void FrameAllocator::check_invariants() const {
  SpinLocker l(zone_lock_);
  uint64_t total_free = 0;
  for (unsigned k = 0; k <= MAX_FOLIO_ORDER; k++) {
    uint64_t count = 0;
    int64_t prev = kNil;
    for (int64_t p = free_head_[k]; p != kNil;
         p = aref(pages_[p].mapcount).load(std::memory_order_relaxed)) {
      VM_BUG_ON(static_cast<uint64_t>(p) >= nr_frames_);
      VM_BUG_ON(!is_aligned(static_cast<uint64_t>(p), 1ull << k));
      VM_BUG_ON(static_cast<uint64_t>(p) + (1ull << k) > nr_frames_);
      uint32_t info = aref(pages_[p].info).load(std::memory_order_relaxed);
      VM_BUG_ON(!(info & PG_buddy) || page_info_order(info) != k);
      VM_BUG_ON(aref(pages_[p].refcount).load(std::memory_order_relaxed) != prev);
      prev = p;
      VM_BUG_ON(++count > nr_free_[k]);
    }
    VM_BUG_ON(count != nr_free_[k]);
    total_free += count << k;
  }
  // Frame 0 is reserved and never free; memory above the carve mark is free
  // but not on any list yet.
  VM_BUG_ON(total_free + stats_.pages_in_use + 1 + (nr_frames_ - next_uncarved_) != nr_frames_);
}

}  // namespace smm
