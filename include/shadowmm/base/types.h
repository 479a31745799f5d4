// File: shadowmm/base/types.h
//
// Strong types for the quantities the model passes around: virtual addresses,
// page frame numbers and half-open address ranges, plus the x86-64 4-level
// page-table geometry (include/linux/pgtable.h, arch/x86/include/asm/
// pgtable_64_types.h). Raw uint64_t addresses never appear in signatures.

#pragma once

#include <compare>
#include <cstdint>

namespace smm {

inline constexpr uint64_t PAGE_SHIFT = 12;
inline constexpr uint64_t PAGE_SIZE = 1ull << PAGE_SHIFT;
inline constexpr uint64_t PMD_SHIFT = 21;
inline constexpr uint64_t PMD_SIZE = 1ull << PMD_SHIFT;
inline constexpr uint64_t PUD_SHIFT = 30;
inline constexpr uint64_t PUD_SIZE = 1ull << PUD_SHIFT;
inline constexpr uint64_t PGDIR_SHIFT = 39;
inline constexpr uint64_t PGDIR_SIZE = 1ull << PGDIR_SHIFT;
inline constexpr unsigned PTRS_PER_TABLE = 512;

inline constexpr unsigned HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT;  // 9
inline constexpr unsigned HPAGE_PUD_ORDER = PUD_SHIFT - PAGE_SHIFT;  // 18
inline constexpr unsigned HPAGE_PMD_NR = 1u << HPAGE_PMD_ORDER;

// Highest user address + 1 on x86-64 with 4-level paging (47 bits), minus the
// guard page the kernel keeps below the non-canonical hole.
inline constexpr uint64_t TASK_SIZE = (1ull << 47) - PAGE_SIZE;

constexpr bool is_aligned(uint64_t v, uint64_t size) { return (v & (size - 1)) == 0; }
constexpr uint64_t align_down(uint64_t v, uint64_t size) { return v & ~(size - 1); }
// Wraps to 0 on overflow, like the kernel's ALIGN().
constexpr uint64_t align_up(uint64_t v, uint64_t size) { return (v + size - 1) & ~(size - 1); }

// A user virtual address.
class VirtAddr {
 public:
  constexpr VirtAddr() = default;
  constexpr explicit VirtAddr(uint64_t v) : v_(v) {}

  constexpr uint64_t value() const { return v_; }
  constexpr auto operator<=>(const VirtAddr&) const = default;

  constexpr VirtAddr operator+(uint64_t d) const { return VirtAddr(v_ + d); }
  constexpr VirtAddr operator-(uint64_t d) const { return VirtAddr(v_ - d); }
  constexpr uint64_t operator-(VirtAddr o) const { return v_ - o.v_; }
  constexpr VirtAddr& operator+=(uint64_t d) {
    v_ += d;
    return *this;
  }

  constexpr bool is_aligned(uint64_t size) const { return smm::is_aligned(v_, size); }
  constexpr VirtAddr align_down(uint64_t size) const { return VirtAddr(smm::align_down(v_, size)); }
  constexpr VirtAddr align_up(uint64_t size) const { return VirtAddr(smm::align_up(v_, size)); }
  // Index of the entry mapping this address in a table of the given level
  // (0 = PTE, 1 = PMD, 2 = PUD, 3 = PGD).
  constexpr unsigned index(unsigned level) const {
    return static_cast<unsigned>((v_ >> (PAGE_SHIFT + 9 * level)) & (PTRS_PER_TABLE - 1));
  }
  constexpr uint64_t vpn() const { return v_ >> PAGE_SHIFT; }

 private:
  uint64_t v_ = 0;
};

// A page frame number of the model's physical memory.
class Pfn {
 public:
  constexpr Pfn() = default;
  constexpr explicit Pfn(uint64_t v) : v_(v) {}
  constexpr uint64_t value() const { return v_; }
  constexpr auto operator<=>(const Pfn&) const = default;
  constexpr Pfn operator+(uint64_t d) const { return Pfn(v_ + d); }
  constexpr uint64_t operator-(Pfn o) const { return v_ - o.v_; }

 private:
  uint64_t v_ = 0;
};

// Half-open address range [start, end).
struct VaRange {
  VirtAddr start;
  VirtAddr end;

  constexpr uint64_t size() const { return end - start; }
  constexpr bool empty() const { return end <= start; }
  constexpr bool contains(VirtAddr a) const { return start <= a && a < end; }
  constexpr bool contains(const VaRange& r) const { return start <= r.start && r.end <= end; }
  constexpr bool overlaps(const VaRange& r) const { return start < r.end && r.start < end; }
  constexpr VaRange intersect(const VaRange& r) const {
    VaRange out{start > r.start ? start : r.start, end < r.end ? end : r.end};
    if (out.end < out.start) out.end = out.start;
    return out;
  }
  constexpr bool operator==(const VaRange&) const = default;
};

}  // namespace smm
