// File: src/machine/mm_types.cc
//
// The mm's VMA tree (mm->mm_mt, a maple tree in Linux; an ordered btree
// here): lookups, insertion, re-keying and removal, and its invariants.
// The merge and split machinery built on it is in src/mm/vma.cc.

#include "shadowmm/machine/mm_types.h"

#include "shadowmm/base/bug.h"

namespace smm {

VmArea* VmaTree::find(VirtAddr addr) const {
  auto it = map_.upper_bound(addr.value());
  if (it != map_.begin()) {
    auto p = std::prev(it);
    if (p->second->vm_end > addr) return p->second.get();
  }
  return it == map_.end() ? nullptr : it->second.get();
}

VmArea* VmaTree::lookup(VirtAddr addr) const {
  VmArea* v = find(addr);
  return v && v->vm_start <= addr ? v : nullptr;
}

VmArea* VmaTree::find_intersection(VirtAddr start, VirtAddr end) const {
  VmArea* v = find(start);
  return v && v->vm_start < end ? v : nullptr;
}

VmArea* VmaTree::prev(const VmArea* vma) const {
  auto it = map_.find(vma->vm_start.value());
  VM_BUG_ON(it == map_.end());
  return it == map_.begin() ? nullptr : std::prev(it)->second.get();
}

VmArea* VmaTree::next(const VmArea* vma) const {
  auto it = map_.find(vma->vm_start.value());
  VM_BUG_ON(it == map_.end());
  ++it;
  return it == map_.end() ? nullptr : it->second.get();
}

VmArea* VmaTree::first() const { return map_.empty() ? nullptr : map_.begin()->second.get(); }

VmArea* VmaTree::prev_of(VirtAddr addr) const {
  auto it = map_.lower_bound(addr.value());
  return it == map_.begin() ? nullptr : std::prev(it)->second.get();
}

VmArea* VmaTree::insert(std::unique_ptr<VmArea> vma) {
  VmArea* raw = vma.get();
  auto [it, inserted] = map_.emplace(raw->vm_start.value(), std::move(vma));
  VM_BUG_ON(!inserted);
  return raw;
}

void VmaTree::rekey(VmArea* vma, VirtAddr old_start) {
  if (vma->vm_start == old_start) return;
  auto node = map_.extract(old_start.value());
  VM_BUG_ON(node.empty() || node.mapped().get() != vma);
  node.key() = vma->vm_start.value();
  auto res = map_.insert(std::move(node));
  VM_BUG_ON(!res.inserted);
}

std::unique_ptr<VmArea> VmaTree::erase(VmArea* vma) {
  auto node = map_.extract(vma->vm_start.value());
  VM_BUG_ON(node.empty() || node.mapped().get() != vma);
  return std::move(node.mapped());
}

void VmaTree::check_invariants() const {
  uint64_t prev_end = 0;
  for (const auto& [key, vma] : map_) {
    VM_BUG_ON(key != vma->vm_start.value());
    VM_BUG_ON(!vma->vm_start.is_aligned(PAGE_SIZE) || !vma->vm_end.is_aligned(PAGE_SIZE));
    VM_BUG_ON(vma->vm_end <= vma->vm_start);
    VM_BUG_ON(vma->vm_start.value() < prev_end);
    VM_BUG_ON(vma->vm_end.value() > TASK_SIZE);
    VM_BUG_ON((vma->vm_flags & VM_HUGEPAGE) && (vma->vm_flags & VM_NOHUGEPAGE));
    VM_BUG_ON(vma->anon_vma && vma->anon_vma_chain.empty());
    prev_end = vma->vm_end.value();
  }
}

}  // namespace smm
