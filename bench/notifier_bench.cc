// Benchmarks of the MMU-notifier core (issue 3): the cost of one range
// start + end with no subscriber, with 10 classic subscribers, and with 10^5
// interval subscribers of which one is hit; and a mirror device fault of
// 2 MiB (4 KiB pages and one PMD THP). The oracle is off.

#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "shadowmm/devices/mirror.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap.h"
#include "shadowmm/notifier/interval_notifier.h"
#include "shadowmm/notifier/mmu_notifier.h"

namespace smm {
namespace {

constexpr uint64_t kM2 = 2ull << 20;

struct Env {
  Machine machine;
  MmRef mm{MmStruct::create(machine, "bench")};
};

void start_end(MmStruct* mm, VirtAddr start, VirtAddr end) {
  MmuNotifierRange r;
  mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, mm, start, end);
  mmu_notifier_invalidate_range_start(&r);
  mmu_notifier_invalidate_range_end(&r);
}

void BM_RangeStartEndNoSubscribers(benchmark::State& state) {
  Env env;
  for (auto _ : state) start_end(env.mm.get(), VirtAddr(0x100000), VirtAddr(0x100000 + kM2));
}
BENCHMARK(BM_RangeStartEndNoSubscribers);

int classic_start(MmuNotifier* sub, const MmuNotifierRange*) {
  benchmark::DoNotOptimize(sub);
  return 0;
}
void classic_end(MmuNotifier* sub, const MmuNotifierRange*) { benchmark::DoNotOptimize(sub); }
const MmuNotifierOps kClassicOps = {.invalidate_range_start = classic_start, .invalidate_range_end = classic_end};

void BM_RangeStartEndClassic(benchmark::State& state) {
  Env env;
  std::vector<MmuNotifier> subs(static_cast<size_t>(state.range(0)));
  for (MmuNotifier& s : subs) {
    s.ops = &kClassicOps;
    if (mmu_notifier_register(&s, env.mm.get())) state.SkipWithError("register failed");
  }
  for (auto _ : state) start_end(env.mm.get(), VirtAddr(0x100000), VirtAddr(0x100000 + kM2));
  for (MmuNotifier& s : subs) mmu_notifier_unregister(&s, env.mm.get());
}
BENCHMARK(BM_RangeStartEndClassic)->Arg(10);

bool interval_invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange*, uint64_t cur_seq) {
  mmu_interval_set_seq(sub, cur_seq);
  return true;
}
const MmuIntervalNotifierOps kIntervalOps = {.invalidate = interval_invalidate};

// N interval subscribers of 4 KiB, 8 KiB apart; the range covers one.
void BM_RangeStartEndInterval(benchmark::State& state) {
  Env env;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  std::vector<MmuIntervalNotifier> subs(n);
  const uint64_t base = 0x10000000;
  for (uint64_t i = 0; i < n; i++)
    if (mmu_interval_notifier_insert(&subs[i], env.mm.get(), VirtAddr(base + i * 0x2000), 0x1000, &kIntervalOps))
      state.SkipWithError("insert failed");
  uint64_t i = 0;
  for (auto _ : state) {
    VirtAddr a(base + (i++ % n) * 0x2000);
    start_end(env.mm.get(), a, a + 0x1000);
  }
  for (MmuIntervalNotifier& s : subs) mmu_interval_notifier_remove(&s);
}
BENCHMARK(BM_RangeStartEndInterval)->Arg(1)->Arg(100000);

// A mirror device faults 2 MiB that the CPU populated: 512 PTEs, or one PMD
// THP (mirrored page by page, as test_hmm does). Each iteration first drops
// the device's translations with an invalidation (not timed).
void BM_MirrorFault2M(benchmark::State& state) {
  const bool thp = state.range(0);
  Env env;
  MmStruct* mm = env.mm.get();
  VirtAddr a = *do_mmap(mm, VirtAddr(0), kM2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 0,
                        MmapOpts{.align = kM2});
  do_madvise(mm, a, kM2, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  cpu_touch(mm, a, kM2, Access::kWrite, std::nullopt);
  Mirror dev("gpu", mm, 0);
  if (dev.attach(a, kM2, false)) state.SkipWithError("attach failed");
  for (auto _ : state) {
    state.PauseTiming();
    start_end(mm, a, a + kM2);
    state.ResumeTiming();
    if (dev.fault(a, kM2, true)) state.SkipWithError("fault failed");
  }
  state.counters["pages"] = static_cast<double>(dev.mapped_pages());
}
BENCHMARK(BM_MirrorFault2M)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace smm

BENCHMARK_MAIN();
