// SPDX-License-Identifier: GPL-2.0
//
// htable_map: map, unmap and translate through the C API, for 4 and 5 levels
// and every leaf size, checked against the raw tables with walker.h and
// against the record (htable_hat_next_mapping()), with htable_hat_check()
// after the operations.
//
// Since the core keeps a record of its mappings and uses the tables as a
// cache, a few expectations of the first version of these tests changed;
// each such place says why in a comment starting "Record/cache:".
#include "fixture.h"

namespace htest {
namespace {

using walker::size_of;

// (levels, page size)
using MapParam = std::tuple<unsigned, u64>;

class MapTest : public HtableTest, public ::testing::WithParamInterface<MapParam> {
 protected:
  void SetUp() override {
    HtableTest::SetUp();
    hat_ = NewHat(levels());
    top_ = htable_hat_top_pa(hat_);
  }

  unsigned levels() const { return std::get<0>(GetParam()); }
  u64 size() const { return std::get<1>(GetParam()); }
  unsigned leaf_level() const { return walker::level_of_size(size()); }
  unsigned top_level() const { return levels() - 1; }
  u64 user_end() const { return htable_user_va_end(levels()); }

  // A VA with a non-zero index at every level (above 2^47 with 5 levels, so
  // the fifth level is really used), and a PA using high address bits.
  u64 Va() const {
    u64 base = levels() == 5 ? 0x00abcd1234567000ull : 0x00007f1234567000ull;
    return base & ~(size() - 1);
  }
  u64 Pa() const { return 0x000abcdef0123000ull & ~(size() - 1); }

  int Map(u64 va, u64 pa, hx_u32 prot = R | W) { return htable_hat_map(hat_, va, pa, size(), prot); }
  walker::Walk Walk() const { return walker::walk(top_, levels()); }
  void Check() { EXPECT_EQ(htable_hat_check(hat_), 0); }

