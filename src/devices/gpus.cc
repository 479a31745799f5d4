// File: src/devices/gpus.cc
//
// The multi-GPU group (see gpus.h). Follows the shape of the xe driver's
// userptr/gpusvm invalidation with the [S4] two-pass notifier: the first
// pass zaps and submits TLB invalidations to every GT, the second waits for
// their fences.
//
// Why it stays coherent: the fault path is Mirror's (read_begin,
// hmm_range_fault, driver lock, read_retry, program every GPU), and every
// invalidation sets the seq and zaps the GPUs' translations under the same
// driver lock, which a device access also holds while it uses one. The
// callback (one pass) or the finish (two passes) returns only after every
// GPU's TLB flush completed.

#include "shadowmm/devices/gpus.h"

#include <sys/prctl.h>
#include <time.h>

#include <algorithm>
#include <chrono>

#include "shadowmm/base/bug.h"
#include "shadowmm/base/lockdep.h"
#include "shadowmm/devices/device_page_table.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"

namespace smm {

namespace {

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// Sleeps until the steady-clock instant `ns` (CLOCK_MONOTONIC, as
// steady_clock is on Linux), without spinning: eight GPU engines must be
// able to wait in parallel on two cores.
void sleep_until_ns(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

// How late an engine retires a completed flush nobody waited for.
constexpr uint64_t kRetireDelayNs = 10000000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The tail of a wait that is polled rather than slept.
constexpr uint64_t kPollNs = 40000;

// The default 50 us timer slack would dwarf a 40 us TLB invalidation.
void precise_timer_slack() {
  thread_local bool done = false;
  if (done) return;
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  done = true;
}

}  // namespace

// One GPU: its page table (its TLB, for the model's purposes) and its
// TLB-invalidation engine.
struct GpuGroup::Gpu {
  explicit Gpu(unsigned i) : index(i) {}
  unsigned index;
  SpinLock lock{LockRank::kDeviceQueue, "gpu"};
  DevicePageTable pt GUARDED_BY(lock);
  std::deque<std::shared_ptr<Flush>> queue GUARDED_BY(lock);
  // When the engine is free again: flushes on one GPU are serial.
  uint64_t busy_until_ns GUARDED_BY(lock) = 0;
  std::atomic<uint64_t> pending{0};
  std::atomic<bool> stop{false};
  WaitQueue work_wq;  // the engine waits for work
  std::thread thread;
};

const MmuIntervalNotifierOps GpuGroup::kOnePassOps = {
    .invalidate = &GpuGroup::invalidate_cb,
};

const MmuIntervalNotifierOps GpuGroup::kTwoPassOps = {
    .invalidate_start = &GpuGroup::invalidate_start_cb,
    .invalidate_finish = &GpuGroup::invalidate_finish_cb,
};

GpuGroup::GpuGroup(std::string name, MmStruct* mm, unsigned count, uint64_t latency_ns, unsigned passes,
                   unsigned finish_slots)
    : Mirror(std::move(name), mm, latency_ns, "gpus"), passes_(passes) {
  VM_BUG_ON(count == 0 || count > kMaxGpus || (passes != 1 && passes != 2));
  for (unsigned i = 0; i < count; i++) gpus_.push_back(std::make_unique<Gpu>(i));
  // Started once gpus_ is complete: an engine passes the doorbell to the next.
  for (auto& g : gpus_) g->thread = std::thread([this, gp = g.get()] { worker(gp); });
  for (unsigned i = 0; i < finish_slots; i++) {
    finishes_.push_back(std::make_unique<Finish>());
    finishes_.back()->group = this;
  }
}

GpuGroup::~GpuGroup() {
  detach();
  for (auto& g : gpus_) {
    g->stop.store(true);
    g->work_wq.wake_up_all();
    g->thread.join();
  }
}

const MmuIntervalNotifierOps* GpuGroup::ops() const { return passes_ == 2 ? &kTwoPassOps : &kOnePassOps; }

// ---- the GPUs' invalidation engines ----

void GpuGroup::worker(Gpu* g) {
  precise_timer_slack();
  for (;;) {
    g->work_wq.wait_event([g] { return g->pending.load() != 0 || g->stop.load(); });
    // Pass the doorbell on: the submitter rang only the first engine, so
    // the wake-ups run in parallel with the GPUs' work, not before it.
    if (g->index + 1 < gpus_.size()) {
      Gpu& next = *gpus_[g->index + 1];
      if (next.pending.load() != 0) next.work_wq.wake_up_all();
    }
    std::shared_ptr<Flush> f;
    {
      SpinLocker l(g->lock);
      if (g->queue.empty()) {
        if (g->stop.load()) return;
        continue;
      }
      f = std::move(g->queue.front());
      g->queue.pop_front();
    }
    // The hardware works from the moment of submission, in parallel with
    // every other GPU, and completes at f->complete_at_ns. A waiter reads
    // the fence and retires the flush right then; the engine retires what
    // nobody waited for, lazily (kRetireDelayNs later, draining its queue in
    // one go), so engine wake-ups stay rare and out of the waiters' way on
    // a machine with few cores.
    // On a common tick, so that one wake-up retires a whole batch.
    if (!f->done.load(std::memory_order_acquire))
      sleep_until_ns((f->complete_at_ns / kRetireDelayNs + 2) * kRetireDelayNs);
    retire(*g, *f);
    g->pending.fetch_sub(1);
  }
}

void GpuGroup::zap(Gpu& g, Flush& f) {
  SpinLocker l(g.lock);
  if (f.zapped) return;
  g.pt.erase_range(f.range);
  f.zapped = true;
}

void GpuGroup::retire(Gpu& g, Flush& f) {
  if (f.done.load(std::memory_order_acquire)) return;  // the usual case for the engine
  {
    SpinLocker l(g.lock);
    if (f.done.load(std::memory_order_relaxed)) return;
    if (!f.zapped) g.pt.erase_range(f.range);
    f.zapped = true;
    f.done.store(true, std::memory_order_release);
  }
  trace_op("complete " + std::to_string(g.index));
}

std::shared_ptr<GpuGroup::Flush> GpuGroup::submit(Gpu& g, VaRange r) {
  auto f = std::make_shared<Flush>();
  f->gpu = &g;
  f->range = r;
  trace_op("submit " + std::to_string(g.index));
  {
    SpinLocker l(g.lock);
    g.busy_until_ns = std::max(g.busy_until_ns, now_ns()) + latency_ns();
    f->complete_at_ns = g.busy_until_ns;
    g.queue.push_back(f);
    g.pending.fetch_add(1);
  }
  return f;
}

void GpuGroup::kick(const std::vector<std::shared_ptr<Flush>>& flushes) {
  // After every submission: the completion times are already fixed, so the
  // cost of waking the engines overlaps the GPUs' work instead of delaying
  // the next submission. The first engine wakes the next (see worker()).
  if (!flushes.empty()) flushes.front()->gpu->work_wq.wake_up_all();
}

void GpuGroup::wait_all(const std::vector<std::shared_ptr<Flush>>& flushes, bool blockable) {
  uint64_t last = 0;
  bool all_done = true;
  for (const auto& f : flushes) {
    last = std::max(last, f->complete_at_ns);
    all_done &= f->done.load(std::memory_order_acquire);
  }
  if (!all_done) {
    if (blockable) {
      // The fences signal at known times, which the driver can read without
      // the workers' help (as a seqno the GPU writes): sleep once to the
      // latest and retire what the workers have not retired yet. Their
      // wake-up latencies then do not add up.
      might_sleep("GPU TLB invalidation fence");
      precise_timer_slack();
      // A timer wake-up costs tens of microseconds on a VM, as much as the
      // latency being modelled: sleep most of the wait, poll the rest.
      if (last > now_ns() + kPollNs) sleep_until_ns(last - kPollNs);
      // Without yielding: a yield hands the CPU to an engine thread for a
      // whole time slice.
      while (now_ns() < last) cpu_relax();
    } else {
      // A non-blockable range may not sleep: poll the clock.
      while (now_ns() < last) std::this_thread::yield();
    }
  }
  for (const auto& f : flushes) retire(*f->gpu, *f);
}

// ---- the notifier callbacks ----

void GpuGroup::account(const char* event, VaRange r, bool blockable, uint64_t start_ns) {
  uint64_t wall = std::max<uint64_t>(now_ns() - start_ns, 1);
  record_event(event, r.start, r.end, blockable, wall);
  VmStats& vs = machine().stats();
  vs.count(VmEvent::device_invalidations);
  vs.count(VmEvent::device_invalidate_ns, wall);
  vs.record_max(VmEvent::device_invalidate_ns_max, wall);
  SpinLocker l(stats_lock_);
  stats_.invalidations++;
  stats_.wall_ns_total += wall;
  stats_.wall_ns_max = std::max(stats_.wall_ns_max, wall);
  stats_.wall_ns_last = wall;
}

bool GpuGroup::invalidate_cb(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
  auto* self = static_cast<GpuGroup*>(static_cast<Mirror*>(sub->priv));
  uint64_t t0 = now_ns();
  if (!self->lock_for(range)) return false;
  mmu_interval_set_seq(sub, cur_seq);
  self->trace_op("invalidate");
  VaRange r = range->range().intersect(self->interval());
  // Before [S4]: one GPU after the other.
  for (auto& g : self->gpus_) {
    std::vector<std::shared_ptr<Flush>> one = {self->submit(*g, r)};
    self->kick(one);
    zap(*g, *one.front());
    self->wait_all(one, range->blockable());
  }
  self->lock_.unlock();
  self->account(mmu_notify_event_name(range->event), range->range(), range->blockable(), t0);
  return true;
}

GpuGroup::Finish* GpuGroup::get_finish() {
  for (auto& f : finishes_) {
    bool expected = false;
    if (f->in_use.compare_exchange_strong(expected, true)) return f.get();
  }
  return nullptr;
}

bool GpuGroup::invalidate_start_cb(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq,
                                   MmuIntervalNotifierFinish** finish) {
  auto* self = static_cast<GpuGroup*>(static_cast<Mirror*>(sub->priv));
  uint64_t t0 = now_ns();
  if (!self->lock_for(range)) return false;
  mmu_interval_set_seq(sub, cur_seq);
  self->trace_op("start");
  VaRange r = range->range().intersect(self->interval());
  std::vector<std::shared_ptr<Flush>> flushes;
  for (auto& g : self->gpus_) flushes.push_back(self->submit(*g, r));
  self->kick(flushes);
  // Zap under the driver lock, which device accesses hold while they use a
  // translation; after the submissions, so the zaps overlap the GPUs' work
  // (our GPUs each keep a copy of the page table; a multi-GT driver zaps
  // one).
  for (const auto& f : flushes) zap(*f->gpu, *f);
  self->lock_.unlock();
  Finish* f = self->get_finish();
  if (!f) {
    // No finish object: complete the invalidation in this pass.
    self->trace_op("fallback");
    self->wait_all(flushes, range->blockable());
    {
      SpinLocker l(self->stats_lock_);
      self->stats_.fallbacks++;
    }
    self->account(mmu_notify_event_name(range->event), range->range(), range->blockable(), t0);
    return true;
  }
  f->blockable = range->blockable();
  f->start_ns = t0;
  f->event = mmu_notify_event_name(range->event);
  f->range = range->range();
  f->flushes = std::move(flushes);
  *finish = f;
  return true;
}

void GpuGroup::invalidate_finish_cb(MmuIntervalNotifierFinish* finish) {
  auto* f = static_cast<Finish*>(finish);
  GpuGroup* self = f->group;
  VM_BUG_ON(finish->notifier != &self->notifier_);
  self->trace_op("finish");
  self->wait_all(f->flushes, f->blockable);
  f->flushes.clear();
  self->account(f->event, f->range, f->blockable, f->start_ns);
  f->in_use.store(false);
}

// ---- programming and lookups: every GPU holds what the group faulted ----

void GpuGroup::program_locked(const DevTranslation& t) {
  for (auto& g : gpus_) {
    SpinLocker l(g->lock);
    g->pt.insert(t);
  }
}

std::optional<DevTranslation> GpuGroup::lookup_locked(VirtAddr addr) {
  Gpu& g = *gpus_.front();
  SpinLocker l(g.lock);
  return g.pt.get(addr);
}

void GpuGroup::clear_locked() {
  for (auto& g : gpus_) {
    SpinLocker l(g->lock);
    g->pt.clear();
  }
}

void GpuGroup::with_table(const std::function<void(const DevicePageTable&)>& fn) {
  Gpu& g = *gpus_.front();
  SpinLocker l(g.lock);
  fn(g.pt);
}

void GpuGroup::for_each_translation(const std::function<void(const DevTranslation&)>& fn) {
  for (auto& g : gpus_) {
    SpinLocker l(g->lock);
    g->pt.for_each(fn);
  }
}

bool GpuGroup::has_translation_in(VaRange r) {
  for (auto& g : gpus_) {
    SpinLocker l(g->lock);
    if (g->pt.any_in(r)) return true;
  }
  return false;
}

std::optional<DevTranslation> GpuGroup::cached_translation(VirtAddr addr) {
  for (auto& g : gpus_) {
    SpinLocker l(g->lock);
    if (std::optional<DevTranslation> t = g->pt.get(addr)) return t;
  }
  return std::nullopt;
}

std::optional<DevTranslation> GpuGroup::translation_of_pfns(Pfn first, uint64_t nr) {
  for (auto& g : gpus_) {
    SpinLocker l(g->lock);
    if (std::optional<DevTranslation> t = g->pt.get_pfn_range(first, nr)) return t;
  }
  return std::nullopt;
}

void GpuGroup::trace_op(std::string what) {
  static std::atomic<uint64_t> seq{0};
  SpinLocker l(stats_lock_);
  if (trace_.size() == kTraceMax) trace_.pop_front();
  trace_.push_back(TraceEntry{seq.fetch_add(1), std::move(what)});
}

std::vector<GpuGroup::TraceEntry> GpuGroup::trace() const {
  SpinLocker l(stats_lock_);
  return {trace_.begin(), trace_.end()};
}

std::vector<std::string> GpuGroup::take_trace() {
  SpinLocker l(stats_lock_);
  std::vector<std::string> out;
  for (const TraceEntry& e : trace_)
    if (e.seq >= trace_taken_) out.push_back(std::to_string(e.seq) + " " + e.what);
  if (!trace_.empty()) trace_taken_ = trace_.back().seq + 1;
  return out;
}

GpuGroup::Stats GpuGroup::stats() const {
  SpinLocker l(stats_lock_);
  return stats_;
}

std::vector<std::pair<std::string, uint64_t>> GpuGroup::dump_counters() {
  Stats s = stats();
  return {{"count", count()},
          {"passes", passes_},
          {"latency_ns", latency_ns()},
          {"invalidations", s.invalidations},
          {"invalidate_wall_ns_total", s.wall_ns_total},
          {"invalidate_wall_ns_max", s.wall_ns_max},
          {"invalidate_wall_ns_last", s.wall_ns_last},
          {"single_pass_fallbacks", s.fallbacks}};
}

}  // namespace smm
