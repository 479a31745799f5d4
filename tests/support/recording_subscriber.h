// File: tests/support/recording_subscriber.h
//
// Recording notifier subscribers for tests (in the spirit of gVisor's
// recordingMappingSpace): every callback is logged in order with its range,
// sequence and pass, and behaviour can be scripted (fail, sleep, two-pass).

#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "shadowmm/notifier/mmu_notifier.h"

#include <gtest/gtest.h>
#include <memory>

namespace smm::test {

// One logged call, e.g. "a invalidate clear [0x1000,0x2000) seq=3".
struct Call {
  std::string who;
  std::string op;  // invalidate, start, finish, range_start, range_end, secondary_tlbs, release, young
  MmuNotifyEvent event = MMU_NOTIFY_UNMAP;
  VaRange range{};
  bool blockable = true;
  uint64_t seq = 0;
};

class CallLog {
 public:
  void add(Call c) {
    std::lock_guard<std::mutex> g(mu_);
    calls_.push_back(std::move(c));
  }
  std::vector<Call> calls() const {
    std::lock_guard<std::mutex> g(mu_);
    return calls_;
  }
  // "who op" strings in order.
  std::vector<std::string> ops() const;
  void clear() {
    std::lock_guard<std::mutex> g(mu_);
    calls_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Call> calls_;
};

// An interval subscriber. Single pass by default; two_pass = true uses
// invalidate_start/finish with its own finish objects.
class RecordingInterval {
 public:
  RecordingInterval(std::string name, CallLog* log, bool two_pass = false);

  MmuIntervalNotifier sub;
  std::string name;
  CallLog* log;
  // Scripted behaviour.
  std::atomic<bool> fail_nonblocking{false};  // return false on a non-blockable range
  std::atomic<bool> fail_always{false};       // return false always (a broken driver)
  std::atomic<bool> no_finish{false};         // two-pass: return no finish object
  std::atomic<uint64_t> sleep_ns{0};          // sleep inside the callback
  Mutex lock{LockRank::kDevice, "recording_interval"};
  std::atomic<int> calls{0};

  const MmuIntervalNotifierOps* ops() const;

 private:
  struct Finish {
    MmuIntervalNotifierFinish base;
    RecordingInterval* owner;
    MmuNotifierRange range;
  };
  static bool invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* r, uint64_t seq);
  static bool invalidate_start(MmuIntervalNotifier* s, const MmuNotifierRange* r, uint64_t seq,
                               MmuIntervalNotifierFinish** finish);
  static void invalidate_finish(MmuIntervalNotifierFinish* f);
  bool common(const MmuNotifierRange* r, uint64_t seq, const char* op);
  bool two_pass_;
  std::mutex finishes_mu_;
  std::vector<std::unique_ptr<Finish>> finishes_;
};

// A classic subscriber; which ops exist is chosen at construction.
class RecordingClassic {
 public:
  struct Options {
    bool start_end = true;
    bool secondary_tlbs = false;
    bool young = false;
    bool release = true;
  };
  RecordingClassic(std::string name, CallLog* log, Options o);

  MmuNotifier sub;
  std::string name;
  CallLog* log;
  std::atomic<int> fail_start_with{0};  // return this from invalidate_range_start
  std::atomic<int> young_result{0};
  std::atomic<uint64_t> sleep_ns{0};

 private:
  static int range_start(MmuNotifier* s, const MmuNotifierRange* r);
  static void range_end(MmuNotifier* s, const MmuNotifierRange* r);
  static void secondary(MmuNotifier* s, MmStruct* mm, VirtAddr start, VirtAddr end);
  static void release(MmuNotifier* s, MmStruct* mm);
  static int young(MmuNotifier* s, MmStruct* mm, VirtAddr start, VirtAddr end);
  static int test_young(MmuNotifier* s, MmStruct* mm, VirtAddr addr);
  MmuNotifierOps ops_;
};

}  // namespace smm::test
