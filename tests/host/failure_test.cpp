// SPDX-License-Identifier: GPL-2.0
//
// Allocation failure at every allocation point of every operation.
//
// Each scenario builds its hats from scratch, then runs one operation with
// allocations failing, for k = 0, 1, ... until the operation no longer
// reaches the k-th allocation, in two ways:
//   - from k on: the core's own hook (htable_test_fail_allocs(k, ~0)), which
//     every allocation of the core goes through; the loop ends when the
//     operation succeeds;
//   - only the k-th: the shim's fail_nth(), which counts what the hook let
//     through; the loop ends when the failure no longer fires.
// and with the reserve at its target or empty.  -ENOMEM must leave every
// hat's record exactly as it was (translate, next_mapping) and its
// resident tables as well -- except that a failing refill may have stolen
// tables (a steal is always allowed: the record keeps the mappings) and that
// lock and share may leave leaves they made resident (the tables are a
// cache).  Either way every resident leaf agrees with the record and
// htable_hat_check() passes.  Success must give the operation's result.
#include <functional>

#include "fixture.h"

namespace htest {
namespace {

using walker::size_of;

struct Ctx {
  std::vector<htable_hat *> hats;
  u64 base;
  unsigned levels;
};

struct Scenario {
  const char *name;
  std::function<void(Ctx &)> setup;   // build the hats (no failure armed)
  std::function<int(Ctx &)> op;       // the operation under test
  std::function<void(Ctx &)> check;   // after success
  unsigned hats = 1;
  bool may_load = false;              // -ENOMEM may leave more leaves resident
  bool reserve_absorbs = false;       // with the reserve, no failure is fatal
};

enum class Mode { kFromK, kOnlyK };

class FailureTest : public HtableTest, public ::testing::WithParamInterface<unsigned> {
 protected:
  unsigned levels() const { return GetParam(); }
  u64 Base() const { return levels() == 5 ? 0x0012340000000000ull : 0x0000700000000000ull; }

  // Leaves of @a all in @b (by va and raw entry, A/D aside).
  static bool Subset(const std::vector<walker::Leaf> &a, const std::vector<walker::Leaf> &b) {
    const u64 ad = walker::kA | walker::kD;
    size_t j = 0;
    for (const auto &l : a) {
      while (j < b.size() && b[j].va < l.va) j++;
      if (j == b.size() || b[j].va != l.va || (b[j].raw & ~ad) != (l.raw & ~ad)) return false;
    }
    return true;
  }

  u64 CachedAndReserve(const Ctx &c) {
    u64 n = htable_reserve_count();
    for (htable_hat *h : c.hats) n += htable_hat_nr_cached(h);
    return n;
  }

