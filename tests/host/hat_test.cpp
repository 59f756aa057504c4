// SPDX-License-Identifier: GPL-2.0
//
// htable_hat: hats as a whole — creation and destruction, the top table and
// the kernel half, TLB shootdowns, the per-hat hash under many tables, the
// statistics, and concurrent callers.
//
// Expectations that changed with the record and the table cache say why in
// a comment starting "Record/cache:".
#include <cstdlib>
#include <memory>
#include <thread>

#include "fixture.h"

namespace htest {
namespace {

using walker::size_of;

class HatTest : public HtableTest, public ::testing::WithParamInterface<unsigned> {
 protected:
  unsigned levels() const { return GetParam(); }
  u64 user_end() const { return htable_user_va_end(levels()); }
  // A 1 GiB-aligned VA well inside the user half, above 2^47 with 5 levels.
  u64 Base() const { return levels() == 5 ? 0x0012340000000000ull : 0x0000700000000000ull; }
};

std::string LevelsName(const ::testing::TestParamInfo<unsigned> &info) {
  return "L" + std::to_string(info.param);
}

// ---- create / destroy ----------------------------------------------------------------

TEST_F(HtableTest, CreateRejectsBadLevels) {
  for (unsigned levels : {0u, 1u, 3u, 6u}) {
    htable_hat *hat = nullptr;
    EXPECT_EQ(htable_hat_create(levels, &hat), -HX_EINVAL) << levels;
    EXPECT_EQ(hat, nullptr);
  }
  // The lower canonical half less its last page.
  EXPECT_EQ(htable_user_va_end(4), (1ull << 47) - k4K);
  EXPECT_EQ(htable_user_va_end(5), (1ull << 56) - k4K);
}

// The top table is the first page of an 8 KiB-aligned pair (see Hat::Create):
// with PTI, a CR3 with bit 12 set means "user half of a pair".
TEST_P(HatTest, TopTableIsFirstPageOfAlignedPair) {
  htable_hat *hat = NewHat(levels());
  EXPECT_EQ(htable_hat_levels(hat), levels());
  u64 top = htable_hat_top_pa(hat);
  EXPECT_EQ(top % (2 * k4K), 0u);
  unsigned order = 99;
  EXPECT_TRUE(hxhost::is_live_page(reinterpret_cast<void *>(top), &order));
  EXPECT_EQ(order, 1u);
  EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
  walker::Walk w = walker::walk(top, levels());
  EXPECT_TRUE(w.ok()) << w.error_text();
  EXPECT_TRUE(w.leaves.empty());
}

// Fail the k-th allocation of create for k = 0, 1, ...: -ENOMEM, no leak,
// hats_live unchanged, until create no longer allocates that much.  Both a
// normal hat and a copied-top one (whose top level is kernel memory).
// Record/cache: create allocates a scratch CPU mask for TLB flushes too.
TEST_P(HatTest, CreateFailsCleanlyAtEveryAllocation) {
  for (hx_u32 flags : {0u, HTABLE_HAT_COPIED_TOP}) {
    SCOPED_TRACE(flags ? "copied top" : "normal top");
    u64 hats = Stat("hats_live");
    unsigned k = 0;
    for (;; k++) {
      SCOPED_TRACE("failing allocation " + std::to_string(k));
      u64 pages = hxhost::pages_live(), kmem = hxhost::kmem_live(), tables = Stat("tables_live");
      htable_hat *hat = nullptr;
      hxhost::fail_nth(hxhost::kAnyAlloc, k);
      int rc = htable_hat_create_flags(levels(), flags, &hat);
      bool fired = !hxhost::failure_pending();
      hxhost::clear_failures();
      if (!fired) {
        ASSERT_EQ(rc, 0);
        EXPECT_EQ(Stat("hats_live"), hats + 1);
        EXPECT_EQ(htable_hat_copied_top(hat), flags ? 1 : 0);
        EXPECT_EQ(htable_hat_check(hat), 0);
        htable_hat_destroy(hat);
        break;
      }
      EXPECT_EQ(rc, -HX_ENOMEM);
      EXPECT_EQ(hat, nullptr);
      EXPECT_EQ(hxhost::pages_live(), pages);
      EXPECT_EQ(hxhost::kmem_live(), kmem);
      EXPECT_EQ(Stat("hats_live"), hats);
      EXPECT_EQ(Stat("tables_live"), tables);
      ASSERT_LT(k, 50u);
    }
    // The hat, its lock, its hash, its CPU set, the flush mask, the top's
    // htable and its page (or, copied, its entries).
    EXPECT_EQ(k, 7u);
    // The same through the core's own hook, which sees every allocation
    // but the lock's (a kmalloc inside mutex_init's wrapper).
    for (k = 0;; k++) {
      SCOPED_TRACE("core hook: failing from allocation " + std::to_string(k));
      u64 pages = hxhost::pages_live(), kmem = hxhost::kmem_live();
      htable_hat *hat = nullptr;
      htable_test_fail_allocs(k, ~0ull);
      int rc = htable_hat_create_flags(levels(), flags, &hat);
      htable_test_fail_allocs(0, 0);
      if (rc == 0) {
        htable_hat_destroy(hat);
        break;
      }
      EXPECT_EQ(rc, -HX_ENOMEM);
      EXPECT_EQ(hxhost::pages_live(), pages);
      EXPECT_EQ(hxhost::kmem_live(), kmem);
      ASSERT_LT(k, 50u);
    }
    EXPECT_EQ(k, 6u);
  }
  htable_hat *hat = nullptr;
  EXPECT_EQ(htable_hat_create_flags(levels(), 2, &hat), -HX_EINVAL) << "unknown flag";
  EXPECT_EQ(hat, nullptr);
}

// before: mappings of every size all over the user half
// after destroy: every table page, htable and the hat itself freed
TEST_P(HatTest, DestroyWithMappingsFreesEverything) {
  htable_hat *hat = NewHat(levels());
  u64 tables = Stat("tables_live");
  for (unsigned i = 0; i < 40; i++) {
    u64 va = Base() + i * 3 * k1G;
    ASSERT_EQ(htable_hat_map(hat, va, k1G, k1G, R), 0);
    ASSERT_EQ(htable_hat_map(hat, va + k1G + i * k2M, k2M, k2M, R | W), 0);
    ASSERT_EQ(htable_hat_map(hat, va + 2 * k1G + i * k4K, k4K, k4K, R | X), 0);
  }
  ASSERT_EQ(htable_hat_map(hat, 0, 0, k4K, R), 0);
  ASSERT_EQ(htable_hat_map(hat, user_end() - k4K, 0, k4K, R), 0);
  walker::Walk w = walker::walk(htable_hat_top_pa(hat), levels());
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(w.leaves.size(), 122u);
  EXPECT_EQ(w.tables.size(), htable_hat_nr_tables(hat));
  EXPECT_EQ(Stat("tables_live") - tables, htable_hat_nr_tables(hat) - 1);

  EXPECT_EQ(htable_hat_check(hat), 0);
  EXPECT_EQ(htable_hat_nr_extents(hat), 122u);
  ExpectPagesAccounted();

  // Record/cache: what is left after destroy is the core's own: the
  // reserve (refilled from the freed tables) and its locks.
  DestroyHat(hat);
  EXPECT_EQ(hxhost::pages_live(), pages0_ + htable_reserve_count());
  EXPECT_EQ(htable_reserve_count(), htable_reserve_target());
  EXPECT_EQ(hxhost::kmem_live(), kmem_core_);
  EXPECT_EQ(Stat("tables_live"), tables0_);
  EXPECT_EQ(Stat("hats_live"), hats0_);
  EXPECT_EQ(Stat("stealable"), 0u);
}

// ---- the kernel half ---------------------------------------------------------------------

// before: a fake live kernel top table whose entries 256..511 point at
// "kernel" tables with a known content
// after copy: entries 256..511 of the hat's top equal the source; 0..255 are
// the hat's own; nothing the core does, destroy included, writes or frees
// what the kernel entries point at
TEST_P(HatTest, CopyKernelHalfCopiesOnlyUpperEntries) {
  // Test-owned memory, unknown to the shim: freeing it would be a shim error.
  std::unique_ptr<u64, decltype(&std::free)> src_mem(static_cast<u64 *>(std::aligned_alloc(k4K, k4K)), std::free);
  std::unique_ptr<u64, decltype(&std::free)> kernel_mem(static_cast<u64 *>(std::aligned_alloc(k4K, k4K)), std::free);
  u64 *src = src_mem.get(), *kernel_table = kernel_mem.get();
  ASSERT_NE(src, nullptr);
  ASSERT_NE(kernel_table, nullptr);
  for (unsigned i = 0; i < 512; i++) kernel_table[i] = 0x5a5a5a5a00000000ull + i;
  for (unsigned i = 0; i < 512; i++) {
    if (i < 256)
      src[i] = 0xbad0000000000000ull | (u64{i} << 12) | walker::kP;  // must not be copied
    else if (i % 3 == 0)
      src[i] = 0;
    else
      src[i] = reinterpret_cast<u64>(kernel_table) | walker::kP | walker::kRW | (i % 3 == 2 ? walker::kG : 0);
  }

  htable_hat *hat = NewHat(levels());
  u64 top_pa = htable_hat_top_pa(hat);
  const u64 *top = walker::table_at(top_pa);
  ASSERT_EQ(htable_hat_map(hat, Base(), k2M, k2M, R), 0);  // a user entry to keep
  unsigned user_index = walker::index_of(Base(), levels() - 1);
  u64 user_entry = top[user_index];
  ASSERT_TRUE(user_entry & walker::kP);

  htable_hat_copy_kernel_half(hat, src);
  for (unsigned i = 0; i < 256; i++) EXPECT_EQ(top[i], i == user_index ? user_entry : 0) << i;
  for (unsigned i = 256; i < 512; i++) EXPECT_EQ(top[i], src[i]) << i;
  EXPECT_EQ(htable_hat_nr_tables(hat), levels() - 1u);

  // The core works on the user half only.
  htable_xlate x;
  EXPECT_EQ(htable_hat_translate(hat, 0xffff800000000000ull, &x), -HX_EINVAL);
  EXPECT_EQ(htable_hat_translate(hat, user_end(), &x), -HX_EINVAL);
  EXPECT_EQ(htable_hat_unmap(hat, user_end(), k4K), -HX_EINVAL);
  EXPECT_EQ(htable_hat_map(hat, walker::half_end(levels()), 0, k4K, R), -HX_EINVAL);
  ASSERT_EQ(htable_hat_unmap(hat, 0, user_end()), 0);
  EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
  for (unsigned i = 256; i < 512; i++) EXPECT_EQ(top[i], src[i]) << i;

  DestroyHat(hat);  // a free of kernel_table would show as a shim error
  for (unsigned i = 0; i < 512; i++) ASSERT_EQ(kernel_table[i], 0x5a5a5a5a00000000ull + i) << i;
}

// ---- TLB shootdowns -----------------------------------------------------------------------

// No CPU on the hat: nothing can cache its entries, so no flush is requested.
TEST_P(HatTest, UnmapWithNoCpuOnHatSendsNoShootdown) {
  htable_hat *hat = NewHat(levels());
  u64 shootdowns = Stat("shootdowns");
  ASSERT_EQ(htable_hat_map(hat, Base(), 0, k4K, R), 0);
  ASSERT_EQ(htable_hat_unmap(hat, Base(), k4K), 0);
  htable_hat_cpu_enter(hat, 1);
  htable_hat_cpu_leave(hat, 1);
  ASSERT_EQ(htable_hat_map(hat, Base(), 0, k2M, R), 0);
  ASSERT_EQ(htable_hat_unmap(hat, Base(), k2M), 0);
  EXPECT_TRUE(hxhost::flushes().empty());
  EXPECT_EQ(Stat("shootdowns"), shootdowns);
}

// CPUs 1 and 3 on the hat: one flush per unmap, to exactly those CPUs, for
// this hat's top, covering every leaf removed.  Maps never flush (they only
// fill empty entries), and an unmap that removes nothing does not either.
TEST_P(HatTest, UnmapShootsDownExactlyTheCpusOnTheHat) {
  htable_hat *hat = NewHat(levels());
  htable_hat *other = NewHat(levels());
  u64 top = htable_hat_top_pa(hat);
  htable_hat_cpu_enter(hat, 1);
  htable_hat_cpu_enter(hat, 3);
  htable_hat_cpu_enter(hat, 0);
  htable_hat_cpu_leave(hat, 0);

  const u64 leaves[][2] = {{Base(), k4K}, {Base() + 5 * k4K, k4K}, {Base() + k2M, k2M},
                           {Base() + k1G, k1G}, {Base() + 9 * k1G, k4K}};
  for (const auto &l : leaves) ASSERT_EQ(htable_hat_map(hat, l[0], 0, l[1], R), 0);
  EXPECT_TRUE(hxhost::flushes().empty()) << "map flushed";

  // Nothing mapped there: no flush.
  ASSERT_EQ(htable_hat_unmap(hat, Base() + 100 * k1G, k1G), 0);
  EXPECT_TRUE(hxhost::flushes().empty()) << "unmap of a hole flushed";
  // Another hat without CPUs: no flush.
  ASSERT_EQ(htable_hat_map(other, Base(), 0, k4K, R), 0);
  ASSERT_EQ(htable_hat_unmap(other, Base(), k4K), 0);
  EXPECT_TRUE(hxhost::flushes().empty()) << "a hat without CPUs flushed";

  u64 shootdowns = Stat("shootdowns"), pages = Stat("shootdown_pages");
  ASSERT_EQ(htable_hat_unmap(hat, Base(), 2 * k1G), 0);
  ASSERT_EQ(hxhost::flushes().size(), 1u);
  const hxhost::FlushCall &f = hxhost::flushes()[0];
  EXPECT_EQ(f.top_pa, top);
  for (unsigned cpu = 0; cpu < hx_nr_cpu_ids(); cpu++) EXPECT_EQ(f.has_cpu(cpu), cpu == 1 || cpu == 3) << cpu;
  EXPECT_EQ(f.cpus.size(), 1u);
  EXPECT_EQ(f.cpus[0], (1ul << 1) | (1ul << 3));
  for (unsigned i = 0; i < 4; i++) EXPECT_TRUE(f.covers(leaves[i][0], leaves[i][1])) << i;
  EXPECT_EQ(Stat("shootdowns"), shootdowns + 1);
  EXPECT_EQ(Stat("shootdown_pages"), pages + (f.len >> 12));

  // CPU 3 leaves: the next flush goes to CPU 1 only.
  hxhost::clear_flushes();
  htable_hat_cpu_leave(hat, 3);
  ASSERT_EQ(htable_hat_unmap(hat, Base() + 9 * k1G, k4K), 0);
  ASSERT_EQ(hxhost::flushes().size(), 1u);
  EXPECT_EQ(hxhost::flushes()[0].cpus[0], 1ul << 1);
  EXPECT_TRUE(hxhost::flushes()[0].covers(Base() + 9 * k1G, k4K));

  // Everyone gone: no more flushes.
  hxhost::clear_flushes();
  htable_hat_cpu_leave(hat, 1);
  ASSERT_EQ(htable_hat_map(hat, Base(), 0, k4K, R), 0);
  ASSERT_EQ(htable_hat_unmap(hat, Base(), k4K), 0);
  EXPECT_TRUE(hxhost::flushes().empty());
}

// A CPU's paging-structure cache may point into a table until the flush, so
// the tables an unmap empties are reused only after it.
// Record/cache: a freed table goes to the hat's cache first, then to the
// reserve, then back to the page allocator; none of that may happen before
// the flush.  At the flush (seen from a hook in the shim) the hat's cache
// and the reserve have not grown and no page was freed.  In the second
// round the cache and the reserve are full beforehand, so the pages are
// really freed: after the one flush.
TEST_P(HatTest, UnmapFreesTablesOnlyAfterTheFlush) {
  for (bool full : {false, true}) {
    SCOPED_TRACE(full ? "cache and reserve full" : "cache empty");
    htable_hat *hat = NewHat(levels());
    htable_hat_cpu_enter(hat, 2);
    // before: top -> ... -> PT with one 4K leaf, and a PD with one 2M leaf
    ASSERT_EQ(htable_hat_map(hat, Base(), 0, k4K, R), 0);
    ASSERT_EQ(htable_hat_map(hat, Base() + 5 * k1G, 0, k2M, R), 0);
    if (full) {
      // Twelve PTs mapped and unmapped elsewhere fill the cache.
      for (unsigned i = 0; i < 12; i++) ASSERT_EQ(htable_hat_map(hat, Base() + 20 * k1G + i * k2M, 0, k4K, R), 0);
      ASSERT_EQ(htable_hat_unmap(hat, Base() + 20 * k1G, k1G), 0);
      ASSERT_EQ(htable_hat_nr_cached(hat), 8u);
      ASSERT_EQ(htable_reserve_count(), htable_reserve_target());
    }
    u64 cached = htable_hat_nr_cached(hat), reserve = htable_reserve_count();
    u64 tables = htable_hat_nr_tables(hat);
    hxhost::clear_flushes();
    hxhost::record_events(true);
    unsigned hooked = 0;
    hxhost::set_flush_hook([&](const hxhost::FlushCall &) {
      hooked++;
      EXPECT_EQ(htable_hat_nr_cached(hat), cached) << "a table was cached before the flush";
      EXPECT_EQ(htable_reserve_count(), reserve) << "a table went to the reserve before the flush";
      for (const hxhost::Event &e : hxhost::events())
        EXPECT_NE(e.kind, hxhost::Event::kFreePage) << "a page was freed before the flush";
    });
    // after: top only; every other table freed after the one flush
    ASSERT_EQ(htable_hat_unmap(hat, Base(), 6 * k1G), 0);
    hxhost::set_flush_hook(nullptr);
    std::vector<hxhost::Event> ev = hxhost::events();
    hxhost::record_events(false);
    EXPECT_EQ(hooked, 1u);
    size_t flush_at = ev.size(), frees = 0;
    for (size_t i = 0; i < ev.size(); i++) {
      if (ev[i].kind == hxhost::Event::kFlush) {
        EXPECT_EQ(flush_at, ev.size()) << "more than one flush";
        flush_at = i;
      } else if (ev[i].kind == hxhost::Event::kFreePage) {
        EXPECT_LT(flush_at, i) << "table page " << std::hex << ev[i].addr << " freed before the flush";
        frees++;
      }
    }
    u64 freed = levels() - 1u + 1u;  // PDPT (+PML4), PD and PT, plus the second PD
    EXPECT_EQ(tables - htable_hat_nr_tables(hat), freed);
    EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
    if (full) {
      EXPECT_EQ(frees, freed);
      EXPECT_EQ(htable_hat_nr_cached(hat), 8u);
    } else {
      EXPECT_EQ(frees, 0u);
      EXPECT_EQ(htable_hat_nr_cached(hat), cached + freed);
    }
    EXPECT_EQ(htable_hat_check(hat), 0);
    ExpectPagesAccounted();
    DestroyHat(hat);
  }
}

// The walk of a range resumes at the start of each following table, not at
// the offset it started at in the first one.
// before: 4K leaves at pages 0 and 1 of three consecutive 2 MiB slots
// unmap [slot 0 + 4K, slot 2 + 8K): only page 0 of slot 0 is left
TEST_P(HatTest, UnmapFromMidTableReachesStartOfFollowingTables) {
  htable_hat *hat = NewHat(levels());
  for (unsigned slot = 0; slot < 3; slot++)
    for (unsigned page = 0; page < 2; page++)
      ASSERT_EQ(htable_hat_map(hat, Base() + slot * k2M + page * k4K, 0, k4K, R), 0);
  ASSERT_EQ(htable_hat_unmap(hat, Base() + k4K, 2 * k2M + k4K), 0);
  walker::Walk w = walker::walk(htable_hat_top_pa(hat), levels());
  ASSERT_TRUE(w.ok()) << w.error_text();
  ASSERT_EQ(w.leaves.size(), 1u);
  EXPECT_EQ(w.leaves[0].va, Base());
  // The same one level up: 2M leaves at slots 0 and 1 of three 1 GiB slots.
  for (unsigned slot = 0; slot < 3; slot++)
    for (unsigned page = 0; page < 2; page++)
      ASSERT_EQ(htable_hat_map(hat, Base() + 4 * k1G + slot * k1G + page * k2M, 0, k2M, R), 0);
  ASSERT_EQ(htable_hat_unmap(hat, Base() + 4 * k1G + k2M, 2 * k1G + k2M), 0);
  w = walker::walk(htable_hat_top_pa(hat), levels());
  ASSERT_TRUE(w.ok()) << w.error_text();
  ASSERT_EQ(w.leaves.size(), 2u);
  EXPECT_EQ(w.leaves[1].va, Base() + 4 * k1G);
}

// ---- the hash under many tables -------------------------------------------------------------

// 5000 pages 2 MiB apart: each needs its own level-0 table, so the hash grows
// from 64 buckets many times over.  Every table must stay findable.
TEST_P(HatTest, HashGrowsWithManyTables) {
  constexpr unsigned kPages = 5000;
  htable_hat *hat = NewHat(levels());
  u64 kv = hxhost::allocs_attempted(hxhost::kKvzalloc);
  for (unsigned i = 0; i < kPages; i++)
    ASSERT_EQ(htable_hat_map(hat, Base() + i * k2M, u64{i} << 12, k4K, R | W), 0) << i;
  EXPECT_GE(hxhost::allocs_attempted(hxhost::kKvzalloc) - kv, 6u) << "the hash did not grow";
  EXPECT_EQ(htable_hat_check(hat), 0);
  // top + one table per level above the PD + 10 PDs + 5000 PTs
  u64 expect = 1 + (levels() - 3) + (kPages + 511) / 512 + kPages;
  EXPECT_EQ(htable_hat_nr_tables(hat), expect);
  walker::Walk w = walker::walk(htable_hat_top_pa(hat), levels());
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(w.tables.size(), expect);
  EXPECT_EQ(w.leaves.size(), kPages);
  for (unsigned i = 0; i < kPages; i++) {
    htable_xlate x;
    ASSERT_EQ(htable_hat_translate(hat, Base() + i * k2M + 0x123, &x), 0) << i;
    ASSERT_EQ(x.pa, (u64{i} << 12) + 0x123) << i;
  }
  // Every odd page on its own, then the rest in one call.
  for (unsigned i = 1; i < kPages; i += 2) ASSERT_EQ(htable_hat_unmap(hat, Base() + i * k2M, k4K), 0) << i;
  EXPECT_EQ(htable_hat_nr_tables(hat), expect - kPages / 2);
  for (unsigned i = 0; i < kPages; i++) {
    htable_xlate x;
    ASSERT_EQ(htable_hat_translate(hat, Base() + i * k2M, &x), i % 2 ? -HX_ENOENT : 0) << i;
  }
  ASSERT_EQ(htable_hat_unmap(hat, Base(), kPages * k2M), 0);
  EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
  // Record/cache: the top, plus what the hat's cache and the reserve kept.
  EXPECT_EQ(htable_hat_nr_cached(hat), 8u);
  EXPECT_EQ(hxhost::pages_live(), pages0_ + 1 + 8 + htable_reserve_count());
  EXPECT_EQ(htable_hat_check(hat), 0);
}

// Growing the hash is an optimisation: when its allocation fails the hat
// keeps working with longer chains.
TEST_P(HatTest, HashGrowFailureIsHarmless) {
  htable_hat *hat = NewHat(levels());
  hxhost::fail_all(hxhost::kKvzalloc);
  for (unsigned i = 0; i < 600; i++) ASSERT_EQ(htable_hat_map(hat, Base() + i * k2M, 0, k4K, R), 0) << i;
  EXPECT_GT(hxhost::injected_failures(), 0u) << "no grow was attempted";
  hxhost::fail_all(0);
  for (unsigned i = 0; i < 600; i++) {
    htable_xlate x;
    ASSERT_EQ(htable_hat_translate(hat, Base() + i * k2M, &x), 0) << i;
  }
  walker::Walk w = walker::walk(htable_hat_top_pa(hat), levels());
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(w.leaves.size(), 600u);
  ASSERT_EQ(htable_hat_unmap(hat, Base(), 600 * k2M), 0);
  EXPECT_EQ(htable_hat_nr_tables(hat), 1u);
}

// ---- concurrency -------------------------------------------------------------------------------

// Four threads map, translate and unmap in disjoint 1 GiB regions of one hat:
// the hat lock must keep the tables consistent.
TEST_P(HatTest, ConcurrentCallersKeepTablesConsistent) {
  htable_hat *hat = NewHat(levels());
  std::vector<std::thread> threads;
  std::vector<int> errors(4, 0);
  for (unsigned t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      u64 region = Base() + t * k1G;
      for (unsigned round = 0; round < 20; round++) {
        for (unsigned i = 0; i < 64; i++)
          if (htable_hat_map(hat, region + i * (k2M + k4K), i * k4K, k4K, R) != 0) errors[t]++;
        for (unsigned i = 0; i < 64; i++) {
          htable_xlate x;
          if (htable_hat_translate(hat, region + i * (k2M + k4K), &x) != 0 || x.pa != i * k4K) errors[t]++;
        }
        if (round != 19 && htable_hat_unmap(hat, region, k1G) != 0) errors[t]++;
      }
    });
  }
  for (auto &th : threads) th.join();
  for (unsigned t = 0; t < 4; t++) EXPECT_EQ(errors[t], 0) << "thread " << t;
  walker::Walk w = walker::walk(htable_hat_top_pa(hat), levels());
  ASSERT_TRUE(w.ok()) << w.error_text();
  EXPECT_EQ(w.leaves.size(), 4u * 64);
  EXPECT_EQ(w.tables.size(), htable_hat_nr_tables(hat));
}

