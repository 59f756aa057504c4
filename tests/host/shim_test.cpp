// SPDX-License-Identifier: GPL-2.0
//
// shim_host: the host shim itself.  Every other test trusts its leak counters,
// its failure injection and its misuse checks, so these are pinned down here.
#include "fixture.h"

namespace htest {
namespace {

// Tests that provoke misuse on purpose clear the record before the fixture's
// TearDown() checks it.
class ShimTest : public HtableTest {
 protected:
  void SetUp() override {
    HtableTest::SetUp();
    hxhost::set_quiet(true);
  }
  void TearDown() override {
    hxhost::set_quiet(false);
    HtableTest::TearDown();
  }

  u64 TakeShimErrors() {
    u64 n = hxhost::shim_errors();
    hxhost::reset();
    return n;
  }
};

// Record/cache: the fixture's baseline pages0_ is taken before the core
// makes its reserve, so the count is relative to a local baseline.
TEST_F(ShimTest, PagesAreZeroedAlignedAndCounted) {
  u64 pages0 = hxhost::pages_live();
  void *p = hx_alloc_pages(2, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<u64>(p) % (4 * k4K), 0u);
  EXPECT_EQ(hx_virt_to_phys(p), reinterpret_cast<u64>(p));
  EXPECT_EQ(hx_phys_to_virt(hx_virt_to_phys(p)), p);
  for (unsigned i = 0; i < 4 * k4K; i++) ASSERT_EQ(static_cast<unsigned char *>(p)[i], 0) << i;
  unsigned order = 0;
  EXPECT_TRUE(hxhost::is_live_page(static_cast<char *>(p) + 3 * k4K, &order));
  EXPECT_EQ(order, 2u);
  EXPECT_FALSE(hxhost::is_live_page(static_cast<char *>(p) + 4 * k4K));
  EXPECT_EQ(hxhost::pages_live(), pages0 + 1);
  hx_free_pages(p, 2);
  EXPECT_EQ(hxhost::pages_live(), pages0);
}

// fail_nth(kinds, n) lets n matching allocations through, fails the next one
// only, and ignores the other kinds.
TEST_F(ShimTest, FailNthFailsExactlyOnce) {
  hxhost::fail_nth_kmem(2);
  void *page = hx_alloc_pages(0, 0);  // not a kmem allocation: not counted
  void *a = hx_kzalloc(8);
  void *b = hx_kvzalloc(8);
  EXPECT_TRUE(hxhost::failure_pending());
  void *c = hx_kzalloc(8);  // the third kmem allocation fails
  void *d = hx_kzalloc(8);
  EXPECT_NE(page, nullptr);
  EXPECT_NE(a, nullptr);
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(c, nullptr);
  EXPECT_NE(d, nullptr);
  EXPECT_FALSE(hxhost::failure_pending());
  EXPECT_EQ(hxhost::injected_failures(), 1u);
  EXPECT_EQ(hxhost::last_failed_kind(), hxhost::kKzalloc);
  hx_kfree(a);
  hx_kvfree(b);
  hx_kfree(d);
  hx_free_pages(page, 0);
}

TEST_F(ShimTest, FailAllFailsUntilCleared) {
  hxhost::fail_all(hxhost::kPageFamily);
  EXPECT_EQ(hx_alloc_pages(0, 0), nullptr);
  EXPECT_EQ(hx_alloc_pages(1, 0), nullptr);
  void *k = hx_kzalloc(16);
  EXPECT_NE(k, nullptr);
  hxhost::fail_all(0);
  void *p = hx_alloc_pages(0, 0);
  EXPECT_NE(p, nullptr);
  hx_free_pages(p, 0);
  hx_kfree(k);
  EXPECT_EQ(hxhost::injected_failures(), 2u);
}

TEST_F(ShimTest, WrongFreesAreMisuse) {
  void *p = hx_alloc_pages(1, 0);
  hx_free_pages(p, 0);  // wrong order
  EXPECT_EQ(TakeShimErrors(), 1u);
  void *v = hx_kvzalloc(32);
  hx_kfree(v);  // kfree() of what kvzalloc() returned
  EXPECT_EQ(TakeShimErrors(), 1u);
  int on_stack = 0;
  hx_kfree(&on_stack);  // not an allocation at all
  EXPECT_EQ(TakeShimErrors(), 1u);
  hx_kfree(nullptr);
  hx_kvfree(nullptr);
  EXPECT_EQ(TakeShimErrors(), 0u);
}

TEST_F(ShimTest, MutexTracksItsOwner) {
  static hx_lock_key key;
  hx_mutex *m = hx_mutex_create("test", &key);
  ASSERT_NE(m, nullptr);
  hx_mutex_assert_held(m);
  EXPECT_EQ(TakeShimErrors(), 1u);
  hx_mutex_lock(m);
  hx_mutex_assert_held(m);
  EXPECT_EQ(hx_mutex_trylock(m), 0);
  std::thread([&] { EXPECT_EQ(hx_mutex_trylock(m), 0); }).join();
  hx_mutex_unlock(m);
  EXPECT_EQ(hx_mutex_trylock(m), 1);
  hx_mutex_unlock(m);
  EXPECT_EQ(TakeShimErrors(), 0u);
  hx_mutex_unlock(m);  // not held
  EXPECT_EQ(TakeShimErrors(), 1u);
  hx_mutex_destroy(m);
}

// Under a spinlock nothing may sleep: allocating (without NOWAIT), taking a
// mutex, cond_resched() and TLB flushes are reported.
TEST_F(ShimTest, SleepingUnderSpinlockIsMisuse) {
  static hx_lock_key key;
  hx_spinlock *l = hx_spin_lock_create("test", &key);
  ASSERT_NE(l, nullptr);
  hx_spin_lock(l);
  void *nowait = hx_alloc_pages(0, HX_ALLOC_NOWAIT);
  EXPECT_EQ(TakeShimErrors(), 0u);
  void *k = hx_kzalloc(8);
  hx_cond_resched();
  EXPECT_EQ(TakeShimErrors(), 2u);
  hx_spin_unlock(l);
  hx_cond_resched();
  EXPECT_EQ(TakeShimErrors(), 0u);
  hx_spin_lock_destroy(l);
  hx_free_pages(nowait, 0);
  hx_kfree(k);
}

TEST_F(ShimTest, FlushesAreRecorded) {
  unsigned long cpus = 0b101;
  hx_flush_tlb_range(&cpus, 0x2000, 0x400000, 3 * k4K);
  ASSERT_EQ(hxhost::flushes().size(), 1u);
  const hxhost::FlushCall &f = hxhost::flushes()[0];
  EXPECT_TRUE(f.has_cpu(0));
  EXPECT_FALSE(f.has_cpu(1));
  EXPECT_TRUE(f.has_cpu(2));
  EXPECT_FALSE(f.has_cpu(100));
  EXPECT_EQ(f.top_pa, 0x2000u);
  EXPECT_TRUE(f.covers(0x401000, k4K));
  EXPECT_FALSE(f.covers(0x402000, 2 * k4K));
  hxhost::clear_flushes();
  EXPECT_TRUE(hxhost::flushes().empty());
}

// The flush hook sees each flush, after it was recorded; reset() removes it.
TEST_F(ShimTest, FlushHookSeesEachFlush) {
  unsigned long cpus = 0b10;
  std::vector<std::uint64_t> seen;
  hxhost::set_flush_hook([&](const hxhost::FlushCall &c) {
    seen.push_back(c.va);
    EXPECT_EQ(hxhost::flushes().back().va, c.va);
  });
  hx_flush_tlb_range(&cpus, 0x2000, 0x400000, k4K);
  hx_flush_tlb_range(&cpus, 0x2000, 0x800000, k4K);
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{0x400000, 0x800000}));
  hxhost::reset();
  hx_flush_tlb_range(&cpus, 0x2000, 0xc00000, k4K);
  EXPECT_EQ(seen.size(), 2u);
}

