// SPDX-License-Identifier: GPL-2.0
//
// The common fixture of the GoogleTest suites: every test starts from a reset
// shim and ends with no hx_warn(), no shim misuse and no leak (pages, kernel
// memory, tables_live, hats_live all back where they started).
#ifndef HTABLE_TESTS_HOST_FIXTURE_H
#define HTABLE_TESTS_HOST_FIXTURE_H

#include <gtest/gtest.h>

#include <cstring>
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

// Everything observable about a hat and the allocator, to check that a failed
// operation changed nothing.
struct HatState {
  walker::Walk walk;
  u64 nr_tables;
  u64 pages_live;
  u64 kmem_live;
  u64 tables_live;
};

inline HatState Capture(htable_hat *hat) {
  return HatState{walker::walk(htable_hat_top_pa(hat), htable_hat_levels(hat)),
                  htable_hat_nr_tables(hat), hxhost::pages_live(), hxhost::kmem_live(),
                  Stat("tables_live")};
}

// EXPECT that nothing changed between @before and @after.
inline void ExpectUnchanged(const HatState &before, const HatState &after, const std::string &what) {
  EXPECT_TRUE(after.walk.ok()) << what << "\n" << after.walk.error_text();
  EXPECT_TRUE(before.walk.leaves == after.walk.leaves) << what << ": leaves changed";
  EXPECT_TRUE(before.walk.tables == after.walk.tables) << what << ": tables changed";
  EXPECT_EQ(before.nr_tables, after.nr_tables) << what;
  EXPECT_EQ(before.pages_live, after.pages_live) << what;
  EXPECT_EQ(before.kmem_live, after.kmem_live) << what;
  EXPECT_EQ(before.tables_live, after.tables_live) << what;
}

class HtableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hxhost::reset();
    pages0_ = hxhost::pages_live();
    kmem0_ = hxhost::kmem_live();
    tables0_ = Stat("tables_live");
    hats0_ = Stat("hats_live");
  }

  void TearDown() override {
    hxhost::clear_failures();
    for (htable_hat *hat : hats_) {
      for (unsigned cpu = 0; cpu < hx_nr_cpu_ids(); cpu++) htable_hat_cpu_leave(hat, cpu);
      htable_hat_destroy(hat);
    }
    hats_.clear();
    EXPECT_EQ(hxhost::pages_live(), pages0_) << "leaked table pages";
    EXPECT_EQ(hxhost::kmem_live(), kmem0_) << "leaked kzalloc/kvzalloc/mutex memory";
    EXPECT_EQ(Stat("tables_live"), tables0_);
    EXPECT_EQ(Stat("hats_live"), hats0_);
    EXPECT_EQ(hxhost::warnings(), 0u) << Join(hxhost::warning_log());
    EXPECT_EQ(hxhost::shim_errors(), 0u) << Join(hxhost::shim_error_log());
  }

  // A hat destroyed by TearDown() unless the test destroys it with DestroyHat().
  htable_hat *NewHat(unsigned levels) {
    htable_hat *hat = nullptr;
    int rc = htable_hat_create(levels, &hat);
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
    htable_hat_destroy(hat);
  }

  static std::string Join(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &x : v) s += x + "\n";
    return s;
  }

  u64 pages0_ = 0, kmem0_ = 0, tables0_ = 0, hats0_ = 0;
  std::vector<htable_hat *> hats_;
};

}  // namespace htest

#endif  // HTABLE_TESTS_HOST_FIXTURE_H
