// File: src/base/bug.cc
//
// VM_BUG_ON and the kernel-style warning log (include/asm-generic/bug.h).

#include "shadowmm/base/bug.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <utility>

namespace smm {
namespace {

struct WarningLog {
  std::mutex mu;
  std::vector<std::string> entries;
  std::set<std::pair<const char*, int>> once_sites;
};

WarningLog& log() {
  static WarningLog* l = new WarningLog;  // never destroyed: usable at exit
  return *l;
}

std::string format_warning(const char* cond, const char* file, int line) {
  return std::string("WARNING: ") + file + ":" + std::to_string(line) + ": " + cond;
}

}  // namespace

void bug_fail(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "kernel BUG at %s:%d: %s\n", file, line, cond);
  std::fflush(stderr);
  std::abort();
}

bool warn_record(const char* cond, const char* file, int line) {
  WarningLog& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  l.entries.push_back(format_warning(cond, file, line));
  return true;
}

void warn_once_record(const char* cond, const char* file, int line) {
  WarningLog& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  if (!l.once_sites.insert({file, line}).second) return;
  l.entries.push_back(format_warning(cond, file, line));
}

std::vector<std::string> warnings_snapshot() {
  WarningLog& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  return l.entries;
}

uint64_t warnings_count() {
  WarningLog& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  return l.entries.size();
}

void warnings_clear() {
  WarningLog& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  l.entries.clear();
  l.once_sites.clear();
}

}  // namespace smm
