// File: tests/host/host_differential_test.cc
//
// Host differential test: every case performs the same operations twice,
//   (1) for real on the Linux machine running the test (mmap, mprotect,
//       madvise, munmap and CPU accesses through pointers), and
//   (2) on the model (smm::Machine + smm::MmStruct: do_mmap, do_munmap,
//       do_mprotect, do_madvise, cpu_touch),
// and compares the return value (or errno) of every call and the VMA table of
// the case's window: boundaries relative to the area start, permissions, the
// `hg` (VM_HUGEPAGE) and `nh` (VM_NOHUGEPAGE) VmFlags, AnonHugePages and Rss
// per VMA (host: /proc/self/smaps; model: smaps_report).
//
// The model is configured like the host at run time: THP `enabled`, every
// hugepages-<N>kB/enabled, use_zero_page, the process's PR_GET_THP_DISABLE
// state, and whether the kernel has a zero page at all (measured by read
// faulting a fresh page: hosts booted with e.g. pvm_no_zero_page=1 allocate a
// real page, which the model mirrors with knobs().zero_page = false).
//
// Layout of one case (host and model alike; only offsets are compared):
//
//     [-2M, 0)          guard: MAP_SHARED|MAP_ANONYMOUS, PROT_NONE
//     [0, len)          the area, 2 MiB aligned (the case maps it)
//     [len, len+2M)     guard: MAP_SHARED|MAP_ANONYMOUS, PROT_NONE
//
// A shared guard never merges with a private VMA, so the area's VMAs can
// never merge with unrelated mappings of the test process. The host window is
// found by over-mapping (PROT_NONE reservation of len + 6M, trimmed).
//
// The host side never faults a page the VMA does not allow: a touch first
// checks the permissions in /proc/self/smaps and answers -EFAULT itself (the
// model's cpu_touch contract: check everything first, change nothing).
//
// Besides the fields above, the table also compares the `ac` (VM_ACCOUNT)
// VmFlag and THPeligible. Rss is always compared: zero pages do not count on
// either side, and the model mirrors the host's zero-page behaviour.
//
// A case that fails because the model deviates from Linux is kept (failing)
// and marked "KNOWN MODEL DISCREPANCY"; there is none at the moment.
//
// Set SMM_HOSTDIFF_VERBOSE=1 to print every table, not only the failing ones.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shadowmm/base/bug.h"
#include "shadowmm/base/lock.h"
#include "shadowmm/base/result.h"
#include "shadowmm/base/types.h"
#include "shadowmm/base/uapi.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/machine/vm_flags.h"
#include "shadowmm/mm/huge_memory.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap.h"
#include "shadowmm/mm/mprotect.h"
#include "shadowmm/mm/task_mmu.h"

