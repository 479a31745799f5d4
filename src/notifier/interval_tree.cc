// File: src/notifier/interval_tree.cc
//
// The augmented AVL tree behind IntervalTree (include/linux/interval_tree.h,
// include/linux/interval_tree_generic.h, lib/rbtree.c). Every structural
// change is repaired by one upward walk that recomputes heights and
// subtree_last_ and rotates where a node's children differ in height by 2.

#include "shadowmm/notifier/interval_tree.h"

#include <algorithm>

#include "shadowmm/base/bug.h"

namespace smm {
namespace {

using Node = IntervalTreeNode;

int height(const Node* n) { return n ? n->height_ : 0; }

// Recomputes n's height and subtree_last_ from its children's stored values.
void update(Node* n) {
  n->height_ = 1 + std::max(height(n->left_), height(n->right_));
  uint64_t sl = n->last;
  if (n->left_) sl = std::max(sl, n->left_->subtree_last_);
  if (n->right_) sl = std::max(sl, n->right_->subtree_last_);
  n->subtree_last_ = sl;
}

Node* leftmost(Node* n) {
  while (n->left_) n = n->left_;
  return n;
}

// Linux: interval_tree_subtree_search. The first node of n's subtree, in
// order, that intersects [start, last]; nullptr if none.
// Precondition: n->subtree_last_ >= start, i.e. some node in the subtree
// ends at or after `start`.
//
// Why this is the answer for the whole rest of the tree too: the first node
// X that ends at or after `start` either begins by `last` (then it is the
// first hit) or begins after it, and then so does every node after X, while
// every node before X ends before `start`.
Node* first_in_subtree(Node* n, uint64_t start, uint64_t last) {
  for (;;) {
    if (n->left_ && n->left_->subtree_last_ >= start) {
      n = n->left_;  // X is on the left
      continue;
    }
    if (n->start > last) return nullptr;  // n is X and begins too late
    if (n->last >= start) return n;       // n is X and intersects
    // n ends before the query, as does everything on its left: X is on the
    // right, which the precondition guarantees is there.
    n = n->right_;
    VM_BUG_ON(!n || n->subtree_last_ < start);
  }
}

struct SubtreeFacts {
  int height;
  uint64_t subtree_last;
  size_t count;
};

// Checks the subtree rooted at n and returns what its parent needs to check
// its own fields. `prev` carries the in-order predecessor across calls.
SubtreeFacts check_subtree(const Node* n, const Node*& prev) {
  if (!n) return {0, 0, 0};
  VM_BUG_ON(n->start > n->last);
  VM_BUG_ON(n->left_ && n->left_->parent_ != n);
  VM_BUG_ON(n->right_ && n->right_->parent_ != n);
  SubtreeFacts l = check_subtree(n->left_, prev);
  VM_BUG_ON(prev && prev->start > n->start);  // in-order starts never decrease
  prev = n;
  SubtreeFacts r = check_subtree(n->right_, prev);
  VM_BUG_ON(l.height - r.height > 1 || r.height - l.height > 1);
  VM_BUG_ON(n->height_ != 1 + std::max(l.height, r.height));
  uint64_t sl = n->last;
  if (n->left_) sl = std::max(sl, l.subtree_last);
  if (n->right_) sl = std::max(sl, r.subtree_last);
  VM_BUG_ON(n->subtree_last_ != sl);
  return {n->height_, sl, l.count + r.count + 1};
}

}  // namespace

void IntervalTree::replace_child(Node* parent, Node* old_child, Node* new_child) {
  if (!parent)
    root_ = new_child;
  else if (parent->left_ == old_child)
    parent->left_ = new_child;
  else
    parent->right_ = new_child;
}

// x(a, y(b, c)) becomes y(x(a, b), c), written parent(left, right).
// Returns y, now in x's place. The in-order sequence a x b y c is unchanged.
Node* IntervalTree::rotate_left(Node* x) {
  Node* y = x->right_;
  x->right_ = y->left_;
  if (y->left_) y->left_->parent_ = x;
  y->parent_ = x->parent_;
  replace_child(x->parent_, x, y);
  y->left_ = x;
  x->parent_ = y;
  update(x);
  update(y);
  return y;
}

// Mirror image of rotate_left. Returns the old left child, now in x's place.
Node* IntervalTree::rotate_right(Node* x) {
  Node* y = x->left_;
  x->left_ = y->right_;
  if (y->right_) y->right_->parent_ = x;
  y->parent_ = x->parent_;
  replace_child(x->parent_, x, y);
  y->right_ = x;
  x->parent_ = y;
  update(x);
  update(y);
  return y;
}

// Recomputes n and restores the AVL balance at n, whose children are
// balanced and differ in height by at most 2. Returns the node now in n's
// place.
Node* IntervalTree::rebalance(Node* n) {
  update(n);
  int balance = height(n->left_) - height(n->right_);
  if (balance > 1) {
    if (height(n->left_->left_) < height(n->left_->right_)) rotate_left(n->left_);
    return rotate_right(n);
  }
  if (balance < -1) {
    if (height(n->right_->right_) < height(n->right_->left_)) rotate_right(n->right_);
    return rotate_left(n);
  }
  return n;
}

// Repairs n and its ancestors after a change below n. The walk stops early
// once a position's height and subtree_last_ come out as they were before,
// since ancestors depend only on those; but never before it has recomputed
// `must_reach`, whose stored fields may be stale (see remove()).
void IntervalTree::fixup_upwards(Node* n, const Node* must_reach) {
  bool reached = must_reach == nullptr;
  while (n) {
    const int old_height = n->height_;
    const uint64_t old_subtree_last = n->subtree_last_;
    if (n == must_reach) reached = true;
    Node* top = rebalance(n);
    if (reached && top->height_ == old_height && top->subtree_last_ == old_subtree_last) return;
    n = top->parent_;
  }
}

void IntervalTree::insert(Node* node) {
  VM_BUG_ON(node->in_tree());
  VM_BUG_ON(node->start > node->last);
  Node* parent = nullptr;
  Node** link = &root_;
  while (*link) {
    parent = *link;
    // Equal starts go right, so later insertions sort after earlier ones.
    link = node->start < parent->start ? &parent->left_ : &parent->right_;
  }
  node->parent_ = parent;
  node->left_ = node->right_ = nullptr;
  node->height_ = 1;
  node->subtree_last_ = node->last;
  *link = node;
  size_++;
  fixup_upwards(parent, nullptr);
}

// Walks up to the root: O(log n), and catches removal from the wrong tree.
bool IntervalTree::contains(const Node* node) const {
  while (node->parent_) node = node->parent_;
  return node == root_;
}

void IntervalTree::remove(Node* node) {
  VM_BUG_ON(!node->in_tree());
  VM_BUG_ON(!contains(node));
  Node* parent = node->parent_;
  if (node->left_ && node->right_) {
    // The in-order successor takes node's position (not its key: nodes are
    // embedded in their owners and cannot be copied), so order is kept.
    Node* succ = leftmost(node->right_);
    Node* fix_from = succ;
    if (succ->parent_ != node) {
      fix_from = succ->parent_;
      fix_from->left_ = succ->right_;
      if (succ->right_) succ->right_->parent_ = fix_from;
      succ->right_ = node->right_;
      succ->right_->parent_ = succ;
    }
    succ->left_ = node->left_;
    succ->left_->parent_ = succ;
    succ->parent_ = parent;
    replace_child(parent, node, succ);
    // Stale on purpose: they are what succ's parent was computed from.
    succ->height_ = node->height_;
    succ->subtree_last_ = node->subtree_last_;
    fixup_upwards(fix_from, succ);
  } else {
    Node* child = node->left_ ? node->left_ : node->right_;
    if (child) child->parent_ = parent;
    replace_child(parent, node, child);
    fixup_upwards(parent, nullptr);
  }
  size_--;
  *node = IntervalTreeNode{.start = node->start, .last = node->last};
}

Node* IntervalTree::iter_first(uint64_t start, uint64_t last) const {
  VM_BUG_ON(start > last);
  if (!root_ || root_->subtree_last_ < start) return nullptr;
  return first_in_subtree(root_, start, last);
}

// Linux: interval_tree_iter_next. Nodes after `node` in order are its right
// subtree, then each ancestor reached from a left child followed by that
// ancestor's right subtree. Only a subtree that reaches `start` is entered,
// and the walk ends at the first node beginning after `last`.
Node* IntervalTree::iter_next(const Node* node, uint64_t start, uint64_t last) const {
  VM_BUG_ON(!node->in_tree());
  VM_BUG_ON(start > last);
  const Node* n = node;
  for (;;) {
    if (n->right_ && n->right_->subtree_last_ >= start) return first_in_subtree(n->right_, start, last);
    const Node* child;
    do {
      child = n;
      n = n->parent_;
      if (!n) return nullptr;
    } while (n->right_ == child);
    if (n->start > last) return nullptr;
    if (n->last >= start) return const_cast<Node*>(n);
  }
}

void IntervalTree::check_invariants() const {
  VM_BUG_ON(root_ && root_->parent_ != nullptr);
  VM_BUG_ON((root_ == nullptr) != (size_ == 0));
  const Node* prev = nullptr;
  SubtreeFacts facts = check_subtree(root_, prev);
  VM_BUG_ON(facts.count != size_);
}

}  // namespace smm
