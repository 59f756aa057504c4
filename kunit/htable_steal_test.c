// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_steal — taking page tables back (htable_reap(), the
 * shrinker's entry point).
 *
 * Stealable: a table with no lower tables, no locked leaves, not shared,
 * not a top.  The steal LRU is global: during KUnit only the hats a test
 * makes exist, so each test starts from an empty LRU (checked).
 */
#include <kunit/test.h>
#include <asm/io.h>
#include <asm/pgtable_types.h>

#include "test_util.h"

/* 4 KiB pages at 2 MiB strides: one stealable level-0 table each. */
static u64 steal_va(u64 base, unsigned int i)
{
	return base + (u64)i * SZ_2M_ + 0x3000;
}

static u64 steal_pa(unsigned int i)
{
	return 0x100000ull + ((u64)i << 12);
}

static void steal_populate(struct kunit *test, struct htable_hat *hat, u64 base, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		KUNIT_ASSERT_EQ(test, htable_hat_map(hat, steal_va(base, i), steal_pa(i), SZ_4K_,
						     HTABLE_P_READ | HTABLE_P_WRITE), 0);
	/* Pages a refill left in the hat's cache sit at the front of the LRU: take them. */
	htable_reap(htable_hat_nr_cached(hat));
	KUNIT_ASSERT_EQ(test, htable_hat_nr_cached(hat), 0ull);
}

/* Resident leaves of the n pages, by the raw walker. */
static unsigned int steal_resident(struct htable_hat *hat, unsigned int levels, u64 base,
				   unsigned int n)
{
	unsigned int i, r = 0;

	for (i = 0; i < n; i++) {
		struct walk_result w = walk_raw(htable_hat_top_pa(hat), levels, steal_va(base, i));

		r += w.level == 0 && hkt_leaf_pa(w.pte, 0) == steal_pa(i);
	}
	return r;
}

/* The raw entry in the level-1 table that points at the level-0 table of @va. */
static u64 *steal_parent_entry(struct htable_hat *hat, unsigned int levels, u64 va)
{
	u64 *t = __va(htable_hat_top_pa(hat));
	int level;

	for (level = levels - 1; level > 1; level--)
		t = __va(t[(va >> (12 + 9 * level)) & 511] & HKT_PADDR);
	return &t[(va >> 21) & 511];
}

static int steal_init(struct kunit *test)
{
	/* Leftovers of another test would be stolen first. */
	KUNIT_ASSERT_EQ(test, htable_reclaimable(), 0ull);
	return 0;
}

/*
 * reap(n) takes n tables; what they mapped still translates (the record),
 * and faults put it back where the raw walker sees it again.
 */
static void htable_steal_reap_takes_tables_and_fault_reloads(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	unsigned int i, n = 8, missing;
	u64 tables, steals = hkt_stat(test, "steals");
	struct htable_xlate x;

	steal_populate(test, hat, 0, n);
	tables = htable_hat_nr_tables(hat);
	KUNIT_ASSERT_EQ(test, htable_reclaimable(), (u64)n);

	KUNIT_EXPECT_EQ(test, htable_reap(4), 4ull);
	missing = n - steal_resident(hat, p->levels, 0, n);
	KUNIT_EXPECT_GE(test, missing, 1u);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "steals") - steals, (u64)missing);
	/* One level-0 table per missing page, nothing else. */
	KUNIT_EXPECT_EQ(test, tables - htable_hat_nr_tables(hat), (u64)missing);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);

	for (i = 0; i < n; i++) {
		KUNIT_ASSERT_EQ(test, htable_hat_translate(hat, steal_va(0, i) + 8, &x), 0);
		KUNIT_EXPECT_EQ(test, x.pa, steal_pa(i) + 8);
		KUNIT_ASSERT_EQ(test, htable_hat_fault(hat, steal_va(0, i)), 0);
	}
	KUNIT_EXPECT_EQ(test, steal_resident(hat, p->levels, 0, n), n);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(hat), tables);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);

	/* Everything: every leaf table and then its emptied parents. */
	htable_reap(~0ull);
	KUNIT_EXPECT_EQ(test, steal_resident(hat, p->levels, 0, n), 0u);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(hat), 1ull);
	KUNIT_EXPECT_EQ(test, htable_reclaimable(), 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);
}

