// File: src/notifier/interval_notifier.cc
//
// Interval notifiers (mm/mmu_notifier.c): the mm-wide sequence protocol of
// spec section c (inv_start, the interval pass, inv_end with its deferred
// inserts and removes, read_begin's wait), insert and remove, release, [S4]
// the two-pass finish pass, and [S1] BLOCK_THP (flags, the VMA policy pass,
// range_block_thp).
//
//   seq 2 (idle) --inv_start hitting a node--> 3 (odd: tree frozen, inserts
//   and removes deferred, read_begin on a hit subscription waits)
//   --last inv_end--> 4 (deferred applied, waiters woken)
//
// The one seam of the layering (docs/architecture.md): the [S1] BLOCK_THP
// VMA policy pass calls the mm floor's vma_modify_flags (mm/vma.h), as the
// seed's mmu_interval_notifier_insert_locked_flags calls it in Linux. It is
// the only include from the notifier floor up into mm/.

#include "shadowmm/notifier/interval_notifier.h"

#include <algorithm>

#include "notifier_internal.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "shadowmm/mm/vma.h"  // the [S1] seam: vma_modify_flags
#include "subscriptions.h"

namespace smm {

namespace {

MmuIntervalNotifier* sub_of(IntervalTreeNode* node) {
  if (!node) return nullptr;
  return reinterpret_cast<MmuIntervalNotifier*>(reinterpret_cast<char*>(node) -
                                                offsetof(MmuIntervalNotifier, interval_tree));
}

// Linux: mn_itree_inv_start_range. Counts the invalidation active, makes the
// seq odd when it hits some subscription, and returns the first one hit.
MmuIntervalNotifier* inv_start_range(MmuNotifierSubscriptions* subs, const MmuNotifierRange* range,
                                     uint64_t* cur_seq) {
  SpinLocker l(subs->lock);
  subs->active_invalidate_ranges++;
  IntervalTreeNode* node = subs->itree.iter_first(range->start.value(), range->end.value() - 1);
  if (node) subs->invalidate_seq.fetch_or(1);
  *cur_seq = subs->invalidate_seq.load();
  return sub_of(node);
}

// Linux: mn_itree_inv_next. Lockless: the seq is odd, so the tree is frozen.
MmuIntervalNotifier* inv_next(MmuNotifierSubscriptions* subs, MmuIntervalNotifier* sub,
                              const MmuNotifierRange* range) NO_THREAD_SAFETY_ANALYSIS {
  return sub_of(subs->itree.iter_next(&sub->interval_tree, range->start.value(), range->end.value() - 1));
}

// read_begin and remove must not run inside a callback nor with a lock a
// callback takes (the kernel's lockdep map on invalidate_range_start): a
// deadlock waiting to happen, reported as E10.
void check_not_in_callback(MmStruct* mm, const char* what) {
  const void* sub = nullptr;
  bool bad = false;
  if (const CallbackScope* cb = CallbackScope::current()) {
    sub = cb->sub();
    bad = true;
  }
  if (lockdep::holds_rank(LockRank::kDevice)) bad = true;
  if (bad) for_each_observer(mm->machine(), [&](MmObserver* o) { o->on_sleep_in_callback(sub, what); });
}

// [S4] mn_itree_finish_pass: the second pass, in the order the starts ran.
void finish_pass(MmStruct* mm, const std::vector<MmuIntervalNotifierFinish*>& finishes,
                 const MmuNotifierRange* range) {
  Machine& m = mm->machine();
  for (MmuIntervalNotifierFinish* f : finishes) {
    // Once invalidate_finish returns, the finish object is the driver's
    // again (it may reuse or free it at once): do not read it afterwards.
    MmuIntervalNotifier* sub = f->notifier;
    {
      CallbackScope scope(sub, !range->blockable(), report_sleep_in_callback, &m);
      sub->ops->invalidate_finish(f);
    }
    report_invalidated(mm, sub, *range);
  }
}

// One call into an interval subscriber: invalidate, or [S4] invalidate_start
// queueing its finish. Returns the callback's result.
bool call_invalidate(MmStruct* mm, MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq,
                     std::vector<MmuIntervalNotifierFinish*>* finishes) {
  Machine& m = mm->machine();
  bool ret;
  MmuIntervalNotifierFinish* finish = nullptr;
  {
    CallbackScope scope(sub, !range->blockable(), report_sleep_in_callback, &m);
    if (sub->ops->invalidate_start)
      ret = sub->ops->invalidate_start(sub, range, cur_seq, &finish);
    else
      ret = sub->ops->invalidate(sub, range, cur_seq);
  }
  if (ret && finish) {
    finish->notifier = sub;
    finishes->push_back(finish);  // its translations may live until the finish pass
  } else if (ret) {
    report_invalidated(mm, sub, *range);
  }
  return ret;
}

}  // namespace

int mn_itree_invalidate(MmStruct* mm, MmuNotifierSubscriptions* subs, const MmuNotifierRange* range) {
  std::vector<MmuIntervalNotifierFinish*> finishes;
  uint64_t cur_seq;
  int err = 0;
  for (MmuIntervalNotifier* sub = inv_start_range(subs, range, &cur_seq); sub; sub = inv_next(subs, sub, range)) {
    if (!call_invalidate(mm, sub, range, cur_seq, &finishes)) {
      // false means "would have to sleep": wrong on a blockable range.
      if (WARN_ON(range->blockable())) continue;
      err = -EAGAIN;
      break;
    }
  }
  // [S4] The finish pass belongs to range start: it completes before any PTE
  // changes, also on the -EAGAIN path.
  finish_pass(mm, finishes, range);
  // On -EAGAIN the non-blocking caller will not call range end.
  if (err) mn_itree_inv_end(subs);
  return err;
}

void mn_itree_inv_end(MmuNotifierSubscriptions* subs) {
  {
    SpinLocker l(subs->lock);
    if (--subs->active_invalidate_ranges || !subs->is_invalidating()) return;
    // The last active invalidation of a hitting period: seq even again, and
    // the tree changes that waited are applied.
    subs->invalidate_seq.fetch_add(1);
    for (MmuIntervalNotifier* sub : subs->deferred_list) {
      sub->deferred = false;
      if (!sub->interval_tree.in_tree())
        subs->itree.insert(&sub->interval_tree);
      else
        subs->itree.remove(&sub->interval_tree);
    }
    subs->deferred_list.clear();
  }
  subs->wq.wake_up_all();
}

void mn_itree_release(MmStruct* mm, MmuNotifierSubscriptions* subs) {
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MMU_NOTIFY_RELEASE, MMU_NOTIFIER_RANGE_BLOCKABLE, mm, VirtAddr(0),
                          VirtAddr(~0ull));
  mm->machine().stats().count(VmEvent::notifier_range_release);
  std::vector<MmuIntervalNotifierFinish*> finishes;
  uint64_t cur_seq;
  for (MmuIntervalNotifier* sub = inv_start_range(subs, &range, &cur_seq); sub; sub = inv_next(subs, sub, &range))
    WARN_ON(!call_invalidate(mm, sub, &range, cur_seq, &finishes));
  finish_pass(mm, finishes, &range);
  mn_itree_inv_end(subs);
}

