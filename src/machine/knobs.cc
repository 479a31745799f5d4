// File: src/machine/knobs.cc
//
// The per-size THP settings (mm/huge_memory.c: the hugepages-<N>kB/enabled
// stores into huge_anon_orders_always / _madvise / _inherit).

#include "shadowmm/machine/knobs.h"

namespace smm {

ThpPolicy::ThpPolicy() = default;

void ThpPolicy::set_size(unsigned order, ThpSizeSetting setting) {
  uint32_t bit = 1u << order;
  // A store sets exactly one of the three masks, or none (never).
  always_.fetch_and(~bit);
  madvise_.fetch_and(~bit);
  inherit_.fetch_and(~bit);
  if (setting == ThpSizeSetting::kAlways) always_.fetch_or(bit);
  if (setting == ThpSizeSetting::kMadvise) madvise_.fetch_or(bit);
  if (setting == ThpSizeSetting::kInherit) inherit_.fetch_or(bit);
}

ThpSizeSetting ThpPolicy::size(unsigned order) const {
  uint32_t bit = 1u << order;
  if (always_orders() & bit) return ThpSizeSetting::kAlways;
  if (madvise_orders() & bit) return ThpSizeSetting::kMadvise;
  if (inherit_orders() & bit) return ThpSizeSetting::kInherit;
  return ThpSizeSetting::kNever;
}

}  // namespace smm