  void Run(const Scenario &s) {
    for (bool empty_reserve : {false, true}) {
      for (Mode mode : {Mode::kFromK, Mode::kOnlyK}) {
        SCOPED_TRACE(std::string(s.name) + (mode == Mode::kFromK ? ", failing from k on" : ", failing the k-th") +
                     (empty_reserve ? ", no reserve" : ", reserve"));
        unsigned enomem = 0, k = 0;
        for (;; k++) {
          SCOPED_TRACE("k = " + std::to_string(k));
          htable_reserve_set(empty_reserve ? 0 : kTestReserve);
          Ctx c{{}, Base(), levels()};
          for (unsigned i = 0; i < s.hats; i++) c.hats.push_back(NewHat(levels()));
          s.setup(c);
          if (HasFatalFailure()) return;
          DrainCaches();
          std::vector<HatState> before;
          for (htable_hat *h : c.hats) before.push_back(CaptureHat(h));
          u64 pages = hxhost::pages_live() - CachedAndReserve(c);
          u64 steals = Stat("steals");
          if (mode == Mode::kFromK)
            htable_test_fail_allocs(k, ~0ull);
          else
            hxhost::fail_nth(hxhost::kAnyAlloc, k);
          int rc = s.op(c);
          bool fired = !hxhost::failure_pending();
          htable_test_fail_allocs(0, 0);
          hxhost::clear_failures();
          bool stole = Stat("steals") != steals;
          bool done = mode == Mode::kFromK ? rc == 0 : !fired;
          if (done) {
            EXPECT_EQ(rc, 0);
            s.check(c);
          } else if (rc == -HX_ENOMEM) {
            enomem++;
            for (size_t i = 0; i < c.hats.size(); i++) {
              SCOPED_TRACE("hat " + std::to_string(i));
              HatState after = CaptureHat(c.hats[i]);
              EXPECT_TRUE(after.walk.ok()) << after.walk.error_text();
              EXPECT_TRUE(before[i].record == after.record) << "the record changed";
              if (!stole && !s.may_load) {
                EXPECT_TRUE(before[i].walk.leaves == after.walk.leaves)
                    << "resident leaves changed:" << LeavesText(before[i].walk.leaves) << " ->"
                    << LeavesText(after.walk.leaves);
                EXPECT_TRUE(before[i].walk.tables == after.walk.tables) << "tables changed";
              } else if (!stole) {
                EXPECT_TRUE(Subset(before[i].walk.leaves, after.walk.leaves)) << "resident leaves went";
              } else if (!s.may_load) {
                EXPECT_TRUE(Subset(after.walk.leaves, before[i].walk.leaves)) << "leaves appeared";
              }
              ExpectResidentInRecord(c.hats[i]);
              EXPECT_EQ(htable_hat_check(c.hats[i]), 0);
            }
            if (!stole && !s.may_load) {
              EXPECT_EQ(hxhost::pages_live() - CachedAndReserve(c), pages) << "pages in use changed";
            }
          } else {
            // A single failure may be absorbed (the reserve, a steal, a
            // harmless hash grow) and the operation succeed.
            EXPECT_EQ(mode, Mode::kOnlyK) << "rc " << rc;
            EXPECT_EQ(rc, 0);
            s.check(c);
          }
          for (htable_hat *h : c.hats) DestroyHat(h);
          ExpectPagesAccounted();
          if (done || HasFatalFailure()) break;
          ASSERT_LT(k, 300u);
        }
        if (mode == Mode::kFromK && s.reserve_absorbs && !empty_reserve) {
          EXPECT_EQ(k, 0u) << "the reserve stands in for every failed allocation";
        } else if (mode == Mode::kFromK) {
          EXPECT_GT(k, 0u) << "the operation allocates";
          EXPECT_EQ(enomem, k) << "every failure before success is -ENOMEM";
        }
        RecordProperty(std::string(s.name) + (mode == Mode::kFromK ? "_from_k" : "_only_k") +
                           (empty_reserve ? "_noreserve" : ""),
                       std::to_string(k));
      }
    }
  }

  // Record [va, va + len) maps @pa with @attrs in leaves of @size, all resident.
  void ExpectMapped(htable_hat *hat, u64 va, u64 len, u64 pa, u64 size, hx_u32 attrs) {
    std::vector<MappingRun> r = Record(hat, va, va + len);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0] == (MappingRun{va, len, pa, attrs, walker::level_of_size(size), 0, 0})) << RunText(r[0]);
    EXPECT_EQ(htable_hat_check(hat), 0);
    ExpectResidentInRecord(hat);
  }
};

std::string LevelsName(const ::testing::TestParamInfo<unsigned> &info) {
  return "L" + std::to_string(info.param);
}

TEST_P(FailureTest, Map) {
  for (u64 size : {k4K, k2M, k1G}) {
    Run({("map " + SizeName(size)).c_str(),
         [=, this](Ctx &c) {  // a neighbour two levels up, so some tables exist
           unsigned d = std::min(walker::level_of_size(size) + 2, c.levels - 1);
           ASSERT_EQ(htable_hat_map(c.hats[0], c.base + size_of(d), 0, size, R), 0);
         },
         [=, this](Ctx &c) { return htable_hat_map(c.hats[0], c.base, size, size, R | W); },
         [=, this](Ctx &c) {
           ExpectMapped(c.hats[0], c.base, size, size, size, R | W);
           ExpectAllResident(c.hats[0], c.base, c.base + size);
         }});
  }
}

