// File: src/notifier/mmu_notifier.cc
//
// The MMU-notifier core (mm/mmu_notifier.c): invalidation entry points,
// classic subscriptions (register, get/put, unregister, release), aging,
// and [S5] invalidate_secondary_tlbs. The interval pass of an invalidation
// (mn_itree_invalidate, inv_end, [S4] two-pass) is in interval_notifier.cc.
//
// Classic subscriptions are called newest first, through a snapshot of the
// list read under the machine's notifier SRCU. Every call into a subscriber
// runs inside a CallbackScope, so a callback that sleeps on a non-blockable
// range is reported to the oracle (E10), and is reported to the machine's
// observers when it returns.
//
// Deviation from Linux: mm_take_all_locks() is not modelled. Every
// invalidation path of the model holds the mm's mmap_lock, so registering
// under mmap_lock held for write already excludes in-flight invalidations.

#include "shadowmm/notifier/mmu_notifier.h"

#include "notifier_internal.h"
#include "shadowmm/machine/machine.h"
#include "shadowmm/machine/mm_types.h"
#include "subscriptions.h"

namespace smm {

const char* mmu_notify_event_name(MmuNotifyEvent event) {
  switch (event) {
    case MMU_NOTIFY_UNMAP: return "unmap";
    case MMU_NOTIFY_CLEAR: return "clear";
    case MMU_NOTIFY_PROTECTION_VMA: return "protection_vma";
    case MMU_NOTIFY_PROTECTION_PAGE: return "protection_page";
    case MMU_NOTIFY_SOFT_DIRTY: return "soft_dirty";
    case MMU_NOTIFY_RELEASE: return "release";
    case MMU_NOTIFY_MIGRATE: return "migrate";
    case MMU_NOTIFY_EXCLUSIVE: return "exclusive";
  }
  return "?";
}

// ---- helpers shared with interval_notifier.cc ----

MmuNotifierSubscriptions* subscriptions_of(const MmStruct* mm) {
  return mm->notifier_subscriptions.load(std::memory_order_acquire);
}

void report_sleep_in_callback(void* ctx, const void* sub, const char* what) {
  Machine& m = *static_cast<Machine*>(ctx);
  for_each_observer(m, [&](MmObserver* o) { o->on_sleep_in_callback(sub, what); });
}

void report_invalidated(MmStruct* mm, const void* sub, const MmuNotifierRange& range) {
  for_each_observer(mm->machine(), [&](MmObserver* o) { o->on_subscriber_invalidated(sub, range); });
}

bool mm_has_notifiers(const MmStruct* mm) { return subscriptions_of(mm) != nullptr; }

namespace {

VmEvent range_stat(MmuNotifyEvent event) {
  return static_cast<VmEvent>(static_cast<unsigned>(VmEvent::notifier_range_unmap) + event);
}

// Publishes a new classic list; the old one goes after a grace period.
void replace_list_locked(MmStruct* mm, MmuNotifierSubscriptions* subs, MmuNotifierSubscriptions::List fresh)
    REQUIRES(subs->lock) {
  const MmuNotifierSubscriptions::List* old = subs->list.exchange(new MmuNotifierSubscriptions::List(std::move(fresh)));
  mm->machine().notifier_srcu().call([old] { delete old; });
}

// Linux: mn_hlist_invalidate_range_start.
int mn_hlist_invalidate_range_start(MmStruct* mm, MmuNotifierSubscriptions* subs, MmuNotifierRange* range) {
  Machine& m = mm->machine();
  SrcuReadLock rcu(m.notifier_srcu());
  const MmuNotifierSubscriptions::List* list = subs->list.load();
  int ret = 0;
  for (MmuNotifier* sub : *list) {
    const MmuNotifierOps* ops = sub->ops;
    if (!ops->invalidate_range_start) continue;
    int r;
    {
      CallbackScope scope(sub, !range->blockable(), report_sleep_in_callback, &m);
      r = ops->invalidate_range_start(sub, range);
    }
    if (r) {
      // A failure is legal only as -EAGAIN on a non-blockable range, and a
      // start that can fail must have no end.
      WARN_ON(range->blockable() || r != -EAGAIN);
      WARN_ON(ops->invalidate_range_end);
      ret = r;
    } else {
      report_invalidated(mm, sub, *range);
    }
  }
  if (ret) {
    // Non-blocking only: the ones that succeeded expect their end now.
    for (MmuNotifier* sub : *list) {
      if (!sub->ops->invalidate_range_end) continue;
      for_each_observer(m, [&](MmObserver* o) { o->on_subscriber_range_end(sub, *range); });
      CallbackScope scope(sub, true, report_sleep_in_callback, &m);
      sub->ops->invalidate_range_end(sub, range);
    }
  }
  return ret;
}

// Linux: mn_hlist_invalidate_end, with S5's secondary-TLB call.
void mn_hlist_invalidate_end(MmStruct* mm, MmuNotifierSubscriptions* subs, MmuNotifierRange* range,
                             bool only_end) {
  Machine& m = mm->machine();
  bool secondary = !only_end && m.knobs().secondary_tlbs_at_end.load(std::memory_order_relaxed);
  SrcuReadLock rcu(m.notifier_srcu());
  for (MmuNotifier* sub : *subs->list.load()) {
    const MmuNotifierOps* ops = sub->ops;
    if (secondary && ops->arch_invalidate_secondary_tlbs) {
      m.stats().count(VmEvent::secondary_tlb_calls);
      {
        CallbackScope scope(sub, true, report_sleep_in_callback, &m);
        ops->arch_invalidate_secondary_tlbs(sub, mm, range->start, range->end);
      }
      for_each_observer(m, [&](MmObserver* o) { o->on_secondary_tlbs(sub, mm, range->start, range->end); });
    }
    if (ops->invalidate_range_end) {
      // Observers learn first: once the end callback runs, the subscriber
      // may legally establish translations in the range again.
      for_each_observer(m, [&](MmObserver* o) { o->on_subscriber_range_end(sub, *range); });
      CallbackScope scope(sub, !range->blockable(), report_sleep_in_callback, &m);
      ops->invalidate_range_end(sub, range);
    }
  }
}

// Linux: __mmu_notifier_invalidate_range_start.
int __invalidate_range_start(MmuNotifierRange* range) {
  MmStruct* mm = range->mm;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (subs->has_itree.load()) {
    int ret = mn_itree_invalidate(mm, subs, range);
    if (ret) return ret;
  }
  if (!subs->list.load()->empty()) return mn_hlist_invalidate_range_start(mm, subs, range);
  return 0;
}

void __invalidate_range_end(MmuNotifierRange* range, bool only_end) {
  MmStruct* mm = range->mm;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (subs->has_itree.load()) mn_itree_inv_end(subs);
  if (!subs->list.load()->empty()) mn_hlist_invalidate_end(mm, subs, range, only_end);
}

void range_end(MmuNotifierRange* range, bool only_end) {
  if (range->blockable()) might_sleep("mmu_notifier_invalidate_range_end");
  Machine& m = range->mm->machine();
  for_each_observer(m, [&](MmObserver* o) { o->on_range_end(*range); });
  if (mm_has_notifiers(range->mm)) __invalidate_range_end(range, only_end);
}

}  // namespace

// ---- invalidation entry points ----

void mmu_notifier_range_init(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags, MmStruct* mm,
                             VirtAddr start, VirtAddr end) {
  mmu_notifier_range_init_owner(range, event, flags, mm, start, end, nullptr);
}

void mmu_notifier_range_init_owner(MmuNotifierRange* range, MmuNotifyEvent event, unsigned flags,
                                   MmStruct* mm, VirtAddr start, VirtAddr end, const void* owner) {
  range->mm = mm;
  range->start = start;
  range->end = end;
  range->flags = flags;
  range->event = event;
  range->owner = owner;
}

void mmu_notifier_invalidate_range_start(MmuNotifierRange* range) {
  might_sleep("mmu_notifier_invalidate_range_start");
  range->flags |= MMU_NOTIFIER_RANGE_BLOCKABLE;
  Machine& m = range->mm->machine();
  m.stats().count(range_stat(range->event));
  if (mm_has_notifiers(range->mm)) {
    int ret = __invalidate_range_start(range);
    VM_BUG_ON(ret != 0);  // a blockable start cannot fail
  }
  for_each_observer(m, [&](MmObserver* o) { o->on_range_start(*range); });
}

int mmu_notifier_invalidate_range_start_nonblock(MmuNotifierRange* range) {
  range->flags &= ~MMU_NOTIFIER_RANGE_BLOCKABLE;
  Machine& m = range->mm->machine();
  m.stats().count(range_stat(range->event));
  int ret = mm_has_notifiers(range->mm) ? __invalidate_range_start(range) : 0;
  if (ret == 0) for_each_observer(m, [&](MmObserver* o) { o->on_range_start(*range); });
  return ret;
}

void mmu_notifier_invalidate_range_end(MmuNotifierRange* range) { range_end(range, false); }

void mmu_notifier_invalidate_range_only_end(MmuNotifierRange* range) { range_end(range, true); }

void mmu_notifier_arch_invalidate_secondary_tlbs(MmStruct* mm, VirtAddr start, VirtAddr end) {
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs || subs->list.load()->empty()) return;
  Machine& m = mm->machine();
  SrcuReadLock rcu(m.notifier_srcu());
  for (MmuNotifier* sub : *subs->list.load()) {
    if (!sub->ops->arch_invalidate_secondary_tlbs) continue;
    m.stats().count(VmEvent::secondary_tlb_calls);
    {
      // Called from TLB-flush code, often under a page-table lock: never sleeps.
      CallbackScope scope(sub, true, report_sleep_in_callback, &m);
      sub->ops->arch_invalidate_secondary_tlbs(sub, mm, start, end);
    }
    for_each_observer(m, [&](MmObserver* o) { o->on_secondary_tlbs(sub, mm, start, end); });
  }
}