  htable_hat *hat_ = nullptr;
  u64 top_ = 0;
};

std::string MapParamName(const ::testing::TestParamInfo<MapParam> &info) {
  return "L" + std::to_string(std::get<0>(info.param)) + "_" + SizeName(std::get<1>(info.param));
}

// ---- building ------------------------------------------------------------------------

// before: top (empty)
// after:  top -> ... -> one table per level down to the leaf's, one entry in each
TEST_P(MapTest, MapBuildsOneTablePerLevel) {
  walker::Walk w0 = Walk();
  ASSERT_TRUE(w0.ok()) << w0.error_text();
  ASSERT_EQ(w0.tables.size(), 1u);
  EXPECT_EQ(w0.tables[0].valid, 0u);
  EXPECT_TRUE(w0.leaves.empty());
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  u64 pages = hxhost::pages_live(), tables_live = Stat("tables_live");

  ASSERT_EQ(Map(Va(), Pa()), 0);

  walker::Walk w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  unsigned expect = levels() - leaf_level();
  EXPECT_EQ(htable_hat_nr_tables(hat_), expect);
  ASSERT_EQ(w.tables.size(), expect);
  for (unsigned i = 0; i < expect; i++) {
    unsigned level = top_level() - i;
    EXPECT_EQ(w.tables[i].level, level);
    EXPECT_EQ(w.tables[i].valid, 1u) << "level " << level;
    if (i > 0) {
      EXPECT_EQ(w.tables[i].va, Va() & ~(size_of(level + 1) - 1)) << "level " << level;
    }
  }
  ASSERT_EQ(w.leaves.size(), 1u);
  EXPECT_EQ(w.leaves[0].va, Va());
  EXPECT_EQ(w.leaves[0].pa, Pa());
  EXPECT_EQ(w.leaves[0].size, size());
  EXPECT_EQ(w.leaves[0].level, leaf_level());
  EXPECT_EQ(hxhost::pages_live() - pages, expect - 1);
  EXPECT_EQ(Stat("tables_live") - tables_live, expect - 1);
  // The refill asked for exactly the tables of an empty path: none is left over.
  EXPECT_EQ(htable_hat_nr_cached(hat_), 0u);
  // The record has the one mapping.
  std::vector<MappingRun> rec = Record(hat_);
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_TRUE(rec[0] == (MappingRun{Va(), size(), Pa(), R | W, leaf_level(), 0, 0})) << RunText(rec[0]);
  Check();
  ExpectPagesAccounted();
}

// before: top -> ... -> T (leaf A)
// after:  top -> ... -> T (leaves A, A + size): no new table
TEST_P(MapTest, MapNeighbourReusesTables) {
  ASSERT_LT(walker::index_of(Va(), leaf_level()), 511u);
  ASSERT_EQ(Map(Va(), Pa()), 0);
  u64 nr = htable_hat_nr_tables(hat_);
  ASSERT_EQ(Map(Va() + size(), Pa() + size()), 0);
  EXPECT_EQ(htable_hat_nr_tables(hat_), nr);
  walker::Walk w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(w.tables.back().valid, 2u);
  EXPECT_EQ(w.leaves.size(), 2u);
}

// Each leaf's raw entry: P, US, RW iff writable, NX iff not executable, PS iff
// large, never G, and the address.
TEST_P(MapTest, LeafEntryHasExpectedBits) {
  const hx_u32 prots[] = {R, R | W, R | X, R | W | X};
  ASSERT_LT(walker::index_of(Va(), leaf_level()), 512u - 4);
  for (unsigned i = 0; i < 4; i++) ASSERT_EQ(Map(Va() + i * size(), Pa() + i * size(), prots[i]), 0);
  for (unsigned i = 0; i < 4; i++) {
    SCOPED_TRACE("prot " + std::to_string(prots[i]));
    auto leaf = walker::find(top_, levels(), Va() + i * size());
    ASSERT_TRUE(leaf.has_value());
    u64 e = leaf->raw;
    EXPECT_TRUE(e & walker::kP);
    EXPECT_TRUE(e & walker::kUS);
    EXPECT_EQ(!!(e & walker::kRW), !!(prots[i] & W));
    EXPECT_EQ(!!(e & walker::kNX), !(prots[i] & X));
    EXPECT_EQ(!!(e & walker::kPS), size() > k4K);
    EXPECT_FALSE(e & walker::kG);
    EXPECT_EQ(leaf->pa, Pa() + i * size());
    EXPECT_EQ(leaf->level, leaf_level());
    htable_xlate x;
    ASSERT_EQ(htable_hat_translate(hat_, Va() + i * size(), &x), 0);
    EXPECT_EQ(x.prot, prots[i]);
  }
  walker::Walk w = Walk();
  EXPECT_TRUE(w.ok()) << w.error_text();
}

// Without NX support the bit is reserved: setting it would fault every access.
// The page is then executable whatever was asked.
// Record/cache: translate answers from the record, which keeps the attributes
// as mapped (R); it used to read the leaf back (R | X).  htable_hat_check()
// knows that without NX a leaf of the record's R is executable.
TEST_P(MapTest, LeafHasNoNxWhenCpuLacksNx) {
  hxhost::set_nx(0);
  ASSERT_EQ(Map(Va(), Pa(), R), 0);
  auto leaf = walker::find(top_, levels(), Va());
  ASSERT_TRUE(leaf.has_value());
  EXPECT_FALSE(leaf->raw & walker::kNX);
  htable_xlate x;
  ASSERT_EQ(htable_hat_translate(hat_, Va(), &x), 0);
  EXPECT_EQ(x.prot, R);
  Check();
}

TEST_P(MapTest, TranslateMatchesWalker) {
  ASSERT_EQ(Map(Va(), Pa(), R | X), 0);
  const u64 offsets[] = {0, 1, 0xabc, size() / 2 + 8, size() - 1};
  for (u64 off : offsets) {
    SCOPED_TRACE("offset " + std::to_string(off));
    htable_xlate x;
    ASSERT_EQ(htable_hat_translate(hat_, Va() + off, &x), 0);
    auto leaf = walker::find(top_, levels(), Va() + off);
    ASSERT_TRUE(leaf.has_value());
    EXPECT_EQ(x.pa, Pa() + off);
    EXPECT_EQ(x.pa, leaf->pa + off);
    EXPECT_EQ(x.page_size, size());
    EXPECT_EQ(x.level, leaf_level());
    EXPECT_EQ(x.prot, R | X);
  }
  htable_xlate x;
  EXPECT_EQ(htable_hat_translate(hat_, Va() - 1, &x), -HX_ENOENT);
  EXPECT_EQ(htable_hat_translate(hat_, Va() + size(), &x), -HX_ENOENT);
  EXPECT_EQ(htable_hat_translate(hat_, 0, &x), -HX_ENOENT);
  EXPECT_EQ(htable_hat_translate(hat_, user_end(), &x), -HX_EINVAL);
  EXPECT_EQ(htable_hat_translate(hat_, ~0ull, &x), -HX_EINVAL);
}

// The lowest and the highest slot below htable_user_va_end() are mappable;
// a slot that reaches past it is not (the last page of the lower half is a
// guard, as TASK_SIZE_MAX leaves it out of every process).
TEST_P(MapTest, MapAtEdgesOfUserHalf) {
  EXPECT_EQ(user_end(), walker::half_end(levels()) - k4K);
  u64 last = (user_end() & ~(size() - 1)) - size();  // the next slot reaches user_end()
  HatState before = CaptureHat(hat_);
  EXPECT_EQ(Map(last + size(), Pa()), -HX_EINVAL);
  ExpectUnchanged(before, CaptureHat(hat_), "slot past the end");
  ASSERT_EQ(Map(0, Pa()), 0);
  ASSERT_EQ(Map(last, Pa()), 0);
  htable_xlate x;
  ASSERT_EQ(htable_hat_translate(hat_, last + size() - 1, &x), 0);
  EXPECT_EQ(x.pa, Pa() + size() - 1);
  EXPECT_EQ(htable_hat_translate(hat_, user_end(), &x), -HX_EINVAL);
  walker::Walk w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  ASSERT_EQ(w.leaves.size(), 2u);
  EXPECT_EQ(w.leaves[0].va, 0u);
  EXPECT_EQ(w.leaves[1].va, last);
  // The whole mappable range in one call.
  EXPECT_EQ(htable_hat_unmap(hat_, 0, user_end()), 0);
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  EXPECT_TRUE(Walk().leaves.empty());
  EXPECT_TRUE(Record(hat_).empty());
  Check();
}

// ---- unmapping --------------------------------------------------------------------

// before: top -> ... -> P -> {T_a (leaf A), T_b (leaf B)}
// unmap A: T_a goes, P and above stay; unmap B: everything below the top goes
// Record/cache: a table freed from a hat goes to the hat's cache of free
// tables first (up to 8): it leaves the hat's tables (nr_tables, tables_live)
// but its page stays allocated, counted by htable_hat_nr_cached().
TEST_P(MapTest, UnmapFreesEmptyTablesBottomUp) {
  unsigned d = leaf_level() + 1;  // A and B differ at this level: P is at level d
  u64 a = Va(), b = Va() + size_of(d);
  ASSERT_LT(walker::index_of(a, d), 511u);
  ASSERT_EQ(Map(a, Pa()), 0);
  ASSERT_EQ(Map(b, Pa() + size()), 0);
  u64 both = levels() - leaf_level() + 1;
  EXPECT_EQ(htable_hat_nr_tables(hat_), both);
  u64 tables_live = Stat("tables_live"), pages = hxhost::pages_live();

  u64 cached = htable_hat_nr_cached(hat_);
  ASSERT_EQ(htable_hat_unmap(hat_, a, size()), 0);
  walker::Walk w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(htable_hat_nr_tables(hat_), both - 1);
  EXPECT_EQ(w.tables.size(), both - 1);
  EXPECT_EQ(Stat("tables_live"), tables_live - 1);
  EXPECT_EQ(htable_hat_nr_cached(hat_), cached + 1);
  EXPECT_EQ(hxhost::pages_live(), pages);
  Check();
  ASSERT_EQ(w.leaves.size(), 1u);
  EXPECT_EQ(w.leaves[0].va, b);
  htable_xlate x;
  EXPECT_EQ(htable_hat_translate(hat_, a, &x), -HX_ENOENT);
  EXPECT_EQ(htable_hat_translate(hat_, b, &x), 0);

  ASSERT_EQ(htable_hat_unmap(hat_, b, size()), 0);
  w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  ASSERT_EQ(w.tables.size(), 1u);
  EXPECT_EQ(w.tables[0].valid, 0u);
  EXPECT_EQ(Stat("tables_live"), tables_live - (both - 1));
  EXPECT_EQ(htable_hat_nr_cached(hat_), std::min<u64>(cached + both - 1, 8));
  ExpectPagesAccounted();
  Check();
  // The cache is reclaimable: htable_reap() takes it before anything else.
  u64 n = htable_hat_nr_cached(hat_);
  EXPECT_GE(htable_reclaimable(), n);
  EXPECT_EQ(htable_reap(n), n);
  EXPECT_EQ(htable_hat_nr_cached(hat_), 0u);
  EXPECT_EQ(hxhost::pages_live() - pages0_, 1u + htable_reserve_count());
}

// before: leaves at slots 0, 2, 5 and 8
// unmap [slot 0, slot 6): holes are fine; after: only slot 8
// Record/cache: the "unmaps" counter counts unmap operations now (it counted
// leaves removed).
TEST_P(MapTest, UnmapWithHolesRemovesOnlyMappedLeaves) {
  ASSERT_LT(walker::index_of(Va(), leaf_level()), 512u - 9);
  for (unsigned slot : {0u, 2u, 5u, 8u}) ASSERT_EQ(Map(Va() + slot * size(), Pa() + slot * size()), 0);
  u64 unmaps = Stat("unmaps");
  ASSERT_EQ(htable_hat_unmap(hat_, Va(), 6 * size()), 0);
  EXPECT_EQ(Stat("unmaps") - unmaps, 1u);
  std::vector<MappingRun> rec = Record(hat_);
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_EQ(rec[0].va, Va() + 8 * size());
  Check();
  walker::Walk w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  ASSERT_EQ(w.leaves.size(), 1u);
  EXPECT_EQ(w.leaves[0].va, Va() + 8 * size());
  EXPECT_EQ(htable_hat_nr_tables(hat_), levels() - leaf_level());
  // A range with nothing in it at all.
  HatState before = CaptureHat(hat_);
  EXPECT_EQ(htable_hat_unmap(hat_, Va(), 6 * size()), 0);
  ExpectUnchanged(before, CaptureHat(hat_), "unmap of an empty range");
}

// Unmapping a range that covers a large leaf and more on both sides is fine:
// only a range that cuts a leaf is refused.
TEST_P(MapTest, UnmapCoveringLeafAndMoreSucceeds) {
  ASSERT_EQ(Map(Va(), Pa()), 0);
  u64 demotions = Stat("demotions");
  ASSERT_EQ(htable_hat_unmap(hat_, Va() - k4K, size() + 2 * k4K), 0);
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  EXPECT_TRUE(Walk().leaves.empty());
  EXPECT_TRUE(Record(hat_).empty());
  EXPECT_EQ(Stat("demotions"), demotions) << "nothing was cut";
  Check();
}

// ---- conflicts and bad arguments ---------------------------------------------------

// before: one leaf L
// mapping anything that overlaps L (same size, smaller inside, larger over it):
// -EEXIST and nothing changes
TEST_P(MapTest, MapOverMappedRangeIsEexistAndChangesNothing) {
  ASSERT_EQ(Map(Va(), Pa()), 0);
  htable_hat_cpu_enter(hat_, 2);
  HatState before = CaptureHat(hat_);
  EXPECT_EQ(Map(Va(), Pa() + size()), -HX_EEXIST);
  ExpectUnchanged(before, CaptureHat(hat_), "same size");
  for (u64 s : {k4K, k2M, k1G}) {
    if (s < size()) {
      // A smaller leaf inside: at the start and at the end of L.
      EXPECT_EQ(htable_hat_map(hat_, Va(), Pa(), s, R), -HX_EEXIST) << SizeName(s);
      EXPECT_EQ(htable_hat_map(hat_, Va() + size() - s, Pa(), s, R), -HX_EEXIST) << SizeName(s);
    } else if (s > size()) {
      // A larger leaf over it.
      u64 big = Va() & ~(s - 1);
      EXPECT_EQ(htable_hat_map(hat_, big, Pa() & ~(s - 1), s, R), -HX_EEXIST) << SizeName(s);
    }
    ExpectUnchanged(before, CaptureHat(hat_), "size " + SizeName(s));
  }
  EXPECT_TRUE(hxhost::flushes().empty());
  htable_hat_cpu_leave(hat_, 2);
  Check();
}

// Record/cache: bit 3 is HTABLE_A_GLOBAL now, so the "unknown prot bit" is
// one above HTABLE_A_ALL; the new attribute bits are accepted, and protect,
// lock and map_range refuse the same ranges as map and unmap.
TEST_P(MapTest, BadArgumentsAreRejectedAndChangeNothing) {
  ASSERT_EQ(Map(Va(), Pa()), 0);  // something to leave unchanged
  HatState before = CaptureHat(hat_);
  u64 mis = size() == k4K ? 0x100 : size() / 2;  // a misalignment for this size
  u64 va2 = Va() + 4 * size();                   // a free slot
  const struct {
    u64 va, pa, size;
    hx_u32 prot;
    int err;
    const char *what;
  } maps[] = {
      {va2 + mis, Pa(), size(), R, -HX_EINVAL, "misaligned va"},
      {va2, Pa() + mis, size(), R, -HX_EINVAL, "misaligned pa"},
      {va2, Pa() | (1ull << 52), size(), R, -HX_EINVAL, "pa beyond 52 bits"},
      {user_end() & ~(size() - 1), Pa(), size(), R, -HX_EINVAL, "slot reaching the end of the user half"},
      {walker::half_end(levels()), Pa(), size(), R, -HX_EINVAL, "va at the end of the lower half"},
      {0xffff800000000000ull, Pa(), size(), R, -HX_EINVAL, "va in the kernel half"},
      {0ull - size(), Pa(), size(), R, -HX_EINVAL, "va + size wraps"},
      {va2, Pa(), size(), 0, -HX_EINVAL, "no prot"},
      {va2, Pa(), size(), W, -HX_EINVAL, "write without read"},
      {va2, Pa(), size(), X, -HX_EINVAL, "exec without read"},
      {va2, Pa(), size(), R | 0x80, -HX_EINVAL, "unknown attribute bit"},
      {va2, Pa(), size(), R | 0x80000000u, -HX_EINVAL, "top attribute bit"},
      {va2, Pa(), size(), HTABLE_A_GLOBAL, -HX_EINVAL, "global without read"},
      {va2, Pa(), size(), HTABLE_A_CACHE(3) | W, -HX_EINVAL, "cache attribute without read"},
      {va2, Pa(), 0, R, -HX_EOPNOTSUPP, "size 0"},
      {va2, Pa(), 1, R, -HX_EOPNOTSUPP, "size 1"},
      {va2, Pa(), 2 * k4K, R, -HX_EOPNOTSUPP, "size 8K"},
      {va2, Pa(), k2M + k4K, R, -HX_EOPNOTSUPP, "size 2M + 4K"},
      {va2, Pa(), 2 * k2M, R, -HX_EOPNOTSUPP, "size 4M"},
      {0, 0, 512 * k1G, R, -HX_EOPNOTSUPP, "size 512G"},
  };
  for (const auto &m : maps) {
    EXPECT_EQ(htable_hat_map(hat_, m.va, m.pa, m.size, m.prot), m.err) << m.what;
    ExpectUnchanged(before, CaptureHat(hat_), m.what);
  }
  const struct {
    u64 va, len;
    const char *what;
  } unmaps[] = {
      {Va() + 1, k4K, "misaligned va"},
      {Va(), k4K + 1, "misaligned len"},
      {Va(), 0, "len 0"},
      {user_end(), k4K, "va at the end of the user half"},
      {user_end() - k4K, 2 * k4K, "range crosses the end of the user half"},
      {Va(), 0ull - Va(), "va + len wraps to 0"},
      {Va(), 0ull - Va() + k4K, "va + len wraps past 0"},
      {0xffff800000000000ull, k4K, "kernel half"},
  };
  for (const auto &u : unmaps) {
    EXPECT_EQ(htable_hat_unmap(hat_, u.va, u.len), -HX_EINVAL) << u.what;
    ExpectUnchanged(before, CaptureHat(hat_), u.what);
    EXPECT_EQ(htable_hat_protect(hat_, u.va, u.len, R), -HX_EINVAL) << "protect: " << u.what;
    ExpectUnchanged(before, CaptureHat(hat_), std::string("protect: ") + u.what);
    EXPECT_EQ(htable_hat_lock(hat_, u.va, u.len, 1), -HX_EINVAL) << "lock: " << u.what;
    ExpectUnchanged(before, CaptureHat(hat_), std::string("lock: ") + u.what);
  }
  // protect: the attributes are checked like map's.
  for (hx_u32 bad : {0u, W, X, W | X, R | 0x80u, HTABLE_A_GLOBAL}) {
    EXPECT_EQ(htable_hat_protect(hat_, Va(), size(), bad), -HX_EINVAL) << bad;
    ExpectUnchanged(before, CaptureHat(hat_), "protect attrs " + std::to_string(bad));
  }
  // map_range: a length that is not a multiple of the leaf, or 0; a pa array
  // entry misaligned or beyond 52 bits.
  EXPECT_EQ(htable_hat_map_range(hat_, va2, size() + size() / 2, size(), R, Pa(), nullptr), -HX_EINVAL);
  EXPECT_EQ(htable_hat_map_range(hat_, va2, 0, size(), R, Pa(), nullptr), -HX_EINVAL);
  ExpectUnchanged(before, CaptureHat(hat_), "map_range with a bad length");
  const hx_paddr_t bad_pas[][2] = {{Pa(), Pa() + mis}, {Pa(), Pa() | (1ull << 52)}};
  for (const auto &pas : bad_pas) {
    EXPECT_EQ(htable_hat_map_range(hat_, va2, 2 * size(), size(), R, 0, pas), -HX_EINVAL);
    ExpectUnchanged(before, CaptureHat(hat_), "map_range with a bad pa array");
  }
  EXPECT_TRUE(hxhost::flushes().empty());
  Check();
}

// ---- allocation failure -------------------------------------------------------------

// Fail every allocation of map from the k-th on, for k = 0, 1, ... until map
// succeeds: each failure is -ENOMEM with the record and the resident tables
// exactly as before.  Run with a neighbour sharing the tables from level d
// up (none: an empty hat), so that the rollback must stop at the first table
// it did not create.
// Record/cache: the failures come from the core's own hook
// (htable_test_fail_allocs(k, ~0): let k through, fail all after), which
// every allocation of the core goes through.  Nothing may absorb a failure
// here, so that the count is exact: the reserve is emptied (target 0), the
// neighbour is locked so that the refill's last resort (stealing a table
// from the LRU) finds nothing, and the hat's cache is drained before each
// try.  Map allocates the record's extent, then refills its cache of free
// tables (a struct htable and a page each) with the lock dropped; a partial
// refill is kept, so map fails until it got every table it needs.  A
// refill may leave free tables in the cache after -ENOMEM: only that may
// differ (ExpectUnchangedButCache).
TEST_P(MapTest, MapFailsCleanlyAtEveryAllocation) {
  htable_reserve_set(0);
  EXPECT_EQ(htable_reserve_count(), 0u);
  for (unsigned d = leaf_level() + 1; d <= top_level() + 1; d++) {
    bool has_neighbour = d <= top_level();
    SCOPED_TRACE(has_neighbour ? "neighbour differing at level " + std::to_string(d) : "empty hat");
    u64 neighbour = has_neighbour ? Va() + size_of(d) : 0;
    if (has_neighbour) {
      ASSERT_LT(walker::index_of(Va(), d), 511u);
      ASSERT_EQ(Map(neighbour, Pa()), 0);
      ASSERT_EQ(htable_hat_lock(hat_, neighbour, size(), 1), 0);
    }
    // Tables the map must create: levels below the shared one, down to the leaf's.
    unsigned new_tables = (has_neighbour ? d : top_level()) - leaf_level();
    DrainCaches();
    HatState before = CaptureHat(hat_);
    u64 fails = Stat("alloc_fails");
    unsigned k = 0;
    for (;; k++) {
      SCOPED_TRACE("failing allocations from " + std::to_string(k));
      DrainCaches();
      htable_test_fail_allocs(k, ~0ull);
      int rc = Map(Va(), Pa());
      htable_test_fail_allocs(0, 0);
      if (rc == 0) break;
      ASSERT_EQ(rc, -HX_ENOMEM);
      // alloc_fails counts table pages the page allocator refused
      // (allocations 2, 4, ...: each after its struct htable).
      if (k >= 2 && k % 2 == 0) {
        EXPECT_GT(Stat("alloc_fails"), fails) << "a table page failed";
      }
      fails = Stat("alloc_fails");
      ExpectUnchangedButCache(before, CaptureHat(hat_), "after -ENOMEM");
      Check();
      ExpectPagesAccounted();
      ASSERT_LT(k, 100u);
    }
    // The extent, then two allocations per table: its struct htable and its page.
    EXPECT_EQ(k, 1 + 2 * new_tables);
    EXPECT_EQ(htable_hat_nr_tables(hat_), before.nr_tables + new_tables);
    EXPECT_TRUE(walker::find(top_, levels(), Va()).has_value());
    Check();
    ASSERT_EQ(htable_hat_unmap(hat_, 0, user_end()), 0);
    EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  }
  EXPECT_TRUE(hxhost::flushes().empty());
}

// Fail one allocation of map, the k-th, for k = 0, 1, ... until map no
// longer allocates that much (the shim's fail_nth(), which also sees the
// allocations the core's hook lets through).  With the reserve at its
// target a failed table page is replaced from the reserve (a map may take
// it down to half its target), so only the record's extent is fatal.
TEST_P(MapTest, MapSurvivesOneFailureWithTheReserve) {
  ASSERT_EQ(Map(Va() + size_of(leaf_level() + 1), Pa()), 0);  // a neighbour, locked: not stealable
  ASSERT_EQ(htable_hat_lock(hat_, Va() + size_of(leaf_level() + 1), size(), 1), 0);
  DrainCaches();
  HatState before = CaptureHat(hat_);
  unsigned k = 0, enomem = 0, absorbed = 0;
  for (;; k++) {
    SCOPED_TRACE("failing allocation " + std::to_string(k));
    htable_reserve_set(kTestReserve);
    DrainCaches();
    u64 hits = Stat("reserve_hits"), reserve = htable_reserve_count();
    hxhost::fail_nth(hxhost::kAnyAlloc, k);
    int rc = Map(Va(), Pa());
    bool fired = !hxhost::failure_pending();
    hxhost::clear_failures();
    Check();
    if (!fired) {
      ASSERT_EQ(rc, 0);
      break;
    }
    if (rc == -HX_ENOMEM) {
      enomem++;
      ExpectUnchangedButCache(before, CaptureHat(hat_), "after -ENOMEM");
    } else {
      ASSERT_EQ(rc, 0);
      absorbed++;
      EXPECT_EQ(Stat("reserve_hits"), hits + 1) << "a table from the reserve";
      EXPECT_EQ(htable_reserve_count(), reserve - 1);
      auto leaf = walker::find(top_, levels(), Va());
      ASSERT_TRUE(leaf.has_value());
      EXPECT_EQ(leaf->pa, Pa());
      ASSERT_EQ(htable_hat_unmap(hat_, Va(), size()), 0);
      ExpectSameMappings(before, CaptureHat(hat_), "after undoing the map");
    }
    ASSERT_LT(k, 100u);
  }
  EXPECT_EQ(enomem, 1u) << "only the extent's allocation is fatal";
  EXPECT_EQ(absorbed, k - 1);
  ExpectPagesAccounted();
}

// Record/cache: with every page allocation failing, a map still gets its
// tables from the reserve as long as the reserve stays above half its target
// (maps never drain what fault reloads rely on); with no reserve it fails,
// and with every kmem allocation failing it cannot even record the mapping.
TEST_P(MapTest, MapFailsWhenEveryAllocationFails) {
  HatState before = CaptureHat(hat_);
  hxhost::fail_all(hxhost::kKmemFamily);
  EXPECT_EQ(Map(Va(), Pa()), -HX_ENOMEM);
  hxhost::fail_all(0);
  ExpectUnchanged(before, CaptureHat(hat_), "kmem");

  htable_reserve_set(0);
  before = CaptureHat(hat_);
  hxhost::fail_all(hxhost::kPageFamily);
  EXPECT_EQ(Map(Va(), Pa()), -HX_ENOMEM);
  hxhost::fail_all(0);
  ExpectUnchanged(before, CaptureHat(hat_), "pages, no reserve");

  htable_reserve_set(kTestReserve);
  u64 need = top_level() - leaf_level();
  ASSERT_LE(need, kTestReserve / 2);
  hxhost::fail_all(hxhost::kPageFamily);
  EXPECT_EQ(Map(Va(), Pa()), 0);
  EXPECT_EQ(htable_reserve_count(), kTestReserve - need);
  // More maps, each in a new top-level slot: they take the reserve down to
  // half its target, then steal tables (the earlier maps') whose pages
  // refill the reserve above half: they all succeed, and the reserve never
  // goes below half.
  std::vector<int> rcs(8, 0);
  u64 steals = Stat("steals");
  for (unsigned i = 1; i < 8; i++) {
    rcs[i] = Map(i * size_of(top_level()), Pa());
    EXPECT_EQ(rcs[i], 0) << i;
    EXPECT_GE(htable_reserve_count(), kTestReserve / 2u) << "maps may not take the reserve below half";
    Check();
  }
  EXPECT_GT(Stat("steals"), steals);
  hxhost::fail_all(0);
  // What succeeded is in the record, and a fault makes it resident if a
  // steal took its tables; what failed is not there at all.
  for (unsigned i = 0; i < 8; i++) {
    u64 va = i ? i * size_of(top_level()) : Va();
    htable_xlate x;
    if (rcs[i] != 0) {
      EXPECT_EQ(htable_hat_translate(hat_, va, &x), -HX_ENOENT) << i;
      EXPECT_FALSE(walker::find(top_, levels(), va).has_value()) << i;
      continue;
    }
    ASSERT_EQ(htable_hat_translate(hat_, va, &x), 0) << i;
    EXPECT_EQ(x.pa, Pa());
    EXPECT_EQ(htable_hat_fault(hat_, va), 0) << i;
    EXPECT_TRUE(walker::find(top_, levels(), va).has_value()) << i;
  }
  Check();
  ExpectPagesAccounted();
}

INSTANTIATE_TEST_SUITE_P(Sizes, MapTest,
                         ::testing::Combine(::testing::Values(4u, 5u),
                                            ::testing::Values(k4K, k2M, k1G)),
                         MapParamName);

// ---- large leaves ----------------------------------------------------------------------

// MapTest's fixture, for 2M and 1G leaves only: what only a large leaf can do.
class LargeLeafTest : public MapTest {};

// The cuts of a large leaf L = [Va(), Va() + size()) every test below tries.
struct Cut {
  u64 va, len;
  const char *what;
};

// before: one large leaf L
// unmap of any range that cuts L: 0; L leaves the tables (one shootdown that
// covers it), the cut part is unmapped and the rest of L stays mapped in the
// record as 4 KiB pages of the same physical pages and attributes, reloaded
// on demand by a fault.
// Record/cache: this used to be -EINVAL with L intact.
TEST_P(LargeLeafTest, UnmapCuttingLargeLeafDemotesIt) {
  const Cut cuts[] = {
      {Va() + k4K, k4K, "inside"},
      {Va(), size() - k4K, "head"},
      {Va() + k4K, size() - k4K, "tail"},
      {Va() - k4K, 2 * k4K, "across the start"},
      {Va() + size() - k4K, 2 * k4K, "across the end"},
      {Va() + size() / 2, size(), "from the middle on"},
  };
  htable_hat_cpu_enter(hat_, 1);
  for (const Cut &c : cuts) {
    SCOPED_TRACE(c.what);
    ASSERT_EQ(Map(Va(), Pa(), R | X), 0);
    hxhost::clear_flushes();
    u64 demotions = Stat("demotions");
    ASSERT_EQ(htable_hat_unmap(hat_, c.va, c.len), 0);
    EXPECT_EQ(Stat("demotions"), demotions + 1);
    // One flush, covering the whole of L (its entry went).
    ASSERT_EQ(hxhost::flushes().size(), 1u);
    EXPECT_TRUE(hxhost::flushes()[0].covers(Va(), size()));
    EXPECT_TRUE(hxhost::flushes()[0].has_cpu(1));
    // Nothing of L is resident any more.
    walker::Walk w = Walk();
    ASSERT_TRUE(w.ok()) << w.error_text();
    EXPECT_TRUE(w.leaves.empty());
    // The record: what is left of L, as 4 KiB pages.
    u64 cut_lo = std::max(c.va, Va()), cut_hi = std::min(c.va + c.len, Va() + size());
    std::vector<MappingRun> expect;
    if (cut_lo > Va()) expect.push_back(MappingRun{Va(), cut_lo - Va(), Pa(), R | X, 0, 0, 0});
    if (cut_hi < Va() + size())
      expect.push_back(MappingRun{cut_hi, Va() + size() - cut_hi, Pa() + (cut_hi - Va()), R | X, 0, 0, 0});
    std::vector<MappingRun> rec = Record(hat_);
    ASSERT_EQ(rec.size(), expect.size());
    for (size_t i = 0; i < rec.size(); i++) EXPECT_TRUE(rec[i] == expect[i]) << RunText(rec[i]);
    for (u64 off : {u64{0}, k4K, 2 * k4K, size() / 2 - k4K, size() / 2, size() - k4K}) {
      u64 va = Va() + off;
      htable_xlate x;
      bool cut = va >= cut_lo && va < cut_hi;
      int rc = htable_hat_translate(hat_, va + 0x10, &x);
      if (cut) {
        EXPECT_EQ(rc, -HX_ENOENT) << std::hex << off;
        EXPECT_EQ(htable_hat_fault(hat_, va), -HX_ENOENT) << "a hole";
        continue;
      }
      ASSERT_EQ(rc, 0) << std::hex << off;
      EXPECT_EQ(x.pa, Pa() + off + 0x10);
      EXPECT_EQ(x.page_size, k4K);
      EXPECT_EQ(x.level, 0u);
      EXPECT_EQ(x.prot, R | X);
      // A fault puts the page back as a 4 KiB leaf.
      ASSERT_EQ(htable_hat_fault(hat_, va), 0);
      auto leaf = walker::find(top_, levels(), va);
      ASSERT_TRUE(leaf.has_value());
      EXPECT_EQ(leaf->level, 0u);
      EXPECT_EQ(leaf->pa, Pa() + off);
      EXPECT_EQ(leaf->raw & ~(walker::kA | walker::kD), htable_pte_make_leaf(Pa() + off, 0, R | X) & ~(walker::kA | walker::kD));
    }
    Check();
    ASSERT_EQ(htable_hat_unmap(hat_, Va() - size(), 3 * size()), 0);
    EXPECT_TRUE(Record(hat_).empty());
    EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  }
  htable_hat_cpu_leave(hat_, 1);
}

// A locked large leaf is never broken up: a cut by unmap or protect is
// -EBUSY and changes nothing; unmapping or protecting it whole is fine.
TEST_P(LargeLeafTest, CuttingLockedLargeLeafIsEbusy) {
  ASSERT_EQ(Map(Va(), Pa()), 0);
  ASSERT_EQ(htable_hat_lock(hat_, Va(), size(), 1), 0);
  htable_hat_cpu_enter(hat_, 1);
  HatState before = CaptureHat(hat_);
  const Cut cuts[] = {
      {Va() + k4K, k4K, "inside"},
      {Va(), size() - k4K, "head"},
      {Va() + k4K, size() - k4K, "tail"},
      {Va() - k4K, 2 * k4K, "across the start"},
      {Va() + size() - k4K, 2 * k4K, "across the end"},
  };
  for (const Cut &c : cuts) {
    EXPECT_EQ(htable_hat_unmap(hat_, c.va, c.len), -HX_EBUSY) << c.what;
    ExpectUnchanged(before, CaptureHat(hat_), c.what);
    EXPECT_EQ(htable_hat_protect(hat_, c.va, c.len, R), -HX_EBUSY) << c.what;
    ExpectUnchanged(before, CaptureHat(hat_), c.what);
    // lock and unlock refuse a cut with -EINVAL.
    EXPECT_EQ(htable_hat_lock(hat_, c.va, c.len, 0), -HX_EINVAL) << c.what;
    EXPECT_EQ(htable_hat_lock(hat_, c.va, c.len, 1), -HX_EINVAL) << c.what;
    ExpectUnchanged(before, CaptureHat(hat_), c.what);
  }
  EXPECT_TRUE(hxhost::flushes().empty());
  Check();
  ASSERT_EQ(htable_hat_unmap(hat_, Va() - k4K, size() + 2 * k4K), 0);
  EXPECT_TRUE(Record(hat_).empty());
  EXPECT_TRUE(Walk().leaves.empty());
  Check();
  htable_hat_cpu_leave(hat_, 1);
}

INSTANTIATE_TEST_SUITE_P(Sizes, LargeLeafTest,
                         ::testing::Combine(::testing::Values(4u, 5u), ::testing::Values(k2M, k1G)),
                         MapParamName);

// ---- gbpages ---------------------------------------------------------------------------

class GbpagesTest : public HtableTest, public ::testing::WithParamInterface<unsigned> {};

TEST_P(GbpagesTest, GigabytePagesNeedGbpages) {
  htable_hat *hat = NewHat(GetParam());
  hxhost::set_gbpages(0);
  EXPECT_EQ(htable_page_sizes(), k4K | k2M);
  HatState before = CaptureHat(hat);
  EXPECT_EQ(htable_hat_map(hat, k1G, k1G, k1G, R), -HX_EOPNOTSUPP);
  ExpectUnchanged(before, CaptureHat(hat), "1G without gbpages");
  EXPECT_EQ(htable_hat_map(hat, k1G, k1G, k2M, R), 0);
  hxhost::set_gbpages(1);
  EXPECT_EQ(htable_page_sizes(), k4K | k2M | k1G);
  EXPECT_EQ(htable_hat_map(hat, 2 * k1G, k1G, k1G, R), 0);
  EXPECT_EQ(htable_hat_map_range(hat, 4 * k1G, 2 * k1G, k1G, R, 0, nullptr), 0);
  hxhost::set_gbpages(0);
  EXPECT_EQ(htable_hat_map_range(hat, 8 * k1G, 2 * k1G, k1G, R, 0, nullptr), -HX_EOPNOTSUPP);
  EXPECT_EQ(htable_hat_check(hat), 0);
}

INSTANTIATE_TEST_SUITE_P(Levels, GbpagesTest, ::testing::Values(4u, 5u),
                         [](const auto &info) { return "L" + std::to_string(info.param); });

}  // namespace
}  // namespace htest
