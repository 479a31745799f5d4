// File: src/machine/pgtable_types.cc
//
// The page-table page (machine/pgtable_types.h).

#include "shadowmm/machine/pgtable_types.h"

namespace smm {

bool PageTable::empty() const {
  for (const auto& e : entries)
    if (e.load(std::memory_order_relaxed) != 0) return false;
  return true;
}

}  // namespace smm
