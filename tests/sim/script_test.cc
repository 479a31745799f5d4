// The scenario language: lexical rules, parse errors with line numbers, and
// the run-time rules (a failing command stops the script unless the next
// line expects its errno; exit statuses; --json output).

#include <gtest/gtest.h>

#include <sstream>

#include "shadowmm/base/uapi.h"
#include "shadowmm/sim/knobs.h"
#include "shadowmm/sim/runner.h"
#include "shadowmm/sim/script.h"

namespace smm::sim {
namespace {

TEST(Lexer, SizesIntegersDurations) {
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("2M"), 2u << 20);
  EXPECT_EQ(parse_size("1G"), 1u << 30);
  EXPECT_EQ(parse_size("3T"), 3ull << 40);
  EXPECT_EQ(parse_size("0x3000"), 0x3000u);
  EXPECT_EQ(parse_size("0xfff"), 0xfffu) << "hex takes no suffix, F is a digit";
  EXPECT_FALSE(parse_size("12Q"));
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("20000000T"));
  EXPECT_EQ(parse_duration_ns("40us"), 40000u);
  EXPECT_EQ(parse_duration_ns("2ms"), 2000000u);
  EXPECT_EQ(parse_duration_ns("1s"), 1000000000u);
  EXPECT_EQ(parse_duration_ns("7ns"), 7u);
  EXPECT_FALSE(parse_duration_ns("40"));
}

TEST(Lexer, ProtectionsAndErrnos) {
  EXPECT_EQ(parse_prot("rw-"), PROT_READ | PROT_WRITE);
  EXPECT_EQ(parse_prot("---"), PROT_NONE);
  EXPECT_EQ(parse_prot("-w-"), PROT_WRITE);
  EXPECT_EQ(parse_prot("r-x"), PROT_READ | PROT_EXEC);
  EXPECT_EQ(parse_prot("none"), PROT_NONE);
  EXPECT_EQ(parse_prot("rx"), PROT_READ | PROT_EXEC);
  EXPECT_FALSE(parse_prot("wr-"));
  EXPECT_EQ(parse_rc("0"), 0);
  EXPECT_EQ(parse_rc("-EINVAL"), -EINVAL);
  EXPECT_EQ(parse_rc("-ESRCH"), -ESRCH);
  EXPECT_FALSE(parse_rc("EINVAL"));
  EXPECT_FALSE(parse_rc("-EWHATEVER"));
}

TEST(Lexer, AddressExpressions) {
  std::optional<AddrExpr> e = parse_addr_expr("A+2M-4K+0x3000");
  ASSERT_TRUE(e);
  EXPECT_EQ(*e->name, "A");
  EXPECT_EQ(e->offset, int64_t{(2 << 20) - 4096 + 0x3000});
  e = parse_addr_expr("0x600000000000+64K");
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->name);
  EXPECT_EQ(e->literal, 0x600000000000u);
  EXPECT_FALSE(parse_addr_expr("A+"));
  EXPECT_FALSE(parse_addr_expr("+4K"));
  EXPECT_FALSE(parse_addr_expr("A+4Q"));
}

struct RunResult {
  int status;
  std::string out;
  std::string err;
};

RunResult run(const std::string& text, bool json = false) {
  std::ostringstream out, err;
  RunOptions o;
  o.json = json;
  o.summary = false;
  int status = run_script_text(text, "t.smm", o, out, err);
  return {status, out.str(), err.str()};
}

TEST(Parser, ErrorsNameFileAndLineAndNothingRuns) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"mmap A 2M rw-\nfrobnicate A\n", "t.smm:2: error: unknown verb 'frobnicate'"},
      {"mmap A 2Q rw-\n", "t.smm:1: error: bad number '2Q'"},
      {"munmap B 4K\n", "t.smm:1: error: unknown name 'B'"},
      {"\n# comment\nmprotect\n", "t.smm:3: error: wrong number of operands"},
      {"set thp.enabled sometimes\n", "t.smm:1: error: bad value 'sometimes' for thp.enabled"},
      {"set khugepaged.max_ptes_none 512\n", "t.smm:1: error: value '512' out of range"},
      {"set thp.colour blue\n", "t.smm:1: error: unknown knob 'thp.colour'"},
      {"mmap A 2M rw-\nmadvise A 2M shrink\n", "t.smm:2: error: unknown advice 'shrink'"},
      {"mmap A 2M rw-\nexpect rc EINVAL\n", "t.smm:2: error: bad errno 'EINVAL'"},
      {"mmap A 2M rwz\n", "t.smm:1: error: bad protection 'rwz'"},
      {"expect mapped 0x1000 4K 3K\n", "t.smm:1: error: bad mapping size '3K'"},
      {"mmap A 2M rw- at=A fixed\n", "t.smm:1: error: unknown name 'A'"},
      {"use child\n", "t.smm:1: error: unknown mm 'child'"},
      {"device g gpus count=0\n", "t.smm:1: error: bad value '0' for gpus option count"},
  };
  for (const Case& c : cases) {
    RunResult r = run(c.text);
    EXPECT_EQ(r.status, kExitBadScript) << c.text;
    EXPECT_EQ(r.err.rfind(c.message, 0), 0u) << "got: " << r.err;
    EXPECT_TRUE(r.out.empty()) << "nothing may run before the whole script parses";
  }
}

