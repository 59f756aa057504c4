// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_reserve — the pool of table pages kept for fault reloads.
 *
 * A table comes from the hat's cache, refilled with the hat lock dropped
 * from: the page allocator, else (reloads only) the reserve, else a steal
 * of one table into the reserve and the reserve again -- a plain map only
 * while the reserve stays above half its target.  The page allocator is
 * made to fail with htable_test_fail_allocs().  The reserve is topped up
 * when a hat is created or the target changes, never in reclaim.
 */
#include <kunit/test.h>
#include <linux/mm.h>

#include "test_util.h"

struct reserve_ctx {
	u32 target;		/* the module's target, put back at exit */
};

static int reserve_init(struct kunit *test)
{
	struct reserve_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, c);
	c->target = htable_reserve_target();
	test->priv = c;
	return 0;
}

static void reserve_exit(struct kunit *test)
{
	struct reserve_ctx *c = test->priv;

	htable_test_fail_allocs(0, 0);
	if (c)
		htable_reserve_set(c->target);
}

/* A 4 KiB leaf every 2 MiB from @base: each needs a level-0 table of its own. */
static u64 spread_va(u64 base, unsigned int i)
{
	return base + (u64)i * SZ_2M_;
}

/* Empty the hats' caches (cached tables are the front of the steal LRU). */
static void drain_caches(struct htable_hat *hat)
{
	htable_reap(htable_hat_nr_cached(hat));
}

/* The module filled the reserve at load; nothing in the suites drains it for good. */
static void htable_reserve_full_after_load(struct kunit *test)
{
	KUNIT_EXPECT_GT(test, htable_reserve_target(), 0u);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), (u64)htable_reserve_target());
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "reserve"), htable_reserve_count());
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "reserve_target"), (u64)htable_reserve_target());
}

/* set(target / 2): the excess goes back ; set(target): grows back from the allocator */
static void htable_reserve_set_shrinks_and_grows(struct kunit *test)
{
	struct reserve_ctx *c = test->priv;
	u64 frees = hkt_stat(test, "ptable_frees");
	u64 allocs;

	htable_reserve_set(c->target / 2);
	KUNIT_EXPECT_EQ(test, htable_reserve_target(), c->target / 2);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), (u64)(c->target / 2));
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "ptable_frees") - frees,
			(u64)(c->target - c->target / 2));

	allocs = hkt_stat(test, "ptable_allocs");
	htable_reserve_set(c->target);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), (u64)c->target);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "ptable_allocs") - allocs,
			(u64)(c->target - c->target / 2));

	htable_reserve_set(0);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), 0ull);
}

/*
 * The page allocator fails; a fault reload still gets its tables, from the
 * reserve.  before: top only, record has va ; after: top -> ... -> leaf
 */
static void htable_reserve_serves_fault_reload_when_allocator_fails(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	u64 va = 0x40000000ull, pa = 0x7654000ull;
	u64 hits, count, allocs;
	struct walk_result w;

	KUNIT_ASSERT_EQ(test, htable_hat_map(hat, va, pa, SZ_4K_, HTABLE_P_READ), 0);
	KUNIT_ASSERT_GT(test, htable_hat_drop_tables(hat), 0ull);
	KUNIT_ASSERT_EQ(test, htable_hat_nr_tables(hat), 1ull);
	drain_caches(hat);
	KUNIT_ASSERT_EQ(test, htable_hat_nr_cached(hat), 0ull);
	KUNIT_ASSERT_EQ(test, htable_reserve_count(), (u64)htable_reserve_target());

	hits = hkt_stat(test, "reserve_hits");
	allocs = hkt_stat(test, "ptable_allocs");
	count = htable_reserve_count();
	htable_test_fail_allocs(0, ~0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_fault(hat, va), 0);
	htable_test_fail_allocs(0, 0);

	/* One table per level below the top, each from the reserve. */
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "reserve_hits") - hits, (u64)(p->levels - 1));
	KUNIT_EXPECT_EQ(test, count - htable_reserve_count(), (u64)(p->levels - 1));
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "ptable_allocs"), allocs);
	w = walk_raw(htable_hat_top_pa(hat), p->levels, va);
	KUNIT_EXPECT_EQ(test, w.level, 0);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, 0), pa);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(hat), (u64)p->levels);
	KUNIT_EXPECT_EQ(test, raw_state(htable_hat_top_pa(hat), p->levels).tables,
			p->levels - 1);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);

	/* Reclaim does not allocate: the reserve stays short... */
	htable_reap(0);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), count - (p->levels - 1));
	/* ...until the next hat is created, which tops it up. */
	hkt_hat_new(test, p->levels);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), (u64)htable_reserve_target());
}

