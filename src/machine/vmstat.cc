// File: src/machine/vmstat.cc

#include "shadowmm/machine/vmstat.h"

#include "shadowmm/base/bug.h"

namespace smm {

namespace {
constexpr std::string_view kNames[] = {
#define SMM_NAME(name) #name,
    SMM_VM_EVENTS(SMM_NAME)
#undef SMM_NAME
};
}  // namespace

std::string_view vm_event_name(VmEvent e) { return kNames[static_cast<size_t>(e)]; }

VmEvent mthp_fault_alloc_event(unsigned order) {
  VM_BUG_ON(order < 2 || order > 8);
  return static_cast<VmEvent>(static_cast<unsigned>(VmEvent::mthp_fault_alloc_16K) + order - 2);
}

VmEvent collapse_event(unsigned order) {
  VM_BUG_ON(order < 2 || order > 9);
  return static_cast<VmEvent>(static_cast<unsigned>(VmEvent::collapse_16K) + order - 2);
}

}  // namespace smm
