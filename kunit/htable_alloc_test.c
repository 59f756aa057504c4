// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_alloc — building and tearing down hierarchies on real pages.
 *
 * Every result is checked with walk_raw(), an independent walker that reads
 * the raw x86-64 entries from the top table's physical address through the
 * direct map; it shares no code with the core under test.
 */
#include <kunit/test.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <asm/pgtable_types.h>
#include <asm/io.h>

#include "../htable/htable_api.h"

#define SZ_4K_ (1ull << 12)
#define SZ_2M_ (1ull << 21)
#define SZ_1G_ (1ull << 30)

struct walk_result {
	u64 pte;		/* the leaf entry, 0 if none */
	int level;		/* its level, -1 if none */
	int tables;		/* tables visited, top included */
};

/* The raw walk: CR3-style from the top table, as the MMU does. */
static struct walk_result walk_raw(phys_addr_t top_pa, unsigned int levels, u64 va)
{
	struct walk_result r = { .pte = 0, .level = -1, .tables = 0 };
	phys_addr_t table = top_pa;
	int level;

	for (level = levels - 1; level >= 0; level--) {
		const u64 *entries = __va(table);
		u64 e = READ_ONCE(entries[(va >> (12 + 9 * level)) & 511]);

		r.tables++;
		if (!(e & _PAGE_PRESENT))
			return r;
		if (level == 0 || (e & _PAGE_PSE)) {
			r.pte = e;
			r.level = level;
			return r;
		}
		table = e & 0x000ffffffffff000ull;
	}
	return r;
}

static int raw_count_valid(phys_addr_t table, int from, int to)
{
	const u64 *entries = __va(table);
	int i, n = 0;

	for (i = from; i < to; i++)
		n += !!(READ_ONCE(entries[i]) & _PAGE_PRESENT);
	return n;
}

struct alloc_param {
	unsigned int levels;
	u64 page_size;
	const char *name;
};

static const struct alloc_param alloc_params[] = {
	{ 4, SZ_4K_, "4-level/4K" }, { 4, SZ_2M_, "4-level/2M" }, { 4, SZ_1G_, "4-level/1G" },
	{ 5, SZ_4K_, "5-level/4K" }, { 5, SZ_2M_, "5-level/2M" }, { 5, SZ_1G_, "5-level/1G" },
};

static void alloc_param_desc(const struct alloc_param *p, char *desc)
{
	strscpy(desc, p->name, KUNIT_PARAM_DESC_SIZE);
}
KUNIT_ARRAY_PARAM(alloc, alloc_params, alloc_param_desc);

static unsigned int leaf_level(u64 page_size)
{
	return page_size == SZ_4K_ ? 0 : page_size == SZ_2M_ ? 1 : 2;
}

struct alloc_ctx {
	struct htable_hat *hat;
	const struct alloc_param *p;
	struct page *page;	/* a real page for 4 KiB leaves */
};

/* A VA in the user half with bits set at every level, aligned for the size. */
static u64 test_va(const struct alloc_param *p)
{
	u64 va = 0x0000123456789000ull & ((1ull << 46) - 1);

	return va & ~(p->page_size - 1);
}

static u64 test_pa(struct alloc_ctx *c)
{
	/* Never dereferenced: this suite builds tables but loads no CR3. */
	return c->p->page_size == SZ_4K_ ? page_to_phys(c->page) : 16 * c->p->page_size;
}

static int alloc_init(struct kunit *test)
{
	struct alloc_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, c);
	c->p = test->param_value;
	KUNIT_ASSERT_EQ(test, htable_hat_create(c->p->levels, &c->hat), 0);
	c->page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	KUNIT_ASSERT_NOT_NULL(test, c->page);
	test->priv = c;
	if (c->p->page_size == SZ_1G_ && !(htable_page_sizes() & SZ_1G_))
		kunit_skip(test, "CPU has no 1 GiB pages");
	return 0;
}

static void alloc_exit(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;

	if (!c)
		return;
	if (c->hat)
		htable_hat_destroy(c->hat);
	if (c->page)
		__free_page(c->page);
}

/* before: top(empty) ; after: top -> ... -> leaf table with one entry */
static void htable_alloc_map_builds_hierarchy(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	unsigned int ll = leaf_level(c->p->page_size);
	u64 va = test_va(c->p), pa = test_pa(c);
	struct htable_xlate x;
	struct walk_result w;

	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, pa, c->p->page_size,
					     HTABLE_P_READ | HTABLE_P_WRITE), 0);
	w = walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va + 8);
	KUNIT_ASSERT_EQ(test, w.level, (int)ll);
	KUNIT_EXPECT_EQ(test, w.tables, (int)(c->p->levels - ll));
	KUNIT_EXPECT_EQ(test, w.pte & 0x000ffffffffff000ull & ~(c->p->page_size - 1), pa);
	KUNIT_EXPECT_TRUE(test, w.pte & _PAGE_RW);
	KUNIT_EXPECT_TRUE(test, w.pte & _PAGE_USER);
	KUNIT_EXPECT_FALSE(test, w.pte & _PAGE_GLOBAL);
	if (__supported_pte_mask & _PAGE_NX)
		KUNIT_EXPECT_TRUE(test, w.pte & _PAGE_NX);
	/* One table per level between the top and the leaf, and no more. */
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), (u64)(c->p->levels - ll));

	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, va + 8, &x), 0);
	KUNIT_EXPECT_EQ(test, x.pa, pa + 8);
	KUNIT_EXPECT_EQ(test, x.page_size, c->p->page_size);
	KUNIT_EXPECT_EQ(test, x.level, ll);
	KUNIT_EXPECT_EQ(test, x.prot, HTABLE_P_READ | HTABLE_P_WRITE);
}

