// File: src/sim/runner.cc
//
// Executes scenario scripts (spec/scenario-language.md). One Runner = one
// simulated machine, its address spaces (`main` first, more after `fork`),
// the names bound by `mmap`, and the output rules: a command that fails stops
// the script unless the next line is `expect rc` naming that error; `expect`
// failures print FILE:LINE: expect failed: WANT / FOUND; `--json` prints one
// object per executed command.

#include "shadowmm/sim/runner.h"

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shadowmm/check/coherence_oracle.h"
#include "shadowmm/devices/secondary_mmu.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/fork.h"
#include "shadowmm/mm/khugepaged.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/mm/mremap.h"
#include "shadowmm/mm/prctl.h"
#include "shadowmm/mm/task_mmu.h"
#include "shadowmm/sim/device_kinds.h"
#include "shadowmm/sim/knobs.h"

namespace smm::sim {

using Json = nlohmann::ordered_json;

namespace {

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

std::string rc_name(int rc) {
  if (rc == 0) return "0";
  const char* n = errno_name(rc);
  return n ? std::string("-") + n : std::to_string(rc);
}

std::string vma_prot_name(vm_flags_t f) {
  std::string s = "---";
  if (f & VM_READ) s[0] = 'r';
  if (f & VM_WRITE) s[1] = 'w';
  if (f & VM_EXEC) s[2] = 'x';
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

const char* level_name(unsigned level) {
  return level == PTE_LEVEL ? "pte" : level == PMD_LEVEL ? "pmd" : "pud";
}

// A script-level failure: message for stderr, exit status.
struct Stop {
  std::string message;
  int status;
};

class Runner {
 public:
  Runner(const Script& script, const RunOptions& opts, std::ostream& out, std::ostream& err)
      : script_(script), opts_(opts), out_(out), err_(err) {
    mms_.emplace("main", MmRef(MmStruct::create(machine_, "main")));
    current_ = "main";
  }

  int run();

 private:
  // Executes one command; returns its rc. `extra` receives JSON fields.
  int exec(const Command& c, Json& extra);
  int exec_body(const Command& c, const CmdSet& s, Json&);
  int exec_body(const Command& c, const CmdMmap& m, Json&);
  int exec_body(const Command& c, const CmdMunmap& m, Json&);
  int exec_body(const Command& c, const CmdMremap& m, Json&);
  int exec_body(const Command& c, const CmdMprotect& m, Json&);
  int exec_body(const Command& c, const CmdMadvise& m, Json&);
  int exec_body(const Command& c, const CmdTouch& t, Json&);
  int exec_body(const Command& c, const CmdWrite& w, Json&);
  int exec_body(const Command& c, const CmdRead& r, Json&);
  int exec_body(const Command& c, const CmdKhugepaged& k, Json&);
  int exec_body(const Command& c, const CmdPrctl& p, Json&);
  int exec_body(const Command& c, const CmdFork& f, Json&);
  int exec_body(const Command& c, const CmdUse& u, Json&);
  int exec_body(const Command& c, const CmdExit& e, Json&);
  int exec_body(const Command& c, const CmdDevice& d, Json&);
  int exec_body(const Command& c, const CmdDeviceOp& d, Json&);
  int exec_body(const Command& c, const CmdDump& d, Json&);
  int exec_body(const Command& c, const CmdExpectRc& e, Json&);
  int exec_body(const Command& c, const CmdExpectVma& e, Json&);
  int exec_body(const Command& c, const CmdExpectNovma& e, Json&);
  int exec_body(const Command& c, const CmdExpectMapped& e, Json&);
  int exec_body(const Command& c, const CmdExpectValue& e, Json&);
  int exec_body(const Command& c, const CmdExpectEvents& e, Json&);
  int exec_body(const Command& c, const CmdExpectDeviceFaults& e, Json&);
  int exec_body(const Command& c, const CmdExpectOracleClean& e, Json&);
  int exec_body(const Command& c, const CmdExpectOracleViolation& e, Json&);

  SecondaryMmu* device(const Command& c, const std::string& name) const {
    auto it = devices_.find(name);
    if (it == devices_.end()) throw Stop{where(c) + ": error: device '" + name + "' does not exist", kExitFailed};
    return it->second.get();
  }
  // The events of `dev` since the last dump/expect events, as JSON.
  Json take_device_events(SecondaryMmu* dev);
  Json dump_devices();
  Json dump_oracle();

  // The current mm; -ESRCH (as an rc) when there is none.
  MmStruct* mm() const {
    auto it = mms_.find(current_);
    return it == mms_.end() ? nullptr : it->second.get();
  }
  VirtAddr eval(const Command& c, const AddrExpr& e) const {
    uint64_t base = e.literal;
    if (e.name) {
      auto it = names_.find(*e.name);
      if (it == names_.end())
        throw Stop{where(c) + ": error: name '" + *e.name + "' is not bound (its mmap failed)", kExitFailed};
      base = it->second;
    }
    return VirtAddr(base + static_cast<uint64_t>(e.offset));
  }
  std::string where(const Command& c) const { return script_.file + ":" + std::to_string(c.line); }
  [[noreturn]] void expect_failed(const Command& c, const std::string& want, const std::string& found) const {
    throw Stop{where(c) + ": expect failed: " + want + " / " + found, kExitFailed};
  }

  // Prints the unacknowledged violations to stderr.
  void report_oracle();
  Json dump_vmas(MmStruct* mm);
  Json dump_mappings(MmStruct* mm);
  Json dump_stats();
  void print_summary();

  const Script& script_;
  RunOptions opts_;
  std::ostream& out_;
  std::ostream& err_;
  Machine machine_;
  // The machine's khugepaged (the `khugepaged` verb, the mm list). Declared
  // before mms_: the mms leave its list before it goes.
  Khugepaged khugepaged_{machine_};
  CoherenceOracle oracle_{machine_};
  std::map<std::string, MmRef> mms_;
  // Declared after mms_: destroyed first (detaching from their mms).
  std::map<std::string, std::unique_ptr<SecondaryMmu>> devices_;
  std::map<const SecondaryMmu*, std::string> device_mm_;
  std::string current_;
  std::map<std::string, uint64_t> names_;
  int last_rc_ = 0;
  int expects_held_ = 0;
};

int Runner::run() {
  const auto& cmds = script_.commands;
  try {
    for (size_t i = 0; i < cmds.size(); i++) {
      const Command& c = cmds[i];
      Json extra = Json::object();
      int rc = exec(c, extra);
      if (opts_.json) {
        Json line;
        line["line"] = c.line;
        line["cmd"] = c.cmd;
        line["rc"] = rc;
        if (rc < 0) line["errno"] = errno_name(rc) ? errno_name(rc) : "?";
        for (auto& [k, v] : extra.items()) line[k] = v;
        out_ << line.dump() << "\n";
      } else if (std::holds_alternative<CmdDump>(c.body)) {
        out_ << extra.dump(2) << "\n";
      } else if (opts_.trace) {
        out_ << "  " << c.line << ": " << c.cmd << " -> " << rc_name(rc);
        if (extra.contains("value")) out_ << " value=" << extra["value"].get<std::string>();
        out_ << "\n";
      } else if (extra.contains("value") && std::holds_alternative<CmdRead>(c.body)) {
        out_ << "read " << extra["addr"].get<std::string>() << " = " << extra["value"].get<std::string>() << "\n";
      }
      if (!std::holds_alternative<CmdExpectRc>(c.body)) last_rc_ = rc;
      bool next_is_expect_rc = i + 1 < cmds.size() && std::holds_alternative<CmdExpectRc>(cmds[i + 1].body);
      if (rc != 0 && !next_is_expect_rc)
        throw Stop{where(c) + ": error: " + c.cmd + " failed: " + rc_name(rc), kExitFailed};
    }
  } catch (const Stop& s) {
    out_.flush();
    err_ << s.message << "\n";
    report_oracle();
    return s.status;
  }
  if (!opts_.json && opts_.summary) print_summary();
  // The run ends with the oracle's report when it found an unexpected violation.
  if (oracle_.unacknowledged()) {
    report_oracle();
    return kExitFailed;
  }
  return kExitOk;
}

int Runner::exec(const Command& c, Json& extra) {
  return std::visit([&](const auto& body) { return exec_body(c, body, extra); }, c.body);
}

// ---- configuration and address space ----

int Runner::exec_body(const Command&, const CmdSet& s, Json&) {
  knob_apply(machine_, s.knob, s.value);
  return 0;
}

int Runner::exec_body(const Command& c, const CmdMmap& m, Json& extra) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  int flags = (m.shared ? MAP_SHARED : MAP_PRIVATE) | (m.dax ? 0 : MAP_ANONYMOUS);
  if (m.noreserve) flags |= MAP_NORESERVE;
  VirtAddr addr(0);
  if (m.at) {
    addr = eval(c, *m.at);
    flags |= m.fixed ? MAP_FIXED : MAP_FIXED_NOREPLACE;
  }
  MmapOpts opts;
  opts.dax = m.dax;
  opts.align = m.align;
  if (m.file_prot) opts.file_prot = *m.file_prot;
  Result<VirtAddr> r = do_mmap(mm, addr, m.len, m.prot, flags, 0, opts);
  if (!r.ok()) return r.rc();
  names_[m.name] = r->value();
  extra["addr"] = hex(r->value());
  return 0;
}

int Runner::exec_body(const Command& c, const CmdMunmap& m, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  return do_munmap(mm, eval(c, m.addr), m.len);
}

int Runner::exec_body(const Command& c, const CmdMremap& m, Json& extra) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  VirtAddr old_addr = eval(c, m.addr);
  int flags = (m.maymove ? MREMAP_MAYMOVE : 0) | (m.at ? MREMAP_FIXED : 0);
  VirtAddr new_addr = m.at ? eval(c, *m.at) : VirtAddr(0);
  Result<VirtAddr> r = do_mremap(mm, old_addr, m.len, m.new_len, flags, new_addr);
  if (!r.ok()) return r.rc();
  // A name bound to the old start follows the mapping.
  for (auto& [name, a] : names_)
    if (a == old_addr.value()) a = r->value();
  extra["addr"] = hex(r->value());
  return 0;
}

int Runner::exec_body(const Command& c, const CmdMprotect& m, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  return do_mprotect(mm, eval(c, m.addr), m.len, m.prot);
}

int Runner::exec_body(const Command& c, const CmdMadvise& m, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  return do_madvise(mm, eval(c, m.addr), m.len, m.advice);
}

int Runner::exec_body(const Command& c, const CmdTouch& t, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  return cpu_touch(mm, eval(c, t.addr), t.len, t.write ? Access::kWrite : Access::kRead, t.value);
}

int Runner::exec_body(const Command& c, const CmdWrite& w, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  uint64_t v = w.value;
  VirtAddr a = eval(c, w.addr);
  if (!a.is_aligned(PAGE_SIZE)) return -EINVAL;
  return cpu_access(mm, a, Access::kWrite, &v);
}

int Runner::exec_body(const Command& c, const CmdRead& r, Json& extra) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  VirtAddr a = eval(c, r.addr);
  if (!a.is_aligned(PAGE_SIZE)) return -EINVAL;
  uint64_t v = 0;
  int rc = cpu_access(mm, a, Access::kRead, &v);
  if (rc) return rc;
  extra["addr"] = hex(a.value());
  extra["value"] = hex(v);
  if (r.expect && *r.expect != v) expect_failed(c, "read " + hex(a.value()) + " = " + hex(*r.expect), hex(v));
  return 0;
}

