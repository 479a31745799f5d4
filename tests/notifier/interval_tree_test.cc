// Tests of IntervalTree, the model of include/linux/interval_tree.h: exact
// small cases, death tests for misuse, large degenerate trees, and a
// randomized comparison against a brute-force list of intervals.
//
// Tree order, as the reference defines it: ascending start; among equal
// starts, ascending insertion sequence number (a counter bumped on every
// insert, so a node removed and reinserted sorts after its old peers).

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include "shadowmm/notifier/interval_tree.h"

namespace smm {
namespace {

constexpr uint64_t kMax = UINT64_MAX;

// All hits of [start, last] via iter_first/iter_next, in the order returned.
// Stops after more hits than the tree has nodes, so a cycle fails instead of
// hanging.
std::vector<IntervalTreeNode*> query(const IntervalTree& tree, uint64_t start, uint64_t last) {
  std::vector<IntervalTreeNode*> out;
  for (IntervalTreeNode* n = tree.iter_first(start, last); n; n = tree.iter_next(n, start, last)) {
    out.push_back(n);
    if (out.size() > tree.size()) break;
  }
  return out;
}

using Hits = std::vector<IntervalTreeNode*>;

TEST(IntervalTree, EmptyTreeFindsNothing) {
  IntervalTree tree;
  tree.check_invariants();
  EXPECT_TRUE(tree.empty());
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_EQ(tree.iter_first(0, kMax), nullptr);
  EXPECT_EQ(tree.iter_first(0, 0), nullptr);
  EXPECT_EQ(tree.iter_first(kMax, kMax), nullptr);
}

TEST(IntervalTree, NodeInTreeOnlyBetweenInsertAndRemove) {
  IntervalTree tree;
  IntervalTreeNode n{.start = 10, .last = 19};
  EXPECT_FALSE(n.in_tree());
  tree.insert(&n);
  EXPECT_TRUE(n.in_tree());
  EXPECT_FALSE(tree.empty());
  EXPECT_EQ(tree.size(), 1u);
  tree.remove(&n);
  EXPECT_FALSE(n.in_tree());
  EXPECT_TRUE(tree.empty());
  EXPECT_EQ(n.start, 10u) << "remove must not touch the interval";
  EXPECT_EQ(n.last, 19u);
  tree.insert(&n);  // reinsertable
  EXPECT_EQ(tree.iter_first(15, 15), &n);
  tree.remove(&n);
  tree.check_invariants();
}

TEST(IntervalTree, SingleNodeClosedBounds) {
  IntervalTree tree;
  IntervalTreeNode n{.start = 10, .last = 19};
  tree.insert(&n);
  tree.check_invariants();
  EXPECT_EQ(query(tree, 0, 9), Hits{});
  EXPECT_EQ(query(tree, 0, 10), Hits{&n});
  EXPECT_EQ(query(tree, 19, 19), Hits{&n});
  EXPECT_EQ(query(tree, 20, 30), Hits{});
  EXPECT_EQ(query(tree, 12, 13), Hits{&n});  // query inside the node
  EXPECT_EQ(query(tree, 0, kMax), Hits{&n});  // node inside the query
  EXPECT_EQ(tree.iter_next(&n, 0, kMax), nullptr);
  tree.remove(&n);
}

// [0, 9] and [10, 19] touch but do not overlap; a query starting at a node's
// last address still hits it, because both ends are inclusive.
TEST(IntervalTree, TouchingIntervals) {
  IntervalTree tree;
  IntervalTreeNode a{.start = 0, .last = 9};
  IntervalTreeNode b{.start = 10, .last = 19};
  tree.insert(&b);
  tree.insert(&a);
  EXPECT_EQ(query(tree, 9, 9), Hits{&a});
  EXPECT_EQ(query(tree, 9, 100), (Hits{&a, &b}));
  EXPECT_EQ(query(tree, 10, 10), Hits{&b});
  EXPECT_EQ(query(tree, 19, 25), Hits{&b});
  EXPECT_EQ(query(tree, 20, 25), Hits{});
  EXPECT_EQ(query(tree, 0, 0), Hits{&a});
  tree.remove(&a);
  tree.remove(&b);
}

TEST(IntervalTree, DuplicateStartsKeepInsertionOrder) {
  IntervalTree tree;
  std::vector<IntervalTreeNode> nodes(9);
  for (size_t i = 0; i < nodes.size(); i++) {
    nodes[i] = {.start = 100, .last = 100 + (i * 7) % 5};  // lasts 100..104, unsorted
    tree.insert(&nodes[i]);
    tree.check_invariants();
  }
  Hits all;
  for (auto& n : nodes) all.push_back(&n);
  EXPECT_EQ(query(tree, 0, kMax), all);
  EXPECT_EQ(query(tree, 100, 100), all);
  // Only the nodes reaching 103, still in insertion order.
  Hits late;
  for (auto& n : nodes)
    if (n.last >= 103) late.push_back(&n);
  EXPECT_EQ(query(tree, 103, 200), late);
  // A removed and reinserted node goes behind its peers.
  tree.remove(&nodes[2]);
  tree.insert(&nodes[2]);
  tree.check_invariants();
  all.erase(all.begin() + 2);
  all.push_back(&nodes[2]);
  EXPECT_EQ(query(tree, 0, kMax), all);
  for (auto& n : nodes) tree.remove(&n);
  EXPECT_TRUE(tree.empty());
}

TEST(IntervalTree, IdenticalIntervals) {
  IntervalTree tree;
  std::vector<IntervalTreeNode> nodes(50, IntervalTreeNode{.start = 7, .last = 7});
  Hits all;
  for (auto& n : nodes) {
    tree.insert(&n);
    all.push_back(&n);
  }
  tree.check_invariants();
  EXPECT_EQ(query(tree, 7, 7), all);
  EXPECT_EQ(query(tree, 0, 6), Hits{});
  EXPECT_EQ(query(tree, 8, kMax), Hits{});
  for (size_t i = 0; i < nodes.size(); i += 2) tree.remove(&nodes[i]);
  tree.check_invariants();
  Hits odd;
  for (size_t i = 1; i < nodes.size(); i += 2) odd.push_back(&nodes[i]);
  EXPECT_EQ(query(tree, 7, 7), odd);
  for (size_t i = 1; i < nodes.size(); i += 2) tree.remove(&nodes[i]);
}

TEST(IntervalTree, WholeRangeIntervals) {
  IntervalTree tree;
  IntervalTreeNode whole{.start = 0, .last = kMax};
  IntervalTreeNode top{.start = kMax, .last = kMax};
  IntervalTreeNode bottom{.start = 0, .last = 0};
  IntervalTreeNode upper_half{.start = 1ull << 63, .last = kMax};
  IntervalTreeNode mid{.start = 1000, .last = 1999};
  for (IntervalTreeNode* n : {&top, &whole, &mid, &upper_half, &bottom}) tree.insert(n);
  tree.check_invariants();
  // Order: start 0 (whole before bottom: inserted first), 1000, 2^63, max.
  EXPECT_EQ(query(tree, 0, kMax), (Hits{&whole, &bottom, &mid, &upper_half, &top}));
  EXPECT_EQ(query(tree, kMax, kMax), (Hits{&whole, &upper_half, &top}));
  EXPECT_EQ(query(tree, 0, 0), (Hits{&whole, &bottom}));
  EXPECT_EQ(query(tree, 2000, (1ull << 63) - 1), Hits{&whole});
  EXPECT_EQ(query(tree, kMax - 1, kMax - 1), (Hits{&whole, &upper_half}));
  tree.remove(&whole);
  tree.check_invariants();
  EXPECT_EQ(query(tree, 2000, (1ull << 63) - 1), Hits{});
  EXPECT_EQ(query(tree, 1, kMax), (Hits{&mid, &upper_half, &top}));
  for (IntervalTreeNode* n : {&top, &mid, &upper_half, &bottom}) tree.remove(n);
  EXPECT_TRUE(tree.empty());
}

// The walk keeps no state beyond its current node, so it continues correctly
// after other nodes come and go.
TEST(IntervalTree, IterNextAfterOtherNodesChange) {
  IntervalTree tree;
  std::vector<IntervalTreeNode> nodes(20);
  for (size_t i = 0; i < nodes.size(); i++) {
    nodes[i] = {.start = i * 10, .last = i * 10 + 5};
    tree.insert(&nodes[i]);
  }
  IntervalTreeNode* cur = tree.iter_first(0, kMax);
  ASSERT_EQ(cur, &nodes[0]);
  tree.remove(&nodes[1]);
  IntervalTreeNode extra{.start = 1, .last = 2};
  tree.insert(&extra);
  EXPECT_EQ(tree.iter_next(cur, 0, kMax), &extra);
  EXPECT_EQ(tree.iter_next(&extra, 0, kMax), &nodes[2]);
  tree.remove(&extra);
  for (size_t i = 0; i < nodes.size(); i++)
    if (i != 1) tree.remove(&nodes[i]);
  EXPECT_TRUE(tree.empty());
}

enum class Role { kRoot, kLeaf, kInner };

// Peeks at the links (public only to keep the node an aggregate) to classify
// a node's position; the assertions use the public API.
Role role_of(const IntervalTreeNode* n) {
  if (!n->parent_) return Role::kRoot;
  return n->left_ || n->right_ ? Role::kInner : Role::kLeaf;
}

// For every tree size up to 40 and every node, removes that node from a fresh
// tree (built in a scrambled order) and checks the result. This covers the
// root, leaves, inner nodes with one or two children, and successors that are
// or are not the removed node's right child.
TEST(IntervalTree, RemoveEachPositionOfSmallTrees) {
  bool seen[3] = {};
  for (size_t size = 1; size <= 40; size++) {
    for (size_t victim = 0; victim < size; victim++) {
      std::vector<IntervalTreeNode> nodes(size);
      IntervalTree tree;
      for (size_t k = 0; k < size; k++) {
        // Starts scrambled over 23 values, so larger trees have duplicates.
        nodes[k] = {.start = (k * 7919) % 23, .last = (k * 7919) % 23 + k % 4};
        tree.insert(&nodes[k]);
      }
      seen[static_cast<int>(role_of(&nodes[victim]))] = true;
      tree.remove(&nodes[victim]);
      tree.check_invariants();
      ASSERT_EQ(tree.size(), size - 1);
      Hits want;
      for (size_t k = 0; k < size; k++)
        if (k != victim) want.push_back(&nodes[k]);
      std::stable_sort(want.begin(), want.end(),
                       [](auto* a, auto* b) { return a->start < b->start; });
      ASSERT_EQ(query(tree, 0, kMax), want) << "size " << size << " victim " << victim;
      for (IntervalTreeNode* n : want) tree.remove(n);
      tree.check_invariants();
    }
  }
  EXPECT_TRUE(seen[0] && seen[1] && seen[2]);
}

// Ascending and descending insertion (the degenerate case of an unbalanced
// BST) must stay balanced: check_invariants checks the AVL heights.
TEST(IntervalTree, SortedInsertionStaysBalanced) {
  constexpr size_t kN = 100000;
  std::vector<IntervalTreeNode> nodes(kN);
  IntervalTree tree;
  for (size_t i = 0; i < kN; i++) {
    nodes[i] = {.start = i * 16, .last = i * 16 + 7};
    tree.insert(&nodes[i]);
  }
  tree.check_invariants();
  for (size_t i = 0; i < kN; i += 2) tree.remove(&nodes[i]);
  tree.check_invariants();
  for (size_t i = kN; i-- > 0;)
    if (i % 2 == 0) tree.insert(&nodes[i]);
  tree.check_invariants();
  EXPECT_EQ(tree.size(), kN);
  for (auto& n : nodes) tree.remove(&n);
  EXPECT_TRUE(tree.empty());
}

// One hit among 10^5 disjoint nodes. The cost bound (O(log n), not O(n)) is
// measured by bench/interval_tree_bench.cc; here the answers must be exact at
// the middle, the ends and in gaps.
TEST(IntervalTree, OneHitInLargeTree) {
  constexpr size_t kN = 100000;
  std::vector<IntervalTreeNode> nodes(kN);
  IntervalTree tree;
  std::mt19937_64 rng(7);
  std::vector<size_t> order(kN);
  for (size_t i = 0; i < kN; i++) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i : order) {
    nodes[i] = {.start = i * 16, .last = i * 16 + 7};
    tree.insert(&nodes[i]);
  }
  tree.check_invariants();
  for (size_t i : {size_t{0}, kN / 2, kN / 3 + 1, kN - 1}) {
    EXPECT_EQ(query(tree, i * 16 + 3, i * 16 + 12), Hits{&nodes[i]}) << i;
    EXPECT_EQ(query(tree, i * 16 + 8, i * 16 + 15), Hits{}) << i;  // the gap after node i
  }
  EXPECT_EQ(query(tree, kN * 16, kMax), Hits{});
  EXPECT_EQ(query(tree, 0, kMax).size(), kN);
  for (auto& n : nodes) tree.remove(&n);
}

TEST(IntervalTreeDeathTest, InsertTwiceIsABug) {
  IntervalTree tree;
  IntervalTreeNode n{.start = 1, .last = 2};
  tree.insert(&n);
  EXPECT_DEATH(tree.insert(&n), "kernel BUG");
  tree.remove(&n);
}

TEST(IntervalTreeDeathTest, InsertIntoSecondTreeIsABug) {
  IntervalTree a, b;
  IntervalTreeNode n{.start = 1, .last = 2};
  a.insert(&n);
  EXPECT_DEATH(b.insert(&n), "kernel BUG");
  a.remove(&n);
}

TEST(IntervalTreeDeathTest, RemoveFromWrongTreeIsABug) {
  IntervalTree a, b;
  IntervalTreeNode n{.start = 1, .last = 2}, m{.start = 3, .last = 4};
  a.insert(&n);
  b.insert(&m);
  EXPECT_DEATH(b.remove(&n), "kernel BUG");
  IntervalTreeNode loose{.start = 1, .last = 2};
  EXPECT_DEATH(a.remove(&loose), "kernel BUG");
  a.remove(&n);
  b.remove(&m);
}

TEST(IntervalTreeDeathTest, InvertedIntervalIsABug) {
  IntervalTree tree;
  IntervalTreeNode n{.start = 5, .last = 4};
  EXPECT_DEATH(tree.insert(&n), "kernel BUG");
  EXPECT_DEATH(tree.iter_first(5, 4), "kernel BUG");
}

// ---------------------------------------------------------------------------
// Randomized comparison with a brute-force reference.

struct RefEntry {
  IntervalTreeNode* node;
  uint64_t seq;  // insertion sequence number: the tie-break among equal starts
};

class Reference {
 public:
  void insert(IntervalTreeNode* n) { live_.push_back({n, next_seq_++}); }
  void remove(IntervalTreeNode* n) {
    auto it = std::find_if(live_.begin(), live_.end(), [n](const RefEntry& e) { return e.node == n; });
    ASSERT_NE(it, live_.end());
    live_.erase(it);
  }
  // Every live node intersecting [start, last], sorted by (start, seq).
  Hits query(uint64_t start, uint64_t last) const {
    std::vector<RefEntry> hits;
    for (const RefEntry& e : live_)
      if (e.node->start <= last && start <= e.node->last) hits.push_back(e);
    std::sort(hits.begin(), hits.end(), [](const RefEntry& a, const RefEntry& b) {
      return std::tie(a.node->start, a.seq) < std::tie(b.node->start, b.seq);
    });
    Hits out;
    for (const RefEntry& e : hits) out.push_back(e.node);
    return out;
  }
  size_t size() const { return live_.size(); }

