// SPDX-License-Identifier: GPL-2.0
//
// The common fixture of the GoogleTest suites.  Every test starts from a reset
// shim and a freshly initialised core (htable_core_init() with a small
// reserve, kTestReserve table pages, so that the steal LRU, the reserve and
// the share list are the test's own) and ends with no hx_warn(), no shim
// misuse and no leak:
//   - once the test's hats are destroyed, the only table pages left are
//     those of the reserve (htable_reserve_count(), at most its target),
//     nothing is left on the steal LRU, tables_live and hats_live are back;
//   - after htable_core_exit() every page and every byte of kernel memory
//     the core allocated is freed.
//
// Page accounting while a test runs (PagesAccounted()): every live page of
// the core is a table in use by a hat (nr_tables; a copied-top hat's top is
// kernel memory, not a page), a free table in a hat's cache (nr_cached), or
// a page of the reserve.
#ifndef HTABLE_TESTS_HOST_FIXTURE_H
#define HTABLE_TESTS_HOST_FIXTURE_H

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <string>
#include <vector>

#include "htable_api.h"
#include "shim_host.h"
#include "walker.h"

namespace htest {

using u64 = std::uint64_t;
using walker::k1G;
using walker::k2M;
using walker::k4K;

inline constexpr hx_u32 R = HTABLE_P_READ;
inline constexpr hx_u32 W = HTABLE_P_WRITE;
inline constexpr hx_u32 X = HTABLE_P_EXEC;

// The reserve most tests run with: small, so that tests can exhaust it.
inline constexpr hx_u32 kTestReserve = 8;

// One counter of htable_stats_snapshot() by name.
inline u64 Stat(const char *name) {
  htable_stat s[64];
  unsigned n = htable_stats_snapshot(s, 64);
  for (unsigned i = 0; i < n && i < 64; i++)
    if (std::strcmp(s[i].name, name) == 0) return s[i].value;
  ADD_FAILURE() << "no counter named " << name;
  return 0;
}

inline std::string SizeName(u64 size) {
  return size == k4K ? "4K" : size == k2M ? "2M" : size == k1G ? "1G" : std::to_string(size);
}

// ---- the record as the API reports it ------------------------------------------------

struct MappingRun {
  u64 va, len, pa;
  hx_u32 attrs, level, locked, shared;
  bool operator==(const MappingRun &o) const {
    return va == o.va && len == o.len && pa == o.pa && attrs == o.attrs && level == o.level &&
           locked == o.locked && shared == o.shared;
  }
};

inline std::string RunText(const MappingRun &m) {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "[%#llx +%#llx) pa %#llx attrs %#x level %u%s%s",
                (unsigned long long)m.va, (unsigned long long)m.len, (unsigned long long)m.pa,
                m.attrs, m.level, m.locked ? " locked" : "", m.shared ? " shared" : "");
  return buf;
}

// Every mapping of [lo, hi) from htable_hat_next_mapping(), adjacent pieces
// that continue each other (same attributes, contiguous pa) merged: how the
// record happens to be split into extents is not observable behaviour.
inline std::vector<MappingRun> Record(htable_hat *hat, u64 lo = 0, u64 hi = ~0ull) {
  std::vector<MappingRun> out;
  u64 end = std::min<u64>(hi, htable_user_va_end(htable_hat_levels(hat)));
  for (u64 va = lo; va < end;) {
    htable_mapping m;
    int rc = htable_hat_next_mapping(hat, va, end, &m);
    if (rc == -HX_ENOENT) break;
    if (rc != 0 || m.len == 0 || m.va < va) {
      ADD_FAILURE() << "next_mapping(" << std::hex << va << ") returned " << std::dec << rc;
      break;
    }
    MappingRun r{m.va, m.len, m.pa, m.attrs, m.level, m.locked, m.shared};
    if (!out.empty()) {
      MappingRun &p = out.back();
      if (p.va + p.len == r.va && p.attrs == r.attrs && p.level == r.level && p.locked == r.locked &&
          p.shared == r.shared && !r.shared && p.pa + p.len == r.pa) {
        p.len += r.len;
        va = m.va + m.len;
        continue;
      }
    }
    out.push_back(r);
    va = m.va + m.len;
  }
  return out;
}