// ---- aging ----

namespace {

template <typename F>
int for_each_young_op(MmStruct* mm, F f) {
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs) return 0;
  Machine& m = mm->machine();
  SrcuReadLock rcu(m.notifier_srcu());
  int result = 0;
  for (MmuNotifier* sub : *subs->list.load()) {
    CallbackScope scope(sub, true, report_sleep_in_callback, &m);
    if (f(sub, &result)) break;
  }
  return result;
}

}  // namespace

int mmu_notifier_clear_flush_young(MmStruct* mm, VirtAddr start, VirtAddr end) {
  return for_each_young_op(mm, [&](MmuNotifier* sub, int* r) {
    if (sub->ops->clear_flush_young) *r |= sub->ops->clear_flush_young(sub, mm, start, end);
    return false;
  });
}

int mmu_notifier_clear_young(MmStruct* mm, VirtAddr start, VirtAddr end) {
  return for_each_young_op(mm, [&](MmuNotifier* sub, int* r) {
    if (sub->ops->clear_young) *r |= sub->ops->clear_young(sub, mm, start, end);
    return false;
  });
}

int mmu_notifier_test_young(MmStruct* mm, VirtAddr addr) {
  return for_each_young_op(mm, [&](MmuNotifier* sub, int* r) {
    if (sub->ops->test_young) *r = sub->ops->test_young(sub, mm, addr);
    return *r != 0;
  });
}