// ---- insert / remove ----

namespace {

int interval_insert(MmuIntervalNotifier* sub, MmStruct* mm, MmuNotifierSubscriptions* subs, VirtAddr start,
                    uint64_t length, const MmuIntervalNotifierOps* ops, unsigned flags) {
  sub->mm = mm;
  sub->ops = ops;
  sub->flags = flags;
  sub->deferred = false;
  uint64_t last;
  if (length == 0 || __builtin_add_overflow(start.value(), length - 1, &last)) return -EOVERFLOW;
  // The caller must hold an mmget.
  if (WARN_ON(mm->mm_users.load() <= 0)) return -EINVAL;
  sub->interval_tree.start = start.value();
  sub->interval_tree.last = last;
  // Pairs with the mmdrop in mmu_interval_notifier_remove.
  mm->mmgrab();

  // Three cases (spec c.3): a hitting invalidation is active: defer the
  // insert, and read_begin will wait for it; active but none hit: insert now
  // and make the seq odd, as an in-flight invalidation may cover the new
  // range without having seen it; idle: insert with seq - 1.
  SpinLocker l(subs->lock);
  if (subs->active_invalidate_ranges) {
    if (subs->is_invalidating()) {
      sub->deferred = true;
      subs->deferred_list.push_back(sub);
    } else {
      subs->invalidate_seq.fetch_or(1);
      subs->itree.insert(&sub->interval_tree);
    }
    sub->invalidate_seq.store(subs->invalidate_seq.load());
  } else {
    WARN_ON(subs->is_invalidating());
    sub->invalidate_seq.store(subs->invalidate_seq.load() - 1);
    subs->itree.insert(&sub->interval_tree);
  }
  return 0;
}

bool known_flags(MmStruct* mm, unsigned flags) {
  unsigned known = mm->machine().knobs().block_thp.load(std::memory_order_relaxed) ? MMU_INTERVAL_NOTIFIER_BLOCK_THP : 0;
  return !(flags & ~known);
}

// [S1] The VMA policy pass over [start, end): VM_NOHUGEPAGE set, VM_HUGEPAGE
// cleared on every VMA part, splitting or merging as vma_modify_flags does.
// VM_NO_KHUGEPAGED VMAs are left alone. Project decision (spec f.5): the
// pass covers [round_down(start, 4K), round_up(end, 4K)).
int block_thp_locked(MmStruct* mm, uint64_t start, uint64_t end) REQUIRES(mm->mmap_lock) {
  VirtAddr s = VirtAddr(start).align_down(PAGE_SIZE);
  VirtAddr e = end >= TASK_SIZE ? VirtAddr(TASK_SIZE) : VirtAddr(end).align_up(PAGE_SIZE);
  for (VmArea* vma = mm->mm_mt.find(s); vma && vma->vm_start < e; vma = mm->mm_mt.find(s)) {
    VirtAddr cs = std::max(vma->vm_start, s);
    VirtAddr ce = std::min(vma->vm_end, e);
    vm_flags_t fresh = (vma->vm_flags | VM_NOHUGEPAGE) & ~VM_HUGEPAGE;
    if (!(vma->vm_flags & VM_NO_KHUGEPAGED) && fresh != vma->vm_flags) {
      Result<VmArea*> r = vma_modify_flags(mm, vma, cs, ce, fresh);
      if (!r.ok()) return r.rc();
      vma = *r;
    }
    s = ce;
    if (s >= e) break;
  }
  return 0;
}

}  // namespace