TEST_F(ShimTest, CpuFactsAreConfigurable) {
  EXPECT_EQ(hx_paging_levels(), 5u);
  EXPECT_EQ(hx_cpu_has_gbpages(), 1);
  EXPECT_EQ(hx_cpu_has_nx(), 1);
  EXPECT_EQ(hx_nr_cpu_ids(), 4u);
  EXPECT_EQ(hx_smp_processor_id(), 0u);
  EXPECT_EQ(hx_cpumask_bytes(), sizeof(unsigned long));
  hxhost::set_paging_levels(4);
  hxhost::set_gbpages(0);
  hxhost::set_nx(0);
  hxhost::set_processor_id(3);
  EXPECT_EQ(hx_paging_levels(), 4u);
  EXPECT_EQ(hx_cpu_has_gbpages(), 0);
  EXPECT_EQ(hx_cpu_has_nx(), 0);
  EXPECT_EQ(hx_smp_processor_id(), 3u);
  hx_warn("file.cpp", 7, "a test warning");
  EXPECT_EQ(hxhost::warnings(), 1u);
  EXPECT_EQ(hxhost::warning_log()[0], "file.cpp:7: a test warning");
  hxhost::reset();  // warnings back to 0 for TearDown
  EXPECT_EQ(hx_paging_levels(), 5u);
}

}  // namespace
}  // namespace htest
