// File: shadowmm/devices/gpus.h
//
// A group of GPUs behind one interval notifier, the multi-GPU pattern that
// [S4] two-pass notifiers were written for (the xe driver's userptr and
// gpusvm invalidation: zap the GPU page tables, submit a TLB invalidation
// to every GT, wait for the fences).
//
// Each GPU has its own device page table and its own worker thread, which
// stands for the GPU's TLB-invalidation engine: a submitted flush completes
// `latency` after the GPU's previous one (or after its submission), and the
// invalidation waits for that. Faults program every GPU (the group is one
// mirror of the address space, as a multi-GPU SVM is).
//
//   passes=1  invalidate():        for each GPU: submit, zap, wait
//   passes=2  invalidate_start():  submit to every GPU, zap every GPU's
//                                  page table, hand back a finish
//             invalidate_finish(): wait for every GPU
//
// Each concurrent two-pass invalidation needs its own finish object; the
// group has `finish_slots` of them. When none is free, invalidate_start
// does the whole invalidation itself (submit to all, wait for all) and
// returns no finish: the single-pass fallback the spec describes.
//
// Deviation from Linux: a flush completes at a time fixed at submission and
// the waiter, reading the clock as a driver reads a fence seqno, retires it
// itself; the engine thread retires what nobody waited for on a 10 ms tick.
// With eight engines on two cores, waiting for their wake-ups would measure
// the host's scheduler, not the GPUs. The first pass submits the flushes
// before it zaps the GPUs' page-table copies (a driver zaps, then
// invalidates): each GPU keeps its own copy here, and zapping eight of them
// first would add CPU time the hardware does not spend; the GPUs cannot
// refill meanwhile, since the driver lock is held throughout.
//
// On a non-blockable range the group may not sleep: it trylocks its driver
// lock (false when contended) and waits for the GPUs by polling, as a driver
// spinning on a fence in atomic context would.

#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "shadowmm/base/lock.h"
#include "shadowmm/devices/mirror.h"

namespace smm {

class GpuGroup : public Mirror {
 public:
  static constexpr unsigned kMaxGpus = 64;
  static constexpr unsigned kDefaultFinishSlots = 4;

  GpuGroup(std::string name, MmStruct* mm, unsigned count, uint64_t latency_ns, unsigned passes,
           unsigned finish_slots = kDefaultFinishSlots);
  ~GpuGroup() override;

  unsigned count() const { return static_cast<unsigned>(gpus_.size()); }
  unsigned passes() const { return passes_; }

  // Observation: a translation any GPU holds counts.
  void for_each_translation(const std::function<void(const DevTranslation&)>& fn) override;
  bool has_translation_in(VaRange r) override;
  std::optional<DevTranslation> cached_translation(VirtAddr addr) override;
  std::optional<DevTranslation> translation_of_pfns(Pfn first, uint64_t nr) override;
  std::vector<std::pair<std::string, uint64_t>> dump_counters() override;

  // Per-invalidation statistics (wall time the notifier spent in it).
  struct Stats {
    uint64_t invalidations = 0;
    uint64_t wall_ns_total = 0;
    uint64_t wall_ns_max = 0;
    uint64_t wall_ns_last = 0;
    uint64_t fallbacks = 0;  // two-pass starts that found no finish object
  };
  Stats stats() const EXCLUDES(stats_lock_);

  // The group's recent operations, oldest first: "invalidate" (one pass),
  // "start", "submit N", "complete N", "finish", "fallback" (N = GPU
  // index), each with a
  // sequence number shared by every group, so tests can order the passes
  // of several groups.
  struct TraceEntry {
    uint64_t seq;
    std::string what;
  };
  std::vector<TraceEntry> trace() const EXCLUDES(stats_lock_);
  // The entries not taken yet, as "SEQ WHAT".
  std::vector<std::string> take_trace() override;
  static constexpr size_t kTraceMax = 4096;

 protected:
  const MmuIntervalNotifierOps* ops() const override;
  void program_locked(const DevTranslation& t) override REQUIRES(lock_);
  std::optional<DevTranslation> lookup_locked(VirtAddr addr) override REQUIRES(lock_);
  // GPU 0's table: what mapped_pages counts (every GPU holds the same
  // translations once no flush is pending).
  void with_table(const std::function<void(const DevicePageTable&)>& fn) override;
  void clear_locked() override REQUIRES(lock_);

 private:
  // One TLB flush submitted to one GPU. Shared by the submitter and the
  // GPU's queue.
  struct Gpu;
  struct Flush {
    Gpu* gpu = nullptr;
    VaRange range;
    uint64_t complete_at_ns = 0;  // when the GPU will have finished it
    bool zapped = false;          // translations dropped (GPU lock)
    std::atomic<bool> done{false};
  };
  // [S4] One finish object per concurrent two-pass invalidation.
  struct Finish : MmuIntervalNotifierFinish {
    GpuGroup* group = nullptr;
    std::atomic<bool> in_use{false};
    bool blockable = true;
    uint64_t start_ns = 0;
    const char* event = "";
    VaRange range{};
    std::vector<std::shared_ptr<Flush>> flushes;
  };

  static bool invalidate_cb(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq);
  static bool invalidate_start_cb(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq,
                                  MmuIntervalNotifierFinish** finish);
  static void invalidate_finish_cb(MmuIntervalNotifierFinish* finish);
  static const MmuIntervalNotifierOps kOnePassOps;
  static const MmuIntervalNotifierOps kTwoPassOps;

  std::shared_ptr<Flush> submit(Gpu& gpu, VaRange r);
  // Wakes the engines of the GPUs the flushes went to.
  void kick(const std::vector<std::shared_ptr<Flush>>& flushes);
  // Drops the GPU's translations in the flush's range (once).
  static void zap(Gpu& gpu, Flush& f);
  // Completes a flush whose time has come: zapped, done (once; by the
  // waiter, or lazily by the worker).
  void retire(Gpu& gpu, Flush& f);
  // Waits for every flush (one sleep to the latest completion time, then
  // retire them all).
  void wait_all(const std::vector<std::shared_ptr<Flush>>& flushes, bool blockable);
  void account(const char* event, VaRange r, bool blockable, uint64_t start_ns);
  // A free finish object, or nullptr (never blocks).
  Finish* get_finish();
  void worker(Gpu* gpu);
  void trace_op(std::string what) EXCLUDES(stats_lock_);

  std::vector<std::unique_ptr<Gpu>> gpus_;
  unsigned passes_;
  std::vector<std::unique_ptr<Finish>> finishes_;  // fixed after construction
  mutable SpinLock stats_lock_{LockRank::kDeviceQueue, "gpus_stats"};
  Stats stats_ GUARDED_BY(stats_lock_);
  std::deque<TraceEntry> trace_ GUARDED_BY(stats_lock_);
  uint64_t trace_taken_ GUARDED_BY(stats_lock_) = 0;  // entries with seq < this were taken
};

}  // namespace smm
