// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_walk — reading a hat back: htable_hat_walk() over the
 * resident tables, htable_hat_getpte(), and htable_hat_next_mapping() over
 * the record (which also sees what is not resident).
 */
#include <kunit/test.h>

#include "../arch/x86/arch.h"
#include "test_util.h"

struct leaf {
	u64 va;
	u64 size;
	u64 pa;
};

struct walk_ctx {
	const struct hkt_param *p;
	struct htable_hat *hat;
	struct leaf leaves[8];	/* in VA order */
	int n;
};

/* A leaf at every level the CPU has, spread over several top-level entries. */
static void walk_populate(struct kunit *test, struct walk_ctx *c)
{
	u64 end = htable_user_va_end(c->p->levels);
	u64 big = (htable_page_sizes() & SZ_1G_) ? SZ_1G_ : SZ_2M_;
	const struct leaf want[] = {
		{ 0x1000, SZ_4K_, 0x10000 },
		{ SZ_1G_, SZ_2M_, 0x40000000 },
		{ 2 * SZ_1G_ + 0x5000, SZ_4K_, 0x20000 },
		{ 2 * SZ_1G_ + 0x6000, SZ_4K_, 0x21000 },
		{ 2 * SZ_1G_ + 0x7000, SZ_4K_, 0x22000 },
		{ 3 * SZ_512G_, big, 5 * SZ_1G_ },
		{ (end & ~(SZ_4K_ - 1)) - SZ_4K_, SZ_4K_, 0x30000 },	/* the last page */
	};
	int i;

	c->n = ARRAY_SIZE(want);
	for (i = 0; i < c->n; i++) {
		c->leaves[i] = want[i];
		/* The three 4 KiB neighbours are one extent; the rest one each. */
		if (i == 3 || i == 4)
			continue;
		KUNIT_ASSERT_EQ(test, htable_hat_map_range(c->hat, want[i].va,
							   i == 2 ? 3 * SZ_4K_ : want[i].size,
							   want[i].size, HTABLE_P_READ, want[i].pa, NULL),
				0);
	}
}

static int walk_init(struct kunit *test)
{
	struct walk_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, c);
	c->p = test->param_value;
	c->hat = hkt_hat_new(test, c->p->levels);
	test->priv = c;
	return 0;
}

