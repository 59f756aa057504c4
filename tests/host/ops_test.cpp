// SPDX-License-Identifier: GPL-2.0
//
// The operations beyond map and unmap: attribute bits, protect, demotion of
// large leaves by protect, lock, map_range (contiguous and per-leaf pa
// arrays), fault reload after drop_tables, the readers (walk, getpte,
// next_mapping, dump) and copied-top (VLP) hats.  Each is checked against
// the raw tables (walker.h) and the record (next_mapping), and
// htable_hat_check() must return 0 after every operation.
#include "fixture.h"

namespace htest {
namespace {

using walker::size_of;

constexpr u64 kAD = walker::kA | walker::kD;

class OpsTest : public HtableTest, public ::testing::WithParamInterface<unsigned> {
 protected:
  void SetUp() override {
    HtableTest::SetUp();
    hat_ = NewHat(levels());
  }
  unsigned levels() const { return GetParam(); }
  u64 user_end() const { return htable_user_va_end(levels()); }
  // A 1 GiB-aligned VA well inside the user half, above 2^47 with 5 levels.
  u64 Base() const { return levels() == 5 ? 0x0012340000000000ull : 0x0000700000000000ull; }
  u64 Top() { return TopOf(hat_); }
  void Check(const char *what = "") { EXPECT_EQ(htable_hat_check(hat_), 0) << what; }
  // The raw leaf at @va, 0 if none (through the walker, not the core).
  u64 Raw(u64 va) {
    auto l = walker::find(Top(), levels(), va);
    return l ? l->raw : 0;
  }