/*
 * Plain maps under the same failure may use the reserve only down to half
 * its target, then fail cleanly (-ENOMEM, nothing left behind).  Each page
 * is locked once mapped, so that no table is stealable: the reserve is the
 * only source left.
 */
static void htable_reserve_map_stops_at_half_target(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	u32 target = htable_reserve_target();
	u64 base = 0x80000000ull, tables;
	unsigned int i, mapped = 0;
	struct htable_xlate x;
	int err = 0;

	/* The upper tables exist: each further map needs one level-0 table. */
	KUNIT_ASSERT_EQ(test, htable_hat_map(hat, spread_va(base, 0), 0x1000, SZ_4K_,
					     HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_lock(hat, spread_va(base, 0), SZ_4K_, 1), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_nr_cached(hat), 0ull);
	KUNIT_ASSERT_EQ(test, htable_reclaimable(), 0ull);
	KUNIT_ASSERT_EQ(test, htable_reserve_count(), (u64)target);

	for (i = 1; i <= target; i++) {
		u64 va = spread_va(base, i);

		/* Let the record's node through; fail every table page. */
		htable_test_fail_allocs(1, ~0ull);
		err = htable_hat_map(hat, va, 0x1000, SZ_4K_, HTABLE_P_READ);
		htable_test_fail_allocs(0, 0);
		KUNIT_ASSERT_GE(test, htable_reserve_count(), (u64)(target / 2));
		if (err)
			break;
		mapped++;
		KUNIT_ASSERT_EQ(test, htable_hat_lock(hat, va, SZ_4K_, 1), 0);
	}

	KUNIT_EXPECT_EQ(test, err, -ENOMEM);
	KUNIT_EXPECT_EQ(test, mapped, target - target / 2);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), (u64)(target / 2));
	/* The failed map left nothing behind. */
	KUNIT_EXPECT_EQ(test, htable_hat_translate(hat, spread_va(base, i), &x), -ENOENT);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(hat), p->levels,
				       spread_va(base, i)).level, -1);
	tables = htable_hat_nr_tables(hat);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_extents(hat), (u64)mapped + 1);
	KUNIT_EXPECT_EQ(test, raw_state(htable_hat_top_pa(hat), p->levels).tables + 1ull, tables);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);
}

/*
 * Tables freed while the reserve is short go to the reserve before the
 * page allocator: destroying a hat refills it.
 */
static void htable_reserve_refills_from_freed_tables(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	u32 target = htable_reserve_target();
	unsigned int i, n = 16;
	u64 allocs, tables;

	for (i = 0; i < n; i++)
		KUNIT_ASSERT_EQ(test, htable_hat_map(hat, spread_va(0, i), 0x1000, SZ_4K_,
						     HTABLE_P_READ), 0);
	tables = htable_hat_nr_tables(hat) - 1;
	KUNIT_ASSERT_GE(test, tables, (u64)n);

	/* Use up @tables of the reserve by faulting with the allocator off. */
	KUNIT_ASSERT_GT(test, htable_hat_drop_tables(hat), 0ull);
	KUNIT_ASSERT_EQ(test, htable_hat_nr_tables(hat), 1ull);
	drain_caches(hat);
	htable_test_fail_allocs(0, ~0ull);
	for (i = 0; i < n; i++)
		KUNIT_ASSERT_EQ(test, htable_hat_fault(hat, spread_va(0, i)), 0);
	htable_test_fail_allocs(0, 0);
	KUNIT_ASSERT_LE(test, htable_reserve_count(), (u64)target - tables);

	/* Destroy: every table page lands in the reserve, none allocated. */
	allocs = hkt_stat(test, "ptable_allocs");
	hkt_hat_destroy(test, hat);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), (u64)target);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "ptable_allocs"), allocs);
}

KUNIT_ARRAY_PARAM(levels, hkt_params_levels, hkt_param_desc);

static struct kunit_case reserve_cases[] = {
	KUNIT_CASE(htable_reserve_full_after_load),
	KUNIT_CASE(htable_reserve_set_shrinks_and_grows),
	KUNIT_CASE_PARAM(htable_reserve_serves_fault_reload_when_allocator_fails,
			 levels_gen_params),
	KUNIT_CASE_PARAM(htable_reserve_map_stops_at_half_target, levels_gen_params),
	KUNIT_CASE_PARAM(htable_reserve_refills_from_freed_tables, levels_gen_params),
	{}
};

static struct kunit_suite reserve_suite = {
	.name = "htable_reserve",
	.init = reserve_init,
	.exit = reserve_exit,
	.test_cases = reserve_cases,
};
kunit_test_suite(reserve_suite);