// ---- release and teardown ----

void mmu_notifier_release(MmStruct* mm) {
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs) return;
  Machine& m = mm->machine();
  if (subs->has_itree.load()) mn_itree_release(mm, subs);
  if (!subs->list.load()->empty()) {
    {
      // Every release under SRCU (a racing unregister only waits), then unhash.
      SrcuReadLock rcu(m.notifier_srcu());
      for (MmuNotifier* sub : *subs->list.load()) {
        if (!sub->ops->release) continue;
        CallbackScope scope(sub, false, report_sleep_in_callback, &m);
        sub->ops->release(sub, mm);
      }
    }
    {
      SpinLocker l(subs->lock);
      for (MmuNotifier* sub : *subs->list.load()) sub->hashed = false;
      replace_list_locked(mm, subs, {});
    }
    // A release started by a racing unregister finishes before pages go.
    m.notifier_srcu().synchronize();
  }
  for_each_observer(m, [&](MmObserver* o) { o->on_release(mm); });
}

void mmu_notifier_subscriptions_destroy(MmStruct* mm) {
  MmuNotifierSubscriptions* subs = mm->notifier_subscriptions.exchange(nullptr);
  if (!subs) return;
  WARN_ON(!subs->list.load()->empty());
  delete subs;
}

// ---- classic registration ----

