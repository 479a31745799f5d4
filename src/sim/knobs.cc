// File: src/sim/knobs.cc
//
// The knobs of `set` and their effect on a Machine (the sysfs files of
// /sys/kernel/mm/transparent_hugepage/ and the project's own switches).

#include "shadowmm/sim/knobs.h"

#include <functional>
#include <map>

#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/vm_flags.h"
#include "shadowmm/sim/script.h"

namespace smm::sim {

namespace {

struct Knob {
  // Allowed words (empty: numeric between lo and hi).
  std::vector<std::string> words;
  uint64_t lo = 0;
  uint64_t hi = 0;
  std::function<void(Machine&, const std::string&)> apply;
};

template <typename T>
void store(std::atomic<T>& a, T v) {
  a.store(v, std::memory_order_relaxed);
}

ThpSizeSetting size_setting(const std::string& v) {
  if (v == "always") return ThpSizeSetting::kAlways;
  if (v == "inherit") return ThpSizeSetting::kInherit;
  if (v == "madvise") return ThpSizeSetting::kMadvise;
  return ThpSizeSetting::kNever;
}

unsigned to_uint(const std::string& v) { return static_cast<unsigned>(*parse_size(v)); }

const std::map<std::string, Knob>& knobs() {
  static const std::map<std::string, Knob>* table = [] {
    auto* t = new std::map<std::string, Knob>;
    (*t)["thp.enabled"] = {{"madvise", "always", "never"}, 0, 0, [](Machine& m, const std::string& v) {
                             store(m.thp().enabled, v == "always"   ? ThpEnabled::kAlways
                                                    : v == "never" ? ThpEnabled::kNever
                                                                   : ThpEnabled::kMadvise);
                           }};
    const char* sizes[] = {"16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M"};
    for (unsigned order = 2; order <= 9; order++) {
      (*t)[std::string("thp.mthp.") + sizes[order - 2]] = {
          {"never", "always", "inherit", "madvise"}, 0, 0,
          [order](Machine& m, const std::string& v) { m.thp().set_size(order, size_setting(v)); }};
    }
    (*t)["thp.use_zero_page"] = {{"1", "0"}, 0, 0,
                                 [](Machine& m, const std::string& v) { store(m.thp().use_zero_page, v == "1"); }};
    (*t)["khugepaged.max_ptes_none"] = {
        {}, 0, 511, [](Machine& m, const std::string& v) { store(m.thp().max_ptes_none, to_uint(v)); }};
    (*t)["khugepaged.max_ptes_swap"] = {
        {}, 0, 511, [](Machine& m, const std::string& v) { store(m.thp().max_ptes_swap, to_uint(v)); }};
    (*t)["khugepaged.max_ptes_shared"] = {
        {}, 0, 511, [](Machine& m, const std::string& v) { store(m.thp().max_ptes_shared, to_uint(v)); }};
    (*t)["khugepaged.pages_to_scan"] = {
        {}, 1, 1u << 30, [](Machine& m, const std::string& v) { store(m.thp().pages_to_scan, to_uint(v)); }};
    (*t)["khugepaged.scan_sleep_millisecs"] = {
        {}, 0, 1u << 30,
        [](Machine& m, const std::string& v) { store(m.thp().scan_sleep_millisecs, to_uint(v)); }};
    (*t)["khugepaged.alloc_sleep_millisecs"] = {
        {}, 0, 1u << 30,
        [](Machine& m, const std::string& v) { store(m.thp().alloc_sleep_millisecs, to_uint(v)); }};
    (*t)["mm.mprotect_notify_level"] = {{"pud", "pmd"}, 0, 0, [](Machine& m, const std::string& v) {
                                          store(m.knobs().mprotect_notify_level,
                                                v == "pmd" ? MmKnobs::NotifyLevel::kPmd : MmKnobs::NotifyLevel::kPud);
                                        }};
    (*t)["mm.collapse_orders"] = {{"mthp", "pmd"}, 0, 0, [](Machine& m, const std::string& v) {
                                    store(m.knobs().collapse_orders, v == "pmd" ? MmKnobs::CollapseOrders::kPmd
                                                                                : MmKnobs::CollapseOrders::kMthp);
                                  }};
    (*t)["mm.collapse_flush"] = {{"pmd", "range"}, 0, 0, [](Machine& m, const std::string& v) {
                                   store(m.knobs().collapse_flush, v == "range" ? MmKnobs::CollapseFlush::kRange
                                                                                : MmKnobs::CollapseFlush::kPmd);
                                 }};
    (*t)["mm.zero_page"] = {{"on", "off"}, 0, 0,
                            [](Machine& m, const std::string& v) { store(m.knobs().zero_page, v == "on"); }};
    (*t)["notifier.block_thp"] = {{"on", "off"}, 0, 0,
                                  [](Machine& m, const std::string& v) { store(m.knobs().block_thp, v == "on"); }};
    (*t)["notifier.secondary_tlbs_at_end"] = {
        {"on", "off"}, 0, 0,
        [](Machine& m, const std::string& v) { store(m.knobs().secondary_tlbs_at_end, v == "on"); }};
    (*t)["vm.max_map_count"] = {{}, 1, 1u << 30, [](Machine& m, const std::string& v) {
                                  store(m.knobs().max_map_count, static_cast<int>(to_uint(v)));
                                }};
    (*t)["swap.size"] = {{}, 0, 1ull << 40,
                         [](Machine& m, const std::string& v) { m.swap().set_size(*parse_size(v) >> PAGE_SHIFT); }};
    return t;
  }();
  return *table;
}

}  // namespace

bool knob_exists(const std::string& knob) { return knobs().count(knob) != 0; }

std::string knob_check_value(const std::string& knob, const std::string& value) {
  const Knob& k = knobs().at(knob);
  if (!k.words.empty()) {
    for (const std::string& w : k.words)
      if (w == value) return "";
    std::string list;
    for (const std::string& w : k.words) list += (list.empty() ? "" : "|") + w;
    return "bad value '" + value + "' for " + knob + " (" + list + ")";
  }
  std::optional<uint64_t> v = parse_size(value);
  if (!v || *v < k.lo || *v > k.hi)
    return "value '" + value + "' out of range for " + knob + " (" + std::to_string(k.lo) + ".." +
           std::to_string(k.hi) + ")";
  return "";
}

void knob_apply(Machine& machine, const std::string& knob, const std::string& value) {
  knobs().at(knob).apply(machine, value);
}

std::vector<std::string> knob_names() {
  std::vector<std::string> out;
  for (const auto& [name, k] : knobs()) out.push_back(name);
  return out;
}

bool vma_flag_name_valid(const std::string& name) {
  return name == "anon" || name == "dax" || vm_flag_from_name(name) != 0;
}

bool mapped_size_valid(const std::string& size) {
  if (size == "zero" || size == "zero2M" || size == "none") return true;
  std::string s = size;
  size_t slash = s.find('/');
  if (slash != std::string::npos) {
    std::string level = s.substr(slash + 1);
    if (level != "pte" && level != "pmd" && level != "pud") return false;
    s = s.substr(0, slash);
  }
  std::optional<uint64_t> v = parse_size(s);
  return v && *v >= 4096 && *v <= (1ull << 30) && (*v & (*v - 1)) == 0;
}

}  // namespace smm::sim