int Runner::exec_body(const Command&, const CmdKhugepaged& k, Json&) {
  // N full scans of every registered mm, synchronously (mm/khugepaged.h).
  khugepaged_.scan_passes(static_cast<unsigned>(k.passes));
  return 0;
}

int Runner::exec_body(const Command&, const CmdPrctl& p, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  switch (p.what) {
    case CmdPrctl::What::kThpDisable:
      return prctl_set_thp_disable(mm, 1, 0);
    case CmdPrctl::What::kThpDisableExceptAdvised:
      return prctl_set_thp_disable(mm, 1, PR_THP_DISABLE_EXCEPT_ADVISED);
    case CmdPrctl::What::kThpEnable:
      return prctl_set_thp_disable(mm, 0, 0);
  }
  return -EINVAL;
}

int Runner::exec_body(const Command&, const CmdFork& f, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  Result<MmStruct*> child = dup_mm(mm, f.name);
  if (!child.ok()) return child.rc();
  mms_.emplace(f.name, MmRef(*child));
  return 0;
}

int Runner::exec_body(const Command&, const CmdUse& u, Json&) {
  if (!mms_.count(u.name)) return -ESRCH;
  current_ = u.name;
  return 0;
}

int Runner::exec_body(const Command&, const CmdExit&, Json&) {
  auto it = mms_.find(current_);
  if (it == mms_.end()) return -ESRCH;
  mms_.erase(it);  // mmput: release, then unmap everything
  current_.clear();
  return 0;
}