int __mmu_notifier_register(MmuNotifier* sub, MmStruct* mm) {
  mm->mmap_lock.assert_write_held();
  VM_BUG_ON(mm->mm_users.load() <= 0);
  // Subsystems register for invalidate_secondary_tlbs or for start/end, not both.
  if (sub && WARN_ON_ONCE(sub->ops->arch_invalidate_secondary_tlbs &&
                          (sub->ops->invalidate_range_start || sub->ops->invalidate_range_end)))
    return -EINVAL;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  if (!subs) {
    subs = new MmuNotifierSubscriptions;
    mm->notifier_subscriptions.store(subs, std::memory_order_release);
  }
  if (sub) {
    mm->mmgrab();
    sub->mm = mm;
    SpinLocker l(subs->lock);
    sub->users = 1;
    sub->hashed = true;
    MmuNotifierSubscriptions::List fresh;
    fresh.reserve(subs->list.load()->size() + 1);
    fresh.push_back(sub);  // at the head: callbacks run newest first
    for (MmuNotifier* s : *subs->list.load()) fresh.push_back(s);
    replace_list_locked(mm, subs, std::move(fresh));
  } else {
    subs->has_itree.store(true);
  }
  return 0;
}

int mmu_notifier_register(MmuNotifier* sub, MmStruct* mm) {
  WriteLocker l(mm->mmap_lock);
  return __mmu_notifier_register(sub, mm);
}

Result<MmuNotifier*> mmu_notifier_get_locked(const MmuNotifierOps* ops, MmStruct* mm) {
  mm->mmap_lock.assert_write_held();
  if (MmuNotifierSubscriptions* subs = subscriptions_of(mm)) {
    SpinLocker l(subs->lock);
    for (MmuNotifier* sub : *subs->list.load()) {
      if (sub->ops != ops) continue;
      if (sub->users == UINT32_MAX) return Err{EOVERFLOW};
      sub->users++;
      return sub;
    }
  }
  Result<MmuNotifier*> fresh = ops->alloc_notifier(mm);
  if (!fresh.ok()) return fresh;
  MmuNotifier* sub = *fresh;
  sub->ops = ops;
  int ret = __mmu_notifier_register(sub, mm);
  if (ret) {
    ops->free_notifier(sub);
    return Err{-ret};
  }
  return sub;
}

Result<MmuNotifier*> mmu_notifier_get(const MmuNotifierOps* ops, MmStruct* mm) {
  WriteLocker l(mm->mmap_lock);
  return mmu_notifier_get_locked(ops, mm);
}

void mmu_notifier_put(MmuNotifier* sub) {
  MmStruct* mm = sub->mm;
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  {
    SpinLocker l(subs->lock);
    if (WARN_ON(!sub->users)) return;
    if (--sub->users) return;
    sub->hashed = false;
    MmuNotifierSubscriptions::List fresh;
    for (MmuNotifier* s : *subs->list.load())
      if (s != sub) fresh.push_back(s);
    replace_list_locked(mm, subs, std::move(fresh));
  }
  // free_notifier and mmdrop after a grace period (mmu_notifier_free_rcu).
  mm->machine().notifier_srcu().call([sub, mm] {
    sub->ops->free_notifier(sub);
    mm->mmdrop();
  });
}

void mmu_notifier_unregister(MmuNotifier* sub, MmStruct* mm) {
  MmuNotifierSubscriptions* subs = subscriptions_of(mm);
  Machine& m = mm->machine();
  bool hashed;
  {
    SpinLocker l(subs->lock);
    hashed = sub->hashed;
  }
  if (hashed) {
    // release, so the driver tears down while the mm is still valid.
    {
      SrcuReadLock rcu(m.notifier_srcu());
      if (sub->ops->release) {
        CallbackScope scope(sub, false, report_sleep_in_callback, &m);
        sub->ops->release(sub, mm);
      }
    }
    SpinLocker l(subs->lock);
    if (sub->hashed) {
      sub->hashed = false;
      MmuNotifierSubscriptions::List fresh;
      for (MmuNotifier* s : *subs->list.load())
        if (s != sub) fresh.push_back(s);
      replace_list_locked(mm, subs, std::move(fresh));
    }
  }
  // Wait for any callback of `sub` still running (and a racing release).
  m.notifier_srcu().synchronize();
  mm->mmdrop();
}

void mmu_notifier_synchronize(Machine& machine) { machine.notifier_srcu().barrier(); }

}  // namespace smm
