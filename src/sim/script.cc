// File: src/sim/script.cc
//
// Lexer and parser of the scenario language (spec/scenario-language.md).
// Every error is caught here, before a script runs: unknown verbs, bad
// numbers, unknown names, wrong operand counts, knob values out of range.

#include "shadowmm/sim/script.h"

#include <cctype>
#include <set>
#include <sstream>

#include "shadowmm/base/result.h"
#include "shadowmm/base/uapi.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/sim/device_kinds.h"
#include "shadowmm/sim/knobs.h"

namespace smm::sim {

// ---- lexical helpers ----

std::optional<uint64_t> parse_int(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (base == 16 && c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (base == 16 && c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return std::nullopt;
    if (v > (~0ull - d) / base) return std::nullopt;  // overflow
    v = v * base + d;
  }
  return v;
}

std::optional<uint64_t> parse_size(std::string_view s) {
  if (s.empty()) return std::nullopt;
  unsigned shift = 0;
  bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  char last = s.back();
  // In hex, a trailing hex digit is a digit; sizes in hex take no suffix.
  if (!hex) {
    switch (last) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: break;
    }
    if (shift) s.remove_suffix(1);
  }
  std::optional<uint64_t> v = parse_int(s);
  if (!v) return std::nullopt;
  if (shift && *v > (~0ull >> shift)) return std::nullopt;
  return *v << shift;
}

std::optional<uint64_t> parse_duration_ns(std::string_view s) {
  struct Unit {
    std::string_view suffix;
    uint64_t ns;
  };
  static constexpr Unit kUnits[] = {{"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000}};
  for (const Unit& u : kUnits) {
    if (s.size() > u.suffix.size() && s.substr(s.size() - u.suffix.size()) == u.suffix) {
      std::string_view num = s.substr(0, s.size() - u.suffix.size());
      if (!num.empty() && !std::isdigit(static_cast<unsigned char>(num.back()))) continue;
      std::optional<uint64_t> v = parse_int(num);
      if (!v || *v > ~0ull / u.ns) return std::nullopt;
      return *v * u.ns;
    }
  }
  return std::nullopt;
}

std::optional<int> parse_prot(std::string_view s) {
  if (s == "none") return PROT_NONE;
  if (s == "r") return PROT_READ;
  if (s == "rw") return PROT_READ | PROT_WRITE;
  if (s == "rx") return PROT_READ | PROT_EXEC;
  if (s == "rwx") return PROT_READ | PROT_WRITE | PROT_EXEC;
  if (s.size() != 3) return std::nullopt;
  int prot = 0;
  if (s[0] == 'r')
    prot |= PROT_READ;
  else if (s[0] != '-')
    return std::nullopt;
  if (s[1] == 'w')
    prot |= PROT_WRITE;
  else if (s[1] != '-')
    return std::nullopt;
  if (s[2] == 'x')
    prot |= PROT_EXEC;
  else if (s[2] != '-')
    return std::nullopt;
  return prot;
}

std::optional<int> parse_rc(std::string_view s) {
  if (s == "0") return 0;
  if (s.size() < 2 || s[0] != '-') return std::nullopt;
  int e = errno_from_name(s.substr(1));
  if (!e) return std::nullopt;
  return -e;
}

namespace {

bool is_name(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

}  // namespace

std::optional<AddrExpr> parse_addr_expr(std::string_view s) {
  AddrExpr e;
  size_t pos = s.find_first_of("+-");
  std::string_view base = s.substr(0, pos);
  if (base.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(base[0]))) {
    std::optional<uint64_t> v = parse_size(base);
    if (!v) return std::nullopt;
    e.literal = *v;
  } else if (is_name(base)) {
    e.name = std::string(base);
  } else {
    return std::nullopt;
  }
  while (pos != std::string_view::npos) {
    char sign = s[pos];
    size_t next = s.find_first_of("+-", pos + 1);
    std::string_view term = s.substr(pos + 1, next == std::string_view::npos ? next : next - pos - 1);
    std::optional<uint64_t> v = parse_size(term);
    if (!v) return std::nullopt;
    e.offset += sign == '+' ? static_cast<int64_t>(*v) : -static_cast<int64_t>(*v);
    pos = next;
  }
  return e;
}

// ---- the parser ----

namespace {

struct AdviceName {
  const char* name;
  int advice;
};
constexpr AdviceName kAdvice[] = {
    {"dontneed", MADV_DONTNEED},       {"free", MADV_FREE},
    {"hugepage", MADV_HUGEPAGE},       {"nohugepage", MADV_NOHUGEPAGE},
    {"collapse", MADV_COLLAPSE},       {"pageout", MADV_PAGEOUT},
    {"populate_read", MADV_POPULATE_READ}, {"populate_write", MADV_POPULATE_WRITE},
    {"cold", MADV_COLD},               {"willneed", MADV_WILLNEED},
    {"normal", MADV_NORMAL},           {"random", MADV_RANDOM},
    {"sequential", MADV_SEQUENTIAL},   {"dontfork", MADV_DONTFORK},
    {"dofork", MADV_DOFORK},           {"dontdump", MADV_DONTDUMP},
    {"dodump", MADV_DODUMP},           {"wipeonfork", MADV_WIPEONFORK},
    {"keeponfork", MADV_KEEPONFORK},   {"dontneed_locked", MADV_DONTNEED_LOCKED},
};

const std::set<std::string> kDumpParts = {"vmas", "mappings", "devices", "stats", "oracle"};
const std::set<std::string> kEvents = {"unmap",   "clear",     "protection_vma", "protection_page",
                                       "release", "migrate",   "secondary_tlbs", "soft_dirty",
                                       "exclusive"};

struct Error {
  std::string message;
};

class LineParser {
 public:
  LineParser(std::vector<std::string> words, std::set<std::string>& names, std::set<std::string>& mms,
             std::set<std::string>& devices)
      : w_(std::move(words)), names_(names), mms_(mms), devices_(devices) {}

  Command parse(int line);

 private:
  [[noreturn]] void fail(const std::string& msg) { throw Error{msg}; }
  void need(size_t min, size_t max, const char* usage) {
    if (w_.size() < min || w_.size() > max) fail(std::string("wrong number of operands; usage: ") + usage);
  }
  AddrExpr addr(const std::string& s) {
    std::optional<AddrExpr> e = parse_addr_expr(s);
    if (!e) fail("bad address expression '" + s + "'");
    if (e->name && !names_.count(*e->name)) fail("unknown name '" + *e->name + "'");
    return *e;
  }
  uint64_t size(const std::string& s) {
    std::optional<uint64_t> v = parse_size(s);
    if (!v) fail("bad number '" + s + "'");
    return *v;
  }
  uint64_t integer(const std::string& s) {
    std::optional<uint64_t> v = parse_size(s);
    if (!v) fail("bad number '" + s + "'");
    return *v;
  }
  int prot(const std::string& s) {
    std::optional<int> p = parse_prot(s);
    if (!p) fail("bad protection '" + s + "'");
    return *p;
  }
  // Splits "key=value"; empty key when there is no '='.
  static std::pair<std::string, std::string> kv(const std::string& s) {
    size_t eq = s.find('=');
    if (eq == std::string::npos) return {"", s};
    return {s.substr(0, eq), s.substr(eq + 1)};
  }
  void new_name(const std::string& n, const char* what) {
    if (!is_name(n)) fail(std::string("bad ") + what + " name '" + n + "'");
  }

  Command parse_set();
  Command parse_mmap();
  Command parse_expect();
  Command parse_device_op();
  Command parse_device();

  std::vector<std::string> w_;
  std::set<std::string>& names_;
  std::set<std::string>& mms_;
  std::set<std::string>& devices_;
};

Command LineParser::parse(int line) {
  Command c;
  c.line = line;
  const std::string& verb = w_[0];
  c.cmd = verb;
  if (devices_.count(verb) && w_.size() >= 2) {
    Command d = parse_device_op();
    d.line = line;
    return d;
  }
  if (verb == "set") {
    c.body = parse_set().body;
  } else if (verb == "mmap") {
    c.body = parse_mmap().body;
  } else if (verb == "munmap") {
    need(3, 3, "munmap ADDR LEN");
    c.body = CmdMunmap{addr(w_[1]), size(w_[2])};
  } else if (verb == "mremap") {
    need(4, 6, "mremap ADDR LEN NEWLEN [maymove] [at=NEWADDR]");
    CmdMremap m{addr(w_[1]), size(w_[2]), size(w_[3]), false, std::nullopt};
    for (size_t i = 4; i < w_.size(); i++) {
      auto [k, v] = kv(w_[i]);
      if (k.empty() && v == "maymove")
        m.maymove = true;
      else if (k == "at")
        m.at = addr(v);
      else
        fail("unknown mremap option '" + w_[i] + "'");
    }
    c.body = m;
  } else if (verb == "mprotect") {
    need(4, 4, "mprotect ADDR LEN PROT");
    c.body = CmdMprotect{addr(w_[1]), size(w_[2]), prot(w_[3])};
  } else if (verb == "madvise") {
    need(4, 4, "madvise ADDR LEN ADVICE");
    CmdMadvise m{addr(w_[1]), size(w_[2]), -1, w_[3]};
    for (const AdviceName& a : kAdvice)
      if (w_[3] == a.name) m.advice = a.advice;
    if (m.advice < 0) fail("unknown advice '" + w_[3] + "'");
    c.body = m;
  } else if (verb == "touch") {
    need(4, 5, "touch ADDR LEN read|write [value=V]");
    CmdTouch t{addr(w_[1]), size(w_[2]), false, std::nullopt};
    if (w_[3] == "write")
      t.write = true;
    else if (w_[3] != "read")
      fail("touch needs read or write, not '" + w_[3] + "'");
    if (w_.size() == 5) {
      auto [k, v] = kv(w_[4]);
      if (k != "value") fail("unknown touch option '" + w_[4] + "'");
      if (!t.write) fail("value= needs a write touch");
      t.value = integer(v);
    }
    c.body = t;
  } else if (verb == "write") {
    need(3, 3, "write ADDR VALUE");
    c.body = CmdWrite{addr(w_[1]), integer(w_[2])};
  } else if (verb == "read") {
    need(2, 3, "read ADDR [expect=V]");
    CmdRead r{addr(w_[1]), std::nullopt};
    if (w_.size() == 3) {
      auto [k, v] = kv(w_[2]);
      if (k != "expect") fail("unknown read option '" + w_[2] + "'");
      r.expect = integer(v);
    }
    c.body = r;
  } else if (verb == "khugepaged") {
    need(1, 2, "khugepaged [passes=N]");
    CmdKhugepaged k;
    if (w_.size() == 2) {
      auto [key, v] = kv(w_[1]);
      if (key != "passes") fail("unknown khugepaged option '" + w_[1] + "'");
      uint64_t n = integer(v);
      if (n < 1 || n > 1000000) fail("passes out of range (1..1000000)");
      k.passes = static_cast<int>(n);
    }
    c.body = k;
  } else if (verb == "prctl") {
    need(2, 2, "prctl thp_disable|thp_disable_except_advised|thp_enable");
    CmdPrctl p;
    if (w_[1] == "thp_disable")
      p.what = CmdPrctl::What::kThpDisable;
    else if (w_[1] == "thp_disable_except_advised")
      p.what = CmdPrctl::What::kThpDisableExceptAdvised;
    else if (w_[1] == "thp_enable")
      p.what = CmdPrctl::What::kThpEnable;
    else
      fail("unknown prctl '" + w_[1] + "'");
    c.body = p;
  } else if (verb == "fork") {
    need(2, 2, "fork NAME");
    new_name(w_[1], "mm");
    if (mms_.count(w_[1])) fail("mm '" + w_[1] + "' already exists");
    mms_.insert(w_[1]);
    c.body = CmdFork{w_[1]};
  } else if (verb == "use") {
    need(2, 2, "use NAME");
    if (!mms_.count(w_[1])) fail("unknown mm '" + w_[1] + "'");
    c.body = CmdUse{w_[1]};
  } else if (verb == "exit") {
    need(1, 1, "exit");
    c.body = CmdExit{};
  } else if (verb == "device") {
    c.body = parse_device().body;
  } else if (verb == "dump") {
    CmdDump d;
    for (size_t i = 1; i < w_.size(); i++) {
      auto [k, v] = kv(w_[i]);
      if (k == "label")
        d.label = v;
      else if (k.empty() && kDumpParts.count(v))
        d.parts.push_back(v);
      else
        fail("unknown dump part '" + w_[i] + "'");
    }
    c.body = d;
  } else if (verb == "expect") {
    c.body = parse_expect().body;
  } else {
    fail("unknown verb '" + verb + "'");
  }
  return c;
}

Command LineParser::parse_set() {
  need(3, 3, "set KNOB VALUE");
  if (!knob_exists(w_[1])) fail("unknown knob '" + w_[1] + "'");
  std::string err = knob_check_value(w_[1], w_[2]);
  if (!err.empty()) fail(err);
  Command c;
  c.body = CmdSet{w_[1], w_[2]};
  return c;
}

Command LineParser::parse_mmap() {
  need(4, 10, "mmap NAME LEN PROT [anon|dax] [shared] [noreserve] [at=ADDR [fixed]] [align=SIZE]");
  CmdMmap m;
  new_name(w_[1], "mapping");
  m.name = w_[1];
  m.len = size(w_[2]);
  m.prot = prot(w_[3]);
  bool kind_seen = false;
  for (size_t i = 4; i < w_.size(); i++) {
    auto [k, v] = kv(w_[i]);
    if (k.empty() && (v == "anon" || v == "dax")) {
      if (kind_seen) fail("anon and dax are exclusive");
      kind_seen = true;
      m.dax = v == "dax";
    } else if (k.empty() && v == "shared") {
      m.shared = true;
    } else if (k.empty() && v == "noreserve") {
      m.noreserve = true;
    } else if (k.empty() && v == "fixed") {
      m.fixed = true;
    } else if (k == "at") {
      m.at = addr(v);
    } else if (k == "align") {
      m.align = size(v);
      if (!m.align || (m.align & (m.align - 1)) || m.align < 4096) fail("align must be a power of two >= 4K");
    } else if (k == "maxprot") {
      m.file_prot = prot(v);
    } else {
      fail("unknown mmap option '" + w_[i] + "'");
    }
  }
  if (m.fixed && !m.at) fail("fixed needs at=ADDR");
  if (m.dax) m.shared = true;
  if (m.file_prot && !m.dax) fail("maxprot= applies to dax mappings");
  // The name is usable from the next line on (bound at run time).
  names_.insert(m.name);
  Command c;
  c.body = m;
  return c;
}

Command LineParser::parse_expect() {
  if (w_.size() < 2) fail("expect needs a kind: rc, vma, novma, mapped, value, events, device_faults, oracle");
  const std::string& kind = w_[1];
  Command c;
  if (kind == "rc") {
    need(3, 3, "expect rc ERRNO");
    std::optional<int> rc = parse_rc(w_[2]);
    if (!rc) fail("bad errno '" + w_[2] + "' (write 0 or -EINVAL...)");
    c.body = CmdExpectRc{*rc};
  } else if (kind == "vma") {
    if (w_.size() < 5) fail("wrong number of operands; usage: expect vma ADDR LEN PROT [FLAG...]");
    CmdExpectVma v{addr(w_[2]), size(w_[3]), prot(w_[4]), {}};
    for (size_t i = 5; i < w_.size(); i++) {
      if (!vma_flag_name_valid(w_[i])) fail("unknown VMA flag '" + w_[i] + "'");
      v.flags.push_back(w_[i]);
    }
    c.body = v;
  } else if (kind == "novma") {
    need(4, 4, "expect novma ADDR LEN");
    c.body = CmdExpectNovma{addr(w_[2]), size(w_[3])};
  } else if (kind == "mapped") {
    need(5, 5, "expect mapped ADDR LEN SIZE");
    if (!mapped_size_valid(w_[4])) fail("bad mapping size '" + w_[4] + "'");
    c.body = CmdExpectMapped{addr(w_[2]), size(w_[3]), w_[4]};
  } else if (kind == "value") {
    need(4, 4, "expect value ADDR V");
    c.body = CmdExpectValue{addr(w_[2]), integer(w_[3])};
  } else if (kind == "events") {
    need(4, 5, "expect events NAME [>=]N [EVENT]");
    if (!devices_.count(w_[2])) fail("unknown device '" + w_[2] + "'");
    CmdExpectEvents e{w_[2], false, 0, std::nullopt};
    std::string n = w_[3];
    if (n.rfind(">=", 0) == 0) {
      e.at_least = true;
      n = n.substr(2);
    }
    e.count = integer(n);
    if (w_.size() == 5) {
      if (!kEvents.count(w_[4])) fail("unknown event '" + w_[4] + "'");
      e.event = w_[4];
    }
    c.body = e;
  } else if (kind == "device_faults") {
    need(4, 4, "expect device_faults NAME N");
    if (!devices_.count(w_[2])) fail("unknown device '" + w_[2] + "'");
    c.body = CmdExpectDeviceFaults{w_[2], integer(w_[3])};
  } else if (kind == "oracle") {
    need(3, 4, "expect oracle clean | expect oracle violation EN");
    if (w_[2] == "clean" && w_.size() == 3) {
      c.body = CmdExpectOracleClean{};
    } else if (w_[2] == "violation" && w_.size() == 4) {
      static const std::set<std::string> kInvariants = {"E1", "E2", "E3", "E4", "E5", "E6",
                                                         "E7", "E8", "E9", "E10", "THP", "VALUE"};
      if (!kInvariants.count(w_[3])) fail("unknown invariant '" + w_[3] + "' (E1..E10, THP, VALUE)");
      c.body = CmdExpectOracleViolation{w_[3]};
    } else {
      fail("expect oracle takes 'clean' or 'violation EN'");
    }
  } else {
    fail("unknown expect kind '" + kind + "'");
  }
  return c;
}

Command LineParser::parse_device() {
  if (w_.size() < 3) fail("wrong number of operands; usage: device NAME KIND [options]");
  new_name(w_[1], "device");
  if (devices_.count(w_[1])) fail("device '" + w_[1] + "' already exists");
  if (!find_device_kind(w_[2])) fail("unknown device kind '" + w_[2] + "'");
  CmdDevice d{w_[1], w_[2], {}};
  for (size_t i = 3; i < w_.size(); i++) {
    auto [k, v] = kv(w_[i]);
    std::string err = device_option_check(d.kind, k, v);
    if (!err.empty()) fail(err);
    d.options[k] = v;
  }
  devices_.insert(d.name);
  Command c;
  c.body = d;
  return c;
}

Command LineParser::parse_device_op() {
  CmdDeviceOp d;
  d.device = w_[0];
  d.op = w_[1];
  Command c;
  c.cmd = d.op;
  if (d.op == "attach") {
    need(4, 5, "NAME attach ADDR LEN [block_thp]");
    d.addr = addr(w_[2]);
    d.len = size(w_[3]);
    if (w_.size() == 5) {
      if (w_[4] != "block_thp") fail("unknown attach option '" + w_[4] + "'");
      d.block_thp = true;
    }
  } else if (d.op == "detach") {
    need(2, 2, "NAME detach");
  } else if (d.op == "set_flags") {
    need(3, 3, "NAME set_flags block_thp|none");
    if (w_[2] == "block_thp")
      d.block_thp = true;
    else if (w_[2] != "none")
      fail("set_flags takes block_thp or none");
  } else if (d.op == "fault") {
    need(4, 5, "NAME fault ADDR LEN [write]");
    d.addr = addr(w_[2]);
    d.len = size(w_[3]);
    if (w_.size() == 5) {
      if (w_[4] != "write") fail("unknown fault option '" + w_[4] + "'");
      d.write = true;
    }
  } else if (d.op == "read") {
    need(3, 4, "NAME read ADDR [expect=V]");
    d.addr = addr(w_[2]);
    if (w_.size() == 4) {
      auto [k, v] = kv(w_[3]);
      if (k != "expect") fail("unknown read option '" + w_[3] + "'");
      d.expect = integer(v);
    }
  } else if (d.op == "write") {
    need(4, 4, "NAME write ADDR VALUE");
    d.addr = addr(w_[2]);
    d.value = integer(w_[3]);
  } else {
    fail("unknown device verb '" + d.op + "'");
  }
  c.body = d;
  return c;
}

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> words;
  size_t hash = line.find('#');
  if (hash != std::string_view::npos) line = line.substr(0, hash);
  std::string cur;
  for (char ch : line) {
    if (ch == ' ' || ch == '\t' || ch == '\r') {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

}  // namespace

std::variant<Script, ParseError> parse_script(std::string_view text, const std::string& file) {
  Script script;
  script.file = file;
  std::set<std::string> names;
  std::set<std::string> mms = {"main"};
  std::set<std::string> devices;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    line_no++;
    std::vector<std::string> words = split_words(line);
    if (words.empty()) continue;
    try {
      LineParser p(std::move(words), names, mms, devices);
      script.commands.push_back(p.parse(line_no));
    } catch (const Error& e) {
      return ParseError{line_no, e.message};
    }
  }
  return script;
}

}  // namespace smm::sim
