// File: src/devices/factory.cc
//
// Creates the reference devices of the scenario language by kind.

#include "shadowmm/devices/gpus.h"
#include "shadowmm/devices/kvm.h"
#include "shadowmm/devices/mirror.h"
#include "shadowmm/devices/sva.h"
#include "shadowmm/sim/script.h"

namespace smm {

std::unique_ptr<SecondaryMmu> make_secondary_mmu(const std::string& name, const std::string& kind,
                                                 const std::map<std::string, std::string>& options, MmStruct* mm,
                                                 std::string* error) {
  auto opt_ns = [&](const char* key) -> uint64_t {
    auto it = options.find(key);
    return it == options.end() ? 0 : sim::parse_duration_ns(it->second).value_or(0);
  };
  auto opt = [&](const char* key, const std::string& def) {
    auto it = options.find(key);
    return it == options.end() ? def : it->second;
  };
  auto opt_int = [&](const char* key, unsigned def) {
    auto it = options.find(key);
    return it == options.end() ? def : static_cast<unsigned>(std::stoul(it->second));
  };
  if (kind == "mirror") return std::make_unique<Mirror>(name, mm, opt_ns("latency"));
  if (kind == "pinned") return std::make_unique<Pinned>(name, mm, opt_ns("latency"));
  if (kind == "gpus")
    return std::make_unique<GpuGroup>(name, mm, opt_int("count", 1), opt_ns("latency"), opt_int("passes", 1),
                                      opt_int("finish_slots", GpuGroup::kDefaultFinishSlots));
  if (kind == "sva") {
    std::string walker = opt("walker", "100us");
    uint64_t period = walker == "off" ? 0 : sim::parse_duration_ns(walker).value_or(0);
    return std::make_unique<Sva>(name, mm,
                                 opt("callback", "secondary_tlbs") == "start_end" ? Sva::Callback::kStartEnd
                                                                                   : Sva::Callback::kSecondaryTlbs,
                                 period);
  }
  if (kind == "kvm") return std::make_unique<Kvm>(name, mm);
  *error = "device kind '" + kind + "' is not available";
  return nullptr;
}

}  // namespace smm