int mmu_interval_notifier_insert(MmuIntervalNotifier* sub, MmStruct* mm, VirtAddr start, uint64_t length,
                                 const MmuIntervalNotifierOps* ops) {
  // [S4] A two-pass subscriber needs its second pass.
  WARN_ON_ONCE(ops->invalidate_start && !ops->invalidate_finish);
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs || !subs->has_itree.load()) {
    int ret = mmu_notifier_register(nullptr, mm);
    if (ret) return ret;
    subs = subscriptions_of(mm);
  }
  return interval_insert(sub, mm, subs, start, length, ops, 0);
}

int mmu_interval_notifier_insert_locked(MmuIntervalNotifier* sub, MmStruct* mm, VirtAddr start, uint64_t length,
                                        const MmuIntervalNotifierOps* ops) {
  return mmu_interval_notifier_insert_locked_flags(sub, mm, start, length, ops, 0);
}

int mmu_interval_notifier_insert_locked_flags(MmuIntervalNotifier* sub, MmStruct* mm, VirtAddr start,
                                              uint64_t length, const MmuIntervalNotifierOps* ops, unsigned flags) {
  mm->mmap_lock.assert_write_held();
  if (!known_flags(mm, flags)) return -EINVAL;
  uint64_t end = 0;
  if ((flags & MMU_INTERVAL_NOTIFIER_BLOCK_THP) &&
      (length == 0 || __builtin_add_overflow(start.value(), length, &end)))
    return -EOVERFLOW;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs || !subs->has_itree.load()) {
    int ret = __mmu_notifier_register(nullptr, mm);
    if (ret) return ret;
    subs = subscriptions_of(mm);
  }
  if (flags & MMU_INTERVAL_NOTIFIER_BLOCK_THP) {
    int ret = block_thp_locked(mm, start.value(), end);
    if (ret) return ret;
  }
  return interval_insert(sub, mm, subs, start, length, ops, flags);
}