namespace {

constexpr uint64_t K4 = 4096;
constexpr uint64_t M1 = 1ull << 20;
constexpr uint64_t M2 = 2ull << 20;
constexpr uint64_t kGuard = M2;
constexpr int RW = PROT_READ | PROT_WRITE;
constexpr int PA = MAP_PRIVATE | MAP_ANONYMOUS;
constexpr int kUnknownAdvice = 12345;
constexpr int kUnknownProtBit = 0x10;

enum class Touch { kRead, kWrite };

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

// "0", "2M", "-2M", "1M+4K", "12K", "4K+1".
std::string fmt_size(int64_t v) {
  if (v == 0) return "0";
  std::string s = v < 0 ? "-" : "";
  uint64_t a = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  uint64_t m = a >> 20, k = (a & (M1 - 1)) >> 10, b = a & 1023;
  bool first = true;
  auto part = [&](uint64_t n, const char* unit) {
    if (!n) return;
    if (!first) s += "+";
    s += std::to_string(n) + unit;
    first = false;
  };
  part(m, "M");
  part(k, "K");
  part(b, "");
  return s;
}

std::string errno_str(int e) {
  if (const char* n = smm::errno_name(e)) return n;
  if (const char* n = strerrorname_np(e)) return n;
  return "errno " + std::to_string(e);
}

// A syscall result: -errno, or (mmap) an offset relative to the area start.
std::string fmt_rc(int64_t v) {
  if (v < 0 && v > -4096) return "-" + errno_str(static_cast<int>(-v));
  return fmt_size(v);
}

// ---------------------------------------------------------------------------
// VMA rows, host and model
// ---------------------------------------------------------------------------

struct VmaRow {
  int64_t start = 0;  // relative to the area start
  int64_t end = 0;
  std::string perms;       // "rw-p", "---s"
  bool hg = false;         // VM_HUGEPAGE
  bool nh = false;         // VM_NOHUGEPAGE
  bool ac = false;         // VM_ACCOUNT (VmFlags `ac`)
  bool eligible = false;   // THPeligible
  uint64_t anon_huge = 0;  // bytes
  uint64_t rss = 0;        // bytes
  bool operator==(const VmaRow&) const = default;
};

std::string fmt_row(const VmaRow& r) {
  char buf[160];
  std::string flags = std::string(r.hg ? "hg " : "") + (r.nh ? "nh " : "") + (r.ac ? "ac " : "");
  std::snprintf(buf, sizeof buf, "[%7s,%7s) %s %-8s el=%d AnonHuge=%-5s Rss=%-6s", fmt_size(r.start).c_str(),
                fmt_size(r.end).c_str(), r.perms.c_str(), flags.c_str(), r.eligible ? 1 : 0,
                fmt_size(r.anon_huge).c_str(), fmt_size(r.rss).c_str());
  return buf;
}

// Fields of two rows that differ ("start end perms hg nh AnonHuge Rss").
std::string row_diff(const VmaRow& h, const VmaRow& m) {
  std::string s;
  if (h.start != m.start) s += " start";
  if (h.end != m.end) s += " end";
  if (h.perms != m.perms) s += " perms";
  if (h.hg != m.hg) s += " hg";
  if (h.nh != m.nh) s += " nh";
  if (h.ac != m.ac) s += " ac";
  if (h.eligible != m.eligible) s += " THPeligible";
  if (h.anon_huge != m.anon_huge) s += " AnonHuge";
  if (h.rss != m.rss) s += " Rss";
  return s;
}

std::string fmt_table(const std::vector<VmaRow>& host, const std::vector<VmaRow>& model) {
  std::ostringstream os;
  char head[256];
  std::snprintf(head, sizeof head, "    %-72s | %-72s | differs\n", "HOST (/proc/self/smaps)", "MODEL (smaps_report)");
  os << head;
  size_t n = std::max(host.size(), model.size());
  for (size_t i = 0; i < n; i++) {
    std::string h = i < host.size() ? fmt_row(host[i]) : "-";
    std::string m = i < model.size() ? fmt_row(model[i]) : "-";
    std::string d;
    if (i < host.size() && i < model.size())
      d = row_diff(host[i], model[i]);
    else
      d = " (row missing on one side)";
    char line[512];
    std::snprintf(line, sizeof line, " %s %-72s | %-72s |%s\n", d.empty() ? "  " : "!!", h.c_str(), m.c_str(),
                  d.c_str());
    os << line;
  }
  return os.str();
}

// /proc/self/smaps is read into a buffer with static storage: reading it
// allocates nothing large, so no new mapping of the test process can land in
// a hole of the window between two operations.
char g_smaps_buf[16 << 20];

// Reads /proc/self/smaps; empty view when it cannot be read.
std::string_view read_self_smaps() {
  int fd = ::open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  size_t n = 0;
  for (;;) {
    ssize_t r = ::read(fd, g_smaps_buf + n, sizeof g_smaps_buf - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += static_cast<size_t>(r);
    if (n == sizeof g_smaps_buf) break;
  }
  ::close(fd);
  return std::string_view(g_smaps_buf, n);
}

bool is_smaps_header(std::string_view line) {
  if (line.empty()) return false;
  char c = line[0];
  if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  size_t dash = line.find('-'), space = line.find(' ');
  return dash != std::string_view::npos && space != std::string_view::npos && dash < space;
}

// "Rss:     12 kB" -> bytes.
uint64_t smaps_kb_field(std::string_view line) {
  size_t colon = line.find(':');
  return std::strtoull(std::string(line.substr(colon + 1)).c_str(), nullptr, 10) * 1024;
}

// The host VMAs intersecting [lo, hi), with boundaries relative to `base`.
std::vector<VmaRow> host_rows(uint64_t base, uint64_t lo, uint64_t hi) {
  std::vector<VmaRow> rows;
  std::string_view text = read_self_smaps();
  bool in = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (is_smaps_header(line)) {
      char buf[128] = {};
      std::memcpy(buf, line.data(), std::min(line.size(), sizeof buf - 1));
      unsigned long start = 0, end = 0;
      char perms[8] = {};
      in = false;
      if (std::sscanf(buf, "%lx-%lx %4s", &start, &end, perms) == 3 && end > lo && start < hi) {
        VmaRow r;
        r.start = static_cast<int64_t>(start - base);
        r.end = static_cast<int64_t>(end - base);
        r.perms = perms;
        rows.push_back(r);
        in = true;
      }
      continue;
    }
    if (!in) continue;
    if (line.starts_with("Rss:")) {
      rows.back().rss = smaps_kb_field(line);
    } else if (line.starts_with("AnonHugePages:")) {
      rows.back().anon_huge = smaps_kb_field(line);
    } else if (line.starts_with("THPeligible:")) {
      rows.back().eligible = smaps_kb_field(line) != 0;
    } else if (line.starts_with("VmFlags:")) {
      std::istringstream is{std::string(line.substr(8))};
      std::string flag;
      while (is >> flag) {
        if (flag == "hg") rows.back().hg = true;
        if (flag == "nh") rows.back().nh = true;
        if (flag == "ac") rows.back().ac = true;
      }
    }
  }
  return rows;
}

// The model VMAs intersecting [lo, hi), with boundaries relative to `base`.
std::vector<VmaRow> model_rows(smm::MmStruct* mm, uint64_t base, uint64_t lo, uint64_t hi) {
  std::vector<VmaRow> rows;
  for (const smm::VmaReport& r : smm::smaps_report(mm)) {
    if (r.end.value() <= lo || r.start.value() >= hi) continue;
    VmaRow row;
    row.start = static_cast<int64_t>(r.start.value() - base);
    row.end = static_cast<int64_t>(r.end.value() - base);
    row.perms = std::string(r.flags & smm::VM_READ ? "r" : "-") + (r.flags & smm::VM_WRITE ? "w" : "-") +
                (r.flags & smm::VM_EXEC ? "x" : "-") + (r.flags & smm::VM_MAYSHARE ? "s" : "p");
    row.hg = r.flags & smm::VM_HUGEPAGE;
    row.nh = r.flags & smm::VM_NOHUGEPAGE;
    row.ac = r.flags & smm::VM_ACCOUNT;
    row.eligible = r.thp_eligible;
    row.anon_huge = r.anon_huge;
    row.rss = r.rss;
    rows.push_back(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------
// The host's configuration, read once
// ---------------------------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return "";
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "always [madvise] never" -> "madvise"; a plain value is returned trimmed.
std::string bracketed(const std::string& s) {
  size_t a = s.find('['), b = s.find(']');
  if (a != std::string::npos && b != std::string::npos && b > a) return s.substr(a + 1, b - a - 1);
  size_t e = s.find_last_not_of(" \n\t");
  return e == std::string::npos ? "" : s.substr(0, e + 1);
}

struct HostConfig {
  std::string skip_reason;                              // non-empty: the test cannot run here
  std::string enabled;                                  // THP "always" / "madvise"
  std::vector<std::pair<unsigned, std::string>> sizes;  // anon order -> setting
  bool use_zero_page = true;
  bool zero_page = true;              // measured: a read fault maps the zero page
  bool cmdline_no_zero_page = false;  // pvm_no_zero_page=1 (informational)
  int thp_disable = 0;                // prctl(PR_GET_THP_DISABLE)
  uint64_t swap_bytes = 0;            // SwapTotal (0: anonymous memory cannot be paged out)
  std::string summary;
};

// Rss of the host VMAs intersecting [p, p+len).
uint64_t host_rss_at(uint64_t p, uint64_t len) {
  uint64_t rss = 0;
  for (const VmaRow& r : host_rows(0, p, p + len)) rss += r.rss;
  return rss;
}

HostConfig probe_host() {
  HostConfig c;
  if (read_self_smaps().empty()) {
    c.skip_reason = "/proc/self/smaps is not readable";
    return c;
  }
  const std::string thp = "/sys/kernel/mm/transparent_hugepage";
  c.enabled = bracketed(read_file(thp + "/enabled"));
  if (c.enabled.empty()) {
    c.skip_reason = "THP is not available (" + thp + "/enabled missing)";
    return c;
  }
  if (c.enabled == "never") {
    c.skip_reason = "THP enabled is 'never'";
    return c;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(thp, ec)) {
    std::string name = entry.path().filename().string();
    unsigned kb = 0;
    if (std::sscanf(name.c_str(), "hugepages-%ukB", &kb) != 1 || kb < 8) continue;
    unsigned order = static_cast<unsigned>(__builtin_ctz(kb / 4));
    if ((kb / 4) != (1u << order)) continue;
    std::string setting = bracketed(read_file(entry.path().string() + "/enabled"));
    if (!setting.empty()) c.sizes.emplace_back(order, setting);
  }
  std::sort(c.sizes.begin(), c.sizes.end());
  c.use_zero_page = bracketed(read_file(thp + "/use_zero_page")) != "0";
  c.cmdline_no_zero_page = read_file("/proc/cmdline").find("pvm_no_zero_page=1") != std::string::npos;
  int td = ::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  c.thp_disable = td > 0 ? td : 0;
  {
    std::istringstream meminfo(read_file("/proc/meminfo"));
    std::string line;
    while (std::getline(meminfo, line))
      if (line.starts_with("SwapTotal:")) c.swap_bytes = smaps_kb_field(line);
  }

  // Does a read fault of fresh anonymous memory map the zero page? Two pages,
  // NOHUGEPAGE: no THP of any size can serve the fault.
  void* p = ::mmap(nullptr, 2 * K4, RW, PA, -1, 0);
  if (p != MAP_FAILED) {
    uint64_t a = reinterpret_cast<uint64_t>(p);
    ::madvise(p, 2 * K4, MADV_NOHUGEPAGE);
    uint64_t before = host_rss_at(a, 2 * K4);
    (void)*static_cast<volatile char*>(p);
    uint64_t after = host_rss_at(a, 2 * K4);
    c.zero_page = after == before;
    ::munmap(p, 2 * K4);
  }

  std::ostringstream os;
  os << "host: THP enabled=" << c.enabled << " use_zero_page=" << c.use_zero_page
     << " zero page=" << (c.zero_page ? "yes" : "NO (read faults allocate)")
     << (c.cmdline_no_zero_page ? " [pvm_no_zero_page=1]" : "") << " PR_GET_THP_DISABLE=" << c.thp_disable
     << " swap=" << fmt_size(static_cast<int64_t>(c.swap_bytes)) << " sizes:";
  for (const auto& [order, setting] : c.sizes) os << " " << fmt_size(int64_t{4096} << order) << "=" << setting;
  c.summary = os.str();
  return c;
}

const HostConfig& host_config() {
  static const HostConfig c = [] {
    HostConfig h = probe_host();
    std::fprintf(stderr, "%s\n", h.skip_reason.empty() ? h.summary.c_str() : h.skip_reason.c_str());
    return h;
  }();
  return c;
}

bool verbose() {
  const char* v = std::getenv("SMM_HOSTDIFF_VERBOSE");
  return v && *v && std::string(v) != "0";
}

// Configures the model machine like the host.
void configure_model(smm::Machine& m, const HostConfig& c) {
  m.thp().enabled.store(c.enabled == "always" ? smm::ThpEnabled::kAlways : smm::ThpEnabled::kMadvise);
  for (const auto& [order, setting] : c.sizes) {
    if (order < smm::THP_MIN_ANON_ORDER || order > smm::HPAGE_PMD_ORDER) continue;
    smm::ThpSizeSetting s = setting == "always"    ? smm::ThpSizeSetting::kAlways
                            : setting == "inherit" ? smm::ThpSizeSetting::kInherit
                            : setting == "madvise" ? smm::ThpSizeSetting::kMadvise
                                                   : smm::ThpSizeSetting::kNever;
    m.thp().set_size(order, s);
  }
  m.thp().use_zero_page.store(c.use_zero_page);
  m.knobs().zero_page.store(c.zero_page);
}

// ---------------------------------------------------------------------------
// One differential case
// ---------------------------------------------------------------------------

class Diff {
 public:
  // Reserves the window on both sides: guards around an unmapped, 2 MiB
  // aligned hole of `area_len` bytes (the case maps the area itself).
  explicit Diff(uint64_t area_len)
      : cfg_(host_config()),
        // Swap only where the host has some (capped: the cases are small).
        machine_(smm::MachineConfig{.memory_bytes = 1ull << 30,
                                    .swap_bytes = std::min<uint64_t>(cfg_.swap_bytes, 256ull << 20)}),
        len_(area_len) {
    configure_model(machine_, cfg_);
    mm_ = smm::MmRef(smm::MmStruct::create(machine_, "hostdiff"));
    if (cfg_.thp_disable) {
      mm_->set_flag((cfg_.thp_disable & PR_THP_DISABLE_EXCEPT_ADVISED) ? smm::MMF_DISABLE_THP_EXCEPT_ADVISED
                                                                       : smm::MMF_DISABLE_THP_COMPLETELY);
    }
    smm::warnings_clear();
    ready_ = setup_host() && setup_model();
  }

  ~Diff() {
    if (host_base_) ::munmap(reinterpret_cast<void*>(host_base_ - kGuard), len_ + 2 * kGuard);
  }

  Diff(const Diff&) = delete;
  Diff& operator=(const Diff&) = delete;

  bool ready() const { return ready_; }
  const std::string& setup_error() const { return setup_error_; }

  // ---- operations: performed on both sides, results compared ----
  // `expect` is what Linux is documented to answer; a host that answers
  // otherwise is reported separately from a model that disagrees with it.

  // mmap at area offset `off` (a hint without MAP_FIXED*). Returns the host
  // result: the mapped offset or -errno.
  int64_t mmap(int64_t off, uint64_t len, int prot, int flags, std::optional<int64_t> expect = {}) {
    void* p = ::mmap(reinterpret_cast<void*>(host_base_ + off), len, prot, flags, -1, 0);
    int64_t h = p == MAP_FAILED ? -errno : static_cast<int64_t>(reinterpret_cast<uint64_t>(p) - host_base_);
    smm::Result<smm::VirtAddr> r = smm::do_mmap(mm(), smm::VirtAddr(model_base_ + off), len, prot, flags, 0);
    int64_t m = r.ok() ? static_cast<int64_t>((*r).value() - model_base_) : -r.error();
    record("mmap(" + fmt_size(off) + ", " + fmt_size(static_cast<int64_t>(len)) + ", " + prot_str(prot) + ", " +
               flags_str(flags) + ")",
           h, m, expect);
    return h;
  }

  // mmap with a NULL address: only success or the errno is compared; a
  // mapping made anywhere is unmapped again on both sides.
  int64_t mmap_anywhere(uint64_t len, int prot, int flags, std::optional<int64_t> expect = {}) {
    void* p = ::mmap(nullptr, len, prot, flags, -1, 0);
    int64_t h = p == MAP_FAILED ? -errno : 0;
    if (p != MAP_FAILED) ::munmap(p, len);
    smm::Result<smm::VirtAddr> r = smm::do_mmap(mm(), smm::VirtAddr(0), len, prot, flags, 0);
    int64_t m = r.ok() ? 0 : -r.error();
    if (r.ok()) (void)smm::do_munmap(mm(), *r, len);
    record("mmap(NULL, " + fmt_size(static_cast<int64_t>(len)) + ", " + prot_str(prot) + ", " + flags_str(flags) +
               ") [0 = mapped somewhere]",
           h, m, expect);
    return h;
  }

  // The area itself: [0, len) with MAP_FIXED_NOREPLACE.
  void map_area(int prot = RW) { mmap(0, len_, prot, PA | MAP_FIXED_NOREPLACE, 0); }

  int munmap(int64_t off, uint64_t len, std::optional<int64_t> expect = {}) {
    int h = ::munmap(reinterpret_cast<void*>(host_base_ + off), len) ? -errno : 0;
    int m = smm::do_munmap(mm(), smm::VirtAddr(model_base_ + off), len);
    record("munmap(" + fmt_size(off) + ", " + fmt_size(static_cast<int64_t>(len)) + ")", h, m, expect);
    return h;
  }

  int mprotect(int64_t off, uint64_t len, int prot, std::optional<int64_t> expect = {}) {
    int h = ::mprotect(reinterpret_cast<void*>(host_base_ + off), len, prot) ? -errno : 0;
    int m = smm::do_mprotect(mm(), smm::VirtAddr(model_base_ + off), len, prot);
    record("mprotect(" + fmt_size(off) + ", " + fmt_size(static_cast<int64_t>(len)) + ", " + prot_str(prot) + ")", h, m,
           expect);
    return h;
  }

  int madvise(int64_t off, uint64_t len, int advice, std::optional<int64_t> expect = {}) {
    int h = ::madvise(reinterpret_cast<void*>(host_base_ + off), len, advice) ? -errno : 0;
    int m = smm::do_madvise(mm(), smm::VirtAddr(model_base_ + off), len, advice);
    record("madvise(" + fmt_size(off) + ", " + fmt_size(static_cast<int64_t>(len)) + ", " + advice_str(advice) + ")", h,
           m, expect);
    return h;
  }

  // CPU accesses of every page of [off, off+len). The host side touches
  // only when its VMAs allow the access; otherwise it answers -EFAULT
  // without faulting (what SIGSEGV would mean), as the model's cpu_touch
  // does.
  int touch(int64_t off, uint64_t len, Touch t, std::optional<int64_t> expect = {}) {
    bool write = t == Touch::kWrite;
    int h = host_touch(off, len, write);
    int m = smm::cpu_touch(mm(), smm::VirtAddr(model_base_ + off), len,
                           write ? smm::Access::kWrite : smm::Access::kRead, std::nullopt);
    record(std::string(write ? "write" : "read") + "-touch(" + fmt_size(off) + ", " +
               fmt_size(static_cast<int64_t>(len)) + ")" + (h == -EFAULT ? " [host: predicted from perms]" : ""),
           h, m, expect);
    return h;
  }

  // ---- state comparison ----

  std::vector<VmaRow> host_table() const {
    return host_rows(host_base_, host_base_ - kGuard, host_base_ + len_ + kGuard);
  }
  std::vector<VmaRow> model_table() const {
    return model_rows(mm(), model_base_, model_base_ - kGuard, model_base_ + len_ + kGuard);
  }

  // Compares the VMA tables of the window after `label`; also checks the
  // model's own invariants and that it recorded no kernel-style warning.
  void check(const std::string& label) {
    std::vector<VmaRow> h = host_table();
    std::vector<VmaRow> m = model_table();
    {
      smm::ReadLocker l(mm()->mmap_lock);
      mm()->check_invariants();
    }
    if (smm::warnings_count()) {
      std::string w;
      for (const std::string& s : smm::warnings_snapshot()) w += "  " + s + "\n";
      ADD_FAILURE() << "MODEL recorded warnings (after " << label << "):\n" << w << "operations:\n" << trace_;
      smm::warnings_clear();
    }
    if (h != m) {
      ADD_FAILURE() << "VMA table: MODEL differs from HOST after " << label << "\n"
                    << fmt_table(h, m) << "operations:\n"
                    << trace_ << host_config().summary;
    } else if (verbose()) {
      std::printf("[%s] %s\n%s", test_name().c_str(), label.c_str(), fmt_table(h, m).c_str());
    }
  }

 private:
  smm::MmStruct* mm() const { return mm_.get(); }

  static std::string test_name() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return info ? info->name() : "?";
  }

  static std::string prot_str(int prot) {
    std::string s;
    if (prot & PROT_READ) s += "R";
    if (prot & PROT_WRITE) s += "W";
    if (prot & PROT_EXEC) s += "X";
    int rest = prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC);
    if (rest) {
      char b[16];
      std::snprintf(b, sizeof b, "%s0x%x", s.empty() ? "" : "|", rest);
      s += b;
    }
    return s.empty() ? "NONE" : s;
  }

  static std::string flags_str(int flags) {
    std::string s = (flags & MAP_TYPE) == MAP_SHARED ? "SHARED" : "PRIVATE";
    if (flags & MAP_ANONYMOUS) s += "|ANON";
    if (flags & MAP_FIXED) s += "|FIXED";
    if (flags & MAP_FIXED_NOREPLACE) s += "|FIXED_NOREPLACE";
    if (flags & MAP_NORESERVE) s += "|NORESERVE";
    return s;
  }

  static std::string advice_str(int advice) {
    switch (advice) {
      case MADV_DONTNEED: return "DONTNEED";
      case MADV_HUGEPAGE: return "HUGEPAGE";
      case MADV_NOHUGEPAGE: return "NOHUGEPAGE";
      case MADV_POPULATE_READ: return "POPULATE_READ";
      case MADV_POPULATE_WRITE: return "POPULATE_WRITE";
      case MADV_COLLAPSE: return "COLLAPSE";
      case MADV_FREE: return "FREE";
      case MADV_PAGEOUT: return "PAGEOUT";
      case MADV_COLD: return "COLD";
      case MADV_WILLNEED: return "WILLNEED";
      case MADV_NORMAL: return "NORMAL";
      case MADV_RANDOM: return "RANDOM";
      case MADV_SEQUENTIAL: return "SEQUENTIAL";
      case MADV_DONTFORK: return "DONTFORK";
      case MADV_DOFORK: return "DOFORK";
      case MADV_DONTDUMP: return "DONTDUMP";
      case MADV_DODUMP: return "DODUMP";
      default: return std::to_string(advice);
    }
  }

  void record(const std::string& what, int64_t h, int64_t m, std::optional<int64_t> expect) {
    trace_ += "  " + what + ": host " + fmt_rc(h) + ", model " + fmt_rc(m) + "\n";
    if (expect && h != *expect) {
      ADD_FAILURE() << "HOST deviates from the documented Linux result for " << what << ": expected " << fmt_rc(*expect)
                    << ", host " << fmt_rc(h) << " (the test's assumption or the host differs)\n"
                    << host_config().summary;
    }
    if (h != m) {
      ADD_FAILURE() << "Return value: MODEL differs from HOST for " << what << ": host " << fmt_rc(h) << ", model "
                    << fmt_rc(m) << "\noperations:\n"
                    << trace_;
    }
  }

  // The host touch: permission check against smaps first, then the access.
  int host_touch(int64_t off, uint64_t len, bool write) {
    if (len == 0 || (off & (K4 - 1))) return -EINVAL;
    uint64_t start = host_base_ + off, end = start + ((len + K4 - 1) & ~(K4 - 1));
    std::vector<VmaRow> rows = host_rows(host_base_, start, end);
    int64_t at = off;
    for (const VmaRow& r : rows) {
      if (r.start > at) return -EFAULT;  // a hole
      if (r.perms[write ? 1 : 0] != (write ? 'w' : 'r')) return -EFAULT;
      at = r.end;
    }
    if (static_cast<uint64_t>(at) < end - host_base_) return -EFAULT;
    for (uint64_t a = start; a < end; a += K4) {
      volatile uint64_t* p = reinterpret_cast<volatile uint64_t*>(a);
      if (write)
        *p = a;
      else
        (void)*p;
    }
    return 0;
  }

  bool setup_host() {
    const uint64_t total = len_ + 2 * kGuard + M2;
    void* raw = ::mmap(nullptr, total, PROT_NONE, PA | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return fail_setup("host reservation mmap failed: " + errno_str(errno));
    uint64_t r = reinterpret_cast<uint64_t>(raw);
    uint64_t base = smm::align_up(r + kGuard, M2);
    uint64_t lo = base - kGuard, hi = base + len_ + kGuard;
    if (lo > r) ::munmap(raw, lo - r);
    if (r + total > hi) ::munmap(reinterpret_cast<void*>(hi), r + total - hi);
    host_base_ = base;
    for (uint64_t g : {lo, base + len_}) {
      void* p = ::mmap(reinterpret_cast<void*>(g), kGuard, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (p != reinterpret_cast<void*>(g)) return fail_setup("host guard mmap failed: " + errno_str(errno));
    }
    if (::munmap(reinterpret_cast<void*>(base), len_)) return fail_setup("host munmap of the area failed");
    return true;
  }

  bool setup_model() {
    const uint64_t total = len_ + 2 * kGuard + M2;
    smm::Result<smm::VirtAddr> raw =
        smm::do_mmap(mm(), smm::VirtAddr(0), total, PROT_NONE, PA | MAP_NORESERVE, 0, smm::MmapOpts{.align = M2});
    if (!raw.ok()) return fail_setup("model reservation do_mmap failed: " + errno_str(raw.error()));
    uint64_t r = (*raw).value();
    uint64_t base = smm::align_up(r + kGuard, M2);
    uint64_t lo = base - kGuard, hi = base + len_ + kGuard;
    if (lo > r && smm::do_munmap(mm(), smm::VirtAddr(r), lo - r)) return fail_setup("model munmap (head)");
    if (r + total > hi && smm::do_munmap(mm(), smm::VirtAddr(hi), r + total - hi))
      return fail_setup("model munmap (tail)");
    model_base_ = base;
    for (uint64_t g : {lo, base + len_}) {
      smm::Result<smm::VirtAddr> p =
          smm::do_mmap(mm(), smm::VirtAddr(g), kGuard, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, 0);
      if (!p.ok() || (*p).value() != g) return fail_setup("model guard do_mmap failed");
    }
    if (smm::do_munmap(mm(), smm::VirtAddr(base), len_)) return fail_setup("model munmap of the area failed");
    return true;
  }

  bool fail_setup(const std::string& why) {
    setup_error_ = why;
    return false;
  }

  const HostConfig& cfg_;
  smm::Machine machine_;  // destroyed after mm_
  smm::MmRef mm_;
  const uint64_t len_;
  uint64_t host_base_ = 0;
  uint64_t model_base_ = 0;
  bool ready_ = false;
  std::string setup_error_;
  std::string trace_;
};

// Every case starts with this: skip where the host cannot be compared, then
// build the window.
#define HOSTDIFF_SETUP(d, area_len)                                                  \
  if (!host_config().skip_reason.empty()) GTEST_SKIP() << host_config().skip_reason; \
  Diff d(area_len);                                                                  \
  ASSERT_TRUE(d.ready()) << d.setup_error()

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

// mmap with the area start as a hint (no MAP_FIXED): placed there; writes fill
// 4K pages outside MADV_HUGEPAGE (THP enabled=madvise).
TEST(HostDifferential, PlainMmap) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.mmap(0, 8 * M1, RW, PA, 0);
  d.check("mmap at the hint");
  d.touch(0, 3 * K4, Touch::kWrite, 0);
  d.check("write 3 pages");
}

// A read fault of fresh memory: the zero page (Rss 0) or, on a host without
// one, a real page (Rss 4K each).
TEST(HostDifferential, ReadFaultZeroPageOrNot) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.touch(0, 16 * K4, Touch::kRead, 0);
  d.check("read 16 pages");
}

// mprotect of the middle splits into 3 VMAs; restoring merges back into one.
TEST(HostDifferential, MprotectMiddleSplitThenMerge) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.mprotect(2 * M1, 2 * M1, PROT_READ, 0);
  d.check("mprotect middle r--");
  d.mprotect(2 * M1, 2 * M1, RW, 0);
  d.check("mprotect middle back to rw-");
}

// The same with populated memory (the VMAs have an anon_vma).
TEST(HostDifferential, MprotectMiddleTouchedSplitThenMerge) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.mprotect(3 * M1, 2 * M1, PROT_READ, 0);
  d.check("mprotect [3M,5M) r--");
  d.mprotect(3 * M1, 2 * M1, RW, 0);
  d.check("mprotect [3M,5M) back to rw-");
}

