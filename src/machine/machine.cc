// File: src/machine/machine.cc

#include "shadowmm/machine/machine.h"

#include <algorithm>

#include "shadowmm/base/bug.h"

namespace smm {

Machine::Machine(MachineConfig config)
    : mem_(config.memory_bytes >> PAGE_SHIFT), swap_(config.swap_bytes >> PAGE_SHIFT) {
  // The zero pages exist for the machine's lifetime (empty_zero_page and the
  // huge zero folio, which Linux allocates lazily and the model up front).
  zero_folio_ = *mem_.alloc_folio(0, PG_reserved);
  huge_zero_folio_ = *mem_.alloc_folio(HPAGE_PMD_ORDER, PG_reserved);
}

Machine::~Machine() { VM_BUG_ON(khugepaged() != nullptr); }

void Machine::add_observer(MmObserver* observer) {
  observers_.push_back(observer);
  // The allocator reports frees only while someone listens (a hot path).
  mem_.set_free_observer([this](Folio folio) {
    for (MmObserver* o : observers_) o->on_folio_free(folio);
  });
}

void Machine::remove_observer(MmObserver* observer) {
  observers_.erase(std::remove(observers_.begin(), observers_.end(), observer), observers_.end());
  if (observers_.empty()) mem_.set_free_observer(nullptr);
}

}  // namespace smm