int mmu_interval_notifier_set_flags_locked(MmuIntervalNotifier* sub, unsigned flags) NO_THREAD_SAFETY_ANALYSIS {
  // The caller holds sub->mm->mmap_lock for write (asserted below); the
  // analysis cannot name that lock through `sub`.
  // As the seed: unknown bits first, then the mm (whose machine says whether
  // BLOCK_THP itself is known: the notifier.block_thp knob).
  if (flags & ~MMU_INTERVAL_NOTIFIER_BLOCK_THP) return -EINVAL;
  MmStruct* mm = sub->mm;
  if (WARN_ON_ONCE(!mm)) return -EINVAL;
  if (!known_flags(mm, flags)) return -EINVAL;
  mm->mmap_lock.assert_write_held();
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  unsigned old;
  {
    SpinLocker l(subs->lock);
    old = sub->flags;
  }
  if ((flags & MMU_INTERVAL_NOTIFIER_BLOCK_THP) && !(old & MMU_INTERVAL_NOTIFIER_BLOCK_THP)) {
    if (sub->interval_tree.last == ~0ull) return -EOVERFLOW;
    int ret = block_thp_locked(mm, sub->interval_tree.start, sub->interval_tree.last + 1);
    if (ret) return ret;
  }
  SpinLocker l(subs->lock);
  sub->flags = flags;
  return 0;
}

bool mmu_interval_notifier_range_block_thp(MmStruct* mm, VirtAddr start, VirtAddr end) {
  if (start >= end) return false;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs || !subs->has_itree.load()) return false;
  SpinLocker l(subs->lock);
  for (IntervalTreeNode* n = subs->itree.iter_first(start.value(), end.value() - 1); n;
       n = subs->itree.iter_next(n, start.value(), end.value() - 1))
    if (sub_of(n)->flags & MMU_INTERVAL_NOTIFIER_BLOCK_THP) return true;
  return false;
}

void mmu_interval_notifier_remove(MmuIntervalNotifier* sub) {
  MmStruct* mm = sub->mm;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  might_sleep("mmu_interval_notifier_remove");
  check_not_in_callback(mm, "mmu_interval_notifier_remove");
  uint64_t seq = 0;
  {
    SpinLocker l(subs->lock);
    if (subs->is_invalidating()) {
      seq = subs->invalidate_seq.load();
      if (!sub->interval_tree.in_tree()) {
        // Only deferred-inserted: drop it, nothing can have called it.
        auto it = std::find(subs->deferred_list.begin(), subs->deferred_list.end(), sub);
        if (it != subs->deferred_list.end()) subs->deferred_list.erase(it);
        sub->deferred = false;
        seq = 0;
      } else if (!sub->deferred) {
        sub->deferred = true;
        subs->deferred_list.push_back(sub);
      }
    } else {
      WARN_ON(!sub->interval_tree.in_tree());
      if (sub->interval_tree.in_tree()) subs->itree.remove(&sub->interval_tree);
    }
  }
  // Its callbacks may run until the seq moves on.
  if (seq) subs->wq.wait_event([&] { return subs->invalidate_seq.load() != seq; });
  mm->mmdrop();
}

uint64_t mmu_interval_read_begin(MmuIntervalNotifier* sub) {
  MmuNotifierSubscriptions* subs = subscriptions_of(sub->mm);
  check_not_in_callback(sub->mm, "mmu_interval_read_begin");
  uint64_t seq;
  bool is_invalidating;
  {
    SpinLocker l(subs->lock);
    seq = sub->invalidate_seq.load();
    is_invalidating = seq == subs->invalidate_seq.load();
  }
  // A subscription that is not hit has an odd seq unequal to the even mm
  // seq: it never waits. When hit, wait for the last active invalidation.
  if (is_invalidating) subs->wq.wait_event([&] { return subs->invalidate_seq.load() != seq; });
  return seq;
}

IntervalNotifierState mmu_interval_notifier_state(MmStruct* mm) {
  IntervalNotifierState st;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs) return st;
  SpinLocker l(subs->lock);
  st.invalidate_seq = subs->invalidate_seq.load();
  st.active_invalidate_ranges = subs->active_invalidate_ranges;
  st.deferred = subs->deferred_list.size();
  st.in_tree = subs->itree.size();
  st.has_itree = subs->has_itree.load();
  return st;
}

}  // namespace smm