// One mprotect call spanning two VMAs of different protections.
TEST(HostDifferential, MprotectAcrossTwoVmas) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.mprotect(4 * M1, 4 * M1, PROT_READ, 0);
  d.check("mprotect [4M,8M) r--");
  d.mprotect(2 * M1, 4 * M1, PROT_NONE, 0);
  d.check("mprotect [2M,6M) --- across the boundary");
}

// MADV_HUGEPAGE then write faults: every touched aligned 2M block gets a THP.
TEST(HostDifferential, HugepageWriteFault) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(0, 8 * M1, MADV_HUGEPAGE, 0);
  d.check("MADV_HUGEPAGE");
  d.touch(0, 4 * M1, Touch::kWrite, 0);
  d.check("write [0,4M)");
  d.touch(6 * M1, K4, Touch::kWrite, 0);
  d.check("write one page at 6M");
}

// A hugepage VMA that is not 2M aligned: only the aligned blocks inside it
// get THPs.
TEST(HostDifferential, HugepageUnalignedVma) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.mmap(1 * M1, 6 * M1, RW, PA | MAP_FIXED_NOREPLACE, 1 * M1);
  d.madvise(1 * M1, 6 * M1, MADV_HUGEPAGE, 0);
  d.touch(1 * M1, 6 * M1, Touch::kWrite, 0);
  d.check("write [1M,7M) of a hugepage VMA");
}

