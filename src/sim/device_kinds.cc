// File: src/sim/device_kinds.cc
//
// The table of the scenario language's device kinds: the five reference
// secondary MMUs of src/devices/, their options, and how each is built.

#include "shadowmm/sim/device_kinds.h"

#include "shadowmm/devices/gpus.h"
#include "shadowmm/devices/kvm.h"
#include "shadowmm/devices/mirror.h"
#include "shadowmm/devices/sva.h"
#include "shadowmm/sim/script.h"

namespace smm::sim {

std::string DeviceOptions::word(const std::string& key, const std::string& def) const {
  auto it = values_.find(key);
  return it == values_.end() ? def : it->second;
}

unsigned DeviceOptions::uint(const std::string& key, unsigned def) const {
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  return static_cast<unsigned>(parse_int(it->second).value_or(def));
}

uint64_t DeviceOptions::duration_ns(const std::string& key, uint64_t def) const {
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  if (it->second == "off") return 0;
  return parse_duration_ns(it->second).value_or(def);
}

namespace {

DeviceOptionSpec duration_option(const char* name) {
  return {name, "DUR", [](const std::string& v) { return parse_duration_ns(v).has_value(); }};
}

DeviceOptionSpec range_option(const char* name, uint64_t lo, uint64_t hi) {
  return {name, std::to_string(lo) + ".." + std::to_string(hi), [lo, hi](const std::string& v) {
            std::optional<uint64_t> n = parse_int(v);
            return n && *n >= lo && *n <= hi;
          }};
}

DeviceOptionSpec word_option(const char* name, std::vector<std::string> words) {
  std::string syntax;
  for (const std::string& w : words) syntax += (syntax.empty() ? "" : "|") + w;
  return {name, syntax, [words](const std::string& v) {
            for (const std::string& w : words)
              if (w == v) return true;
            return false;
          }};
}

std::vector<DeviceKind> builtin_kinds() {
  std::vector<DeviceKind> kinds;
  kinds.push_back({"mirror", "an HMM mirror with replayable faults (test_hmm's dmirror)",
                   {duration_option("latency")},
                   [](const std::string& name, MmStruct* mm, const DeviceOptions& o) -> std::unique_ptr<SecondaryMmu> {
                     return std::make_unique<Mirror>(name, mm, o.duration_ns("latency", 0));
                   }});
  kinds.push_back({"pinned", "a mirror without replayable faults: a missing translation is a fatal device fault",
                   {duration_option("latency")},
                   [](const std::string& name, MmStruct* mm, const DeviceOptions& o) -> std::unique_ptr<SecondaryMmu> {
                     return std::make_unique<Pinned>(name, mm, o.duration_ns("latency", 0));
                   }});
  kinds.push_back({"gpus", "N GPUs behind one interval notifier, one worker thread each",
                   {range_option("count", 1, 64), duration_option("latency"), word_option("passes", {"1", "2"}),
                    range_option("finish_slots", 0, 64)},
                   [](const std::string& name, MmStruct* mm, const DeviceOptions& o) -> std::unique_ptr<SecondaryMmu> {
                     return std::make_unique<GpuGroup>(name, mm, o.uint("count", 1), o.duration_ns("latency", 0),
                                                       o.uint("passes", 1),
                                                       o.uint("finish_slots", GpuGroup::kDefaultFinishSlots));
                   }});
  DeviceOptionSpec walker = duration_option("walker");
  walker.syntax = "DUR|off";
  walker.valid = [](const std::string& v) { return v == "off" || parse_duration_ns(v).has_value(); };
  kinds.push_back({"sva", "an IOMMU sharing the CPU page tables, with an IOTLB and a hardware walker",
                   {word_option("callback", {"secondary_tlbs", "start_end"}), walker},
                   [](const std::string& name, MmStruct* mm, const DeviceOptions& o) -> std::unique_ptr<SecondaryMmu> {
                     Sva::Callback cb = o.word("callback", "secondary_tlbs") == "start_end"
                                            ? Sva::Callback::kStartEnd
                                            : Sva::Callback::kSecondaryTlbs;
                     return std::make_unique<Sva>(name, mm, cb, o.duration_ns("walker", 100000));
                   }});
  kinds.push_back({"kvm", "a KVM-style shadow page table on classic start/end notifiers",
                   {},
                   [](const std::string& name, MmStruct* mm, const DeviceOptions&) -> std::unique_ptr<SecondaryMmu> {
                     return std::make_unique<Kvm>(name, mm);
                   }});
  return kinds;
}

}  // namespace

const std::vector<DeviceKind>& device_kinds() {
  static const std::vector<DeviceKind> kinds = builtin_kinds();
  return kinds;
}

const DeviceKind* find_device_kind(const std::string& name) {
  for (const DeviceKind& k : device_kinds())
    if (k.name == name) return &k;
  return nullptr;
}

std::string device_option_check(const std::string& kind, const std::string& key, const std::string& value) {
  const DeviceKind* k = find_device_kind(kind);
  if (!k) return "unknown device kind '" + kind + "'";
  for (const DeviceOptionSpec& o : k->options) {
    if (o.name != key) continue;
    if (o.valid(value)) return "";
    return "bad value '" + value + "' for " + kind + " option " + key + " (" + o.syntax + ")";
  }
  return "unknown option '" + key + "' for device kind " + kind;
}

std::unique_ptr<SecondaryMmu> make_device(const std::string& name, const std::string& kind,
                                          const std::map<std::string, std::string>& options, MmStruct* mm) {
  const DeviceKind* k = find_device_kind(kind);
  return k ? k->make(name, mm, DeviceOptions(options)) : nullptr;
}

}  // namespace smm::sim