 private:
  std::vector<RefEntry> live_;
  uint64_t next_seq_ = 0;
};

// Random closed intervals: starts crowded into 64 values (many duplicates and
// overlaps), spread over 2^20, anywhere in 64 bits, or just below the top;
// lengths log-uniform from 1 to 2^64 (saturating at UINT64_MAX), plus the
// whole range now and then.
class IntervalGen {
 public:
  explicit IntervalGen(uint64_t seed) : rng_(seed) {}

  std::pair<uint64_t, uint64_t> next() {
    if (rng_() % 64 == 0) return {0, kMax};
    uint64_t start;
    switch (rng_() % 4) {
      case 0: start = rng_() % 64; break;
      case 1: start = rng_() % (1u << 20); break;
      case 2: start = rng_(); break;
      default: start = kMax - rng_() % 1024; break;
    }
    unsigned shift = rng_() % 65;
    uint64_t len_minus_1 = rng_() & (shift == 64 ? kMax : (1ull << shift) - 1);
    uint64_t last = start + len_minus_1 < start ? kMax : start + len_minus_1;
    return {start, last};
  }
  uint64_t pick(uint64_t n) { return rng_() % n; }

 private:
  std::mt19937_64 rng_;
};

class IntervalTreeRandom : public ::testing::TestWithParam<uint64_t> {};

TEST_P(IntervalTreeRandom, MatchesBruteForce) {
  constexpr size_t kSlots = 400;
  constexpr int kOps = 6000;
  IntervalGen gen(GetParam());
  std::vector<IntervalTreeNode> pool(kSlots);  // never reallocated: the tree points into it
  IntervalTree tree;
  Reference ref;
  size_t queries = 0, hits = 0;
  for (int op = 0; op < kOps; op++) {
    // Grow in the first and third quarters (towards ~320 nodes), shrink in
    // the others (towards ~20), so the tree changes size in both directions.
    const bool growing = (op / (kOps / 4)) % 2 == 0;
    const uint64_t dice = gen.pick(100);
    IntervalTreeNode* slot = &pool[gen.pick(kSlots)];
    if (dice < 60 && !slot->in_tree() && (growing || dice < 3)) {
      auto [s, l] = gen.next();
      *slot = {.start = s, .last = l};
      tree.insert(slot);
      ref.insert(slot);
    } else if (dice < 60 && slot->in_tree() && (!growing || dice < 15)) {
      tree.remove(slot);
      ref.remove(slot);
      ASSERT_FALSE(slot->in_tree());
    } else {
      auto [s, l] = gen.next();
      Hits want = ref.query(s, l);
      ASSERT_EQ(query(tree, s, l), want) << "seed " << GetParam() << " op " << op << " query [" << s << ", "
                                          << l << "]";
      queries++;
      hits += want.size();
    }
    ASSERT_EQ(tree.size(), ref.size());
    ASSERT_EQ(tree.empty(), ref.size() == 0);
    if (op % 50 == 0) {
      tree.check_invariants();
      ASSERT_EQ(query(tree, 0, kMax), ref.query(0, kMax)) << "full order at op " << op;
    }
  }
  tree.check_invariants();
  EXPECT_GT(queries, 1000u);
  EXPECT_GT(hits, queries) << "the generator should produce overlapping queries";
  for (auto& n : pool)
    if (n.in_tree()) tree.remove(&n);
  tree.check_invariants();
  EXPECT_TRUE(tree.empty());
}

INSTANTIATE_TEST_SUITE_P(Seeds, IntervalTreeRandom, ::testing::Values(1, 2, 3, 42, 20240607));

}  // namespace
}  // namespace smm