/*
 * A stolen table's page is given back (the reserve, else the page
 * allocator), not parked in its own hat's cache: one steal, one page.
 * seed: htable_steal() raises htable_dont_cache so htable_free() bypasses
 * hat_ht_cached.
 */
static void htable_steal_gives_stolen_page_back(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	u64 tables, frees, reserve;

	steal_populate(test, hat, 0, 4);
	KUNIT_ASSERT_EQ(test, htable_hat_nr_cached(hat), 0ull);
	KUNIT_ASSERT_EQ(test, htable_reserve_count(), (u64)htable_reserve_target());
	tables = htable_hat_nr_tables(hat);
	frees = hkt_stat(test, "ptable_frees");
	reserve = htable_reserve_count();

	KUNIT_EXPECT_EQ(test, htable_reap(2), 2ull);
	/* Two tables taken from the hat, two pages back to the system (the reserve is full). */
	KUNIT_EXPECT_EQ(test, tables - htable_hat_nr_tables(hat), 2ull);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_cached(hat), 0ull);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "ptable_frees") - frees, 2ull);
	KUNIT_EXPECT_EQ(test, htable_reserve_count(), reserve);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);
}

/* Locked leaves pin their table: a steal of everything leaves it resident. */
static void htable_steal_skips_locked_table(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	unsigned int n = 6;

	steal_populate(test, hat, 0, n);
	/* Pages 1 and 4 locked: their tables are off the LRU. */
	KUNIT_ASSERT_EQ(test, htable_hat_lock(hat, steal_va(0, 1), SZ_4K_, 1), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_lock(hat, steal_va(0, 4), SZ_4K_, 1), 0);
	KUNIT_EXPECT_EQ(test, htable_reclaimable(), (u64)n - 2);

	htable_reap(~0ull);
	KUNIT_EXPECT_EQ(test, steal_resident(hat, p->levels, 0, n), 2u);
	KUNIT_EXPECT_NE(test, walk_raw(htable_hat_top_pa(hat), p->levels, steal_va(0, 1)).pte, 0ull);
	KUNIT_EXPECT_NE(test, walk_raw(htable_hat_top_pa(hat), p->levels, steal_va(0, 4)).pte, 0ull);
	KUNIT_EXPECT_EQ(test, htable_reclaimable(), 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);

	/* Unlocked, the table is stealable again. */
	KUNIT_ASSERT_EQ(test, htable_hat_lock(hat, steal_va(0, 1), SZ_4K_, 0), 0);
	KUNIT_EXPECT_EQ(test, htable_reclaimable(), 1ull);
	htable_reap(~0ull);
	KUNIT_EXPECT_EQ(test, steal_resident(hat, p->levels, 0, n), 1u);
	KUNIT_EXPECT_NE(test, walk_raw(htable_hat_top_pa(hat), p->levels, steal_va(0, 4)).pte, 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);
}

/* A table linked into another hat is never taken, in either hat. */
static void htable_steal_skips_shared_table(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *a = hkt_hat_new(test, p->levels);
	struct htable_hat *b = hkt_hat_new(test, p->levels);
	u64 va = steal_va(0, 2);

	steal_populate(test, a, 0, 4);
	KUNIT_ASSERT_EQ(test, htable_hat_share(b, a, va & ~(SZ_2M_ - 1), 0), 0);
	KUNIT_EXPECT_EQ(test, htable_reclaimable(), 3ull);

	htable_reap(~0ull);
	KUNIT_EXPECT_EQ(test, steal_resident(a, p->levels, 0, 4), 1u);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(walk_raw(htable_hat_top_pa(a), p->levels, va).pte, 0),
			steal_pa(2));
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(b), p->levels, va).pte,
			walk_raw(htable_hat_top_pa(a), p->levels, va).pte);
	KUNIT_EXPECT_EQ(test, htable_hat_check(a), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(b), 0);
}

/*
 * Second chance: a table whose parent entry has the accessed bit set (the
 * MMU walked through it) survives a steal of one; a cold one is taken, and
 * the hot one's bit is cleared for the next round.
 * before: L1[x] = ptp|A, L1[y] = ptp ; reap(1) ; after: x resident, L1[x].A = 0, y gone
 */