TEST_P(FailureTest, MapRange) {
  // 40 pages across two PTs: the second PT is needed half way.
  Run({"map_range contiguous",
       [](Ctx &) {},
       [this](Ctx &c) { return htable_hat_map_range(c.hats[0], c.base + 500 * k4K, 40 * k4K, k4K, R, 0x100000, nullptr); },
       [this](Ctx &c) {
         std::vector<MappingRun> r = Record(c.hats[0]);
         ASSERT_EQ(r.size(), 1u);
         EXPECT_EQ(r[0].len, 40 * k4K);
         EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
       }});
  static const hx_paddr_t pas[] = {0x9000, 0x2000, 0x7000, 0x1000, 0x3000, 0x8000};
  Run({"map_range array",
       [this](Ctx &c) { ASSERT_EQ(htable_hat_map(c.hats[0], c.base + k1G, 0, k4K, R), 0); },
       [this](Ctx &c) { return htable_hat_map_range(c.hats[0], c.base + 510 * k4K, 6 * k4K, k4K, R | X, 0, pas); },
       [this](Ctx &c) {
         for (unsigned i = 0; i < 6; i++) {
           htable_xlate x;
           ASSERT_EQ(htable_hat_translate(c.hats[0], c.base + (510 + i) * k4K, &x), 0);
           EXPECT_EQ(x.pa, pas[i]);
         }
         EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
       }});
  Run({"map_range 2M",
       [](Ctx &) {},
       [this](Ctx &c) { return htable_hat_map_range(c.hats[0], c.base + k1G - k2M, 3 * k2M, k2M, R, 0x40000000, nullptr); },
       [this](Ctx &c) { ExpectMapped(c.hats[0], c.base + k1G - k2M, 3 * k2M, 0x40000000, k2M, R); }});
}

TEST_P(FailureTest, UnmapAndProtectWithDemotion) {
  for (u64 size : {k2M, k1G}) {
    auto setup = [=, this](Ctx &c) {
      ASSERT_EQ(htable_hat_map(c.hats[0], c.base, 0x40000000, size, R | W), 0);
      ASSERT_EQ(htable_hat_map(c.hats[0], c.base + size, 0x1000, k4K, R), 0);
    };
    Run({("unmap cutting " + SizeName(size)).c_str(), setup,
         [=, this](Ctx &c) { return htable_hat_unmap(c.hats[0], c.base + k4K, 2 * k4K); },
         [=, this](Ctx &c) {
           std::vector<MappingRun> r = Record(c.hats[0], c.base, c.base + size);
           ASSERT_EQ(r.size(), 2u);
           EXPECT_TRUE(r[0] == (MappingRun{c.base, k4K, 0x40000000, R | W, 0, 0, 0})) << RunText(r[0]);
           EXPECT_EQ(r[1].va, c.base + 3 * k4K);
           EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
         }});
    Run({("protect cutting " + SizeName(size)).c_str(), setup,
         [=, this](Ctx &c) { return htable_hat_protect(c.hats[0], c.base + size - k4K, 2 * k4K, R); },
         [=, this](Ctx &c) {
           std::vector<MappingRun> r = Record(c.hats[0], c.base, c.base + size + k4K);
           ASSERT_EQ(r.size(), 3u);
           EXPECT_EQ(r[0].attrs, R | W);
           EXPECT_EQ(r[1].va, c.base + size - k4K);
           EXPECT_EQ(r[1].attrs, R);
           EXPECT_EQ(r[2].va, c.base + size);
           EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
         }});
  }
  Run({"protect middle of a range",
       [this](Ctx &c) { ASSERT_EQ(htable_hat_map_range(c.hats[0], c.base, 8 * k4K, k4K, R, 0x10000, nullptr), 0); },
       [this](Ctx &c) { return htable_hat_protect(c.hats[0], c.base + 2 * k4K, 3 * k4K, R | W); },
       [this](Ctx &c) {
         EXPECT_EQ(Record(c.hats[0]).size(), 3u);
         EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
       }});
}