int Runner::exec_body(const Command& c, const CmdDevice& d, Json&) {
  MmStruct* mm = this->mm();
  if (!mm) return -ESRCH;
  std::unique_ptr<SecondaryMmu> dev = make_device(d.name, d.kind, d.options, mm);
  if (!dev) throw Stop{where(c) + ": error: device kind '" + d.kind + "' is not available", kExitFailed};
  device_mm_[dev.get()] = current_;
  devices_[d.name] = std::move(dev);
  return 0;
}

int Runner::exec_body(const Command& c, const CmdDeviceOp& d, Json& extra) {
  SecondaryMmu* dev = device(c, d.device);
  if (d.op == "attach") return dev->attach(eval(c, d.addr), d.len, d.block_thp);
  if (d.op == "detach") return dev->detach();
  if (d.op == "set_flags") return dev->set_flags(d.block_thp);
  if (d.op == "fault") return dev->fault(eval(c, d.addr), d.len, d.write);
  VirtAddr a = eval(c, d.addr);
  if (d.op == "write") return dev->write(a, d.value);
  uint64_t v = 0;
  int rc = dev->read(a, &v);
  if (rc) return rc;
  extra["addr"] = hex(a.value());
  extra["value"] = hex(v);
  if (d.expect && *d.expect != v)
    expect_failed(c, d.device + " read " + hex(a.value()) + " = " + hex(*d.expect), hex(v));
  return 0;
}