  htable_hat *hat_ = nullptr;
};

std::string LevelsName(const ::testing::TestParamInfo<unsigned> &info) {
  return "L" + std::to_string(info.param);
}

// ---- attributes ---------------------------------------------------------------------------

// Every PAT index and the global bit, at every leaf size: PWT, PCD and the
// PAT bit (bit 7 of a 4 KiB leaf, bit 12 of a large one) carry the index,
// G the global attribute; translate and next_mapping give the attributes
// back, and the address survives a PAT bit next to it.
TEST_P(OpsTest, AttributeBitsReachTheLeaf) {
  u64 va = Base();
  for (u64 size : {k4K, k2M, k1G}) {
    unsigned level = walker::level_of_size(size);
    for (unsigned pat = 0; pat < 8; pat++) {
      for (hx_u32 global : {0u, HTABLE_A_GLOBAL}) {
        SCOPED_TRACE(SizeName(size) + " pat " + std::to_string(pat) + (global ? " global" : ""));
        hx_u32 attrs = R | W | HTABLE_A_CACHE(pat) | global;
        u64 pa = (0x12345ull << 30) + (pat + 1) * size;
        ASSERT_EQ(htable_hat_map(hat_, va, pa, size, attrs), 0);
        u64 e = Raw(va);
        ASSERT_NE(e, 0u);
        EXPECT_EQ(!!(e & walker::kPWT), !!(pat & 1));
        EXPECT_EQ(!!(e & walker::kPCD), !!(pat & 2));
        EXPECT_EQ(!!(e & (level ? walker::kPatLarge : walker::kPat4K)), !!(pat & 4));
        EXPECT_EQ(!!(e & walker::kG), !!global);
        if (level > 0) {
          EXPECT_TRUE(e & walker::kPS);  // (at level 0 bit 7 is the PAT bit, checked above)
        }
        EXPECT_EQ(e & ~kAD, htable_pte_make_leaf(pa, level, attrs) & ~kAD);
        auto leaf = walker::find(Top(), levels(), va);
        EXPECT_EQ(leaf->pa, pa) << "the PAT bit is not part of the address";
        unsigned l = 99;
        EXPECT_EQ(htable_hat_getpte(hat_, va + 8, &l), e);
        EXPECT_EQ(l, level);
        htable_xlate x;
        ASSERT_EQ(htable_hat_translate(hat_, va + 8, &x), 0);
        EXPECT_EQ(x.prot, attrs);
        EXPECT_EQ(x.pa, pa + 8);
        htable_mapping m;
        ASSERT_EQ(htable_hat_next_mapping(hat_, va, va + size, &m), 0);
        EXPECT_EQ(m.attrs, attrs);
        Check();
        va += size;
      }
    }
    va = (va + k1G - 1) & ~(k1G - 1);
  }
  walker::Options opt;
  opt.allow_global = true;
  walker::Walk w = WalkHat(hat_, opt);
  EXPECT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(w.leaves.size(), 3u * 16);
  // The walker does flag global leaves unless told they are expected.
  EXPECT_FALSE(WalkHat(hat_).ok());
}

// ---- protect ----------------------------------------------------------------------------------

// before: 8 pages R|W
// protect pages 2..5 to R|X with PAT index 2: exactly those leaves change
// (RW off, NX off, PCD on), the record splits in three, one flush covers
// the changed range only.
TEST_P(OpsTest, ProtectChangesLeavesAndRecord) {
  u64 va = Base(), pa = 0x40000000ull;
  ASSERT_EQ(htable_hat_map_range(hat_, va, 8 * k4K, k4K, R | W, pa, nullptr), 0);
  htable_hat_cpu_enter(hat_, 1);
  hxhost::clear_flushes();
  u64 protects = Stat("protects");
  const hx_u32 nattrs = R | X | HTABLE_A_CACHE(2);
  ASSERT_EQ(htable_hat_protect(hat_, va + 2 * k4K, 4 * k4K, nattrs), 0);
  EXPECT_EQ(Stat("protects"), protects + 1);
  for (unsigned i = 0; i < 8; i++) {
    hx_u32 want = i >= 2 && i < 6 ? nattrs : R | W;
    EXPECT_EQ(Raw(va + i * k4K) & ~kAD, htable_pte_make_leaf(pa + i * k4K, 0, want) & ~kAD) << i;
    htable_xlate x;
    ASSERT_EQ(htable_hat_translate(hat_, va + i * k4K, &x), 0);
    EXPECT_EQ(x.prot, want) << i;
    EXPECT_EQ(x.pa, pa + i * k4K);
  }
  std::vector<MappingRun> rec = Record(hat_);
  ASSERT_EQ(rec.size(), 3u);
  EXPECT_TRUE(rec[0] == (MappingRun{va, 2 * k4K, pa, R | W, 0, 0, 0})) << RunText(rec[0]);
  EXPECT_TRUE(rec[1] == (MappingRun{va + 2 * k4K, 4 * k4K, pa + 2 * k4K, nattrs, 0, 0, 0})) << RunText(rec[1]);
  EXPECT_TRUE(rec[2] == (MappingRun{va + 6 * k4K, 2 * k4K, pa + 6 * k4K, R | W, 0, 0, 0})) << RunText(rec[2]);
  ASSERT_EQ(hxhost::flushes().size(), 1u);
  const hxhost::FlushCall &f = hxhost::flushes()[0];
  EXPECT_TRUE(f.covers(va + 2 * k4K, 4 * k4K));
  EXPECT_FALSE(f.covers(va, k4K));
  EXPECT_FALSE(f.covers(va + 6 * k4K, k4K));
  EXPECT_EQ(f.cpus[0], 1ul << 1);
  Check();

  // A hole: nothing to do, no flush.
  hxhost::clear_flushes();
  EXPECT_EQ(htable_hat_protect(hat_, va + k1G, k2M, R), 0);
  EXPECT_TRUE(hxhost::flushes().empty());

  // Not resident: the record changes, no flush; a fault reloads the new bits.
  EXPECT_GT(htable_hat_drop_tables(hat_), 0u);
  EXPECT_TRUE(WalkHat(hat_).leaves.empty());
  hxhost::clear_flushes();
  ASSERT_EQ(htable_hat_protect(hat_, va, 8 * k4K, R | HTABLE_A_GLOBAL), 0);
  EXPECT_TRUE(hxhost::flushes().empty()) << "nothing resident, nothing to flush";
  rec = Record(hat_);
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_TRUE(rec[0] == (MappingRun{va, 8 * k4K, pa, R | HTABLE_A_GLOBAL, 0, 0, 0})) << RunText(rec[0]);
  ASSERT_EQ(htable_hat_fault(hat_, va + 3 * k4K), 0);
  EXPECT_EQ(Raw(va + 3 * k4K) & ~kAD, htable_pte_make_leaf(pa + 3 * k4K, 0, R | HTABLE_A_GLOBAL) & ~kAD);
  Check();
  htable_hat_cpu_leave(hat_, 1);
}

// A protect that cuts a large leaf demotes it: the cut part gets the new
// attributes, the rest keeps the old, all as 4 KiB pages of the same
// physical pages, reloaded on demand.
TEST_P(OpsTest, ProtectCuttingLargeLeafDemotesIt) {
  for (u64 size : {k2M, k1G}) {
    SCOPED_TRACE(SizeName(size));
    u64 va = Base() + 4 * k1G, pa = 0x80000000ull;
    ASSERT_EQ(htable_hat_map(hat_, va, pa, size, R | W), 0);
    htable_hat_cpu_enter(hat_, 3);
    hxhost::clear_flushes();
    u64 demotions = Stat("demotions");
    ASSERT_EQ(htable_hat_protect(hat_, va + k4K, 2 * k4K, R), 0);
    EXPECT_EQ(Stat("demotions"), demotions + 1);
    ASSERT_EQ(hxhost::flushes().size(), 1u);
    EXPECT_TRUE(hxhost::flushes()[0].covers(va, size)) << "the large leaf went";
    EXPECT_EQ(Raw(va), 0u);
    std::vector<MappingRun> rec = Record(hat_);
    ASSERT_EQ(rec.size(), 3u);
    EXPECT_TRUE(rec[0] == (MappingRun{va, k4K, pa, R | W, 0, 0, 0})) << RunText(rec[0]);
    EXPECT_TRUE(rec[1] == (MappingRun{va + k4K, 2 * k4K, pa + k4K, R, 0, 0, 0})) << RunText(rec[1]);
    EXPECT_TRUE(rec[2] == (MappingRun{va + 3 * k4K, size - 3 * k4K, pa + 3 * k4K, R | W, 0, 0, 0}))
        << RunText(rec[2]);
    for (u64 off : {u64{0}, k4K, 2 * k4K, 3 * k4K, size - k4K}) {
      ASSERT_EQ(htable_hat_fault(hat_, va + off), 0);
      hx_u32 want = off == k4K || off == 2 * k4K ? R : R | W;
      EXPECT_EQ(Raw(va + off) & ~kAD, htable_pte_make_leaf(pa + off, 0, want) & ~kAD) << off;
    }
    ExpectResidentInRecord(hat_);
    Check();
    ASSERT_EQ(htable_hat_unmap(hat_, va, size), 0);
    htable_hat_cpu_leave(hat_, 3);
  }
}

// Protecting a whole large leaf (or a range that covers it) has no reason to
// break it up: it stays one large leaf with the new attributes.  Locked, it
// stays locked and resident, and the tables' lock counts right.  Unmapping
// it whole does not demote it either.  (Regression test: demote() used to
// break up the large leaf at either end of the range whether or not the
// range cut it -- a locked one too, losing its table's lock count.)
TEST_P(OpsTest, ProtectOfWholeLargeLeafKeepsIt) {
  for (bool locked : {false, true}) {
    for (u64 size : {k2M, k1G}) {
      SCOPED_TRACE(SizeName(size) + (locked ? " locked" : ""));
      u64 va = Base() + 4 * k1G, pa = 0x80000000ull;
      ASSERT_EQ(htable_hat_map(hat_, va, pa, size, R | W), 0);
      // A neighbour in the same table keeps that table alive.
      ASSERT_EQ(htable_hat_map(hat_, va + size, pa, size, R | W), 0);
      if (locked) {
        ASSERT_EQ(htable_hat_lock(hat_, va, size, 1), 0);
      }
      u64 demotions = Stat("demotions");
      ASSERT_EQ(htable_hat_protect(hat_, va, size, R), 0);
      EXPECT_EQ(Stat("demotions"), demotions);
      htable_xlate x;
      ASSERT_EQ(htable_hat_translate(hat_, va + k4K, &x), 0);
      EXPECT_EQ(x.page_size, size);
      EXPECT_EQ(x.prot, R);
      EXPECT_EQ(x.locked, locked ? 1u : 0u);
      EXPECT_EQ(Raw(va) & ~kAD, htable_pte_make_leaf(pa, walker::level_of_size(size), R) & ~kAD);
      if (locked) ExpectAllResident(hat_, va, va + size, "locked");
      Check();
      // Unmapping it whole does not demote it either.
      demotions = Stat("demotions");
      ASSERT_EQ(htable_hat_unmap(hat_, va, size), 0);
      EXPECT_EQ(Stat("demotions"), demotions);
      Check();
      ASSERT_EQ(htable_hat_unmap(hat_, va + size, size), 0);
    }
  }
}

// ---- lock -------------------------------------------------------------------------------------

// before: pages in three 2 MiB slots (three PTs) and a 2M leaf, all dropped
// from the tables (not resident)
// lock slots 0-1 and the 2M leaf: they become resident and marked locked;
// htable_reap() and drop_tables take everything else but never those;
// unlock makes them stealable again.
TEST_P(OpsTest, LockMakesResidentAndKeepsTablesFromSteal) {
  u64 va = Base();
  for (unsigned slot = 0; slot < 3; slot++)
    ASSERT_EQ(htable_hat_map_range(hat_, va + slot * k2M, 4 * k4K, k4K, R, slot * k2M, nullptr), 0);
  ASSERT_EQ(htable_hat_map(hat_, va + 3 * k2M, 3 * k2M, k2M, R | W), 0);
  htable_hat_drop_tables(hat_);
  EXPECT_TRUE(WalkHat(hat_).leaves.empty());
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);