static void htable_steal_second_chance_spares_accessed_table(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	u64 chances = hkt_stat(test, "steal_second_chance");
	u64 *hot;

	/* Page 0's table is the coldest (oldest): it is the one at the front. */
	steal_populate(test, hat, 0, 2);
	hot = steal_parent_entry(hat, p->levels, steal_va(0, 0));
	KUNIT_ASSERT_TRUE(test, READ_ONCE(*hot) & _PAGE_PRESENT);
	KUNIT_ASSERT_FALSE(test, READ_ONCE(*hot) & _PAGE_ACCESSED);
	/* What the MMU would do on a walk through it. */
	__atomic_fetch_or(hot, _PAGE_ACCESSED, __ATOMIC_RELAXED);

	KUNIT_EXPECT_EQ(test, htable_reap(1), 1ull);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "steal_second_chance") - chances, 1ull);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(walk_raw(htable_hat_top_pa(hat), p->levels,
						   steal_va(0, 0)).pte, 0), steal_pa(0));
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(hat), p->levels, steal_va(0, 1)).level, -1);
	KUNIT_EXPECT_FALSE(test, READ_ONCE(*hot) & _PAGE_ACCESSED);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);

	/* Its chance used, the same table goes on the next steal. */
	htable_reap(~0ull);
	KUNIT_EXPECT_EQ(test, steal_resident(hat, p->levels, 0, 2), 0u);
}

/*
 * O(1) per table whatever the number of hats: the LRU is global, the steal
 * looks at its front.  K = 1 and K = 32 hats of T tables each.
 */
static void htable_steal_scan_cost_independent_of_hat_count(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	static const unsigned int ks[] = { 1, 32 };
	unsigned int t = 4, ki, i;

	for (ki = 0; ki < ARRAY_SIZE(ks); ki++) {
		struct htable_hat **hats = kunit_kcalloc(test, ks[ki], sizeof(*hats), GFP_KERNEL);
		u64 scanned, taken;

		KUNIT_ASSERT_NOT_NULL(test, hats);
		for (i = 0; i < ks[ki]; i++) {
			hats[i] = hkt_hat_new(test, p->levels);
			steal_populate(test, hats[i], 0, t);
		}
		KUNIT_ASSERT_EQ(test, htable_reclaimable(), (u64)ks[ki] * t);
		scanned = hkt_stat(test, "steal_scanned");
		taken = htable_reap(8);
		scanned = hkt_stat(test, "steal_scanned") - scanned;
		/* K = 1 has only t tables to give: each is taken once. */
		KUNIT_EXPECT_EQ(test, taken, min_t(u64, 8, (u64)ks[ki] * t));
		KUNIT_EXPECT_LE_MSG(test, scanned, 2 * taken, "K=%u: %llu scanned for %llu taken",
				    ks[ki], scanned, taken);
		for (i = 0; i < ks[ki]; i++) {
			KUNIT_EXPECT_EQ(test, htable_hat_check(hats[i]), 0);
			hkt_hat_destroy(test, hats[i]);
		}
	}
}

KUNIT_ARRAY_PARAM(steal_levels, hkt_params_levels, hkt_param_desc);

static struct kunit_case steal_cases[] = {
	KUNIT_CASE_PARAM(htable_steal_reap_takes_tables_and_fault_reloads, steal_levels_gen_params),
	KUNIT_CASE_PARAM(htable_steal_gives_stolen_page_back, steal_levels_gen_params),
	KUNIT_CASE_PARAM(htable_steal_skips_locked_table, steal_levels_gen_params),
	KUNIT_CASE_PARAM(htable_steal_skips_shared_table, steal_levels_gen_params),
	KUNIT_CASE_PARAM(htable_steal_second_chance_spares_accessed_table, steal_levels_gen_params),
	KUNIT_CASE_PARAM(htable_steal_scan_cost_independent_of_hat_count, steal_levels_gen_params),
	{}
};

static struct kunit_suite steal_suite = {
	.name = "htable_steal",
	.init = steal_init,
	.test_cases = steal_cases,
};
kunit_test_suite(steal_suite);