// ---- observation ----

Json Runner::dump_vmas(MmStruct* mm) {
  Json vmas = Json::array();
  if (!mm) return vmas;
  for (const VmaReport& r : smaps_report(mm)) {
    Json v;
    v["start"] = hex(r.start.value());
    v["end"] = hex(r.end.value());
    v["prot"] = vma_prot_name(r.flags);
    Json flags = Json::array();
    for (const std::string& f : split(vm_flags_names(r.flags, r.anon, r.dax))) flags.push_back(f);
    v["flags"] = flags;
    v["rss"] = r.rss;
    v["anon_huge"] = r.anon_huge;
    v["thp_eligible"] = r.thp_eligible;
    vmas.push_back(v);
  }
  return vmas;
}

Json Runner::dump_mappings(MmStruct* mm) {
  Json maps = Json::array();
  if (!mm) return maps;
  for (const MappingRun& r : mapping_runs(mm)) {
    Json m;
    m["start"] = hex(r.start.value());
    m["end"] = hex(r.end.value());
    m["size"] = r.size_name();
    m["level"] = level_name(r.level);
    m["prot"] = prot_name(r.prot);
    maps.push_back(m);
  }
  return maps;
}

Json Runner::dump_stats() {
  Json s;
  for (size_t i = 0; i < kNrVmEvents; i++) {
    auto e = static_cast<VmEvent>(i);
    s[std::string(vm_event_name(e))] = machine_.stats().get(e);
  }
  s["pages_in_use"] = machine_.mem().pages_in_use();
  s["swap_used"] = machine_.swap().used();
  return s;
}

