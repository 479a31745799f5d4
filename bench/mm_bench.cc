// Benchmarks of the address-space core (issue 2). Reference costs of the
// real kernel on the development machine (DESIGN.md): 4 KiB anonymous write
// fault 1.9 us; mprotect of 2 MiB of 4 KiB pages 44 us; munmap of 2 MiB of
// 4 KiB pages 122 us. Target: a fifth of those or less.

#include <benchmark/benchmark.h>

#include <fstream>
#include <string>

#include "shadowmm/machine/machine.h"
#include "shadowmm/mm/madvise.h"
#include "shadowmm/mm/memory.h"
#include "shadowmm/mm/mmap.h"
#include "shadowmm/mm/mprotect.h"

namespace smm {
namespace {

constexpr uint64_t kM2 = 2ull << 20;
constexpr int kRW = PROT_READ | PROT_WRITE;

struct Env {
  Machine machine;
  MmRef mm{MmStruct::create(machine, "bench")};
  VirtAddr map(uint64_t len, bool huge = false) {
    VirtAddr a = *do_mmap(mm.get(), VirtAddr(0), len, kRW, MAP_PRIVATE | MAP_ANONYMOUS, 0, MmapOpts{.align = kM2});
    if (huge) do_madvise(mm.get(), a, len, MADV_HUGEPAGE);
    return a;
  }
};

uint64_t host_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, rss = 0;
  f >> size >> rss;
  return rss * 4096;
}

// Model memory per mapped 4 KiB page: the host RSS growth of mapping and
// writing N pages, divided by N (page metadata, page values, page tables).
// Registered first: later benchmarks leave freed heap behind that would hide
// the page tables' share.
void BM_BytesPerMappedPage(benchmark::State& state) {
  const uint64_t pages = 1 << 18;  // 1 GiB of model memory
  double per_page = 0;
  for (auto _ : state) {
    Env env;
    VirtAddr a = env.map(pages * PAGE_SIZE);
    // Warm the allocator's free lists and the first tables outside the count.
    cpu_touch(env.mm.get(), a, PAGE_SIZE, Access::kWrite, std::nullopt);
    uint64_t before = host_rss_bytes();
    cpu_touch(env.mm.get(), a + PAGE_SIZE, (pages - 1) * PAGE_SIZE, Access::kWrite, std::nullopt);
    uint64_t after = host_rss_bytes();
    per_page = double(after - before) / double(pages - 1);
  }
  state.counters["bytes_per_page"] = per_page;
  // What the structures add up to: struct page, the value, and the PTE table
  // (its 8-byte entry plus the table header) amortised over 512 pages.
  state.counters["model_bytes_per_page"] =
      double(sizeof(Page) + sizeof(uint64_t)) + double(sizeof(PageTable)) / PTRS_PER_TABLE;
}
BENCHMARK(BM_BytesPerMappedPage)->Iterations(1)->Unit(benchmark::kMillisecond);

// One 4 KiB anonymous write fault (a fresh page each time).
void BM_WriteFault4K(benchmark::State& state) {
  Env env;
  const uint64_t len = 256 * kM2;
  VirtAddr a = env.map(len);
  uint64_t off = 0;
  for (auto _ : state) {
    if (off == len) {
      state.PauseTiming();
      do_munmap(env.mm.get(), a, len);
      a = env.map(len);
      off = 0;
      state.ResumeTiming();
    }
    uint64_t v = off;
    cpu_access(env.mm.get(), a + off, Access::kWrite, &v);
    off += PAGE_SIZE;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WriteFault4K);

// One PMD THP write fault (a fresh 2 MiB folio each time).
void BM_ThpFault2M(benchmark::State& state) {
  Env env;
  const uint64_t len = 64 * kM2;
  VirtAddr a = env.map(len, true);
  uint64_t off = 0;
  for (auto _ : state) {
    if (off == len) {
      state.PauseTiming();
      do_munmap(env.mm.get(), a, len);
      a = env.map(len, true);
      off = 0;
      state.ResumeTiming();
    }
    uint64_t v = off;
    cpu_access(env.mm.get(), a + off, Access::kWrite, &v);
    off += kM2;
  }
}
BENCHMARK(BM_ThpFault2M);

// mprotect of 2 MiB of populated 4 KiB pages (alternating r-- and rw-).
void BM_Mprotect2M(benchmark::State& state) {
  Env env;
  VirtAddr a = env.map(kM2);
  cpu_touch(env.mm.get(), a, kM2, Access::kWrite, std::nullopt);
  bool ro = true;
  for (auto _ : state) {
    do_mprotect(env.mm.get(), a, kM2, ro ? PROT_READ : kRW);
    ro = !ro;
  }
}
BENCHMARK(BM_Mprotect2M);

// munmap of 2 MiB of populated 4 KiB pages.
void BM_Munmap2M(benchmark::State& state) {
  Env env;
  for (auto _ : state) {
    state.PauseTiming();
    VirtAddr a = env.map(kM2);
    cpu_touch(env.mm.get(), a, kM2, Access::kWrite, std::nullopt);
    state.ResumeTiming();
    do_munmap(env.mm.get(), a, kM2);
  }
}
BENCHMARK(BM_Munmap2M);


}  // namespace
}  // namespace smm

BENCHMARK_MAIN();