// ---- walking a hat -----------------------------------------------------------------

// The top table to walk: the real one, or for a copied-top hat a page that
// htable_hat_load_top() filled, as a CPU's own top table would be.
class TopView {
 public:
  TopView() = default;
  TopView(const TopView &) = delete;
  TopView &operator=(const TopView &) = delete;
  ~TopView() {
    if (page_) hx_free_pages(page_, 1);
  }
  u64 Of(htable_hat *hat) {
    if (!htable_hat_copied_top(hat)) return htable_hat_top_pa(hat);
    if (!page_) page_ = hx_alloc_pages(1, 0);  // an 8 KiB-aligned pair, like a real top
    std::memset(page_, 0, 2 * k4K);
    htable_hat_load_top(hat, page_);
    return reinterpret_cast<u64>(page_);
  }
  bool has_page() const { return page_ != nullptr; }

 private:
  void *page_ = nullptr;
};

// ---- state capture --------------------------------------------------------------------

// Everything observable about a hat and the allocator, to check that a failed
// operation changed nothing.
struct HatState {
  walker::Walk walk;
  std::vector<MappingRun> record;
  u64 nr_tables;
  u64 nr_cached;
  u64 pages_live;
  u64 kmem_live;
  u64 tables_live;
  u64 reserve;
};

inline HatState Capture(htable_hat *hat, TopView *view, const walker::Options &opt = walker::Options()) {
  HatState s{walker::walk(view->Of(hat), htable_hat_levels(hat), 0, ~0ull, opt),
             Record(hat),
             htable_hat_nr_tables(hat),
             htable_hat_nr_cached(hat),
             hxhost::pages_live(),
             hxhost::kmem_live(),
             Stat("tables_live"),
             htable_reserve_count()};
  return s;
}

inline std::string LeavesText(const std::vector<walker::Leaf> &v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 8; i++) {
    char buf[100];
    std::snprintf(buf, sizeof(buf), " %#llx/%#llx", (unsigned long long)v[i].va, (unsigned long long)v[i].size);
    s += buf;
  }
  if (v.size() > 8) s += " ...";
  return s;
}

// EXPECT that the record and the resident tables are as they were: what
// translate, next_mapping and the MMU see.  Allocation counts are not
// compared (see ExpectUnchanged()).
inline void ExpectSameMappings(const HatState &before, const HatState &after, const std::string &what) {
  EXPECT_TRUE(after.walk.ok()) << what << "\n" << after.walk.error_text();
  EXPECT_TRUE(before.record == after.record) << what << ": the record changed";
  EXPECT_TRUE(before.walk.leaves == after.walk.leaves)
      << what << ": resident leaves changed:" << LeavesText(before.walk.leaves) << " ->"
      << LeavesText(after.walk.leaves);
  EXPECT_TRUE(before.walk.tables == after.walk.tables) << what << ": tables changed";
  EXPECT_EQ(before.nr_tables, after.nr_tables) << what;
  EXPECT_EQ(before.tables_live, after.tables_live) << what;
}

// EXPECT that nothing changed at all, page and memory counts included: for
// operations refused before they allocate anything.
inline void ExpectUnchanged(const HatState &before, const HatState &after, const std::string &what) {
  ExpectSameMappings(before, after, what);
  EXPECT_EQ(before.nr_cached, after.nr_cached) << what;
  EXPECT_EQ(before.pages_live, after.pages_live) << what;
  EXPECT_EQ(before.kmem_live, after.kmem_live) << what;
  EXPECT_EQ(before.reserve, after.reserve) << what;
}

// For -ENOMEM: the mappings as before, and the pages as before except for
// free ones that moved between the hat's cache, the reserve and the page
// allocator (a refill may leave what it got in the cache).
inline void ExpectUnchangedButCache(const HatState &before, const HatState &after, const std::string &what) {
  ExpectSameMappings(before, after, what);
  EXPECT_EQ(before.pages_live - before.nr_cached - before.reserve,
            after.pages_live - after.nr_cached - after.reserve)
      << what << ": pages in use changed";
}