int Runner::exec_body(const Command&, const CmdDump& d, Json& extra) {
  auto want = [&](const char* part) {
    if (d.parts.empty()) return true;
    for (const std::string& p : d.parts)
      if (p == part) return true;
    return false;
  };
  if (d.label) extra["label"] = *d.label;
  MmStruct* mm = this->mm();
  if (want("vmas")) extra["vmas"] = dump_vmas(mm);
  if (want("mappings")) extra["mappings"] = dump_mappings(mm);
  if (want("devices")) extra["devices"] = dump_devices();
  if (want("stats")) extra["stats"] = dump_stats();
  if (want("oracle")) extra["oracle"] = dump_oracle();
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectRc& e, Json&) {
  expects_held_++;
  if (last_rc_ != e.rc) expect_failed(c, "rc " + rc_name(e.rc), "rc " + rc_name(last_rc_));
  last_rc_ = 0;
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectVma& e, Json&) {
  MmStruct* mm = this->mm();
  VirtAddr start = eval(c, e.addr);
  VirtAddr end = start + e.len;
  std::string want = "vma " + hex(start.value()) + "-" + hex(end.value()) + " " + vma_prot_name(calc_vm_prot_bits(e.prot));
  for (const std::string& f : e.flags) want += " " + f;
  if (!mm) expect_failed(c, want, "no current mm");
  std::vector<VmaReport> vmas = smaps_report(mm);
  std::string found = "no VMA there";
  for (const VmaReport& r : vmas) {
    if (r.end <= start || r.start >= end) continue;
    std::string names = vm_flags_names(r.flags, r.anon, r.dax);
    found = "vma " + hex(r.start.value()) + "-" + hex(r.end.value()) + " " + vma_prot_name(r.flags) +
            (names.empty() ? "" : " " + names);
    if (r.start != start || r.end != end) break;
    if ((r.flags & VM_ACCESS_FLAGS) != calc_vm_prot_bits(e.prot)) break;
    std::vector<std::string> have = split(names);
    for (const std::string& f : e.flags)
      if (std::find(have.begin(), have.end(), f) == have.end()) expect_failed(c, want, found);
    expects_held_++;
    return 0;
  }
  expect_failed(c, want, found);
}

int Runner::exec_body(const Command& c, const CmdExpectNovma& e, Json&) {
  MmStruct* mm = this->mm();
  VirtAddr start = eval(c, e.addr);
  VirtAddr end = start + e.len;
  if (mm) {
    for (const VmaReport& r : smaps_report(mm)) {
      if (r.end <= start || r.start >= end) continue;
      expect_failed(c, "no VMA in " + hex(start.value()) + "-" + hex(end.value()),
                    "vma " + hex(r.start.value()) + "-" + hex(r.end.value()));
    }
  }
  expects_held_++;
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectMapped& e, Json&) {
  MmStruct* mm = this->mm();
  VirtAddr start = eval(c, e.addr);
  VirtAddr end = start + e.len;
  std::string want = "mapped " + hex(start.value()) + "-" + hex(end.value()) + " " + e.size;
  if (!mm) expect_failed(c, want, "no current mm");
  std::vector<MappingRun> runs = mapping_runs(mm, start, end);
  auto describe = [](const MappingRun& r) {
    return hex(r.start.value()) + "-" + hex(r.end.value()) + " " + r.size_name() + "/" + level_name(r.level);
  };
  if (e.size == "none") {
    if (!runs.empty()) expect_failed(c, want, "mapped " + describe(runs.front()));
    expects_held_++;
    return 0;
  }
  // SIZE[/LEVEL]: the natural level of a size is pte up to 1M, pmd for 2M,
  // pud for 1G.
  std::string size = e.size;
  std::string level;
  if (size.find('/') != std::string::npos) {
    level = size.substr(size.find('/') + 1);
    size = size.substr(0, size.find('/'));
  }
  if (level.empty()) level = size == "2M" || size == "zero2M" ? "pmd" : size == "1G" ? "pud" : "pte";
  VirtAddr cursor = start;
  for (const MappingRun& r : runs) {
    if (r.start != cursor) expect_failed(c, want, "not mapped at " + hex(cursor.value()));
    if (r.size_name() != size || level_name(r.level) != level) expect_failed(c, want, "mapped " + describe(r));
    cursor = r.end;
  }
  if (cursor < end) expect_failed(c, want, "not mapped at " + hex(cursor.value()));
  expects_held_++;
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectValue& e, Json&) {
  MmStruct* mm = this->mm();
  VirtAddr a = eval(c, e.addr);
  std::string want = "value " + hex(a.value()) + " = " + hex(e.value);
  if (!mm) expect_failed(c, want, "no current mm");
  std::optional<uint64_t> v = peek_value(mm, a);
  if (!v) expect_failed(c, want, "no VMA there");
  if (*v != e.value) expect_failed(c, want, hex(*v));
  expects_held_++;
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectEvents& e, Json&) {
  SecondaryMmu* dev = device(c, e.device);
  Json events = take_device_events(dev);
  uint64_t n = 0;
  for (const auto& ev : events)
    if (!e.event || ev["event"] == *e.event) n++;
  std::string want = "events " + e.device + (e.at_least ? " >=" : " ") + std::to_string(e.count) +
                     (e.event ? " " + *e.event : "");
  if (e.at_least ? n < e.count : n != e.count) {
    std::string found = std::to_string(n) + " (";
    for (const auto& ev : events)
      found += ev["event"].get<std::string>() + " [" + ev["start"].get<std::string>() + "," +
               ev["end"].get<std::string>() + ") ";
    if (!events.empty()) found.pop_back();
    expect_failed(c, want, found + ")");
  }
  expects_held_++;
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectDeviceFaults& e, Json&) {
  SecondaryMmu* dev = device(c, e.device);
  uint64_t n = dev->device_faults();
  if (n != e.count)
    expect_failed(c, "device_faults " + e.device + " " + std::to_string(e.count), std::to_string(n));
  expects_held_++;
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectOracleClean&, Json&) {
  size_t total;
  std::vector<OracleViolation> pending = oracle_.unacknowledged_list(&total);
  if (!pending.empty()) {
    const OracleViolation& v = pending.front();
    expect_failed(c, "oracle clean",
                  std::to_string(pending.size()) + " violation(s), first " + v.invariant + " " + v.device + " at " +
                      hex(v.address.value()) + ": " + v.detail);
  }
  expects_held_++;
  return 0;
}