  ASSERT_EQ(htable_hat_lock(hat_, va, 2 * k2M, 1), 0);
  ASSERT_EQ(htable_hat_lock(hat_, va + 3 * k2M, k2M, 1), 0);
  Check();
  ExpectAllResident(hat_, va, 2 * k2M + va);
  ExpectAllResident(hat_, va + 3 * k2M, va + 4 * k2M);
  EXPECT_FALSE(walker::find(Top(), levels(), va + 2 * k2M).has_value()) << "slot 2 was not locked";
  htable_xlate x;
  ASSERT_EQ(htable_hat_translate(hat_, va + k4K, &x), 0);
  EXPECT_EQ(x.locked, 1u);
  ASSERT_EQ(htable_hat_translate(hat_, va + 2 * k2M, &x), 0);
  EXPECT_EQ(x.locked, 0u);
  for (const MappingRun &r : Record(hat_))
    EXPECT_EQ(r.locked, r.va == va + 2 * k2M ? 0u : 1u) << RunText(r);

  // Slot 2 resident too; then take everything the LRU offers.
  ASSERT_EQ(htable_hat_fault(hat_, va + 2 * k2M), 0);
  htable_reap(htable_reclaimable() + 100);
  EXPECT_EQ(htable_reclaimable(), 0u);
  EXPECT_FALSE(walker::find(Top(), levels(), va + 2 * k2M).has_value()) << "slot 2 not stolen";
  ExpectAllResident(hat_, va, va + 2 * k2M, "after reap");
  ExpectAllResident(hat_, va + 3 * k2M, va + 4 * k2M, "after reap");
  htable_hat_drop_tables(hat_);
  ExpectAllResident(hat_, va, va + 2 * k2M, "after drop_tables");
  ExpectAllResident(hat_, va + 3 * k2M, va + 4 * k2M, "after drop_tables");
  Check();