/* walk from 0 returns exactly the mapped leaves, in VA order, then 0. */
static void htable_walk_visits_resident_leaves_in_va_order(struct kunit *test)
{
	struct walk_ctx *c = test->priv;
	phys_addr_t top = htable_hat_top_pa(c->hat);
	unsigned int level = ~0u;
	hx_u64 va = 0;
	u64 pte;
	int i = 0;

	/* The kernel half is there, as in a real hat: the walk must not enter it. */
	htable_hat_copy_kernel_half(c->hat, htable_arch_kernel_top());
	walk_populate(test, c);
	while ((pte = htable_hat_walk(c->hat, &va, ~0ull, &level))) {
		KUNIT_ASSERT_LT_MSG(test, i, c->n, "extra leaf at %#llx", (u64)va);
		KUNIT_EXPECT_EQ_MSG(test, va, c->leaves[i].va, "leaf %d", i);
		KUNIT_EXPECT_EQ_MSG(test, hkt_level_size(level), c->leaves[i].size, "leaf %d", i);
		KUNIT_EXPECT_EQ_MSG(test, hkt_leaf_pa(pte, level), c->leaves[i].pa, "leaf %d", i);
		KUNIT_EXPECT_EQ_MSG(test, pte, walk_raw(top, c->p->levels, va).pte, "leaf %d", i);
		va += hkt_level_size(level);
		i++;
	}
	KUNIT_EXPECT_EQ(test, i, c->n);
	/* Past the last leaf: 0 again, and no further than the user half. */
	KUNIT_EXPECT_EQ(test, htable_hat_walk(c->hat, &va, ~0ull, &level), 0ull);
	KUNIT_EXPECT_LE(test, va, htable_user_va_end(c->p->levels));
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* The bounds: a start inside a leaf finds that leaf; [va, end) before the next is empty. */
static void htable_walk_respects_start_and_end(struct kunit *test)
{
	struct walk_ctx *c = test->priv;
	unsigned int level;
	hx_u64 va;

	walk_populate(test, c);
	va = c->leaves[1].va + 5 * SZ_4K_;
	KUNIT_EXPECT_NE(test, htable_hat_walk(c->hat, &va, ~0ull, &level), 0ull);
	KUNIT_EXPECT_EQ(test, va, c->leaves[1].va);
	KUNIT_EXPECT_EQ(test, level, 1u);

	va = c->leaves[1].va + SZ_2M_;
	KUNIT_EXPECT_EQ(test, htable_hat_walk(c->hat, &va, c->leaves[2].va, &level), 0ull);
	va = c->leaves[1].va + SZ_2M_;
	KUNIT_EXPECT_NE(test, htable_hat_walk(c->hat, &va, c->leaves[2].va + 1, &level), 0ull);
	KUNIT_EXPECT_EQ(test, va, c->leaves[2].va);

	/* From above the last leaf: nothing. */
	va = c->leaves[c->n - 1].va + SZ_4K_;
	KUNIT_EXPECT_EQ(test, htable_hat_walk(c->hat, &va, ~0ull, &level), 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* Tables dropped: the walk sees nothing, the record still has it all. */
static void htable_walk_sees_only_resident_tables(struct kunit *test)
{
	struct walk_ctx *c = test->priv;
	struct htable_mapping m;
	unsigned int level;
	hx_u64 va = 0;

	walk_populate(test, c);
	htable_hat_drop_tables(c->hat);
	KUNIT_EXPECT_EQ(test, htable_hat_walk(c->hat, &va, ~0ull, &level), 0ull);
	KUNIT_ASSERT_EQ(test, htable_hat_next_mapping(c->hat, 0, ~0ull, &m), 0);
	KUNIT_EXPECT_EQ(test, m.va, c->leaves[0].va);

	/* One page faulted back: the walk finds exactly that one. */
	KUNIT_ASSERT_EQ(test, htable_hat_fault(c->hat, c->leaves[3].va), 0);
	va = 0;
	KUNIT_EXPECT_NE(test, htable_hat_walk(c->hat, &va, ~0ull, &level), 0ull);
	KUNIT_EXPECT_EQ(test, va, c->leaves[3].va);
	va += SZ_4K_;
	KUNIT_EXPECT_EQ(test, htable_hat_walk(c->hat, &va, ~0ull, &level), 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/*
 * A table kept only because another hat links it may be empty; the walk
 * goes through it and on.  And the linking hat's walk does not enter
 * another hat's table.
 * before: A: t = {x}, next ; B -> t ; A unmaps x ; after: A walks to next
 */
static void htable_walk_skips_empty_tables(struct kunit *test)
{
	struct walk_ctx *c = test->priv;
	struct htable_hat *b = hkt_hat_new(test, c->p->levels);
	u64 x = 4 * SZ_1G_ + 0x3000, next = 4 * SZ_1G_ + SZ_2M_;
	unsigned int level;
	hx_u64 va;

	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, x, 0x9000, SZ_4K_, HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, next, 0xa000, SZ_4K_, HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_share(b, c->hat, x & ~(SZ_2M_ - 1), 0), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, x, SZ_4K_), 0);
	/* The shared table stays, empty. */
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), (u64)c->p->levels + 1);

	va = 0;
	KUNIT_EXPECT_NE(test, htable_hat_walk(c->hat, &va, ~0ull, &level), 0ull);
	KUNIT_EXPECT_EQ(test, va, next);

	/* B's only mapping is the link: its walk finds no leaf of its own. */
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, x, 0x9000, SZ_4K_, HTABLE_P_READ), 0);
	va = 0;
	KUNIT_EXPECT_EQ(test, htable_hat_walk(b, &va, ~0ull, &level), 0ull);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(b), c->p->levels, x).pte,
			walk_raw(htable_hat_top_pa(c->hat), c->p->levels, x).pte);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(b), 0);
}

