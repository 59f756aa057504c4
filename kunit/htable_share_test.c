// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_share — one hat's table linked into another
 * (seed: HTABLE_SHARED_PFN).  Both hats' raw walks reach the same entries.
 */
#include <kunit/test.h>

#include "test_util.h"

struct share_param {
	unsigned int levels;
	unsigned int level;	/* of the shared table: 0 (2 MiB span) or 1 (1 GiB) */
	const char *name;
};

static const struct share_param share_params[] = {
	{ 4, 0, "4-level/L0" }, { 4, 1, "4-level/L1" },
	{ 5, 0, "5-level/L0" }, { 5, 1, "5-level/L1" },
};

static void share_param_desc(const struct share_param *p, char *desc)
{
	strscpy(desc, p->name, KUNIT_PARAM_DESC_SIZE);
}
KUNIT_ARRAY_PARAM(share, share_params, share_param_desc);

/* Only a level-1 share has tables below it that can be dropped. */
static const struct share_param share_l1_params[] = {
	{ 4, 1, "4-level/L1" }, { 5, 1, "5-level/L1" },
};
KUNIT_ARRAY_PARAM(share_l1, share_l1_params, share_param_desc);

struct share_ctx {
	const struct share_param *p;
	struct htable_hat *a, *b;	/* A owns the table, B links it */
	u64 base;			/* the shared range [base, base + span) */
	u64 span;
	u64 va[3];			/* A's pages inside the range */
};

static u64 share_pa(int i)
{
	return 0x200000ull + ((u64)i << 12);
}

/* A: three pages in the range (two level-0 tables for an L1 share), one outside. */
static int share_init(struct kunit *test)
{
	struct share_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);
	int i;

	KUNIT_ASSERT_NOT_NULL(test, c);
	test->priv = c;
	c->p = test->param_value;
	c->span = hkt_table_span(c->p->level);
	c->base = 3 * SZ_512G_ + 5 * c->span;
	c->va[0] = c->base + 0x1000;
	c->va[1] = c->base + 0x3000;
	c->va[2] = c->base + c->span - SZ_4K_;
	c->a = hkt_hat_new(test, c->p->levels);
	c->b = hkt_hat_new(test, c->p->levels);
	for (i = 0; i < 3; i++)
		KUNIT_ASSERT_EQ(test, htable_hat_map(c->a, c->va[i], share_pa(i), SZ_4K_,
						     HTABLE_P_READ | HTABLE_P_WRITE), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->a, c->base + c->span, share_pa(9), SZ_4K_,
					     HTABLE_P_READ), 0);
	return 0;
}

static struct walk_result share_walk(struct share_ctx *c, struct htable_hat *h, u64 va)
{
	return walk_raw(htable_hat_top_pa(h), c->p->levels, va);
}

/* before: B maps nothing there ; after: B's raw walk reaches A's leaf entries */
static void htable_share_links_same_entries(struct kunit *test)
{
	struct share_ctx *c = test->priv;
	struct htable_xlate x;
	int i;

	KUNIT_ASSERT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), 0);
	for (i = 0; i < 3; i++) {
		struct walk_result wa = share_walk(c, c->a, c->va[i]);
		struct walk_result wb = share_walk(c, c->b, c->va[i]);

		KUNIT_EXPECT_EQ(test, wa.level, 0);
		KUNIT_EXPECT_EQ(test, hkt_leaf_pa(wa.pte, 0), share_pa(i));
		KUNIT_EXPECT_EQ(test, wb.pte, wa.pte);
		/* The very same table page, not a copy. */
		KUNIT_ASSERT_EQ(test, htable_hat_translate(c->b, c->va[i] + 8, &x), 0);
		KUNIT_EXPECT_EQ(test, x.pa, share_pa(i) + 8);
		KUNIT_EXPECT_EQ(test, x.shared, 1u);
	}
	/* Outside the range B has nothing. */
	KUNIT_EXPECT_EQ(test, share_walk(c, c->b, c->base + c->span).level, -1);
	KUNIT_EXPECT_EQ(test, htable_hat_translate(c->b, c->base + c->span, &x), -ENOENT);

	/* A change in A shows through B at once: map a fourth page, unmap the first. */
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->a, c->base + 0x5000, share_pa(5), SZ_4K_,
					     HTABLE_P_READ), 0);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(share_walk(c, c->b, c->base + 0x5000).pte, 0),
			share_pa(5));
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->a, c->va[0], SZ_4K_), 0);
	KUNIT_EXPECT_EQ(test, share_walk(c, c->b, c->va[0]).level, -1);
	KUNIT_EXPECT_EQ(test, share_walk(c, c->a, c->va[0]).level, -1);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(share_walk(c, c->b, c->va[1]).pte, 0), share_pa(1));
	KUNIT_EXPECT_EQ(test, htable_hat_translate(c->b, c->va[0], &x), -ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->a), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->b), 0);
}

