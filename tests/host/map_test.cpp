// SPDX-License-Identifier: GPL-2.0
//
// htable_map: map, unmap and translate through the C API, for 4 and 5 levels
// and every leaf size, checked against the raw tables with walker.h.
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
// The page is then executable whatever was asked, and translate says so.
TEST_P(MapTest, LeafHasNoNxWhenCpuLacksNx) {
  hxhost::set_nx(0);
  ASSERT_EQ(Map(Va(), Pa(), R), 0);
  auto leaf = walker::find(top_, levels(), Va());
  ASSERT_TRUE(leaf.has_value());
  EXPECT_FALSE(leaf->raw & walker::kNX);
  htable_xlate x;
  ASSERT_EQ(htable_hat_translate(hat_, Va(), &x), 0);
  EXPECT_EQ(x.prot, R | X);
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
  HatState before = Capture(hat_);
  EXPECT_EQ(Map(last + size(), Pa()), -HX_EINVAL);
  ExpectUnchanged(before, Capture(hat_), "slot past the end");
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
}

// ---- unmapping --------------------------------------------------------------------

// before: top -> ... -> P -> {T_a (leaf A), T_b (leaf B)}
// unmap A: T_a goes, P and above stay; unmap B: everything below the top goes
TEST_P(MapTest, UnmapFreesEmptyTablesBottomUp) {
  unsigned d = leaf_level() + 1;  // A and B differ at this level: P is at level d
  u64 a = Va(), b = Va() + size_of(d);
  ASSERT_LT(walker::index_of(a, d), 511u);
  ASSERT_EQ(Map(a, Pa()), 0);
  ASSERT_EQ(Map(b, Pa() + size()), 0);
  u64 both = levels() - leaf_level() + 1;
  EXPECT_EQ(htable_hat_nr_tables(hat_), both);
  u64 tables_live = Stat("tables_live"), pages = hxhost::pages_live();

  ASSERT_EQ(htable_hat_unmap(hat_, a, size()), 0);
  walker::Walk w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(htable_hat_nr_tables(hat_), both - 1);
  EXPECT_EQ(w.tables.size(), both - 1);
  EXPECT_EQ(Stat("tables_live"), tables_live - 1);
  EXPECT_EQ(hxhost::pages_live(), pages - 1);
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
  EXPECT_EQ(hxhost::pages_live(), pages - (both - 1));
}

// before: leaves at slots 0, 2, 5 and 8
// unmap [slot 0, slot 6): holes are fine; after: only slot 8
TEST_P(MapTest, UnmapWithHolesRemovesOnlyMappedLeaves) {
  ASSERT_LT(walker::index_of(Va(), leaf_level()), 512u - 9);
  for (unsigned slot : {0u, 2u, 5u, 8u}) ASSERT_EQ(Map(Va() + slot * size(), Pa() + slot * size()), 0);
  u64 unmaps = Stat("unmaps");
  ASSERT_EQ(htable_hat_unmap(hat_, Va(), 6 * size()), 0);
  EXPECT_EQ(Stat("unmaps") - unmaps, 3u);
  walker::Walk w = Walk();
  ASSERT_TRUE(w.ok()) << w.error_text();
  ASSERT_EQ(w.leaves.size(), 1u);
  EXPECT_EQ(w.leaves[0].va, Va() + 8 * size());
  EXPECT_EQ(htable_hat_nr_tables(hat_), levels() - leaf_level());
  // A range with nothing in it at all.
  HatState before = Capture(hat_);
  EXPECT_EQ(htable_hat_unmap(hat_, Va(), 6 * size()), 0);
  ExpectUnchanged(before, Capture(hat_), "unmap of an empty range");
}