TEST_P(FailureTest, LockAndFault) {
  auto setup = [this](Ctx &c) {
    ASSERT_EQ(htable_hat_map_range(c.hats[0], c.base, 4 * k4K, k4K, R, 0x10000, nullptr), 0);
    ASSERT_EQ(htable_hat_map_range(c.hats[0], c.base + k1G, 3 * k2M, k2M, R, 0x40000000, nullptr), 0);
    ASSERT_EQ(htable_hat_map(c.hats[0], c.base + 9 * k1G, 0x5000, k4K, R), 0);
    htable_hat_drop_tables(c.hats[0]);
  };
  // Whole extents (no split of the record needed) here; cut ones below.
  // Such a lock only needs tables, which the reserve provides.
  Run({"lock",
       setup,
       [this](Ctx &c) { return htable_hat_lock(c.hats[0], c.base, k1G + 3 * k2M, 1); },
       [this](Ctx &c) {
         ExpectAllResident(c.hats[0], c.base, c.base + k1G + 3 * k2M);
         for (const MappingRun &r : Record(c.hats[0], c.base, c.base + 2 * k1G)) EXPECT_EQ(r.locked, 1u);
         EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
       },
       1, true, true});
  // A range that cuts extents and meets pages locked before: the undo of
  // a failure unlocks only what this call locked.
  Run({"lock across a locked part",
       [](Ctx &c) {
         ASSERT_EQ(htable_hat_map_range(c.hats[0], c.base, 8 * k4K, k4K, R, 0x10000, nullptr), 0);
         ASSERT_EQ(htable_hat_lock(c.hats[0], c.base, 2 * k4K, 1), 0);
         ASSERT_EQ(htable_hat_map(c.hats[0], c.base + k1G, 0x5000, k4K, R), 0);
         htable_hat_drop_tables(c.hats[0]);
       },
       [](Ctx &c) { return htable_hat_lock(c.hats[0], c.base + k4K, k1G, 1); },
       [this](Ctx &c) {
         ExpectAllResident(c.hats[0], c.base, c.base + k1G + k4K);
         for (const MappingRun &r : Record(c.hats[0])) EXPECT_EQ(r.locked, r.va + r.len > c.base + k4K ? 1u : 0u);
         EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
       },
       1, true});
  Run({"fault",
       setup,
       [this](Ctx &c) { return htable_hat_fault(c.hats[0], c.base + 2 * k4K); },
       [this](Ctx &c) {
         EXPECT_TRUE(walker::find(TopOf(c.hats[0]), c.levels, c.base + 2 * k4K).has_value());
         EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
       },
       1, false, true});
}