// NOHUGEPAGE on a sub-range splits into 3 VMAs, the middle one `nh`.
TEST(HostDifferential, NohugepageSubrange) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(2 * M1, 2 * M1, MADV_NOHUGEPAGE, 0);
  d.check("MADV_NOHUGEPAGE [2M,4M)");
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.check("write everything");
}

// HUGEPAGE on everything, populate, then NOHUGEPAGE on an aligned part:
// the THPs stay PMD-mapped.
TEST(HostDifferential, HugepageThenNohugepageAlignedPart) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(0, 8 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.check("write all of a hugepage VMA");
  d.madvise(2 * M1, 2 * M1, MADV_NOHUGEPAGE, 0);
  d.check("MADV_NOHUGEPAGE [2M,4M)");
}

// NOHUGEPAGE on an unaligned part: the VMA split at 1M and 3M splits the PMD
// mappings of the blocks they cut.
TEST(HostDifferential, HugepageThenNohugepageUnalignedPart) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(0, 8 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.madvise(1 * M1, 2 * M1, MADV_NOHUGEPAGE, 0);
  d.check("MADV_NOHUGEPAGE [1M,3M)");
}

// NOHUGEPAGE on part, then HUGEPAGE on everything: one VMA again.
TEST(HostDifferential, NohugepageThenHugepageMerges) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(2 * M1, 2 * M1, MADV_NOHUGEPAGE, 0);
  d.madvise(0, 8 * M1, MADV_HUGEPAGE, 0);
  d.check("MADV_HUGEPAGE over everything");
}

