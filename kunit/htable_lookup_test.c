// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_lookup — the per-hat hash of htables stays O(1).
 *
 * 4 KiB pages 2 MiB apart need one level-0 table each.  With a thousand and
 * then sixteen thousand tables, a pass of faults over every page (each a
 * walk of lookups from the top) must cost a small, constant number of hash
 * probes per lookup: the hash has to grow with the hat.
 */
#include <kunit/test.h>

#include "test_util.h"

/* 512 GiB up: a top-level entry of its own in a 4-level hat. */
#define LOOKUP_BASE SZ_512G_
/* Average probes per lookup allowed, times 100. */
#define LOOKUP_MAX_PROBES_X100 300

static u64 lookup_va(unsigned int i)
{
	return LOOKUP_BASE + (u64)i * SZ_2M_;
}

/* Tables of a hat holding @n such pages: the top, one level-2 (and level-3) table, level 1, level 0. */
static u64 lookup_expected_tables(unsigned int levels, unsigned int n)
{
	return 1 + (levels - 3) + DIV_ROUND_UP(n, 512) + n;
}

static void lookup_one_size(struct kunit *test, unsigned int levels, unsigned int n)
{
	struct htable_hat *hat = hkt_hat_new(test, levels);
	u64 lookups, probes, dl, dp;
	struct htable_xlate x;
	unsigned int i;

	/*
	 * Each loop runs for many seconds under TCG in one kthread, and the
	 * kernel does not preempt (PREEMPT_NONE): without cond_resched() the
	 * soft-lockup watchdog fires.
	 */
	for (i = 0; i < n; i++) {
		KUNIT_ASSERT_EQ_MSG(test, htable_hat_map(hat, lookup_va(i), (u64)i << 12, SZ_4K_,
							 HTABLE_P_READ), 0, "page %u", i);
		cond_resched();
	}
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(hat), lookup_expected_tables(levels, n));
	KUNIT_EXPECT_EQ(test, raw_state(htable_hat_top_pa(hat), levels).tables + 1ull,
			htable_hat_nr_tables(hat));
	KUNIT_EXPECT_EQ(test, raw_state(htable_hat_top_pa(hat), levels).leaves, n);

	lookups = hkt_stat(test, "lookups");
	probes = hkt_stat(test, "lookup_probes");
	for (i = 0; i < n; i++) {
		/* Resident: the fault walks the hash down to the leaf and finds it there. */
		KUNIT_ASSERT_EQ_MSG(test, htable_hat_fault(hat, lookup_va(i) + 8), 0, "page %u", i);
		KUNIT_ASSERT_EQ(test, htable_hat_translate(hat, lookup_va(i) + 8, &x), 0);
		KUNIT_ASSERT_EQ(test, x.pa, ((u64)i << 12) + 8);
		cond_resched();
	}
	dl = hkt_stat(test, "lookups") - lookups;
	dp = hkt_stat(test, "lookup_probes") - probes;
	/* Every level below the top is looked up once per fault. */
	KUNIT_EXPECT_GE(test, dl, (u64)n * (levels - 1));
	KUNIT_EXPECT_LE_MSG(test, dp * 100, dl * LOOKUP_MAX_PROBES_X100,
			    "%u tables: %llu probes for %llu lookups", n, dp, dl);
	kunit_info(test, "%u tables: %llu.%02llu probes per lookup", n, dp / dl,
		   dp * 100 / dl % 100);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(hat), lookup_expected_tables(levels, n));
	/* The check reads all 512 entries of every table: not at 16000 under TCG. */
	if (n <= 2000)
		KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);
	hkt_hat_destroy(test, hat);
}

/*
 * 1000 tables, then 16000: the probes per lookup do not grow with the hat.
 * The hash does not depend on the depth: one depth is enough at this size.
 */
static void htable_lookup_probes_stay_constant_as_tables_grow(struct kunit *test)
{
	lookup_one_size(test, 4, 1000);
	lookup_one_size(test, 4, 16000);
}

/* Both depths, at a size where the hash has grown four times. */
static void htable_lookup_probes_constant_at_each_depth(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;

	lookup_one_size(test, p->levels, 2000);
}

/* A thousand tables, then all unmapped: every table is freed, the hat is as new. */
static void htable_lookup_unmap_all_frees_every_table(struct kunit *test)
{
	const struct hkt_param *p = test->param_value;
	struct htable_hat *hat = hkt_hat_new(test, p->levels);
	unsigned int i, n = 1000;

	for (i = 0; i < n; i++)
		KUNIT_ASSERT_EQ(test, htable_hat_map(hat, lookup_va(i), 0x1000, SZ_4K_,
						     HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_nr_tables(hat), lookup_expected_tables(p->levels, n));
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(hat, LOOKUP_BASE, (u64)n * SZ_2M_), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(hat), 1ull);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_extents(hat), 0ull);
	KUNIT_EXPECT_EQ(test, raw_count_valid(htable_hat_top_pa(hat), 0, 512), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);
}

KUNIT_ARRAY_PARAM(lookup_levels, hkt_params_levels, hkt_param_desc);

static struct kunit_case lookup_cases[] = {
	KUNIT_CASE_SLOW(htable_lookup_probes_stay_constant_as_tables_grow),
	KUNIT_CASE_PARAM_ATTR(htable_lookup_probes_constant_at_each_depth, lookup_levels_gen_params,
			      { .speed = KUNIT_SPEED_SLOW }),
	KUNIT_CASE_PARAM(htable_lookup_unmap_all_frees_every_table, lookup_levels_gen_params),
	{}
};

static struct kunit_suite lookup_suite = {
	.name = "htable_lookup",
	.test_cases = lookup_cases,
};
kunit_test_suite(lookup_suite);
