// File: src/base/lockdep.cc
//
// Runtime lock-rank checker and might_sleep() (kernel/locking/lockdep.c and
// kernel/sched/core.c's __might_sleep, reduced to what the model needs: a
// per-thread stack of held locks checked against lock_order.h).

#include "shadowmm/base/lockdep.h"

#include <cstdio>
#include <cstdlib>

namespace smm {

thread_local int preempt::count = 0;
std::atomic<SchedHook> g_sched_hook{nullptr};

namespace {

std::atomic<LockdepHandler> g_handler{nullptr};
thread_local CallbackScope* t_callback = nullptr;
thread_local int t_nonblock = 0;

void report(LockdepReport::Kind kind, std::string message) {
  LockdepReport r{kind, std::move(message)};
  if (LockdepHandler h = g_handler.load()) {
    h(r);
    return;
  }
  std::fprintf(stderr, "lockdep: %s\n", r.message.c_str());
  std::fflush(stderr);
  std::abort();
}

#if defined(SHADOWMM_LOCKDEP)
struct HeldLock {
  const void* lock;
  LockRank rank;
  const char* name;
  int subclass;
};

constexpr int kMaxHeld = 48;
struct HeldStack {
  HeldLock locks[kMaxHeld];
  int depth = 0;
};
thread_local HeldStack t_held;
#endif

}  // namespace

LockdepHandler lockdep_set_handler(LockdepHandler handler) { return g_handler.exchange(handler); }

CallbackScope::CallbackScope(const void* sub, bool nonblock, Reporter reporter, void* ctx)
    : sub_(sub), nonblock_(nonblock), reporter_(reporter), ctx_(ctx), outer_(t_callback) {
  t_callback = this;
  if (nonblock_) t_nonblock++;
}

CallbackScope::~CallbackScope() {
  if (nonblock_) t_nonblock--;
  t_callback = outer_;
}

const CallbackScope* CallbackScope::current() { return t_callback; }

void might_sleep(const char* what) {
  if (!preempt::in_atomic() && t_nonblock == 0) return;
  if (CallbackScope* cb = t_callback) {
    // A subscriber's callback slept where it must not: the oracle's E10.
    if (cb->reporter_) cb->reporter_(cb->ctx_, cb->sub_, what);
    return;
  }
  report(LockdepReport::Kind::kSleepInAtomic,
         std::string("sleeping function called from invalid context: ") + what);
}

const char* lock_rank_name(LockRank rank) {
  switch (rank) {
    case LockRank::kUnranked: return "unranked";
    case LockRank::kKhugepagedScan: return "khugepaged_scan";
    case LockRank::kMmapLock: return "mmap_lock";
    case LockRank::kAnonVma: return "anon_vma";
    case LockRank::kDevice: return "device";
    case LockRank::kDeviceQueue: return "device_queue";
    case LockRank::kPageTableLock: return "page_table_lock";
    case LockRank::kPmdPtl: return "pmd_ptl";
    case LockRank::kPtePtl: return "pte_ptl";
    case LockRank::kSecondaryTlb: return "secondary_tlb";
    case LockRank::kNotifierSubscriptions: return "notifier_subscriptions";
    case LockRank::kKhugepagedMm: return "khugepaged_mm";
    case LockRank::kPageCache: return "i_pages";
    case LockRank::kSwap: return "swap";
    case LockRank::kZone: return "zone";
    case LockRank::kDeviceEvents: return "device_events";
    case LockRank::kOracle: return "oracle";
  }
  return "?";
}

namespace lockdep {

#if defined(SHADOWMM_LOCKDEP)
void acquire(const void* lock, LockRank rank, const char* name, int subclass) {
  HeldStack& h = t_held;
  // A violation is reported once; the lock is still recorded as held so the
  // matching release balances (when the handler lets execution go on).
  for (int i = 0; i < h.depth; i++) {
    const HeldLock& held = h.locks[i];
    if (held.lock == lock) {
      report(LockdepReport::Kind::kRecursive,
             std::string("recursive locking of ") + name + " (" + lock_rank_name(rank) + ")");
      break;
    }
    if (rank == LockRank::kUnranked || held.rank == LockRank::kUnranked) continue;
    bool ok = held.rank < rank || (held.rank == rank && subclass > held.subclass);
    if (!ok) {
      report(LockdepReport::Kind::kOrder,
             std::string("lock order violation: acquiring ") + name + " (" + lock_rank_name(rank) +
                 ") while holding " + held.name + " (" + lock_rank_name(held.rank) + ")");
      break;
    }
  }
  if (h.depth == kMaxHeld) {
    report(LockdepReport::Kind::kOrder, "too many locks held");
    return;
  }
  h.locks[h.depth++] = HeldLock{lock, rank, name, subclass};
}

void release(const void* lock) {
  HeldStack& h = t_held;
  for (int i = h.depth - 1; i >= 0; i--) {
    if (h.locks[i].lock != lock) continue;
    for (int j = i; j + 1 < h.depth; j++) h.locks[j] = h.locks[j + 1];
    h.depth--;
    return;
  }
  report(LockdepReport::Kind::kNotHeld, "releasing a lock that is not held");
}

void assert_held(const void* lock, const char* name) {
  HeldStack& h = t_held;
  for (int i = 0; i < h.depth; i++)
    if (h.locks[i].lock == lock) return;
  report(LockdepReport::Kind::kNotHeld, std::string("lock not held: ") + name);
}

int held_count() { return t_held.depth; }

bool holds_rank(LockRank rank) {
  for (int i = 0; i < t_held.depth; i++)
    if (t_held.locks[i].rank == rank) return true;
  return false;
}
#else
int held_count() { return 0; }
bool holds_rank(LockRank) { return false; }
#endif

}  // namespace lockdep
}  // namespace smm
