// File: shadowmm/base/lockdep.h
//
// The runtime lock checker (a small lockdep). Every lock wrapper of
// lock.h reports acquire/release here. Two things are tracked per thread:
//
//  * held locks with their rank (lock_order.h): acquiring a lock whose rank is
//    not strictly greater than every held lock's rank is an order violation,
//    unless it is taken with a nesting subclass (fork's second mmap_lock);
//    compiled in only when SHADOWMM_LOCKDEP is defined (test builds);
//  * atomic context: a spinlock is held, or a callback of a non-blockable
//    notifier range is running. Anything that can sleep calls might_sleep(),
//    which reports a violation there (the kernel's "BUG: sleeping function
//    called from invalid context"). Always on: the oracle's E10 relies on it.
//
// A violation goes to the installed handler; the default prints the report
// and aborts. Tests install their own handler to assert a violation is caught.

#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "shadowmm/base/lock_order.h"

namespace smm {

struct LockdepReport {
  enum class Kind { kOrder, kSleepInAtomic, kRecursive, kNotHeld };
  Kind kind;
  std::string message;
};

using LockdepHandler = void (*)(const LockdepReport&);

// Installs `handler` (nullptr = default abort) and returns the previous one.
LockdepHandler lockdep_set_handler(LockdepHandler handler);

namespace lockdep {

#if defined(SHADOWMM_LOCKDEP)
inline constexpr bool kEnabled = true;
void acquire(const void* lock, LockRank rank, const char* name, int subclass);
void release(const void* lock);
void assert_held(const void* lock, const char* name);
#else
inline constexpr bool kEnabled = false;
inline void acquire(const void*, LockRank, const char*, int) {}
inline void release(const void*) {}
inline void assert_held(const void*, const char*) {}
#endif

// Number of locks the calling thread holds (0 when lockdep is compiled out).
int held_count();
// Does the calling thread hold a lock of this rank? (false without lockdep)
bool holds_rank(LockRank rank);

}  // namespace lockdep

// Atomic-context bookkeeping (always on).
namespace preempt {
extern thread_local int count;
inline void disable() { ++count; }
inline void enable() { --count; }
inline bool in_atomic() { return count > 0; }
}  // namespace preempt

// Called by everything that may sleep: sleeping locks, waits, simulated
// device latency. In atomic context (a spinlock held, or a callback of a
// non-blockable notifier range running) it reports kSleepInAtomic, unless a
// notifier callback is running: then the callback broke its contract (E10)
// and the callback scope's reporter gets it instead.
void might_sleep(const char* what);

// A notifier callback in progress on this thread (set by the notifier core
// around every call into a subscriber). `nonblock` marks callbacks that must
// not sleep (non-blockable ranges, invalidate_secondary_tlbs): the kernel's
// non_block_start/end.
class CallbackScope {
 public:
  using Reporter = void (*)(void* ctx, const void* sub, const char* what);
  CallbackScope(const void* sub, bool nonblock, Reporter reporter, void* ctx);
  ~CallbackScope();
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

  // The innermost scope of the calling thread, or nullptr.
  static const CallbackScope* current();
  const void* sub() const { return sub_; }

 private:
  friend void might_sleep(const char* what);
  const void* sub_;
  bool nonblock_;
  Reporter reporter_;
  void* ctx_;
  CallbackScope* outer_;
};

// Scheduling points: every lock acquire/release and wait reports here, so a
// deterministic scheduler can take control of interleavings without touching
// the model code. No hook is installed by default.
enum class SchedPoint { kLock, kUnlock, kWait, kWake, kCallback };
using SchedHook = void (*)(SchedPoint point, const void* object);
extern std::atomic<SchedHook> g_sched_hook;
inline void sched_point(SchedPoint point, const void* object) {
  if (SchedHook h = g_sched_hook.load(std::memory_order_relaxed)) h(point, object);
}

}  // namespace smm
