// File: tests/support/test_support.cc

#include "test_support.h"

#include <cstdio>
#include <cstdlib>

#include "shadowmm/mm/memory.h"

namespace smm::test {

TestMm::TestMm(MachineConfig config) : machine(config), mm(MmStruct::create(machine, "main")) {
  warnings_clear();
}

TestMm::~TestMm() {
  if (mm.get()) check();
  mm.reset();
  EXPECT_EQ(machine.live_mms.load(), 0);
  // Only the two zero folios stay allocated once the mm is gone.
  EXPECT_EQ(machine.mem().pages_in_use(), 1u + HPAGE_PMD_NR);
  machine.mem().check_invariants();
}

VirtAddr TestMm::map(uint64_t len, int prot, int flags, MmapOpts opts) {
  Result<VirtAddr> r = do_mmap(mm.get(), VirtAddr(0), len, prot, flags, 0, opts);
  EXPECT_TRUE(r.ok()) << "mmap failed: " << r.rc();
  return r.ok() ? *r : VirtAddr(0);
}

VirtAddr TestMm::map_at(VirtAddr addr, uint64_t len, int prot) {
  Result<VirtAddr> r = do_mmap(mm.get(), addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, 0);
  EXPECT_TRUE(r.ok()) << "mmap failed: " << r.rc();
  return r.ok() ? *r : VirtAddr(0);
}

void TestMm::write(VirtAddr addr, uint64_t value) {
  ASSERT_EQ(cpu_access(mm.get(), addr, Access::kWrite, &value), 0);
}

uint64_t TestMm::read(VirtAddr addr) {
  uint64_t v = 0;
  EXPECT_EQ(cpu_access(mm.get(), addr, Access::kRead, &v), 0);
  return v;
}

void TestMm::check() {
  ReadLocker l(mm->mmap_lock);
  mm->check_invariants();
  machine.mem().check_invariants();
}

size_t TestMm::nr_vmas() {
  ReadLocker l(mm->mmap_lock);
  return mm->mm_mt.size();
}

void RecordingObserver::add(Event e) {
  std::lock_guard<std::mutex> g(mu_);
  events_.push_back(e);
}

void RecordingObserver::on_range_start(const MmuNotifierRange& r) {
  add({Event::Kind::kRangeStart, r.event, r.range(), r.blockable(), {}, 0});
}
void RecordingObserver::on_range_end(const MmuNotifierRange& r) {
  add({Event::Kind::kRangeEnd, r.event, r.range(), r.blockable(), {}, 0});
}
void RecordingObserver::on_tlb_flush(MmStruct*, VirtAddr start, VirtAddr end) {
  add({Event::Kind::kFlush, MMU_NOTIFY_UNMAP, {start, end}, false, {}, 0});
}
void RecordingObserver::on_pte_change(MmStruct*, VirtAddr addr, uint64_t size, Pte old_pte, Pte) {
  add({Event::Kind::kPteChange, MMU_NOTIFY_UNMAP, {addr, addr + size}, false, old_pte.pfn(), size});
}
void RecordingObserver::on_pte_install(MmStruct*, VirtAddr addr, uint64_t size, Pte pte) {
  add({Event::Kind::kPteInstall, MMU_NOTIFY_UNMAP, {addr, addr + size}, false, pte.pfn(), size});
}
void RecordingObserver::on_folio_free(Folio folio) {
  add({Event::Kind::kFree, MMU_NOTIFY_UNMAP, {}, false, folio.pfn(), folio.size()});
}

std::vector<RecordingObserver::Event> RecordingObserver::events() const {
  std::lock_guard<std::mutex> g(mu_);
  return events_;
}

void RecordingObserver::clear() {
  std::lock_guard<std::mutex> g(mu_);
  events_.clear();
}

std::chrono::milliseconds stress_duration(int default_ms) {
  if (const char* s = std::getenv("SHADOWMM_STRESS_SECONDS")) return std::chrono::seconds(std::atoi(s));
  return std::chrono::milliseconds(default_ms);
}

std::string rel(VirtAddr base, VirtAddr a) {
  char buf[32];
  if (a < base) {
    std::snprintf(buf, sizeof buf, "-0x%llx", static_cast<unsigned long long>(base - a));
  } else {
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(a - base));
  }
  return buf;
}

std::vector<std::string> RecordingObserver::ranges(VirtAddr base) const {
  std::vector<std::string> out;
  for (const Event& e : events()) {
    if (e.kind != Event::Kind::kRangeStart) continue;
    out.push_back(std::string(mmu_notify_event_name(e.event)) + " [" + rel(base, e.range.start) + "," +
                  rel(base, e.range.end) + ")");
  }
  return out;
}

bool RecordingObserver::balanced() const {
  std::vector<Event> stack;
  for (const Event& e : events()) {
    if (e.kind == Event::Kind::kRangeStart) stack.push_back(e);
    if (e.kind == Event::Kind::kRangeEnd) {
      if (stack.empty() || !(stack.back().range == e.range) || stack.back().event != e.event) return false;
      stack.pop_back();
    }
  }
  return stack.empty();
}

std::string vma_map(MmStruct* mm, VirtAddr base, unsigned columns, uint64_t unit) {
  std::string out(columns, ' ');
  ReadLocker l(mm->mmap_lock);
  char letter = 'A';
  mm->mm_mt.for_each([&](VmArea* vma) {
    bool used = false;
    for (unsigned i = 0; i < columns; i++) {
      VirtAddr a = base + i * unit;
      if (vma->contains(a)) {
        out[i] = letter;
        used = true;
      }
    }
    if (used) letter++;
  });
  return out;
}

}  // namespace smm::test