/* B unmaps the whole range: the link goes, A keeps everything. */
static void htable_share_unmap_whole_range_unlinks(struct kunit *test)
{
	struct share_ctx *c = test->priv;
	struct raw_state before = raw_state(htable_hat_top_pa(c->a), c->p->levels);
	struct htable_xlate x;

	KUNIT_ASSERT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->b, c->base, c->span), 0);
	KUNIT_EXPECT_EQ(test, share_walk(c, c->b, c->va[1]).level, -1);
	KUNIT_EXPECT_EQ(test, htable_hat_translate(c->b, c->va[1], &x), -ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->b), 1ull);
	KUNIT_EXPECT_EQ(test, raw_count_valid(htable_hat_top_pa(c->b), 0, 512), 0);
	KUNIT_EXPECT_EQ(test, raw_state(htable_hat_top_pa(c->a), c->p->levels).hash, before.hash);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->b), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->a), 0);
}

/*
 * Once nobody links it, the table is an ordinary table of A again: it can
 * be stolen, and freed when emptied.
 */
static void htable_share_unlinked_table_is_stealable_again(struct kunit *test)
{
	struct share_ctx *c = test->priv;
	u64 stealable;

	/* A's caches out of the way: only in-use tables on the LRU. */
	htable_reap(htable_hat_nr_cached(c->a));
	stealable = htable_reclaimable();
	KUNIT_ASSERT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->b, c->base, c->span), 0);
	htable_reap(htable_hat_nr_cached(c->b));
	KUNIT_EXPECT_EQ(test, htable_reclaimable(), stealable);
	htable_reap(~0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->a), 1ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->a), 0);
}

/* A empties the shared table while B links it, then B unlinks: A frees it. */
static void htable_share_emptied_table_freed_on_unlink(struct kunit *test)
{
	struct share_ctx *c = test->priv;
	u64 tables;

	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->a, c->base + c->span, SZ_4K_), 0);
	tables = htable_hat_nr_tables(c->a);
	KUNIT_ASSERT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->a, c->base, c->span), 0);
	/* Linked from B: kept, empty. */
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->a), (u64)(c->p->levels - c->p->level));
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->b, c->base, c->span), 0);
	/* Unlinked: nothing of A's is left but its top. */
	KUNIT_ASSERT_EQ(test, htable_hat_nr_tables(c->a), 1ull);
	KUNIT_EXPECT_EQ(test, raw_count_valid(htable_hat_top_pa(c->a), 0, 512), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->a), 0);
	KUNIT_EXPECT_GT(test, tables, 1ull);
}

/* B may not cut the shared range, nor link over its own mappings. */
static void htable_share_refuses_partial_unmap_and_overlap(struct kunit *test)
{
	struct share_ctx *c = test->priv;
	struct raw_state before;

	/* B maps a page in the range first: -EEXIST, nothing changed. */
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->b, c->va[1], 0x5000, SZ_4K_, HTABLE_P_READ), 0);
	before = raw_state(htable_hat_top_pa(c->b), c->p->levels);
	KUNIT_EXPECT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), -EEXIST);
	KUNIT_EXPECT_EQ(test, raw_state(htable_hat_top_pa(c->b), c->p->levels).hash, before.hash);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->b, c->va[1], SZ_4K_), 0);

	KUNIT_ASSERT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_unmap(c->b, c->va[1], SZ_4K_), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_unmap(c->b, c->base, c->span - SZ_4K_), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_unmap(c->b, c->base + SZ_4K_, c->span), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_protect(c->b, c->va[1], SZ_4K_, HTABLE_P_READ), -EINVAL);
	/* Still linked. */
	KUNIT_EXPECT_EQ(test, share_walk(c, c->b, c->va[1]).pte, share_walk(c, c->a, c->va[1]).pte);
	KUNIT_EXPECT_NE(test, share_walk(c, c->b, c->va[1]).pte, 0ull);
	/* Arguments. */
	KUNIT_EXPECT_EQ(test, htable_hat_share(c->b, c->a, c->base + SZ_4K_, c->p->level), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_share(c->b, c->b, c->base, c->p->level), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_share(c->b, c->a, c->base + 8 * c->span, c->p->level),
			-ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->a), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->b), 0);
}