  // Locking what is locked, or a hole, is fine.
  EXPECT_EQ(htable_hat_lock(hat_, va, 4 * k2M, 1), 0);
  EXPECT_EQ(htable_hat_lock(hat_, va + k1G, k2M, 1), 0);
  ExpectAllResident(hat_, va, va + 4 * k2M);
  // Unlock: stealable again.
  ASSERT_EQ(htable_hat_lock(hat_, va, 4 * k2M, 0), 0);
  for (const MappingRun &r : Record(hat_)) EXPECT_EQ(r.locked, 0u) << RunText(r);
  Check();
  EXPECT_GT(htable_reclaimable(), 0u);
  htable_hat_drop_tables(hat_);
  EXPECT_TRUE(WalkHat(hat_).leaves.empty());
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  Check();
  // Unmapping locked pages is fine (a 4 KiB leaf is never broken up).
  ASSERT_EQ(htable_hat_lock(hat_, va, k2M, 1), 0);
  ASSERT_EQ(htable_hat_unmap(hat_, va + k4K, k4K), 0);
  Check();
  ExpectAllResident(hat_, va, va + k2M);
}

// ---- map_range ----------------------------------------------------------------------------------

// Contiguous: every leaf at pa + i * size.  Array: every leaf at its own pa,
// reported one leaf per next_mapping() (an array range is contiguous only
// leaf by leaf); cutting and protecting part of it keeps each leaf's pa.
TEST_P(OpsTest, MapRangeContiguousAndArray) {
  u64 va = Base();
  ASSERT_EQ(htable_hat_map_range(hat_, va, 4 * k2M, k2M, R | W, 0x200000000ull, nullptr), 0);
  for (unsigned i = 0; i < 4; i++) {
    auto l = walker::find(Top(), levels(), va + i * k2M);
    ASSERT_TRUE(l.has_value());
    EXPECT_EQ(l->level, 1u);
    EXPECT_EQ(l->pa, 0x200000000ull + i * k2M);
  }
  htable_mapping m;
  ASSERT_EQ(htable_hat_next_mapping(hat_, va, user_end(), &m), 0);
  EXPECT_EQ(m.va, va);
  EXPECT_EQ(m.len, 4 * k2M);
  EXPECT_EQ(m.pa, 0x200000000ull);
  EXPECT_EQ(m.level, 1u);
  // Clipped to the range asked.
  ASSERT_EQ(htable_hat_next_mapping(hat_, va + k2M + k4K, va + 2 * k2M, &m), 0);
  EXPECT_EQ(m.va, va + k2M + k4K);
  EXPECT_EQ(m.len, k2M - k4K);
  EXPECT_EQ(m.pa, 0x200000000ull + k2M + k4K);

  const hx_paddr_t pas[] = {0x7000, 0x3000, 0x9000, 0x1000, 0x5000, 0x6000};
  u64 va2 = va + k1G;
  ASSERT_EQ(htable_hat_map_range(hat_, va2, 6 * k4K, k4K, R, 0xdead000, pas), 0);
  for (unsigned i = 0; i < 6; i++) {
    auto l = walker::find(Top(), levels(), va2 + i * k4K);
    ASSERT_TRUE(l.has_value());
    EXPECT_EQ(l->pa, pas[i]) << i;
    ASSERT_EQ(htable_hat_next_mapping(hat_, va2 + i * k4K, user_end(), &m), 0);
    EXPECT_EQ(m.va, va2 + i * k4K);
    EXPECT_EQ(m.len, k4K) << "one leaf of an array";
    EXPECT_EQ(m.pa, pas[i]);
  }
  // pages 3 and 4 (0x1000, 0x5000) are contiguous: one run once merged.
  EXPECT_EQ(Record(hat_, va2, va2 + 6 * k4K).size(), 5u);
  ASSERT_EQ(htable_hat_unmap(hat_, va2 + k4K, k4K), 0);
  ASSERT_EQ(htable_hat_protect(hat_, va2 + 4 * k4K, 2 * k4K, R | W), 0);
  htable_hat_drop_tables(hat_);
  for (unsigned i : {0u, 2u, 3u, 4u, 5u}) {
    ASSERT_EQ(htable_hat_fault(hat_, va2 + i * k4K), 0);
    auto l = walker::find(Top(), levels(), va2 + i * k4K);
    ASSERT_TRUE(l.has_value());
    EXPECT_EQ(l->pa, pas[i]) << i;
    EXPECT_EQ(!!(l->raw & walker::kRW), i >= 4) << i;
  }
  htable_xlate x;
  EXPECT_EQ(htable_hat_translate(hat_, va2 + k4K, &x), -HX_ENOENT);
  Check();
  // The record keeps its own copy of the array (shared by the pieces); the
  // last piece frees it (a leak would show at the fixture's TearDown).
  ASSERT_EQ(htable_hat_unmap(hat_, va2, 6 * k4K), 0);
  EXPECT_TRUE(Record(hat_, va2, va2 + k1G).empty());
  // A 2M array range.
  const hx_paddr_t big[] = {0x40000000ull, 0x20000000ull};
  ASSERT_EQ(htable_hat_map_range(hat_, va2, 2 * k2M, k2M, R, 0, big), 0);
  EXPECT_EQ(walker::find(Top(), levels(), va2 + k2M + 5)->pa, 0x20000000ull);
  // Overlap: -EEXIST, nothing changes (the array copy is freed).
  HatState before = CaptureHat(hat_);
  EXPECT_EQ(htable_hat_map_range(hat_, va2 - k2M, 2 * k2M, k2M, R, 0, big), -HX_EEXIST);
  ExpectUnchanged(before, CaptureHat(hat_), "overlapping array map");
  Check();
}

// ---- fault and drop_tables ---------------------------------------------------------------------

// drop_tables frees every table below the top and keeps the record; a fault
// reloads exactly the leaf asked for; a hole is -ENOENT.
TEST_P(OpsTest, FaultReloadsFromTheRecord) {
  u64 va = Base();
  ASSERT_EQ(htable_hat_map(hat_, va, 0x1000, k4K, R), 0);
  ASSERT_EQ(htable_hat_map(hat_, va + k4K, 0x5000, k4K, R | W), 0);
  ASSERT_EQ(htable_hat_map(hat_, va + k2M, 0x200000, k2M, R), 0);
  ASSERT_EQ(htable_hat_map(hat_, va + k1G, 0x40000000, k1G, R | X), 0);
  std::vector<MappingRun> rec = Record(hat_);
  walker::Walk full = WalkHat(hat_);
  u64 tables = htable_hat_nr_tables(hat_);
  // drop_tables counts the tables it took; ancestors left empty by that go
  // too (not counted).
  u64 dropped = htable_hat_drop_tables(hat_);
  EXPECT_GE(dropped, 1u);
  EXPECT_LE(dropped, tables - 1);
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  EXPECT_TRUE(WalkHat(hat_).leaves.empty());
  EXPECT_TRUE(Record(hat_) == rec) << "the record is untouched";
  Check();
  u64 reloads = Stat("reloads"), holes = Stat("holes");
  for (const walker::Leaf &l : full.leaves) {
    ASSERT_EQ(htable_hat_fault(hat_, l.va + l.size / 2), 0);
    auto now = walker::find(Top(), levels(), l.va);
    ASSERT_TRUE(now.has_value());
    EXPECT_EQ(now->raw & ~kAD, l.raw & ~kAD);
    Check();
  }
  EXPECT_EQ(Stat("reloads"), reloads + full.leaves.size());
  EXPECT_TRUE(WalkHat(hat_).leaves == full.leaves);
  // Only what was asked: the neighbour page of a reloaded one stays out.
  htable_hat_drop_tables(hat_);
  ASSERT_EQ(htable_hat_fault(hat_, va), 0);
  EXPECT_EQ(WalkHat(hat_).leaves.size(), 1u);
  // Holes and bad addresses.
  EXPECT_EQ(htable_hat_fault(hat_, va + 2 * k4K), -HX_ENOENT);
  EXPECT_EQ(htable_hat_fault(hat_, 0), -HX_ENOENT);
  EXPECT_EQ(Stat("holes"), holes + 2);
  EXPECT_EQ(htable_hat_fault(hat_, user_end()), -HX_EINVAL);
  EXPECT_EQ(htable_hat_fault(hat_, ~0ull), -HX_EINVAL);
  Check();
}

// ---- readers ------------------------------------------------------------------------------------

// htable_hat_walk() visits exactly the resident leaves the walker finds, in
// VA order, with their raw entries; getpte() agrees; next_mapping() walks
// the record whether resident or not.
TEST_P(OpsTest, WalkGetpteAndNextMappingAgree) {
  u64 va = Base();
  ASSERT_EQ(htable_hat_map(hat_, 0, 0x1000, k4K, R), 0);
  ASSERT_EQ(htable_hat_map_range(hat_, va, 3 * k4K, k4K, R | W, 0x10000, nullptr), 0);
  ASSERT_EQ(htable_hat_map(hat_, va + 511 * k4K, 0x9000, k4K, R), 0);  // last entry of a PT
  ASSERT_EQ(htable_hat_map(hat_, va + k2M, 0x200000, k2M, R), 0);
  ASSERT_EQ(htable_hat_map(hat_, va + 3 * k1G, 0xc0000000ull, k1G, R | X), 0);
  ASSERT_EQ(htable_hat_map(hat_, user_end() - k4K, 0x3000, k4K, R), 0);
  walker::Walk w = WalkHat(hat_);
  ASSERT_TRUE(w.ok()) << w.error_text();
  ASSERT_EQ(w.leaves.size(), 8u);

  std::vector<walker::Leaf> seen;
  for (u64 a = 0;;) {
    unsigned level = 99;
    u64 e = htable_hat_walk(hat_, &a, ~0ull, &level);
    if (!e) break;
    seen.push_back(walker::Leaf{a, e & walker::kAddr & ~(size_of(level) - 1), size_of(level), level, e});
    a += size_of(level);
    if (a == 0) break;
    ASSERT_LT(seen.size(), 100u);
  }
  EXPECT_TRUE(seen == w.leaves) << LeavesText(seen) << " vs" << LeavesText(w.leaves);

  // A walk started inside a large leaf returns that leaf at its start; one
  // with an end stops there.
  u64 a = va + k2M + 5 * k4K;
  unsigned level = 0;
  EXPECT_NE(htable_hat_walk(hat_, &a, ~0ull, &level), 0u);
  EXPECT_EQ(a, va + k2M);
  EXPECT_EQ(level, 1u);
  a = va + 3 * k4K;
  EXPECT_NE(htable_hat_walk(hat_, &a, va + k2M + 1, &level), 0u);
  EXPECT_EQ(a, va + 511 * k4K);
  a = va + 512 * k4K;
  EXPECT_EQ(htable_hat_walk(hat_, &a, va + k2M, &level), 0u) << "nothing in [va + 2M, end)";

  for (const walker::Leaf &l : w.leaves) {
    for (u64 off : {u64{0}, l.size - 1}) {
      unsigned lv = 99;
      EXPECT_EQ(htable_hat_getpte(hat_, l.va + off, &lv), l.raw) << std::hex << l.va;
      EXPECT_EQ(lv, l.level);
    }
  }
  unsigned lv = 0;
  EXPECT_EQ(htable_hat_getpte(hat_, va + 4 * k4K, &lv), 0u);
  EXPECT_EQ(htable_hat_getpte(hat_, va + 100 * k1G, &lv), 0u);
  EXPECT_EQ(htable_hat_getpte(hat_, user_end(), &lv), 0u);

  std::vector<MappingRun> rec = Record(hat_);
  ASSERT_EQ(rec.size(), 6u);  // the three pages are one extent
  EXPECT_EQ(rec[1].va, va);
  EXPECT_EQ(rec[1].len, 3 * k4K);
  htable_mapping m;
  EXPECT_EQ(htable_hat_next_mapping(hat_, va + 4 * k4K, va + 511 * k4K, &m), -HX_ENOENT);
  ASSERT_EQ(htable_hat_next_mapping(hat_, va + 4 * k4K, va + 512 * k4K, &m), 0);
  EXPECT_EQ(m.va, va + 511 * k4K);

  // Not resident: walk and getpte see nothing, next_mapping all of it.
  htable_hat_drop_tables(hat_);
  a = 0;
  EXPECT_EQ(htable_hat_walk(hat_, &a, ~0ull, &level), 0u);
  EXPECT_EQ(htable_hat_getpte(hat_, va, &lv), 0u);
  EXPECT_TRUE(Record(hat_) == rec);
  Check();
}

// One line per table, parents' levels first; with show_pa the top's
// physical address on its line only.
TEST_P(OpsTest, DumpListsEveryTable) {
  ASSERT_EQ(htable_hat_map(hat_, Base(), 0, k4K, R), 0);
  ASSERT_EQ(htable_hat_map(hat_, Base() + k1G, 0, k2M, R), 0);
  std::vector<std::string> lines;
  auto emit = [](void *arg, const char *line) { static_cast<std::vector<std::string> *>(arg)->push_back(line); };
  htable_hat_dump(hat_, emit, &lines, 1);
  ASSERT_EQ(lines.size(), htable_hat_nr_tables(hat_));
  EXPECT_EQ(lines[0].rfind("L" + std::to_string(levels() - 1) + " va=0x0000000000000000", 0), 0u) << lines[0];
  char pa[40];
  std::snprintf(pa, sizeof(pa), " pa=0x%llx", (unsigned long long)htable_hat_top_pa(hat_));
  EXPECT_NE(lines[0].find(pa), std::string::npos) << lines[0];
  int prev = 99;
  for (size_t i = 1; i < lines.size(); i++) {
    EXPECT_EQ(lines[i].find(" pa="), std::string::npos) << lines[i];
    int l = lines[i][1] - '0';
    EXPECT_LE(l, prev) << "levels in descending order";
    prev = l;
  }
  // The PT holding the 4K leaf is terminal: on the LRU.
  bool lru_pt = false;
  for (const auto &l : lines) lru_pt |= l.rfind("L0 ", 0) == 0 && l.find(" lru") != std::string::npos;
  EXPECT_TRUE(lru_pt);
  lines.clear();
  htable_hat_dump(hat_, emit, &lines, 0);
  for (const auto &l : lines) EXPECT_EQ(l.find(" pa="), std::string::npos) << l;
}

// ---- copied-top (VLP) hats -------------------------------------------------------------------------

// The top level lives in kernel memory (top_pa 0, no page); load_top()
// copies its user half (entries 0..255) into a CPU's own top table and
// leaves the kernel half alone.  Everything else works as for any hat.
TEST_P(OpsTest, CopiedTopHatLoadsUserHalfOnly) {
  u64 pages = hxhost::pages_live(), kmem = hxhost::kmem_live();
  htable_hat *hat = NewHat(levels(), HTABLE_HAT_COPIED_TOP);
  EXPECT_EQ(hxhost::pages_live(), pages) << "a copied top is not a page";
  EXPECT_GT(hxhost::kmem_live(), kmem);
  EXPECT_EQ(htable_hat_copied_top(hat), 1);
  EXPECT_EQ(htable_hat_top_pa(hat), 0u);
  EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
  EXPECT_EQ(htable_hat_copied_top(hat_), 0);

  std::vector<u64> cpu_top(512);
  for (unsigned i = 0; i < 512; i++) cpu_top[i] = i < 256 ? 0xbad0000000000001ull : 0x5a5a000000000000ull + i;
  htable_hat_load_top(hat, cpu_top.data());
  for (unsigned i = 0; i < 256; i++) ASSERT_EQ(cpu_top[i], 0u) << "user half copied (empty)";
  for (unsigned i = 256; i < 512; i++) ASSERT_EQ(cpu_top[i], 0x5a5a000000000000ull + i) << "kernel half untouched";

  ASSERT_EQ(htable_hat_map(hat, Base(), 0x1000, k4K, R), 0);
  ASSERT_EQ(htable_hat_map(hat, 0, 0x200000, k2M, R | W), 0);
  ASSERT_EQ(htable_hat_map(hat, user_end() - k4K, 0x3000, k4K, R), 0);
  htable_hat_load_top(hat, cpu_top.data());
  unsigned top_level = levels() - 1;
  for (unsigned i = 0; i < 256; i++) {
    bool used = i == walker::index_of(Base(), top_level) || i == 0 || i == 255;
    EXPECT_EQ(cpu_top[i] != 0, used) << i;
    if (used) {
      EXPECT_EQ(cpu_top[i] & (walker::kP | walker::kRW | walker::kUS), walker::kP | walker::kRW | walker::kUS);
    }
  }
  for (unsigned i = 256; i < 512; i++) ASSERT_EQ(cpu_top[i], 0x5a5a000000000000ull + i);
  walker::Walk w = WalkHat(hat);  // through a top load_top() filled
  ASSERT_TRUE(w.ok()) << w.error_text();
  ASSERT_EQ(w.leaves.size(), 3u);
  EXPECT_EQ(w.leaves[1].va, Base());
  EXPECT_EQ(w.leaves[1].pa, 0x1000u);
  ExpectResidentInRecord(hat);
  EXPECT_EQ(htable_hat_check(hat), 0);
  ExpectPagesAccounted();

  // A CPU on it gets the flushes, for top 0.
  htable_hat_cpu_enter(hat, 2);
  hxhost::clear_flushes();
  ASSERT_EQ(htable_hat_unmap(hat, 0, k2M), 0);
  ASSERT_EQ(hxhost::flushes().size(), 1u);
  EXPECT_EQ(hxhost::flushes()[0].top_pa, 0u);
  EXPECT_EQ(hxhost::flushes()[0].cpus[0], 1ul << 2);
  htable_hat_cpu_leave(hat, 2);

  // Tables below a copied top are stolen and reloaded like any other.
  for (int i = 0; i < 10 && htable_reclaimable(); i++) htable_reap(htable_reclaimable());
  EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
  htable_hat_load_top(hat, cpu_top.data());
  for (unsigned i = 0; i < 256; i++) ASSERT_EQ(cpu_top[i], 0u) << i;
  ASSERT_EQ(htable_hat_fault(hat, Base()), 0);
  EXPECT_EQ(WalkHat(hat).leaves.size(), 1u);
  EXPECT_EQ(htable_hat_check(hat), 0);
  ASSERT_EQ(htable_hat_unmap(hat, 0, user_end()), 0);
  htable_hat_load_top(hat, cpu_top.data());
  for (unsigned i = 0; i < 256; i++) ASSERT_EQ(cpu_top[i], 0u) << i;
  EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
  EXPECT_EQ(htable_hat_check(hat), 0);
  std::vector<std::string> lines;
  htable_hat_dump(hat, [](void *arg, const char *l) { static_cast<std::vector<std::string> *>(arg)->push_back(l); },
                  &lines, 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("copied-top"), std::string::npos) << lines[0];
}

INSTANTIATE_TEST_SUITE_P(Levels, OpsTest, ::testing::Values(4u, 5u), LevelsName);

}  // namespace
}  // namespace htest