TEST(Runner, UnexpectedErrorStopsWithStatusOne) {
  RunResult r = run("mmap A 2M rw-\nmunmap A+1 4K\nmunmap A 2M\n");
  EXPECT_EQ(r.status, kExitFailed);
  EXPECT_EQ(r.err, "t.smm:2: error: munmap failed: -EINVAL\n");
}

TEST(Runner, ExpectRcConsumesTheError) {
  RunResult r = run("mmap A 2M rw-\nmunmap A+1 4K\nexpect rc -EINVAL\nmunmap A 2M\nexpect rc 0\nexpect novma A 2M\n");
  EXPECT_EQ(r.status, kExitOk) << r.err;
}

TEST(Runner, ExpectFailuresShowWantAndFound) {
  RunResult r = run("mmap A 2M rw-\nmunmap A 4K\nexpect rc -EINVAL\n");
  EXPECT_EQ(r.status, kExitFailed);
  EXPECT_EQ(r.err, "t.smm:3: expect failed: rc -EINVAL / rc 0\n");
  r = run("mmap A 8K rw-\nexpect vma A 8K r--\n");
  EXPECT_EQ(r.status, kExitFailed);
  EXPECT_NE(r.err.find("expect failed: vma"), std::string::npos) << r.err;
}

TEST(Runner, JsonPrintsOneObjectPerCommand) {
  RunResult r = run("mmap A 2M rw-\nmunmap A 0\nexpect rc -EINVAL\ndump vmas label=x\n", true);
  EXPECT_EQ(r.status, kExitOk) << r.err;
  std::istringstream lines(r.out);
  std::vector<std::string> v;
  for (std::string l; std::getline(lines, l);) v.push_back(l);
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].rfind("{\"line\":1,\"cmd\":\"mmap\",\"rc\":0", 0), 0u) << v[0];
  EXPECT_EQ(v[1], "{\"line\":2,\"cmd\":\"munmap\",\"rc\":-22,\"errno\":\"EINVAL\"}");
  EXPECT_EQ(v[2], "{\"line\":3,\"cmd\":\"expect\",\"rc\":0}");
  EXPECT_EQ(v[3].rfind("{\"line\":4,\"cmd\":\"dump\",\"rc\":0,\"label\":\"x\",\"vmas\":[{\"start\":\"0x7effffe00000\","
                       "\"end\":\"0x7f0000000000\",\"prot\":\"rw-\",\"flags\":[\"anon\",\"account\"]",
                       0),
            0u)
      << v[3];
}

TEST(Runner, ExitedMmAnswersESRCH) {
  RunResult r = run("mmap A 2M rw-\nexit\nmmap B 2M rw-\nexpect rc -ESRCH\nuse main\nexpect rc -ESRCH\n");
  EXPECT_EQ(r.status, kExitOk) << r.err;
}

TEST(Knobs, EveryKnobAcceptsItsDefault) {
  for (const std::string& k : knob_names()) {
    std::string dflt = k == "thp.enabled" ? "madvise"
                       : k.rfind("thp.mthp.", 0) == 0 ? "never"
                       : k == "thp.use_zero_page" ? "1"
                       : k.rfind("khugepaged.", 0) == 0 ? "64"
                       : k == "mm.mprotect_notify_level" ? "pud"
                       : k == "mm.collapse_orders" ? "mthp"
                       : k == "mm.collapse_flush" ? "pmd"
                       : k == "vm.max_map_count" ? "65530"
                       : k == "swap.size" ? "16G"
                                               : "on";
    EXPECT_EQ(knob_check_value(k, dflt), "") << k;
  }
}

}  // namespace
}  // namespace smm::sim
