// File: tests/support/recording_subscriber.cc

#include "recording_subscriber.h"

#include <chrono>
#include <thread>

namespace smm::test {

std::vector<std::string> CallLog::ops() const {
  std::vector<std::string> out;
  for (const Call& c : calls()) out.push_back(c.who + " " + c.op);
  return out;
}

namespace {

void nap(uint64_t ns) {
  if (!ns) return;
  might_sleep("test callback sleep");
  std::this_thread::sleep_for(std::chrono::nanoseconds(ns));
}

}  // namespace

RecordingInterval::RecordingInterval(std::string n, CallLog* l, bool two_pass)
    : name(std::move(n)), log(l), two_pass_(two_pass) {
  sub.priv = this;
}

const MmuIntervalNotifierOps* RecordingInterval::ops() const {
  static const MmuIntervalNotifierOps single = {.invalidate = &RecordingInterval::invalidate};
  static const MmuIntervalNotifierOps two = {.invalidate_start = &RecordingInterval::invalidate_start,
                                             .invalidate_finish = &RecordingInterval::invalidate_finish};
  return two_pass_ ? &two : &single;
}

bool RecordingInterval::common(const MmuNotifierRange* r, uint64_t seq, const char* op) {
  calls++;
  if (fail_always.load() || (fail_nonblocking.load() && !r->blockable())) {
    log->add({name, std::string(op) + " fail", r->event, r->range(), r->blockable(), seq});
    return false;
  }
  if (r->blockable()) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return false;
  }
  mmu_interval_set_seq(&sub, seq);
  log->add({name, op, r->event, r->range(), r->blockable(), seq});
  nap(sleep_ns.load());
  lock.unlock();
  return true;
}

bool RecordingInterval::invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* r, uint64_t seq) {
  return static_cast<RecordingInterval*>(s->priv)->common(r, seq, "invalidate");
}

bool RecordingInterval::invalidate_start(MmuIntervalNotifier* s, const MmuNotifierRange* r, uint64_t seq,
                                         MmuIntervalNotifierFinish** finish) {
  auto* self = static_cast<RecordingInterval*>(s->priv);
  EXPECT_EQ(*finish, nullptr) << "finish must be NULL on entry";
  if (!self->common(r, seq, "start")) return false;
  if (self->no_finish.load()) return true;
  auto f = std::make_unique<Finish>();
  f->owner = self;
  f->range = *r;
  *finish = &f->base;
  std::lock_guard<std::mutex> g(self->finishes_mu_);
  self->finishes_.push_back(std::move(f));
  return true;
}

void RecordingInterval::invalidate_finish(MmuIntervalNotifierFinish* f) {
  auto* fin = reinterpret_cast<Finish*>(f);
  RecordingInterval* self = fin->owner;
  EXPECT_EQ(f->notifier, &self->sub) << "the core fills finish->notifier";
  self->log->add({self->name, "finish", fin->range.event, fin->range.range(), fin->range.blockable(), 0});
}

RecordingClassic::RecordingClassic(std::string n, CallLog* l, Options o) : name(std::move(n)), log(l) {
  if (o.start_end) {
    ops_.invalidate_range_start = &RecordingClassic::range_start;
    ops_.invalidate_range_end = &RecordingClassic::range_end;
  }
  if (o.secondary_tlbs) ops_.arch_invalidate_secondary_tlbs = &RecordingClassic::secondary;
  if (o.young) {
    ops_.clear_flush_young = &RecordingClassic::young;
    ops_.clear_young = &RecordingClassic::young;
    ops_.test_young = &RecordingClassic::test_young;
  }
  if (o.release) ops_.release = &RecordingClassic::release;
  sub.ops = &ops_;
  sub.priv = this;
}

int RecordingClassic::range_start(MmuNotifier* s, const MmuNotifierRange* r) {
  auto* self = static_cast<RecordingClassic*>(s->priv);
  int ret = self->fail_start_with.load();
  self->log->add({self->name, ret ? "range_start fail" : "range_start", r->event, r->range(), r->blockable(), 0});
  nap(self->sleep_ns.load());
  return ret;
}

void RecordingClassic::range_end(MmuNotifier* s, const MmuNotifierRange* r) {
  auto* self = static_cast<RecordingClassic*>(s->priv);
  self->log->add({self->name, "range_end", r->event, r->range(), r->blockable(), 0});
}

void RecordingClassic::secondary(MmuNotifier* s, MmStruct*, VirtAddr start, VirtAddr end) {
  auto* self = static_cast<RecordingClassic*>(s->priv);
  self->log->add({self->name, "secondary_tlbs", MMU_NOTIFY_UNMAP, {start, end}, false, 0});
  nap(self->sleep_ns.load());
}

void RecordingClassic::release(MmuNotifier* s, MmStruct*) {
  auto* self = static_cast<RecordingClassic*>(s->priv);
  self->log->add({self->name, "release", MMU_NOTIFY_RELEASE, {}, true, 0});
}

int RecordingClassic::young(MmuNotifier* s, MmStruct*, VirtAddr start, VirtAddr end) {
  auto* self = static_cast<RecordingClassic*>(s->priv);
  self->log->add({self->name, "young", MMU_NOTIFY_UNMAP, {start, end}, false, 0});
  return self->young_result.load();
}

int RecordingClassic::test_young(MmuNotifier* s, MmStruct*, VirtAddr addr) {
  auto* self = static_cast<RecordingClassic*>(s->priv);
  self->log->add({self->name, "test_young", MMU_NOTIFY_UNMAP, {addr, addr + PAGE_SIZE}, false, 0});
  return self->young_result.load();
}

}  // namespace smm::test