// DONTNEED of a whole THP.
TEST(HostDifferential, DontneedWholeThp) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 4 * M1, Touch::kWrite, 0);
  d.check("write [0,4M)");
  d.madvise(0, 2 * M1, MADV_DONTNEED, 0);
  d.check("DONTNEED [0,2M)");
}

// DONTNEED of 4K inside a THP: the PMD is split, AnonHugePages drops.
TEST(HostDifferential, Dontneed4kInsideThp) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 2 * M1, Touch::kWrite, 0);
  d.check("write [0,2M)");
  d.madvise(K4, K4, MADV_DONTNEED, 0);
  d.check("DONTNEED [4K,8K)");
}

// DONTNEED across a hole: ENOMEM, but both sides are zapped.
TEST(HostDifferential, DontneedAcrossHole) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.munmap(3 * M1, 2 * M1, 0);
  d.madvise(0, 8 * M1, MADV_DONTNEED, -ENOMEM);
  d.check("DONTNEED [0,8M) across the hole");
}

// POPULATE_READ outside MADV_HUGEPAGE: Rss only without a zero page.
TEST(HostDifferential, PopulateRead) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 1 * M1, MADV_POPULATE_READ, 0);
  d.check("POPULATE_READ [0,1M)");
}

// POPULATE_READ of a hugepage VMA: the huge zero page, or THPs without it.
TEST(HostDifferential, PopulateReadHugepage) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.madvise(0, 4 * M1, MADV_POPULATE_READ, 0);
  d.check("POPULATE_READ [0,4M) of a hugepage VMA");
}