int Runner::exec_body(const Command& c, const CmdExpectOracleViolation& e, Json&) {
  size_t total;
  std::vector<OracleViolation> pending = oracle_.unacknowledged_list(&total);
  bool found = false;
  std::string seen;
  for (const OracleViolation& v : pending) {
    found |= v.invariant == e.invariant;
    seen += (seen.empty() ? "" : ", ") + v.invariant;
  }
  if (!found) expect_failed(c, "oracle violation " + e.invariant, seen.empty() ? "none" : seen);
  // Only what was looked at: a violation recorded since still counts.
  oracle_.acknowledge(total);
  expects_held_++;
  return 0;
}

Json Runner::take_device_events(SecondaryMmu* dev) {
  Json events = Json::array();
  for (const DeviceEvent& ev : dev->take_events()) {
    Json j;
    j["event"] = ev.event;
    j["start"] = hex(ev.start.value());
    j["end"] = hex(ev.end.value());
    j["blockable"] = ev.blockable;
    if (ev.wall_ns) j["wall_ns"] = ev.wall_ns;
    events.push_back(j);
  }
  return events;
}

Json Runner::dump_devices() {
  Json out = Json::object();
  for (auto& [name, dev] : devices_) {
    Json d;
    d["kind"] = dev->kind();
    d["mm"] = device_mm_[dev.get()];
    d["mapped_pages"] = dev->mapped_pages();
    d["device_faults"] = dev->device_faults();
    d["events"] = take_device_events(dev.get());
    for (const auto& [key, value] : dev->dump_counters()) d[key] = value;
    if (std::vector<std::string> trace = dev->take_trace(); !trace.empty()) d["trace"] = trace;
    out[name] = d;
  }
  return out;
}

Json Runner::dump_oracle() {
  Json o;
  std::vector<OracleViolation> all = oracle_.violation_list();
  o["violations"] = all.size();
  if (all.empty()) {
    o["first"] = nullptr;
  } else {
    const OracleViolation& v = all.front();
    o["first"] = Json{{"invariant", v.invariant}, {"device", v.device}, {"address", hex(v.address.value())},
                      {"detail", v.operation + ": " + v.detail}};
  }
  return o;
}

