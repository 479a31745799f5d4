// File: shadowmm/sim/device_kinds.h
//
// The device kinds of the scenario language (`device NAME KIND [options]`):
// one table, used by the parser (is the kind known, is each option valid),
// by the docs and tests (which kinds and options exist), and by the runner
// (construct the device). Each kind names its options with their syntax and
// a check of their value; the constructor reads the validated values.

#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace smm {
class MmStruct;
class SecondaryMmu;
}  // namespace smm

namespace smm::sim {

// The validated `key=value` options of one `device` command.
class DeviceOptions {
 public:
  DeviceOptions() = default;
  explicit DeviceOptions(std::map<std::string, std::string> values) : values_(std::move(values)) {}

  bool has(const std::string& key) const { return values_.count(key) != 0; }
  // The option's text, or `def`.
  std::string word(const std::string& key, const std::string& def) const;
  // An integer option, or `def`.
  unsigned uint(const std::string& key, unsigned def) const;
  // A duration option in nanoseconds, or `def`; "off" is 0.
  uint64_t duration_ns(const std::string& key, uint64_t def) const;

 private:
  std::map<std::string, std::string> values_;
};

struct DeviceOptionSpec {
  std::string name;
  // The value's syntax as the docs and errors show it ("DUR", "1..64",
  // "1|2").
  std::string syntax;
  // True when `value` is acceptable.
  std::function<bool(const std::string& value)> valid;
};

struct DeviceKind {
  std::string name;
  // One line for --help and the docs.
  std::string summary;
  std::vector<DeviceOptionSpec> options;
  std::function<std::unique_ptr<SecondaryMmu>(const std::string& name, MmStruct* mm, const DeviceOptions& opts)>
      make;
};

// The kind called `name`, or nullptr.
const DeviceKind* find_device_kind(const std::string& name);
// Every kind, in the order the docs list them.
const std::vector<DeviceKind>& device_kinds();
// "" when option `key=value` is valid for a device of `kind`, else the
// error message.
std::string device_option_check(const std::string& kind, const std::string& key, const std::string& value);
// Creates a device of a known kind with validated options.
std::unique_ptr<SecondaryMmu> make_device(const std::string& name, const std::string& kind,
                                          const std::map<std::string, std::string>& options, MmStruct* mm);

}  // namespace smm::sim