// POPULATE_WRITE outside and inside MADV_HUGEPAGE.
TEST(HostDifferential, PopulateWrite) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(4 * M1, 4 * M1, MADV_HUGEPAGE, 0);
  d.madvise(0, 1 * M1, MADV_POPULATE_WRITE, 0);
  d.check("POPULATE_WRITE [0,1M)");
  d.madvise(4 * M1, 2 * M1 + K4, MADV_POPULATE_WRITE, 0);
  d.check("POPULATE_WRITE [4M,6M+4K) of the hugepage VMA");
}

// POPULATE_WRITE of a read-only area: EINVAL, nothing populated.
TEST(HostDifferential, PopulateWriteReadOnlyArea) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area(PROT_READ);
  d.madvise(0, 1 * M1, MADV_POPULATE_WRITE, -EINVAL);
  d.check("POPULATE_WRITE on r--");
}

// munmap of half a THP: the rest stays mapped by PTEs.
TEST(HostDifferential, MunmapHalfThp) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 4 * M1, Touch::kWrite, 0);
  d.munmap(1 * M1, 1 * M1, 0);
  d.check("munmap [1M,2M) of a THP");
}

// munmap in the middle leaves two VMAs.
TEST(HostDifferential, MunmapMiddle) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.munmap(3 * M1, 2 * M1, 0);
  d.check("munmap [3M,5M)");
}

// munmap of a range with nothing mapped succeeds.
TEST(HostDifferential, MunmapUnmappedRange) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.munmap(2 * M1, 2 * M1, 0);
  d.munmap(2 * M1, 2 * M1, 0);
  d.munmap(2 * M1 + K4, 2 * K4, 0);
  d.check("munmap of unmapped ranges");
}

// munmap errors: unaligned start, zero length.
TEST(HostDifferential, MunmapErrors) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.munmap(1, K4, -EINVAL);
  d.munmap(K4 + 1, K4, -EINVAL);
  d.munmap(0, 0, -EINVAL);
  d.check("failed munmaps");
}

// mmap of zero bytes: EINVAL with or without an address.
TEST(HostDifferential, MmapLenZero) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.mmap_anywhere(0, RW, PA, -EINVAL);
  d.mmap(0, 0, RW, PA | MAP_FIXED, -EINVAL);
  d.check("failed mmaps");
}

// MAP_FIXED at an unaligned address: EINVAL, nothing replaced.
TEST(HostDifferential, MmapFixedUnaligned) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.touch(0, 64 * K4, Touch::kWrite, 0);
  d.mmap(1, K4, RW, PA | MAP_FIXED, -EINVAL);
  d.mmap(K4 + 2048, K4, PROT_READ, PA | MAP_FIXED, -EINVAL);
  d.mmap(K4 + 1, K4, PROT_READ, PA | MAP_FIXED_NOREPLACE, -EINVAL);
  d.check("failed unaligned MAP_FIXED");
}