void Runner::report_oracle() {
  size_t total;
  std::vector<OracleViolation> pending = oracle_.unacknowledged_list(&total);
  if (pending.empty()) return;
  err_ << script_.file << ": oracle: " << pending.size() << " violation(s)\n";
  for (size_t i = 0; i < pending.size() && i < 20; i++) {
    const OracleViolation& v = pending[i];
    err_ << "  " << v.invariant << " device=" << v.device << " addr=" << hex(v.address.value()) << " during "
         << v.operation << ": " << v.detail << "\n";
  }
}

// The readable end-of-run report: /proc/PID/maps-style VMAs and mapping runs
// of every live mm, and the main counters.
void Runner::print_summary() {
  out_ << "== " << script_.file << ": " << script_.commands.size() << " commands, " << expects_held_
       << " expectations held ==\n";
  for (auto& [name, ref] : mms_) {
    MmStruct* mm = ref.get();
    out_ << "mm " << name << (name == current_ ? " (current)" : "") << ":\n";
    for (const VmaReport& r : smaps_report(mm)) {
      char line[160];
      std::snprintf(line, sizeof line, "  %012" PRIx64 "-%012" PRIx64 " %s%c %08" PRIx64 " ", r.start.value(),
                    r.end.value(), vma_prot_name(r.flags).c_str(), (r.flags & VM_MAYSHARE) ? 's' : 'p',
                    r.anon ? uint64_t{0} : r.pgoff << PAGE_SHIFT);
      out_ << line << vm_flags_names(r.flags, r.anon, r.dax) << "  rss=" << size_name(r.rss)
           << " anon_huge=" << size_name(r.anon_huge) << (r.thp_eligible ? " thp_eligible" : "") << "\n";
    }
    for (const MappingRun& r : mapping_runs(mm)) {
      char line[128];
      std::snprintf(line, sizeof line, "    mapped %012" PRIx64 "-%012" PRIx64 " %-6s %s %s\n", r.start.value(),
                    r.end.value(), r.size_name().c_str(), level_name(r.level), prot_name(r.prot).c_str());
      out_ << line;
    }
  }
  const VmStats& s = machine_.stats();
  out_ << "stats: faults=" << s.get(VmEvent::pgfault) << " thp_fault_alloc=" << s.get(VmEvent::thp_fault_alloc)
       << " thp_split_pmd=" << s.get(VmEvent::thp_split_pmd) << " tlb_flush=" << s.get(VmEvent::tlb_flush)
       << " notifier ranges: unmap=" << s.get(VmEvent::notifier_range_unmap)
       << " clear=" << s.get(VmEvent::notifier_range_clear)
       << " protection_vma=" << s.get(VmEvent::notifier_range_protection_vma) << "\n";
  for (auto& [name, dev] : devices_) {
    out_ << "device " << name << " (" << dev->kind() << ", mm " << device_mm_[dev.get()]
         << "): mapped_pages=" << dev->mapped_pages() << " device_faults=" << dev->device_faults();
    for (const auto& [key, value] : dev->dump_counters()) out_ << " " << key << "=" << value;
    out_ << "\n";
  }
  out_ << "oracle: " << (oracle_.violations() ? std::to_string(oracle_.violations()) + " violation(s)" : "clean")
       << "\n";
}

}  // namespace

int run_script_text(const std::string& text, const std::string& file, const RunOptions& options,
                    std::ostream& out, std::ostream& err) {
  std::variant<Script, ParseError> parsed = parse_script(text, file);
  if (const ParseError* e = std::get_if<ParseError>(&parsed)) {
    err << file << ":" << e->line << ": error: " << e->message << "\n";
    return kExitBadScript;
  }
  Runner runner(std::get<Script>(parsed), options, out, err);
  return runner.run();
}

int run_script_file(const std::string& path, const RunOptions& options, std::ostream& out, std::ostream& err) {
  std::stringstream buf;
  if (path == "-") {
    buf << std::cin.rdbuf();
  } else {
    std::ifstream in(path);
    if (!in) {
      err << path << ": error: cannot read the script\n";
      return kExitBadScript;
    }
    buf << in.rdbuf();
  }
  return run_script_text(buf.str(), path, options, out, err);
}

}  // namespace smm::sim