/* getpte: the resident leaf entry, as the raw walk sees it; 0 when not resident. */
static void htable_walk_getpte_returns_resident_leaf(struct kunit *test)
{
	struct walk_ctx *c = test->priv;
	phys_addr_t top = htable_hat_top_pa(c->hat);
	unsigned int level;
	int i;

	walk_populate(test, c);
	for (i = 0; i < c->n; i++) {
		u64 va = c->leaves[i].va + c->leaves[i].size - 8;
		struct walk_result w = walk_raw(top, c->p->levels, va);

		level = ~0u;
		KUNIT_EXPECT_EQ_MSG(test, htable_hat_getpte(c->hat, va, &level), w.pte, "leaf %d", i);
		KUNIT_EXPECT_EQ_MSG(test, (int)level, w.level, "leaf %d", i);
		KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, w.level), c->leaves[i].pa);
	}
	KUNIT_EXPECT_EQ(test, htable_hat_getpte(c->hat, c->leaves[0].va + SZ_4K_, &level), 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_getpte(c->hat, htable_user_va_end(c->p->levels), &level),
			0ull);

	htable_hat_drop_tables(c->hat);
	KUNIT_EXPECT_EQ(test, htable_hat_getpte(c->hat, c->leaves[2].va, &level), 0ull);
	KUNIT_ASSERT_EQ(test, htable_hat_fault(c->hat, c->leaves[2].va), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_getpte(c->hat, c->leaves[2].va, &level),
			walk_raw(top, c->p->levels, c->leaves[2].va).pte);
	KUNIT_EXPECT_NE(test, walk_raw(top, c->p->levels, c->leaves[2].va).pte, 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* next_mapping reads the record: contiguous extents whole, clipped to [va, end). */
static void htable_walk_next_mapping_sees_dropped_mappings(struct kunit *test)
{
	struct walk_ctx *c = test->priv;
	struct htable_mapping m;
	u64 va = 0;
	int i = 0;

	walk_populate(test, c);
	KUNIT_ASSERT_EQ(test, htable_hat_lock(c->hat, c->leaves[0].va, SZ_4K_, 1), 0);
	htable_hat_drop_tables(c->hat);
	while (htable_hat_next_mapping(c->hat, va, ~0ull, &m) == 0) {
		KUNIT_ASSERT_LT(test, i, c->n);
		KUNIT_EXPECT_EQ_MSG(test, m.va, c->leaves[i].va, "mapping %d", i);
		KUNIT_EXPECT_EQ_MSG(test, m.pa, c->leaves[i].pa, "mapping %d", i);
		KUNIT_EXPECT_EQ_MSG(test, m.level, hkt_leaf_level(c->leaves[i].size), "mapping %d", i);
		KUNIT_EXPECT_EQ(test, m.attrs, (u32)HTABLE_P_READ);
		KUNIT_EXPECT_EQ(test, m.locked, i == 0 ? 1u : 0u);
		KUNIT_EXPECT_EQ(test, m.shared, 0u);
		/* The three contiguous pages come back as one mapping. */
		KUNIT_EXPECT_EQ_MSG(test, m.len, i == 2 ? 3 * SZ_4K_ : c->leaves[i].size,
				    "mapping %d", i);
		i += i == 2 ? 3 : 1;
		va = m.va + m.len;
	}
	KUNIT_EXPECT_EQ(test, i, c->n);

	/* Starting inside, and ending inside: clipped, the address follows. */
	KUNIT_ASSERT_EQ(test, htable_hat_next_mapping(c->hat, c->leaves[2].va + SZ_4K_,
						     c->leaves[2].va + 2 * SZ_4K_, &m), 0);
	KUNIT_EXPECT_EQ(test, m.va, c->leaves[3].va);
	KUNIT_EXPECT_EQ(test, m.len, SZ_4K_);
	KUNIT_EXPECT_EQ(test, m.pa, c->leaves[3].pa);
	KUNIT_ASSERT_EQ(test, htable_hat_next_mapping(c->hat, c->leaves[1].va + 0x1234, ~0ull, &m),
			0);
	KUNIT_EXPECT_EQ(test, m.va, c->leaves[1].va + 0x1234);
	KUNIT_EXPECT_EQ(test, m.pa, c->leaves[1].pa + 0x1234);
	KUNIT_EXPECT_EQ(test, m.len, SZ_2M_ - 0x1234);
	/* Between mappings, [va, end) empty: -ENOENT. */
	KUNIT_EXPECT_EQ(test, htable_hat_next_mapping(c->hat, c->leaves[0].va + SZ_4K_,
						     c->leaves[1].va, &m), -ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_next_mapping(c->hat, c->leaves[c->n - 1].va + SZ_4K_,
						     ~0ull, &m), -ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_lock(c->hat, c->leaves[0].va, SZ_4K_, 0), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/*
 * A map from an array of pages is contiguous only leaf by leaf: one leaf
 * per mapping, each with its own address -- also after a cut in the middle.
 */
static void htable_walk_next_mapping_reports_array_leaf_by_leaf(struct kunit *test)
{
	struct walk_ctx *c = test->priv;
	hx_paddr_t pas[8] = { 0x80000, 0x13000, 0x14000, 0x7000, 0x99000, 0x9a000, 0x1000, 0x5000 };
	u64 base = 6 * SZ_1G_ - 4 * SZ_4K_;	/* across a level-0 table boundary */
	struct htable_mapping m;
	u64 va = 0;
	int i = 0;

	KUNIT_ASSERT_EQ(test, htable_hat_map_range(c->hat, base, 8 * SZ_4K_, SZ_4K_,
						   HTABLE_P_READ | HTABLE_P_WRITE, 0, pas), 0);
	/* Holes at pages 2 and 3: the array is cut, the rest keeps its pages. */
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, base + 2 * SZ_4K_, 2 * SZ_4K_), 0);
	htable_hat_drop_tables(c->hat);
	while (htable_hat_next_mapping(c->hat, va, ~0ull, &m) == 0) {
		if (i == 2)
			i = 4;
		KUNIT_ASSERT_LT(test, i, 8);
		KUNIT_EXPECT_EQ_MSG(test, m.va, base + i * SZ_4K_, "page %d", i);
		KUNIT_EXPECT_EQ_MSG(test, m.len, SZ_4K_, "page %d", i);
		KUNIT_EXPECT_EQ_MSG(test, m.pa, pas[i], "page %d", i);
		va = m.va + m.len;
		i++;
	}
	KUNIT_EXPECT_EQ(test, i, 8);

	/* The tables agree once faulted back. */
	for (i = 0; i < 8; i++) {
		struct walk_result w;

		if (i == 2 || i == 3) {
			KUNIT_EXPECT_EQ(test, htable_hat_fault(c->hat, base + i * SZ_4K_), -ENOENT);
			continue;
		}
		KUNIT_ASSERT_EQ(test, htable_hat_fault(c->hat, base + i * SZ_4K_), 0);
		w = walk_raw(htable_hat_top_pa(c->hat), c->p->levels, base + i * SZ_4K_);
		KUNIT_EXPECT_EQ_MSG(test, hkt_leaf_pa(w.pte, 0), pas[i], "page %d", i);
	}
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

KUNIT_ARRAY_PARAM(walk_levels, hkt_params_levels, hkt_param_desc);

static struct kunit_case walk_cases[] = {
	KUNIT_CASE_PARAM(htable_walk_visits_resident_leaves_in_va_order, walk_levels_gen_params),
	KUNIT_CASE_PARAM(htable_walk_respects_start_and_end, walk_levels_gen_params),
	KUNIT_CASE_PARAM(htable_walk_sees_only_resident_tables, walk_levels_gen_params),
	KUNIT_CASE_PARAM(htable_walk_skips_empty_tables, walk_levels_gen_params),
	KUNIT_CASE_PARAM(htable_walk_getpte_returns_resident_leaf, walk_levels_gen_params),
	KUNIT_CASE_PARAM(htable_walk_next_mapping_sees_dropped_mappings, walk_levels_gen_params),
	KUNIT_CASE_PARAM(htable_walk_next_mapping_reports_array_leaf_by_leaf,
			 walk_levels_gen_params),
	{}
};

static struct kunit_suite walk_suite = {
	.name = "htable_walk",
	.init = walk_init,
	.test_cases = walk_cases,
};
kunit_test_suite(walk_suite);