// MAP_FIXED_NOREPLACE over an existing mapping: EEXIST.
TEST(HostDifferential, MmapFixedNoreplaceExists) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.mmap(1 * M1, 1 * M1, RW, PA | MAP_FIXED_NOREPLACE, -EEXIST);
  d.mmap(3 * M1, 2 * M1, RW, PA | MAP_FIXED_NOREPLACE, -EEXIST);  // area and guard
  d.munmap(2 * M1, 1 * M1, 0);
  d.mmap(1 * M1 + 512 * 1024, 1 * M1, RW, PA | MAP_FIXED_NOREPLACE, -EEXIST);  // half in the hole
  d.mmap(2 * M1, 1 * M1, PROT_READ, PA | MAP_FIXED_NOREPLACE, 2 * M1);         // exactly the hole
  d.check("MAP_FIXED_NOREPLACE");
}

// MAP_FIXED over populated memory replaces it.
TEST(HostDifferential, MmapFixedReplacesMiddle) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.mmap(2 * M1, 2 * M1, PROT_READ, PA | MAP_FIXED, 2 * M1);
  d.check("MAP_FIXED r-- over [2M,4M)");
}

// mprotect of an unaligned start: EINVAL.
TEST(HostDifferential, MprotectUnaligned) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.mprotect(1, K4, PROT_READ, -EINVAL);
  d.mprotect(K4 + 1, 0, PROT_READ, -EINVAL);  // alignment is checked before the length
  d.check("failed mprotects");
}

// mprotect of zero bytes succeeds without looking, even over a hole.
TEST(HostDifferential, MprotectLenZero) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.mprotect(0, 0, PROT_READ, 0);
  d.munmap(1 * M1, 1 * M1, 0);
  d.mprotect(1 * M1, 0, PROT_READ, 0);
  d.check("zero-length mprotects");
}

// mprotect over a hole: ENOMEM, and the part before the hole IS changed.
TEST(HostDifferential, MprotectHole) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.munmap(3 * M1, 1 * M1, 0);
  d.mprotect(0, 8 * M1, PROT_READ, -ENOMEM);
  d.check("mprotect [0,8M) across the hole at [3M,4M)");
  d.mprotect(3 * M1, 2 * M1, PROT_READ, -ENOMEM);  // starts in the hole: nothing changed
  d.check("mprotect starting in the hole");
}

// An unknown prot bit: EINVAL, nothing changed.
TEST(HostDifferential, MprotectUnknownProtBit) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.mprotect(0, 4 * M1, PROT_READ | kUnknownProtBit, -EINVAL);
  d.check("mprotect with prot 0x10");
}

// mprotect of part of a THP splits its PMD; of a whole THP keeps it.
TEST(HostDifferential, MprotectAndThps) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(0, 8 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.mprotect(2 * M1, 2 * M1, PROT_READ, 0);
  d.check("mprotect r-- of the whole THP [2M,4M)");
  d.mprotect(5 * M1, 1 * M1, PROT_READ, 0);
  d.check("mprotect r-- of half the THP [4M,6M)");
  d.mprotect(0, 8 * M1, RW, 0);
  d.check("mprotect rw- of everything (merge)");
}

// An unknown advice: EINVAL (also with zero length: the advice is checked
// first).
TEST(HostDifferential, MadviseUnknownAdvice) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, kUnknownAdvice, -EINVAL);
  d.madvise(0, 0, kUnknownAdvice, -EINVAL);
  d.check("madvise with an unknown advice");
}

// madvise over a hole: ENOMEM, but both sides got the flag.
TEST(HostDifferential, MadviseHole) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.munmap(3 * M1, 2 * M1, 0);
  d.madvise(0, 8 * M1, MADV_HUGEPAGE, -ENOMEM);
  d.check("MADV_HUGEPAGE [0,8M) across the hole");
  d.madvise(2 * M1, 4 * M1, MADV_NOHUGEPAGE, -ENOMEM);
  d.check("MADV_NOHUGEPAGE [2M,6M) across the hole");
}

// madvise of zero bytes succeeds without doing anything (unaligned: EINVAL).
TEST(HostDifferential, MadviseLenZero) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 0, MADV_HUGEPAGE, 0);
  d.madvise(1 * M1, 0, MADV_DONTNEED, 0);
  d.madvise(1, 0, MADV_HUGEPAGE, -EINVAL);
  d.check("zero-length madvise");
}

// After mprotect(PROT_READ) a write access must fault (the model's
// cpu_touch answers -EFAULT; the host side predicts it from the
// permissions), reads still work.
TEST(HostDifferential, TouchReadOnlyAfterMprotect) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.touch(0, 16 * K4, Touch::kWrite, 0);
  d.mprotect(0, 4 * M1, PROT_READ, 0);
  d.touch(0, 16 * K4, Touch::kWrite, -EFAULT);
  d.touch(0, 32 * K4, Touch::kRead, 0);
  d.check("read after mprotect r--");
  d.mprotect(0, 1 * M1, PROT_NONE, 0);
  d.touch(0, K4, Touch::kRead, -EFAULT);
  d.touch(1 * M1 - K4, 2 * K4, Touch::kRead, -EFAULT);  // half PROT_NONE: nothing touched
  d.check("after failed touches of PROT_NONE");
}

// MADV_FREE of part of a THP (the PMD is split) and of a whole THP (it stays
// PMD-mapped; lazily freed pages stay in Rss until reclaim).
TEST(HostDifferential, MadviseFreeAndThps) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 4 * M1, Touch::kWrite, 0);
  d.madvise(K4, K4, MADV_FREE, 0);
  d.check("MADV_FREE [4K,8K)");
  d.madvise(2 * M1, 2 * M1, MADV_FREE, 0);
  d.check("MADV_FREE [2M,4M)");
}

// MADV_PAGEOUT of 4K pages and of a THP: without swap on the host nothing
// can be paged out (the model gets the host's swap size). Linux's
// shrink_folio_list splits a large anonymous folio when folio_alloc_swap()
// fails and only then gives up (activate_locked_split), so the THP ends up
// PTE-mapped (AnonHugePages 0, Rss unchanged); the model's reclaim_folio
// (src/mm/vmscan.cc) does the same.
TEST(HostDifferential, MadvisePageout) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.madvise(4 * M1, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 1 * M1, Touch::kWrite, 0);
  d.touch(4 * M1, 2 * M1, Touch::kWrite, 0);
  d.madvise(0, 1 * M1, MADV_PAGEOUT, 0);
  d.check("MADV_PAGEOUT of 4K pages [0,1M)");
  d.madvise(4 * M1, 2 * M1, MADV_PAGEOUT, 0);
  d.check("MADV_PAGEOUT of the THP [4M,6M)");
}

// WILLNEED and COLD change nothing the smaps table shows.
TEST(HostDifferential, MadviseWillneedCold) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 2 * M1 + 64 * K4, Touch::kWrite, 0);
  d.madvise(0, 4 * M1, MADV_WILLNEED, 0);
  d.madvise(0, 4 * M1, MADV_COLD, 0);
  d.check("WILLNEED and COLD");
}

