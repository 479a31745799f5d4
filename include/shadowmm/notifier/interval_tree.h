// File: shadowmm/notifier/interval_tree.h
//
// An intrusive interval tree of closed intervals [start, last], the model of
// Linux's include/linux/interval_tree.h (struct interval_tree_node,
// interval_tree_insert / _remove / _iter_first / _iter_next, generated from
// include/linux/interval_tree_generic.h). The interval notifiers of an mm
// live in one of these, as mm/mmu_notifier.c keeps them in
// mmu_notifier_subscriptions::itree.
//
// Like the kernel's tree it is a balanced binary search tree keyed by `start`
// and augmented with the largest `last` of each subtree, so a stabbing query
// prunes every subtree that ends before the query begins. Nodes are embedded
// in their owners; the tree never allocates.
//
// Deviation from Linux: the tree is an AVL tree rather than a red-black tree
// (same O(log n) bounds, simpler to check), and it keeps no cached leftmost
// node (interval_tree_iter_first's early exit for a query entirely before the
// first interval is an optimisation, not a semantic).
//
// Not modelled: RCU-safe lockless lookup (the kernel's rb_erase is not RCU
// safe for interval trees either); callers serialise with their own lock.

#pragma once

#include <cstddef>
#include <cstdint>

namespace smm {

// Linux: struct interval_tree_node (include/linux/interval_tree.h).
// A closed interval [start, last]; `last` is inclusive, so a node can cover
// the whole 64-bit space (start 0, last UINT64_MAX) and an interval of length
// len starting at s has last = s + len - 1.
//
// Invariant: start <= last while the node is in a tree.
// The fields after `last` belong to IntervalTree: they are public only so the
// struct stays an aggregate (`IntervalTreeNode{.start = 0, .last = 9}`) and
// must not be touched by owners. `start` and `last` must not change while the
// node is in a tree.
struct IntervalTreeNode {
  uint64_t start = 0;  // first address
  uint64_t last = 0;   // last address, inclusive (start + length - 1)

  // Linux: !RB_EMPTY_NODE(&node->rb). False for a node never inserted, and
  // again after remove().
  bool in_tree() const { return height_ != 0; }

  IntervalTreeNode* parent_ = nullptr;  // nullptr for the root
  IntervalTreeNode* left_ = nullptr;
  IntervalTreeNode* right_ = nullptr;
  // Linux: interval_tree_node::__subtree_last. The largest `last` in the
  // subtree rooted here, including this node.
  uint64_t subtree_last_ = 0;
  // AVL height of the subtree rooted here (a leaf has height 1); 0 exactly
  // when the node is not in a tree.
  int height_ = 0;
};

// Linux: struct rb_root_cached used as an interval tree root, with the
// interval_tree_* functions as members.
//
// Nodes are ordered by `start`; nodes with equal `start` stay in insertion
// order (a node inserted later sorts after every node already present with
// the same start), and that relative order never changes while both remain
// in the tree. Iteration visits nodes in this order.
//
// The tree does not own its nodes. Destroying a non-empty tree leaves its
// nodes with in_tree() still true; owners remove their nodes first.
//
// Iterator invalidation: a walk holds no state beyond its current node, so
// after insert() or remove() of other nodes iter_next(current) still returns
// the next intersecting node in the tree's new order. The current node itself
// must stay in the tree until iter_next has been called on it.
class IntervalTree {
 public:
  IntervalTree() = default;
  IntervalTree(const IntervalTree&) = delete;
  IntervalTree& operator=(const IntervalTree&) = delete;

  // Linux: interval_tree_insert. Adds `node` in O(log n).
  // Preconditions: !node->in_tree(); node->start <= node->last.
  // Postconditions: node->in_tree(); it sorts after every present node with
  // the same start.
  void insert(IntervalTreeNode* node);

  // Linux: interval_tree_remove. Takes `node` out in O(log n).
  // Preconditions: `node` is in this tree.
  // Postconditions: !node->in_tree(); the node may be reinserted, here or in
  // another tree.
  void remove(IntervalTreeNode* node);

  // Linux: interval_tree_iter_first. The first node, in tree order, whose
  // [start, last] intersects the query [start, last]; nullptr if none.
  // O(log n). Preconditions: start <= last.
  IntervalTreeNode* iter_first(uint64_t start, uint64_t last) const;

  // Linux: interval_tree_iter_next. The next node after `node`, in tree
  // order, that intersects [start, last]; nullptr at the end. Walking a whole
  // query with iter_first/iter_next costs O(log n + k) for k hits.
  // Preconditions: node->in_tree() in this tree; start <= last.
  IntervalTreeNode* iter_next(const IntervalTreeNode* node, uint64_t start, uint64_t last) const;

  size_t size() const { return size_; }
  bool empty() const { return root_ == nullptr; }

  // Checks BST order, parent links, subtree_last_, heights, AVL balance and
  // the node count; VM_BUG_ON on any violation. O(n).
  void check_invariants() const;

 private:
  void replace_child(IntervalTreeNode* parent, IntervalTreeNode* old_child, IntervalTreeNode* new_child);
  IntervalTreeNode* rotate_left(IntervalTreeNode* x);
  IntervalTreeNode* rotate_right(IntervalTreeNode* x);
  IntervalTreeNode* rebalance(IntervalTreeNode* n);
  void fixup_upwards(IntervalTreeNode* n, const IntervalTreeNode* must_reach);
  bool contains(const IntervalTreeNode* node) const;

  IntervalTreeNode* root_ = nullptr;
  size_t size_ = 0;
};

}  // namespace smm
