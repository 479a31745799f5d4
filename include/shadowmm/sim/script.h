// File: shadowmm/sim/script.h
//
// The scenario language (spec/scenario-language.md): lexical rules and the
// parsed form of a script. The whole script is parsed before anything runs;
// any error is reported as FILE:LINE: error: ... and nothing executes.

#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace smm::sim {

// NAME or literal, followed by +SIZE/-SIZE terms ("A+2M-4K").
struct AddrExpr {
  std::optional<std::string> name;
  uint64_t literal = 0;
  int64_t offset = 0;
};

// ---- commands ----

struct CmdSet {
  std::string knob;
  std::string value;
};
struct CmdMmap {
  std::string name;
  uint64_t len = 0;
  int prot = 0;
  bool dax = false;
  bool shared = false;
  bool noreserve = false;
  std::optional<AddrExpr> at;
  bool fixed = false;
  uint64_t align = 0;
  std::optional<int> file_prot;  // extension: maxprot=PROT (dax)
};
struct CmdMunmap {
  AddrExpr addr;
  uint64_t len = 0;
};
struct CmdMremap {
  AddrExpr addr;
  uint64_t len = 0;
  uint64_t new_len = 0;
  bool maymove = false;
  std::optional<AddrExpr> at;
};
struct CmdMprotect {
  AddrExpr addr;
  uint64_t len = 0;
  int prot = 0;
};
struct CmdMadvise {
  AddrExpr addr;
  uint64_t len = 0;
  int advice = 0;
  std::string advice_name;
};
struct CmdTouch {
  AddrExpr addr;
  uint64_t len = 0;
  bool write = false;
  std::optional<uint64_t> value;
};
struct CmdWrite {
  AddrExpr addr;
  uint64_t value = 0;
};
struct CmdRead {
  AddrExpr addr;
  std::optional<uint64_t> expect;
};
struct CmdKhugepaged {
  int passes = 1;
};
struct CmdPrctl {
  enum class What { kThpDisable, kThpDisableExceptAdvised, kThpEnable } what;
};
struct CmdFork {
  std::string name;
};
struct CmdUse {
  std::string name;
};
struct CmdExit {};

struct CmdDevice {
  std::string name;
  std::string kind;  // mirror, pinned, gpus, sva, kvm
  std::map<std::string, std::string> options;
};
struct CmdDeviceOp {
  std::string device;
  std::string op;  // attach, detach, set_flags, fault, read, write
  AddrExpr addr;
  uint64_t len = 0;
  bool block_thp = false;  // attach ... block_thp / set_flags block_thp
  bool write = false;      // fault ... write
  uint64_t value = 0;      // write ADDR VALUE
  std::optional<uint64_t> expect;  // read ADDR expect=V
};

struct CmdDump {
  std::vector<std::string> parts;  // empty = all
  std::optional<std::string> label;
};

// expect rc / vma / novma / mapped / value / events / device_faults / oracle
struct CmdExpectRc {
  int rc = 0;  // 0 or a negative errno
};
struct CmdExpectVma {
  AddrExpr addr;
  uint64_t len = 0;
  int prot = 0;
  std::vector<std::string> flags;
};
struct CmdExpectNovma {
  AddrExpr addr;
  uint64_t len = 0;
};
struct CmdExpectMapped {
  AddrExpr addr;
  uint64_t len = 0;
  std::string size;  // as written: 4K..1G, 2M/pte, zero, zero2M, none
};
struct CmdExpectValue {
  AddrExpr addr;
  uint64_t value = 0;
};
struct CmdExpectEvents {
  std::string device;
  bool at_least = false;
  uint64_t count = 0;
  std::optional<std::string> event;
};
struct CmdExpectDeviceFaults {
  std::string device;
  uint64_t count = 0;
};
struct CmdExpectOracleClean {};
// Extension: `expect oracle violation EN` holds when the oracle recorded a
// violation of invariant EN since the last acknowledgement; it acknowledges
// every violation recorded so far (so a script can show a bug on purpose).
struct CmdExpectOracleViolation {
  std::string invariant;
};

using CmdBody = std::variant<CmdSet, CmdMmap, CmdMunmap, CmdMremap, CmdMprotect, CmdMadvise, CmdTouch,
                             CmdWrite, CmdRead, CmdKhugepaged, CmdPrctl, CmdFork, CmdUse, CmdExit, CmdDevice,
                             CmdDeviceOp, CmdDump, CmdExpectRc, CmdExpectVma, CmdExpectNovma,
                             CmdExpectMapped, CmdExpectValue, CmdExpectEvents, CmdExpectDeviceFaults,
                             CmdExpectOracleClean, CmdExpectOracleViolation>;

struct Command {
  int line = 0;
  std::string cmd;  // the verb as JSON output names it ("mmap", "expect", "attach"...)
  CmdBody body;
};

struct Script {
  std::string file;
  std::vector<Command> commands;
};

struct ParseError {
  int line = 0;
  std::string message;
};

// Parses a whole script. On error, returns the first error.
std::variant<Script, ParseError> parse_script(std::string_view text, const std::string& file);

// ---- lexical helpers (exposed for tests) ----

// Integer: decimal or 0x hex, with an optional binary size suffix K/M/G/T.
std::optional<uint64_t> parse_size(std::string_view s);
// Plain integer (decimal or hex), no suffix.
std::optional<uint64_t> parse_int(std::string_view s);
// Duration in nanoseconds: NUMBER followed by ns/us/ms/s.
std::optional<uint64_t> parse_duration_ns(std::string_view s);
// Protection: rwx patterns (`r-x`, `---`), or none/r/rw/rx/rwx. PROT_* bits.
std::optional<int> parse_prot(std::string_view s);
// Errno written the kernel way: "0" or "-EINVAL". Returns 0 or -errno.
std::optional<int> parse_rc(std::string_view s);
// Address expression syntax check (names are resolved at run time).
std::optional<AddrExpr> parse_addr_expr(std::string_view s);

}  // namespace smm::sim