// Flag-only advice splits VMAs, the opposite advice merges them back.
TEST(HostDifferential, MadviseFlagAdviceSplitAndMerge) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.touch(0, 8 * M1, Touch::kWrite, 0);
  d.madvise(1 * M1, 1 * M1, MADV_RANDOM, 0);
  d.madvise(3 * M1, 1 * M1, MADV_DONTFORK, 0);
  d.madvise(5 * M1, 1 * M1, MADV_SEQUENTIAL, 0);
  d.madvise(6 * M1, 1 * M1, MADV_DONTDUMP, 0);
  d.check("RANDOM, DONTFORK, SEQUENTIAL, DONTDUMP");
  d.madvise(0, 8 * M1, MADV_NORMAL, 0);
  d.madvise(0, 8 * M1, MADV_DOFORK, 0);
  d.madvise(0, 8 * M1, MADV_DODUMP, 0);
  d.check("NORMAL, DOFORK, DODUMP over everything");
}

// MAP_FIXED over part of a THP: the PMD is split, the new VMA has no `hg`.
TEST(HostDifferential, MmapFixedOverPartOfThp) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 4 * M1, Touch::kWrite, 0);
  d.mmap(1 * M1, 1 * M1, RW, PA | MAP_FIXED, 1 * M1);
  d.check("MAP_FIXED rw- over [1M,2M)");
  d.touch(1 * M1, 1 * M1, Touch::kWrite, 0);
  d.check("write [1M,2M)");
}

// POPULATE_* need the access: PROT_NONE is EINVAL. A hole is ENOMEM, the
// part before it is populated (POPULATE stops at the hole).
TEST(HostDifferential, PopulateProtNoneAndHole) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.map_area();
  d.mprotect(0, 1 * M1, PROT_NONE, 0);
  d.madvise(0, 64 * K4, MADV_POPULATE_READ, -EINVAL);
  d.check("POPULATE_READ of PROT_NONE");
  d.munmap(4 * M1, 1 * M1, 0);
  d.madvise(3 * M1, 4 * M1, MADV_POPULATE_WRITE, -ENOMEM);
  d.check("POPULATE_WRITE [3M,7M) across the hole [4M,5M)");
}

// Lengths are rounded up to whole pages by mmap, munmap, mprotect, madvise.
TEST(HostDifferential, UnalignedLengthsRoundUp) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.mmap(0, 4 * M1 - 100, RW, PA | MAP_FIXED_NOREPLACE, 0);
  d.check("mmap of 4M-100 bytes");
  d.mprotect(1 * M1, 1, PROT_READ, 0);
  d.madvise(2 * M1, K4 + 1, MADV_NOHUGEPAGE, 0);
  d.munmap(3 * M1, 100, 0);
  d.check("mprotect/madvise/munmap with unaligned lengths");
}

// munmap over the end of the area and the start of the next guard: the
// shared guard is split too.
TEST(HostDifferential, MunmapAcrossAreaEdge) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.touch(0, 4 * M1, Touch::kWrite, 0);
  d.munmap(3 * M1, 2 * M1, 0);
  d.check("munmap [3M,5M) over the area end and the guard start");
}

// mprotect(PROT_NONE) of a whole THP keeps it PMD-mapped; back to rw- merges.
TEST(HostDifferential, MprotectNoneKeepsThp) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 4 * M1, Touch::kWrite, 0);
  d.mprotect(2 * M1, 2 * M1, PROT_NONE, 0);
  d.check("mprotect --- of the THP [2M,4M)");
  d.mprotect(2 * M1, 2 * M1, RW, 0);
  d.touch(2 * M1, 2 * M1, Touch::kWrite, 0);
  d.check("back to rw- and written again");
}

// Two adjacent VMAs with their own anon_vma never merge, even once their
// flags agree.
TEST(HostDifferential, MprotectNoMergeDifferentAnonVma) {
  HOSTDIFF_SETUP(d, 8 * M1);
  d.mmap(0, 4 * M1, RW, PA | MAP_FIXED_NOREPLACE, 0);
  d.touch(0, 64 * K4, Touch::kWrite, 0);
  d.mmap(4 * M1, 4 * M1, PROT_READ, PA | MAP_FIXED_NOREPLACE, 4 * M1);
  d.touch(4 * M1, 64 * K4, Touch::kRead, 0);
  d.check("rw- touched next to r-- touched");
  d.mprotect(4 * M1, 4 * M1, RW, 0);
  d.check("mprotect rw- of the second");
}

// MADV_COLLAPSE of a fully populated 2 MiB block: one THP (AnonHugePages
// 2M), whatever THP `enabled` says.
TEST(HostDifferential, MadviseCollapseFullyPopulated) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.touch(0, 2 * M1, Touch::kWrite, 0);
  d.check("write [0,2M)");
  d.madvise(0, 4 * M1, MADV_COLLAPSE, -EINVAL);  // [2M,4M) was never touched
  d.check("MADV_COLLAPSE [0,4M): the first block collapsed, the empty one fails");
  d.madvise(0, 2 * M1, MADV_COLLAPSE, 0);
  d.check("MADV_COLLAPSE [0,2M) again");
}

// Partly populated: no max_ptes_none for MADV_COLLAPSE, the holes are
// filled (Rss grows to 2M).
TEST(HostDifferential, MadviseCollapsePartlyPopulated) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.touch(64 * K4, 16 * K4, Touch::kWrite, 0);
  d.madvise(0, 2 * M1, MADV_COLLAPSE, 0);
  d.check("MADV_COLLAPSE [0,2M) with 16 of 512 pages present");
  d.madvise(2 * M1, 1 * M1, MADV_COLLAPSE, 0);  // no whole block: nothing to do
  d.check("MADV_COLLAPSE [2M,3M)");
}

// Already PMD-mapped (a THP from a fault) counts as success.
TEST(HostDifferential, MadviseCollapseAlreadyHuge) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.madvise(0, 4 * M1, MADV_HUGEPAGE, 0);
  d.touch(0, 2 * M1, Touch::kWrite, 0);
  d.check("THP from a write fault");
  d.madvise(0, 2 * M1, MADV_COLLAPSE, 0);
  d.check("MADV_COLLAPSE of the THP");
}

// VM_NOHUGEPAGE refuses MADV_COLLAPSE with EINVAL and changes nothing.
TEST(HostDifferential, MadviseCollapseNohugepage) {
  HOSTDIFF_SETUP(d, 4 * M1);
  d.map_area();
  d.touch(0, 2 * M1, Touch::kWrite, 0);
  d.madvise(0, 4 * M1, MADV_NOHUGEPAGE, 0);
  d.madvise(0, 2 * M1, MADV_COLLAPSE, -EINVAL);
  d.check("MADV_COLLAPSE of a VM_NOHUGEPAGE VMA");
}

}  // namespace
