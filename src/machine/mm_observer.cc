// File: src/machine/mm_observer.cc
//
// The operation each thread is in, for reports (machine/mm_observer.h).

#include "shadowmm/machine/mm_observer.h"

namespace smm {

thread_local MmOpScope* MmOpScope::current_ = nullptr;

}  // namespace smm