/* before: top -> ... -> leaf ; after: top(empty), every other table freed */
static void htable_alloc_unmap_frees_empty_tables(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 va = test_va(c->p);
	struct htable_xlate x;
	phys_addr_t top = htable_hat_top_pa(c->hat);

	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, test_pa(c), c->p->page_size,
					     HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, raw_count_valid(top, 0, 256), 1);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, va, c->p->page_size), 0);
	KUNIT_EXPECT_EQ(test, walk_raw(top, c->p->levels, va).level, -1);
	KUNIT_EXPECT_EQ(test, raw_count_valid(top, 0, 512), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
	KUNIT_EXPECT_EQ(test, htable_hat_translate(c->hat, va, &x), -ENOENT);
}

/* A second map of a mapped page fails and changes nothing. */
static void htable_alloc_map_existing_is_eexist(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 va = test_va(c->p), pa = test_pa(c);
	struct walk_result before, after;
	u64 tables;

	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, pa, c->p->page_size, HTABLE_P_READ), 0);
	before = walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va);
	tables = htable_hat_nr_tables(c->hat);
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va, pa + c->p->page_size, c->p->page_size,
					     HTABLE_P_READ | HTABLE_P_WRITE), -EEXIST);
	after = walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va);
	KUNIT_EXPECT_EQ(test, before.pte, after.pte);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), tables);
	/* A 4 KiB map inside a large leaf is refused as well. */
	if (c->p->page_size != SZ_4K_)
		KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va + SZ_4K_, page_to_phys(c->page),
						     SZ_4K_, HTABLE_P_READ), -EEXIST);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), tables);
}

/*
 * before: two neighbours in one leaf table ; unmap one: the table stays ;
 * unmap the other: it goes.
 */
static void htable_alloc_neighbours_share_tables(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 sz = c->p->page_size, va = test_va(c->p);
	phys_addr_t top = htable_hat_top_pa(c->hat);
	u64 tables;

	/* Stay inside one leaf table: use the entry pair (2k, 2k+1). */
	va &= ~(2 * sz - 1);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, test_pa(c), sz, HTABLE_P_READ), 0);
	tables = htable_hat_nr_tables(c->hat);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va + sz, test_pa(c), sz, HTABLE_P_READ), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), tables);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, va, sz), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), tables);
	KUNIT_EXPECT_EQ(test, walk_raw(top, c->p->levels, va).level, -1);
	KUNIT_EXPECT_EQ(test, walk_raw(top, c->p->levels, va + sz).level,
			(int)leaf_level(sz));
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, va, 2 * sz), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
}

/* Invalid arguments fail before anything is allocated. */
static void htable_alloc_rejects_bad_args(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 sz = c->p->page_size, va = test_va(c->p), pa = test_pa(c);
	u64 end = htable_user_va_end(c->p->levels);

	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va + SZ_4K_ / 2, pa, sz, HTABLE_P_READ), -EINVAL);
	if (sz != SZ_4K_)
		KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va, pa + SZ_4K_, sz, HTABLE_P_READ),
				-EINVAL);
	/* The leaf that reaches the guard page below the canonical hole. */
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, end & ~(sz - 1), pa, sz, HTABLE_P_READ),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, end + sz, pa, sz, HTABLE_P_READ), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va, pa, sz, HTABLE_P_WRITE), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va, pa, sz, HTABLE_P_READ | 8), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va, pa, 3 * SZ_4K_, HTABLE_P_READ), -EOPNOTSUPP);
	KUNIT_EXPECT_EQ(test, htable_hat_unmap(c->hat, va, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_unmap(c->hat, end - SZ_4K_, 2 * SZ_4K_), -EINVAL);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
	KUNIT_EXPECT_EQ(test, raw_count_valid(htable_hat_top_pa(c->hat), 0, 512), 0);

	/* The highest leaf that fits is fine. */
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, (end & ~(sz - 1)) - sz, pa, sz,
					     HTABLE_P_READ), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_unmap(c->hat, (end & ~(sz - 1)) - sz, sz), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
}

/* Unmapping part of a large leaf is refused and leaves the leaf in place. */
static void htable_alloc_unmap_inside_large_leaf_is_einval(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 va = test_va(c->p);

	if (c->p->page_size == SZ_4K_)
		kunit_skip(test, "no large leaf at 4 KiB");
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, test_pa(c), c->p->page_size,
					     HTABLE_P_READ), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_unmap(c->hat, va + SZ_4K_, SZ_4K_), -EINVAL);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va).level,
			(int)leaf_level(c->p->page_size));
}

static struct kunit_case htable_alloc_cases[] = {
	KUNIT_CASE_PARAM(htable_alloc_map_builds_hierarchy, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_unmap_frees_empty_tables, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_map_existing_is_eexist, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_neighbours_share_tables, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_rejects_bad_args, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_unmap_inside_large_leaf_is_einval, alloc_gen_params),
	{}
};

static struct kunit_suite htable_alloc_suite = {
	.name = "htable_alloc",
	.init = alloc_init,
	.exit = alloc_exit,
	.test_cases = htable_alloc_cases,
};
kunit_test_suite(htable_alloc_suite);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KUnit suites for htable");