// ---- the fixture ---------------------------------------------------------------------------

class HtableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hxhost::reset();
    pages0_ = hxhost::pages_live();
    kmem0_ = hxhost::kmem_live();
    tables0_ = Stat("tables_live");
    hats0_ = Stat("hats_live");
    ASSERT_EQ(htable_core_init(Reserve()), 0);
    core_up_ = true;
    ASSERT_EQ(htable_reserve_count(), Reserve());
    ASSERT_EQ(htable_reserve_target(), Reserve());
    ASSERT_EQ(hxhost::pages_live(), pages0_ + Reserve()) << "the reserve is made of pages";
    kmem_core_ = hxhost::kmem_live();
  }

  void TearDown() override {
    hxhost::clear_failures();
    htable_test_fail_allocs(0, 0);
    for (htable_hat *hat : hats_) {
      for (unsigned cpu = 0; cpu < hx_nr_cpu_ids(); cpu++) htable_hat_cpu_leave(hat, cpu);
      htable_hat_destroy(hat);
    }
    hats_.clear();
    if (view_) {
      if (view_->has_page()) pages0_--;
      view_.reset();
    }
    if (core_up_) {
      // With the hats gone only the reserve holds pages.
      EXPECT_LE(htable_reserve_count(), htable_reserve_target());
      EXPECT_EQ(hxhost::pages_live(), pages0_ + htable_reserve_count()) << "leaked table pages";
      EXPECT_EQ(Stat("stealable"), 0u) << "tables left on the steal LRU";
      htable_core_exit();
      core_up_ = false;
    }
    EXPECT_EQ(hxhost::pages_live(), pages0_) << "pages left after htable_core_exit()";
    EXPECT_EQ(hxhost::kmem_live(), kmem0_) << "leaked kzalloc/kvzalloc/mutex memory";
    EXPECT_EQ(Stat("tables_live"), tables0_);
    EXPECT_EQ(Stat("hats_live"), hats0_);
    EXPECT_EQ(hxhost::warnings(), 0u) << Join(hxhost::warning_log());
    EXPECT_EQ(hxhost::shim_errors(), 0u) << Join(hxhost::shim_error_log());
  }

  // The reserve this fixture starts the core with.
  virtual hx_u32 Reserve() const { return kTestReserve; }

  // A hat destroyed by TearDown() unless the test destroys it with DestroyHat().
  htable_hat *NewHat(unsigned levels, hx_u32 flags = 0) {
    htable_hat *hat = nullptr;
    int rc = htable_hat_create_flags(levels, flags, &hat);
    if (rc != 0 || !hat) throw std::runtime_error("htable_hat_create failed: " + std::to_string(rc));
    hats_.push_back(hat);
    return hat;
  }

  void DestroyHat(htable_hat *hat) {
    for (size_t i = 0; i < hats_.size(); i++) {
      if (hats_[i] == hat) {
        hats_.erase(hats_.begin() + static_cast<long>(i));
        break;
      }
    }
    for (unsigned cpu = 0; cpu < hx_nr_cpu_ids(); cpu++) htable_hat_cpu_leave(hat, cpu);
    htable_hat_destroy(hat);
  }

  // The top table of @hat as the MMU would see it (see TopView).
  u64 TopOf(htable_hat *hat) {
    if (htable_hat_copied_top(hat) && !view_) {
      view_ = std::make_unique<TopView>();
      view_->Of(hat);
      pages0_++;  // the view's page is the test's, not the core's
    }
    return htable_hat_copied_top(hat) ? view_->Of(hat) : htable_hat_top_pa(hat);
  }
  walker::Walk WalkHat(htable_hat *hat, const walker::Options &opt = walker::Options()) {
    return walker::walk(TopOf(hat), htable_hat_levels(hat), 0, ~0ull, opt);
  }
  HatState CaptureHat(htable_hat *hat, const walker::Options &opt = walker::Options()) {
    TopOf(hat);  // create the view first: its page is not part of the state
    static TopView plain;
    return Capture(hat, htable_hat_copied_top(hat) ? view_.get() : &plain, opt);
  }

  // Resident ⊆ record: every leaf the MMU would find in @hat's tables is
  // what translate says @va maps to (the entry htable_pte_make_leaf() makes
  // for the record's pa and attributes; A and D aside).  In a shared range
  // translate answers with the source's record, which is what is linked.
  void ExpectResidentInRecord(htable_hat *hat, const walker::Options &opt = walker::Options(),
                              const std::string &what = "") {
    walker::Walk w = WalkHat(hat, opt);
    EXPECT_TRUE(w.ok()) << what << "\n" << w.error_text();
    for (const walker::Leaf &l : w.leaves) {
      htable_xlate x;
      int rc = htable_hat_translate(hat, l.va, &x);
      ASSERT_EQ(rc, 0) << what << ": resident leaf at " << std::hex << l.va << " is not in the record";
      EXPECT_EQ(x.level, l.level) << what << std::hex << " at " << l.va;
      EXPECT_EQ(x.pa, l.pa) << what << std::hex << " at " << l.va;
      const u64 ad = walker::kA | walker::kD;
      EXPECT_EQ(l.raw & ~ad, htable_pte_make_leaf(x.pa, x.level, x.prot) & ~ad)
          << what << std::hex << " at " << l.va;
    }
  }

  // Every leaf of the record in [lo, hi) (shared ranges aside) is resident,
  // as the record says.
  void ExpectAllResident(htable_hat *hat, u64 lo, u64 hi, const std::string &what = "") {
    u64 top = TopOf(hat);
    unsigned levels = htable_hat_levels(hat);
    for (const MappingRun &r : Record(hat, lo, hi)) {
      if (r.shared) continue;
      u64 size = walker::size_of(r.level);
      for (u64 a = std::max(lo, r.va) & ~(size - 1); a < std::min(hi, r.va + r.len); a += size) {
        auto leaf = walker::find(top, levels, a);
        ASSERT_TRUE(leaf.has_value()) << what << ": " << std::hex << a << " not resident";
        EXPECT_EQ(leaf->level, r.level) << what << std::hex << " at " << a;
        EXPECT_EQ(leaf->pa, r.pa + (a - r.va)) << what << std::hex << " at " << a;
      }
    }
  }

  // Pages the core holds, from its own counts: tables in use, cached
  // tables, the reserve (hats that are not the test's, e.g. destroyed but
  // still shared, are not counted: don't call it then).
  u64 PagesAccounted() const {
    u64 n = htable_reserve_count();
    for (htable_hat *hat : hats_)
      n += htable_hat_nr_tables(hat) - (htable_hat_copied_top(hat) ? 1 : 0) + htable_hat_nr_cached(hat);
    return n;
  }
  void ExpectPagesAccounted(const std::string &what = "") {
    EXPECT_EQ(hxhost::pages_live() - pages0_, PagesAccounted())
        << what << ": pages live vs tables + cached + reserve";
  }

  // Give every cached table back (they are the first thing htable_reap()
  // takes): afterwards the hats' caches are empty.
  void DrainCaches() {
    u64 cached = 0;
    for (htable_hat *hat : hats_) cached += htable_hat_nr_cached(hat);
    if (cached) {
      EXPECT_EQ(htable_reap(cached), cached);
    }
    for (htable_hat *hat : hats_) EXPECT_EQ(htable_hat_nr_cached(hat), 0u);
  }

  static std::string Join(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &x : v) s += x + "\n";
    return s;
  }

  // Before htable_core_init(); kmem_core_: after it (its locks, the reserve's htables).
  u64 pages0_ = 0, kmem0_ = 0, tables0_ = 0, hats0_ = 0, kmem_core_ = 0;
  bool core_up_ = false;
  std::vector<htable_hat *> hats_;
  std::unique_ptr<TopView> view_;
};

}  // namespace htest

#endif  // HTABLE_TESTS_HOST_FIXTURE_H
