// File: shadowmm/sim/knobs.h
//
// The `set KNOB VALUE` table of the scenario language and the other names a
// script may use (VMA flag names, mapping sizes; device options are in device_kinds.h), each with
// its validation, so the parser rejects bad values before anything runs.

#pragma once

#include <string>
#include <vector>

namespace smm {
class Machine;
}

namespace smm::sim {

bool knob_exists(const std::string& knob);
// Empty when `value` is valid for `knob`, else the error message.
std::string knob_check_value(const std::string& knob, const std::string& value);
// Applies a validated knob value to `machine`.
void knob_apply(Machine& machine, const std::string& knob, const std::string& value);
// Every knob name (for documentation and tests).
std::vector<std::string> knob_names();

bool vma_flag_name_valid(const std::string& name);
// 4K..1G with an optional /pte, /pmd or /pud, "zero", "zero2M" or "none".
bool mapped_size_valid(const std::string& size);

}  // namespace smm::sim