INSTANTIATE_TEST_SUITE_P(Levels, HatTest, ::testing::Values(4u, 5u), LevelsName);

// ---- statistics ------------------------------------------------------------------------------

TEST_F(HtableTest, StatsSnapshotNamesAndLimits) {
  htable_stat none[1] = {{"sentinel", 42}};
  unsigned n = htable_stats_snapshot(none, 0);
  EXPECT_STREQ(none[0].name, "sentinel") << "max 0 wrote an entry";
  ASSERT_GE(n, 2u);
  ASSERT_LE(n, 64u);

  std::vector<htable_stat> all(n + 1, htable_stat{"sentinel", 42});
  EXPECT_EQ(htable_stats_snapshot(all.data(), n), n);
  EXPECT_STREQ(all[n].name, "sentinel") << "wrote past max";
  std::set<std::string> names;
  for (unsigned i = 0; i < n; i++) {
    ASSERT_NE(all[i].name, nullptr);
    EXPECT_TRUE(names.insert(all[i].name).second) << "duplicate " << all[i].name;
  }
  // Record/cache: ptable_alloc_fails is alloc_fails now, and the reserve,
  // the cache, stealing, reloads, sharing and the hash have counters.
  for (const char *must :
       {"hats_live", "tables_live", "ptable_allocs", "ptable_frees", "alloc_fails", "cache_hits",
        "reserve", "reserve_target", "reserve_hits", "reserve_misses", "stealable", "steals",
        "steal_passes", "steal_scanned", "steal_second_chance", "reaps", "lookups", "lookup_probes",
        "maps", "unmaps", "protects", "reloads", "holes", "reload_failures", "demotions", "shares",
        "unshares", "shootdowns", "shootdown_pages", "invariant_failures", "jobs", "job_faults",
        "windows", "max_window_ns", "pinned_pages"})
    EXPECT_TRUE(names.count(must)) << must;

  std::vector<htable_stat> two(3, htable_stat{"sentinel", 42});
  EXPECT_EQ(htable_stats_snapshot(two.data(), 2), n);
  EXPECT_STREQ(two[2].name, "sentinel");
}