// Unmapping a range that covers a large leaf and more on both sides is fine:
// only a range that cuts a leaf is refused.
TEST_P(MapTest, UnmapCoveringLeafAndMoreSucceeds) {
  ASSERT_EQ(Map(Va(), Pa()), 0);
  ASSERT_EQ(htable_hat_unmap(hat_, Va() - k4K, size() + 2 * k4K), 0);
  EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  EXPECT_TRUE(Walk().leaves.empty());
}

// ---- conflicts and bad arguments ---------------------------------------------------

// before: one leaf L
// mapping anything that overlaps L (same size, smaller inside, larger over it):
// -EEXIST and nothing changes
TEST_P(MapTest, MapOverMappedRangeIsEexistAndChangesNothing) {
  ASSERT_EQ(Map(Va(), Pa()), 0);
  htable_hat_cpu_enter(hat_, 2);
  HatState before = Capture(hat_);
  EXPECT_EQ(Map(Va(), Pa() + size()), -HX_EEXIST);
  ExpectUnchanged(before, Capture(hat_), "same size");
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
    ExpectUnchanged(before, Capture(hat_), "size " + SizeName(s));
  }
  EXPECT_TRUE(hxhost::flushes().empty());
  htable_hat_cpu_leave(hat_, 2);
}

TEST_P(MapTest, BadArgumentsAreRejectedAndChangeNothing) {
  ASSERT_EQ(Map(Va(), Pa()), 0);  // something to leave unchanged
  HatState before = Capture(hat_);
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
      {va2, Pa(), size(), R | 8, -HX_EINVAL, "unknown prot bit"},
      {va2, Pa(), 0, R, -HX_EOPNOTSUPP, "size 0"},
      {va2, Pa(), 1, R, -HX_EOPNOTSUPP, "size 1"},
      {va2, Pa(), 2 * k4K, R, -HX_EOPNOTSUPP, "size 8K"},
      {va2, Pa(), k2M + k4K, R, -HX_EOPNOTSUPP, "size 2M + 4K"},
      {va2, Pa(), 2 * k2M, R, -HX_EOPNOTSUPP, "size 4M"},
      {0, 0, 512 * k1G, R, -HX_EOPNOTSUPP, "size 512G"},
  };
  for (const auto &m : maps) {
    EXPECT_EQ(htable_hat_map(hat_, m.va, m.pa, m.size, m.prot), m.err) << m.what;
    ExpectUnchanged(before, Capture(hat_), m.what);
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
    ExpectUnchanged(before, Capture(hat_), u.what);
  }
  EXPECT_TRUE(hxhost::flushes().empty());
}

// ---- allocation failure -------------------------------------------------------------

// Fail the k-th allocation of map, for k = 0, 1, ... until map no longer
// allocates that much: each failure is -ENOMEM with the hat exactly as before.
// Run with a neighbour sharing the tables from level d up (none: an empty hat),
// so that the rollback must stop at the first table it did not create.
TEST_P(MapTest, MapFailsCleanlyAtEveryAllocation) {
  for (unsigned d = leaf_level() + 1; d <= top_level() + 1; d++) {
    bool has_neighbour = d <= top_level();
    SCOPED_TRACE(has_neighbour ? "neighbour differing at level " + std::to_string(d) : "empty hat");
    u64 neighbour = has_neighbour ? Va() + size_of(d) : 0;
    if (has_neighbour) {
      ASSERT_LT(walker::index_of(Va(), d), 511u);
      ASSERT_EQ(Map(neighbour, Pa()), 0);
    }
    // Tables the map must create: levels below the shared one, down to the leaf's.
    unsigned new_tables = (has_neighbour ? d : top_level()) - leaf_level();
    HatState before = Capture(hat_);
    u64 fails = Stat("ptable_alloc_fails");
    unsigned k = 0;
    for (;; k++) {
      SCOPED_TRACE("failing allocation " + std::to_string(k));
      hxhost::fail_nth(hxhost::kAnyAlloc, k);
      int rc = Map(Va(), Pa());
      bool fired = !hxhost::failure_pending();
      hxhost::clear_failures();
      if (!fired) {
        ASSERT_EQ(rc, 0);
        break;
      }
      ASSERT_EQ(rc, -HX_ENOMEM);
      EXPECT_EQ(Stat("ptable_alloc_fails"), fails + k + 1);
      ExpectUnchanged(before, Capture(hat_), "after -ENOMEM");
      ASSERT_LT(k, 100u);
    }
    // Two allocations per table: its struct htable and its page.
    EXPECT_EQ(k, 2 * new_tables);
    EXPECT_EQ(htable_hat_nr_tables(hat_), before.nr_tables + new_tables);
    EXPECT_TRUE(walker::find(top_, levels(), Va()).has_value());
    ASSERT_EQ(htable_hat_unmap(hat_, 0, user_end()), 0);
    EXPECT_EQ(htable_hat_nr_tables(hat_), 1u);
  }
  EXPECT_TRUE(hxhost::flushes().empty());
}

