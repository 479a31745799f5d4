// File: src/devices/factory.cc
//
// Creates the reference devices of the scenario language by kind.

#include "shadowmm/devices/kvm.h"
#include "shadowmm/devices/mirror.h"
#include "shadowmm/sim/script.h"

namespace smm {

std::unique_ptr<SecondaryMmu> make_secondary_mmu(const std::string& name, const std::string& kind,
                                                 const std::map<std::string, std::string>& options, MmStruct* mm,
                                                 std::string* error) {
  auto opt_ns = [&](const char* key) -> uint64_t {
    auto it = options.find(key);
    return it == options.end() ? 0 : sim::parse_duration_ns(it->second).value_or(0);
  };
  if (kind == "mirror") return std::make_unique<Mirror>(name, mm, opt_ns("latency"));
  if (kind == "kvm") return std::make_unique<Kvm>(name, mm);
  *error = "device kind '" + kind + "' is not available";
  return nullptr;
}

}  // namespace smm