// Stats::refills (counted by Hat::htable_refill() every time an operation
// drops the hat lock to allocate tables) is readable through the snapshot,
// and so in debugfs: it once was not.
TEST_F(HtableTest, StatsSnapshotHasRefills) {
  htable_stat all[64];
  unsigned n = htable_stats_snapshot(all, 64);
  bool found = false;
  for (unsigned i = 0; i < n && i < 64; i++) found |= std::strcmp(all[i].name, "refills") == 0;
  EXPECT_TRUE(found);
  htable_hat *hat = NewHat(4);
  u64 refills = found ? Stat("refills") : 0;
  ASSERT_EQ(htable_hat_map(hat, 0x1000, 0, k4K, R), 0);
  if (found) {
    EXPECT_EQ(Stat("refills"), refills + 1);
  }
}

// Record/cache: tables an unmap frees go to the hat's cache (no page is
// freed then); destroy empties the cache into the reserve, which is full
// here, so the pages go back to the page allocator as before.
TEST_F(HtableTest, StatsCountHatsTablesAndOperations) {
  u64 hats = Stat("hats_live"), tables = Stat("tables_live"), maps = Stat("maps"),
      unmaps = Stat("unmaps"), allocs = Stat("ptable_allocs"), frees = Stat("ptable_frees"),
      hits = Stat("cache_hits");
  htable_hat *a = NewHat(4);
  htable_hat *b = NewHat(5);
  EXPECT_EQ(Stat("hats_live"), hats + 2);
  EXPECT_EQ(Stat("tables_live"), tables + 2);
  // before: two tops; after: 4-level 4K map adds PDPT, PD, PT; 5-level 2M adds PML4, PDPT, PD
  ASSERT_EQ(htable_hat_map(a, 0x1000, 0, k4K, R), 0);
  ASSERT_EQ(htable_hat_map(b, k2M, 0, k2M, R), 0);
  EXPECT_EQ(Stat("tables_live"), tables + 8);
  EXPECT_EQ(Stat("maps"), maps + 2);
  EXPECT_EQ(Stat("ptable_allocs"), allocs + 8);
  // Each map refilled its cache (lock dropped) and took 3 tables from it.
  EXPECT_EQ(Stat("cache_hits"), hits + 6);
  ASSERT_EQ(htable_hat_unmap(a, 0, k1G), 0);
  EXPECT_EQ(Stat("unmaps"), unmaps + 1);
  EXPECT_EQ(Stat("tables_live"), tables + 5);
  EXPECT_EQ(Stat("ptable_frees"), frees);
  EXPECT_EQ(htable_hat_nr_cached(a), 3u);
  // The same map again takes the cached tables: no allocation.
  ASSERT_EQ(htable_hat_map(a, 0x1000, 0, k4K, R), 0);
  EXPECT_EQ(Stat("ptable_allocs"), allocs + 8);
  EXPECT_EQ(Stat("cache_hits"), hits + 9);
  EXPECT_EQ(htable_hat_nr_cached(a), 0u);
  ASSERT_EQ(htable_hat_unmap(a, 0, k1G), 0);
  DestroyHat(a);
  DestroyHat(b);
  EXPECT_EQ(Stat("hats_live"), hats);
  EXPECT_EQ(Stat("tables_live"), tables);
  EXPECT_EQ(Stat("ptable_frees"), frees + 8);
}

TEST_F(HtableTest, ExternalStatsAddAndMax) {
  u64 jobs = Stat("jobs"), pinned = Stat("pinned_pages"), max = Stat("max_window_ns");
  htable_stat_add(HTABLE_STAT_JOBS, 3);
  EXPECT_EQ(Stat("jobs"), jobs + 3);
  htable_stat_add(HTABLE_STAT_PINNED_PAGES, 5);
  htable_stat_add(HTABLE_STAT_PINNED_PAGES, -5);
  EXPECT_EQ(Stat("pinned_pages"), pinned);
  htable_stat_add(HTABLE_STAT_MAX_WINDOW_NS, static_cast<hx_s64>(max + 1000));
  htable_stat_add(HTABLE_STAT_MAX_WINDOW_NS, 1);
  EXPECT_EQ(Stat("max_window_ns"), max + 1000);
}

}  // namespace
}  // namespace htest