TEST_P(MapTest, MapFailsWhenEveryAllocationFails) {
  for (unsigned kinds : {hxhost::kPageFamily, hxhost::kKmemFamily}) {
    HatState before = Capture(hat_);
    hxhost::fail_all(kinds);
    EXPECT_EQ(Map(Va(), Pa()), -HX_ENOMEM);
    hxhost::fail_all(0);
    ExpectUnchanged(before, Capture(hat_), kinds == hxhost::kPageFamily ? "pages" : "kmem");
  }
  EXPECT_EQ(Map(Va(), Pa()), 0);
}

INSTANTIATE_TEST_SUITE_P(Sizes, MapTest,
                         ::testing::Combine(::testing::Values(4u, 5u),
                                            ::testing::Values(k4K, k2M, k1G)),
                         MapParamName);

// ---- large leaves ----------------------------------------------------------------------

// MapTest's fixture, for 2M and 1G leaves only: what only a large leaf can do.
class LargeLeafTest : public MapTest {};

// before: one large leaf L
// unmap of any range that cuts L: -EINVAL, L intact, no shootdown
TEST_P(LargeLeafTest, UnmapCuttingLargeLeafFailsAndChangesNothing) {
  ASSERT_EQ(Map(Va(), Pa()), 0);
  htable_hat_cpu_enter(hat_, 1);
  HatState before = Capture(hat_);
  const struct {
    u64 va, len;
    const char *what;
  } cuts[] = {
      {Va() + k4K, k4K, "inside"},
      {Va(), size() - k4K, "head"},
      {Va() + k4K, size() - k4K, "tail"},
      {Va() - k4K, 2 * k4K, "across the start"},
      {Va() + size() - k4K, 2 * k4K, "across the end"},
      {Va() + size() / 2, size(), "from the middle on"},
  };
  for (const auto &c : cuts) {
    EXPECT_EQ(htable_hat_unmap(hat_, c.va, c.len), -HX_EINVAL) << c.what;
    ExpectUnchanged(before, Capture(hat_), c.what);
  }
  EXPECT_TRUE(hxhost::flushes().empty());
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
  HatState before = Capture(hat);
  EXPECT_EQ(htable_hat_map(hat, k1G, k1G, k1G, R), -HX_EOPNOTSUPP);
  ExpectUnchanged(before, Capture(hat), "1G without gbpages");
  EXPECT_EQ(htable_hat_map(hat, k1G, k1G, k2M, R), 0);
  hxhost::set_gbpages(1);
  EXPECT_EQ(htable_page_sizes(), k4K | k2M | k1G);
  EXPECT_EQ(htable_hat_map(hat, 2 * k1G, k1G, k1G, R), 0);
}

INSTANTIATE_TEST_SUITE_P(Levels, GbpagesTest, ::testing::Values(4u, 5u),
                         [](const auto &info) { return "L" + std::to_string(info.param); });

}  // namespace
}  // namespace htest
