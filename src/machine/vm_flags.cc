// File: src/machine/vm_flags.cc

#include "shadowmm/machine/vm_flags.h"

#include "shadowmm/base/uapi.h"

namespace smm {

vm_flags_t calc_vm_prot_bits(int prot) {
  return ((prot & PROT_READ) ? VM_READ : 0) | ((prot & PROT_WRITE) ? VM_WRITE : 0) |
         ((prot & PROT_EXEC) ? VM_EXEC : 0);
}

namespace {

struct FlagName {
  vm_flags_t flag;
  const char* name;
};

// Dump names of VMA flags, in the order they are printed.
constexpr FlagName kFlagNames[] = {
    {VM_SHARED, "shared"},       {VM_MAYSHARE, "mayshare"},   {VM_ACCOUNT, "account"},
    {VM_NORESERVE, "noreserve"}, {VM_HUGEPAGE, "hugepage"},   {VM_NOHUGEPAGE, "nohugepage"},
    {VM_LOCKED, "locked"},       {VM_DONTCOPY, "dontcopy"},   {VM_WIPEONFORK, "wipeonfork"},
    {VM_DONTDUMP, "dontdump"},   {VM_SEQ_READ, "seq_read"},   {VM_RAND_READ, "rand_read"},
    {VM_IO, "io"},               {VM_PFNMAP, "pfnmap"},       {VM_MIXEDMAP, "mixedmap"},
    {VM_DONTEXPAND, "dontexpand"},
};

}  // namespace

std::string vm_flags_names(vm_flags_t flags, bool anon, bool dax) {
  std::string out;
  auto add = [&](const char* n) {
    if (!out.empty()) out += ' ';
    out += n;
  };
  if (anon) add("anon");
  if (dax) add("dax");
  for (const FlagName& f : kFlagNames)
    if ((flags & f.flag) && f.flag != VM_MAYSHARE) add(f.name);
  return out;
}

vm_flags_t vm_flag_from_name(const std::string& name) {
  for (const FlagName& f : kFlagNames)
    if (name == f.name) return f.flag;
  return 0;
}

}  // namespace smm
