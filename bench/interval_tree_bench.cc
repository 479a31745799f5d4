// Benchmarks of IntervalTree (shadowmm/notifier/interval_tree.h), the model of
// include/linux/interval_tree.h, on trees of 10^2 .. 10^6 random short
// intervals. Each should grow like log n: a query hitting about one node must
// not scan the tree.
//
//   BM_IntervalTreeInsert/N        build a tree of N nodes from empty; per_op
//                                  is the time of one insert
//   BM_IntervalTreeInsertRemove/N  at a steady N nodes, remove a random node
//                                  and reinsert it elsewhere; Time is one pair,
//                                  per_op half of it
//   BM_IntervalTreeQuery/N         iter_first + iter_next over all hits of a
//                                  one-page query (about 0.9 hits on average)

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "shadowmm/notifier/interval_tree.h"

namespace smm {
namespace {

constexpr uint64_t kPage = 4096;
// Address space per node, in pages. Nodes are 1..8 pages long (4.5 on
// average), so a page-sized query meets 4.5 / 5 = 0.9 nodes on average.
constexpr uint64_t kPagesPerNode = 5;
constexpr size_t kPrecomputed = 1 << 12;  // random inputs drawn before timing

struct Intervals {
  Intervals(size_t n, uint64_t seed) : rng(seed), pages(n * kPagesPerNode) {}
  IntervalTreeNode next() {
    uint64_t start = (rng() % pages) * kPage;
    uint64_t len = (1 + rng() % 8) * kPage;
    return {.start = start, .last = start + len - 1};
  }
  std::mt19937_64 rng;
  uint64_t pages;
};

// Per-operation time from a count of operations, next to Google Benchmark's
// per-iteration Time.
void report_per_op(benchmark::State& state, double ops) {
  state.counters["per_op"] = benchmark::Counter(ops, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_IntervalTreeInsert(benchmark::State& state) {
  const size_t n = state.range(0);
  Intervals gen(n, 1);
  std::vector<IntervalTreeNode> init(n), nodes(n);
  for (auto& node : init) node = gen.next();
  for (auto _ : state) {
    state.PauseTiming();
    nodes = init;  // fresh, not-in-tree nodes; the old tree is just dropped
    auto tree = std::make_unique<IntervalTree>();
    state.ResumeTiming();
    for (auto& node : nodes) tree->insert(&node);
    benchmark::DoNotOptimize(tree->size());
  }
  report_per_op(state, double(state.iterations()) * double(n));
}

void BM_IntervalTreeInsertRemove(benchmark::State& state) {
  const size_t n = state.range(0);
  Intervals gen(n, 2);
  std::vector<IntervalTreeNode> nodes(n);
  IntervalTree tree;
  for (auto& node : nodes) {
    node = gen.next();
    tree.insert(&node);
  }
  std::vector<size_t> victims(kPrecomputed);
  std::vector<IntervalTreeNode> moved(kPrecomputed);
  for (size_t i = 0; i < kPrecomputed; i++) {
    victims[i] = gen.rng() % n;
    moved[i] = gen.next();
  }
  size_t i = 0;
  for (auto _ : state) {
    IntervalTreeNode* node = &nodes[victims[i]];
    tree.remove(node);
    node->start = moved[i].start;
    node->last = moved[i].last;
    tree.insert(node);
    i = (i + 1) % kPrecomputed;
  }
  report_per_op(state, 2.0 * double(state.iterations()));
  tree.check_invariants();
  for (auto& node : nodes) tree.remove(&node);
}

void BM_IntervalTreeQuery(benchmark::State& state) {
  const size_t n = state.range(0);
  Intervals gen(n, 3);
  std::vector<IntervalTreeNode> nodes(n);
  IntervalTree tree;
  for (auto& node : nodes) {
    node = gen.next();
    tree.insert(&node);
  }
  std::vector<uint64_t> queries(kPrecomputed);
  for (auto& q : queries) q = (gen.rng() % gen.pages) * kPage;
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    const uint64_t start = queries[i], last = start + kPage - 1;
    for (IntervalTreeNode* hit = tree.iter_first(start, last); hit; hit = tree.iter_next(hit, start, last)) {
      benchmark::DoNotOptimize(hit);
      hits++;
    }
    i = (i + 1) % kPrecomputed;
  }
  report_per_op(state, double(state.iterations()));
  state.counters["hits_per_query"] = double(hits) / double(state.iterations());
  for (auto& node : nodes) tree.remove(&node);
}

BENCHMARK(BM_IntervalTreeInsert)->RangeMultiplier(10)->Range(100, 1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_IntervalTreeInsertRemove)->RangeMultiplier(10)->Range(100, 1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_IntervalTreeQuery)->RangeMultiplier(10)->Range(100, 1000000)->Unit(benchmark::kNanosecond);

}  // namespace
}  // namespace smm

BENCHMARK_MAIN();