TEST_P(FailureTest, Share) {
  for (unsigned level : {0u, 1u}) {
    Run({("share level " + std::to_string(level)).c_str(),
         [this](Ctx &c) {
           ASSERT_EQ(htable_hat_map_range(c.hats[0], c.base, 4 * k4K, k4K, R, 0x10000, nullptr), 0);
           ASSERT_EQ(htable_hat_map(c.hats[0], c.base + 7 * k2M, 0x5000, k4K, R), 0);
           ASSERT_EQ(htable_hat_map(c.hats[1], c.base + 3 * k1G, 0x6000, k4K, R), 0);
           htable_hat_drop_tables(c.hats[0]);  // src must reload what it shares
         },
         [=, this](Ctx &c) { return htable_hat_share(c.hats[1], c.hats[0], c.base, level); },
         [=, this](Ctx &c) {
           htable_xlate x;
           ASSERT_EQ(htable_hat_translate(c.hats[1], c.base + k4K, &x), 0);
           EXPECT_EQ(x.shared, 1u);
           EXPECT_EQ(x.pa, 0x11000u);
           walker::Options o;
           o.may_be_empty.insert({level, c.base});
           walker::Walk w = WalkHat(c.hats[1], o);
           EXPECT_TRUE(w.ok()) << w.error_text();
           EXPECT_GE(w.leaves.size(), 4u);
           EXPECT_EQ(htable_hat_check(c.hats[0]), 0);
           EXPECT_EQ(htable_hat_check(c.hats[1]), 0);
           ASSERT_EQ(htable_hat_unmap(c.hats[1], c.base, size_of(level + 1)), 0);  // unlinks
         },
         2, true});
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, FailureTest, ::testing::Values(4u, 5u), LevelsName);

// Lock failing part way must leave the locks as they were: extents locked
// before the call stay locked, and nothing stays locked when the undo
// cannot allocate either.  (Regression test: the undo unlocked the whole
// range, and did nothing when its spare record nodes could not be had.)
class LockFailureTest : public HtableTest {};

TEST_F(LockFailureTest, LockFailureKeepsLocks) {
  u64 va = 0x0000700000000000ull;
  // Pre-locked pages 0-3, then pages 4-7 not resident; lock 0-7 with the
  // first table allocation failing.
  htable_hat *hat = NewHat(4);
  ASSERT_EQ(htable_hat_map_range(hat, va, 4 * k4K, k4K, R, 0x10000, nullptr), 0);
  ASSERT_EQ(htable_hat_lock(hat, va, 4 * k4K, 1), 0);
  ASSERT_EQ(htable_hat_map_range(hat, va + k1G, 4 * k4K, k4K, R, 0x20000, nullptr), 0);
  htable_hat_drop_tables(hat);
  htable_reserve_set(0);
  DrainCaches();
  std::vector<MappingRun> before = Record(hat);
  hxhost::fail_all(hxhost::kPageFamily);
  EXPECT_EQ(htable_hat_lock(hat, va, k1G + 4 * k4K, 1), -HX_ENOMEM);
  hxhost::fail_all(0);
  std::vector<MappingRun> after = Record(hat);
  EXPECT_TRUE(before == after) << "pages 0-3 lost their lock: " << (after.empty() ? "" : RunText(after[0]));
  EXPECT_EQ(htable_hat_check(hat), 0);
  // A range that cuts extents, every allocation failing from the first
  // table on: the spare nodes for the undo cannot be had either.
  ASSERT_EQ(htable_hat_lock(hat, va, 4 * k4K, 0), 0);
  before = Record(hat);
  htable_test_fail_allocs(0, ~0ull);
  EXPECT_EQ(htable_hat_lock(hat, va + k1G + k4K, 2 * k4K, 1), -HX_ENOMEM);
  htable_test_fail_allocs(0, 0);
  after = Record(hat);
  EXPECT_TRUE(before == after) << "the range stayed locked after -ENOMEM";
  EXPECT_EQ(htable_hat_check(hat), 0);
}

// Unmapping, protecting or locking whole extents splits nothing, so it
// must allocate nothing and cannot fail: module/dev.c undoes a MAP made of
// several runs by unmapping the runs it mapped, then unpins their pages.
// (Regression test: those calls always reserved spare record nodes first,
// and a hat that had never split had none; the undo failed with -ENOMEM
// and left the runs mapped over unpinned pages.)
class WholeExtentTest : public HtableTest {};

TEST_F(WholeExtentTest, NeedsNoAllocation) {
  for (unsigned levels : {4u, 5u}) {
    SCOPED_TRACE("levels " + std::to_string(levels));
    const u64 va = 0x0000700000000000ull;
    htable_hat *hat = NewHat(levels);
    // Two runs as dev.c:map_pinned() makes them: 4 KiB leaves up to a
    // 2 MiB boundary, then a 2 MiB leaf.
    ASSERT_EQ(htable_hat_map_range(hat, va - 3 * k4K, 3 * k4K, k4K, R, 0x10000, nullptr), 0);
    ASSERT_EQ(htable_hat_map_range(hat, va, k2M, k2M, R, 0x40000000, nullptr), 0);
    htable_test_fail_allocs(0, ~0ull);
    hxhost::fail_all(hxhost::kAnyAlloc);
    EXPECT_EQ(htable_hat_protect(hat, va - 3 * k4K, 3 * k4K, R | W), 0);
    EXPECT_EQ(htable_hat_lock(hat, va, k2M, 0), 0);
    EXPECT_EQ(htable_hat_unmap(hat, va - 3 * k4K, 3 * k4K + k2M), 0);
    hxhost::fail_all(0);
    htable_test_fail_allocs(0, 0);
    EXPECT_TRUE(Record(hat).empty());
    EXPECT_EQ(htable_hat_check(hat), 0);
    DestroyHat(hat);
  }
}

}  // namespace
}  // namespace htest