/*
 * A destroyed while B links its table: B's link is revoked (the memory A
 * mapped is about to be released by A's owner), A's tables all go, and B
 * keeps only its own.
 * before: B.L(level+1) -> A's table ; after: B's range is a hole
 */
static void htable_share_source_destroy_revokes_link(struct kunit *test)
{
	struct share_ctx *c = test->priv;
	u64 hats = hkt_stat(test, "hats_live");
	u64 tables, a_tables = htable_hat_nr_tables(c->a);
	struct htable_xlate x;

	KUNIT_ASSERT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), 0);
	tables = hkt_stat(test, "tables_live");
	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->b, c->va[2] + 16, &x), 0);
	hkt_hat_destroy(test, c->a);
	/* B no longer reaches A's memory, by record or by tables. */
	KUNIT_EXPECT_EQ(test, htable_hat_translate(c->b, c->va[2] + 16, &x), -ENOENT);
	KUNIT_EXPECT_EQ(test, share_walk(c, c->b, c->va[2]).level, -1);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->b), 0);
	/* All of A's tables are gone, and B's now-empty path to the link too. */
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "hats_live"), hats - 1);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "tables_live"),
			tables - a_tables - (c->p->levels - c->p->level - 2));
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->b), 1ull);

	hkt_hat_destroy(test, c->b);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "hats_live"), hats - 2);
}

/*
 * A fault in B inside the shared range is served by A: with an L1 table
 * shared, A's level-0 tables below it can be dropped, and the reload goes
 * into A's tables, where B sees it.
 */
static void htable_share_fault_in_linker_reloads_in_owner(struct kunit *test)
{
	struct share_ctx *c = test->priv;
	u64 reloads;

	KUNIT_ASSERT_EQ(test, htable_hat_share(c->b, c->a, c->base, c->p->level), 0);
	KUNIT_ASSERT_GT(test, htable_hat_drop_tables(c->a), 0ull);
	KUNIT_EXPECT_EQ(test, share_walk(c, c->a, c->va[1]).level, -1);
	KUNIT_EXPECT_EQ(test, share_walk(c, c->b, c->va[1]).level, -1);

	reloads = hkt_stat(test, "reloads");
	KUNIT_ASSERT_EQ(test, htable_hat_fault(c->b, c->va[1]), 0);
	KUNIT_EXPECT_EQ(test, hkt_stat(test, "reloads") - reloads, 1ull);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(share_walk(c, c->a, c->va[1]).pte, 0), share_pa(1));
	KUNIT_EXPECT_EQ(test, share_walk(c, c->b, c->va[1]).pte, share_walk(c, c->a, c->va[1]).pte);
	/* A hole in the range is a hole for B too. */
	KUNIT_EXPECT_EQ(test, htable_hat_fault(c->b, c->base + 0x7000), -ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->a), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->b), 0);
}

static struct kunit_case share_cases[] = {
	KUNIT_CASE_PARAM(htable_share_links_same_entries, share_gen_params),
	KUNIT_CASE_PARAM(htable_share_unmap_whole_range_unlinks, share_gen_params),
	KUNIT_CASE_PARAM(htable_share_unlinked_table_is_stealable_again, share_gen_params),
	KUNIT_CASE_PARAM(htable_share_emptied_table_freed_on_unlink, share_gen_params),
	KUNIT_CASE_PARAM(htable_share_refuses_partial_unmap_and_overlap, share_gen_params),
	KUNIT_CASE_PARAM(htable_share_source_destroy_revokes_link, share_gen_params),
	KUNIT_CASE_PARAM(htable_share_fault_in_linker_reloads_in_owner, share_l1_gen_params),
	{}
};

static struct kunit_suite share_suite = {
	.name = "htable_share",
	.init = share_init,
	.test_cases = share_cases,
};
kunit_test_suite(share_suite);
