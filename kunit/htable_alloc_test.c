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

#include "test_util.h"

KUNIT_ARRAY_PARAM(alloc, hkt_params_all, hkt_param_desc);

struct alloc_ctx {
	struct htable_hat *hat;
	const struct hkt_param *p;
	struct page *page;	/* a real page for 4 KiB leaves */
	u32 reserve_target;	/* put back at exit */
};

/* A VA in the user half with bits set at every level, aligned for the size. */
static u64 test_va(const struct hkt_param *p)
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
	c->reserve_target = htable_reserve_target();
	test->priv = c;
	KUNIT_ASSERT_EQ(test, htable_hat_create(c->p->levels, &c->hat), 0);
	c->page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	KUNIT_ASSERT_NOT_NULL(test, c->page);
	if (c->p->page_size == SZ_1G_ && !(htable_page_sizes() & SZ_1G_))
		kunit_skip(test, "CPU has no 1 GiB pages");
	return 0;
}

static void alloc_exit(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;

	/* Failure injection and the reserve are global: always put them back. */
	htable_test_fail_allocs(0, 0);
	if (!c)
		return;
	htable_reserve_set(c->reserve_target);
	if (c->hat)
		htable_hat_destroy(c->hat);
	if (c->page)
		__free_page(c->page);
}

/* before: top(empty) ; after: top -> ... -> leaf table with one entry */
static void htable_alloc_map_builds_hierarchy(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	unsigned int ll = hkt_leaf_level(c->p->page_size);
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
			(int)hkt_leaf_level(sz));
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
	KUNIT_EXPECT_EQ(test, htable_hat_map(c->hat, va, pa, sz, HTABLE_P_READ | 0x80), -EINVAL);
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

/*
 * Unmapping one 4 KiB page inside a large leaf breaks the leaf up: the page
 * goes, the rest stays mapped (in 4 KiB leaves, reloaded on demand).
 * before: PD[i] = 2M leaf ; after: PD[i] empty, record holds 511 pages
 */
static void htable_alloc_unmap_inside_large_leaf_demotes(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 va = test_va(c->p), pa = test_pa(c);
	struct htable_xlate x;

	if (c->p->page_size == SZ_4K_)
		kunit_skip(test, "no large leaf at 4 KiB");
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, pa, c->p->page_size, HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, va + SZ_4K_, SZ_4K_), 0);
	/* The large leaf is gone from the tables... */
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va).level, -1);
	/* ...the cut page is unmapped, its neighbours are 4 KiB pages of the leaf. */
	KUNIT_EXPECT_EQ(test, htable_hat_translate(c->hat, va + SZ_4K_, &x), -ENOENT);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, va, &x), 0);
	KUNIT_EXPECT_EQ(test, x.pa, pa);
	KUNIT_EXPECT_EQ(test, x.page_size, SZ_4K_);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, va + c->p->page_size - 8, &x), 0);
	KUNIT_EXPECT_EQ(test, x.pa, pa + c->p->page_size - 8);
	/* A fault reloads a neighbour as a 4 KiB leaf. */
	KUNIT_ASSERT_EQ(test, htable_hat_fault(c->hat, va + 2 * SZ_4K_), 0);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va + 2 * SZ_4K_).level, 0);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(c->hat), c->p->levels,
				       va + 2 * SZ_4K_).pte & 0x000ffffffffff000ull, pa + 2 * SZ_4K_);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/*
 * Protect over whole large leaves changes them in place: only a leaf the
 * range cuts is broken up (as for unmap).
 * before: PD[i], PD[i+1] = 2M leaves, RO ; protect(leaf i) ; after: PD[i] = 2M leaf, RW
 */
static void htable_alloc_protect_whole_large_leaf_keeps_it(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 sz = c->p->page_size, va = test_va(c->p), pa = test_pa(c);
	unsigned int ll = hkt_leaf_level(sz);
	struct htable_xlate x;
	struct walk_result w;

	if (sz == SZ_4K_)
		kunit_skip(test, "no large leaf at 4 KiB");
	va &= ~(2 * sz - 1);
	KUNIT_ASSERT_EQ(test, htable_hat_map_range(c->hat, va, 2 * sz, sz, HTABLE_P_READ, pa, NULL),
			0);
	KUNIT_ASSERT_EQ(test, htable_hat_protect(c->hat, va, sz, HTABLE_P_READ | HTABLE_P_WRITE), 0);

	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, va + 8, &x), 0);
	KUNIT_EXPECT_EQ(test, x.prot, HTABLE_P_READ | HTABLE_P_WRITE);
	KUNIT_EXPECT_EQ(test, x.page_size, sz);
	KUNIT_EXPECT_EQ(test, x.pa, pa + 8);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, va + sz + 8, &x), 0);
	KUNIT_EXPECT_EQ(test, x.prot, (u32)HTABLE_P_READ);
	KUNIT_EXPECT_EQ(test, x.page_size, sz);
	/* Still one resident large leaf, now writable. */
	w = walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va);
	KUNIT_EXPECT_EQ(test, w.level, (int)ll);
	KUNIT_EXPECT_TRUE(test, w.pte & _PAGE_RW);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, ll), pa);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/*
 * A locked large leaf must stay resident through a protect of the whole
 * leaf (a locked mapping never needs a reload).
 */
static void htable_alloc_protect_keeps_locked_large_leaf_resident(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 sz = c->p->page_size, va = test_va(c->p), pa = test_pa(c);
	unsigned int ll = hkt_leaf_level(sz);
	struct htable_xlate x;
	struct walk_result w;

	if (sz == SZ_4K_)
		kunit_skip(test, "no large leaf at 4 KiB");
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, pa, sz, HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_lock(c->hat, va, sz, 1), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_protect(c->hat, va, sz, HTABLE_P_READ | HTABLE_P_WRITE), 0);

	w = walk_raw(htable_hat_top_pa(c->hat), c->p->levels, va + sz - 8);
	KUNIT_EXPECT_EQ(test, w.level, (int)ll);
	KUNIT_EXPECT_TRUE(test, w.pte & _PAGE_RW);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, va, &x), 0);
	KUNIT_EXPECT_EQ(test, x.locked, 1u);
	KUNIT_EXPECT_EQ(test, x.page_size, sz);
	KUNIT_EXPECT_EQ(test, htable_hat_lock(c->hat, va, sz, 0), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/*
 * A lock that fails half way (a leaf cannot be made resident) undoes only
 * its own work: a range locked before stays locked.
 * before: P0 locked, P1 not resident ; lock([P0, P1]) fails ; after: P0 still locked
 */
static void htable_alloc_failed_lock_keeps_earlier_lock(struct kunit *test)
{
	struct alloc_ctx *c = test->priv;
	u64 sz = c->p->page_size, p0 = test_va(c->p), pa = test_pa(c);
	u64 p1 = p0 + hkt_table_span(hkt_leaf_level(sz));	/* another leaf table */
	struct htable_xlate x;
	int err;

	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, p0, pa, sz, HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, p1, pa, sz, HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_lock(c->hat, p0, sz, 1), 0);
	/* P1's table goes; nothing is left to steal, and no reserve to fall back on. */
	htable_hat_drop_tables(c->hat);
	htable_reap(htable_hat_nr_cached(c->hat));
	KUNIT_ASSERT_EQ(test, htable_reclaimable(), 0ull);
	htable_reserve_set(0);

	htable_test_fail_allocs(0, 1);
	err = htable_hat_lock(c->hat, p0, p1 + sz - p0, 1);
	htable_test_fail_allocs(0, 0);
	KUNIT_ASSERT_EQ(test, err, -ENOMEM);

	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, p1, &x), 0);
	KUNIT_EXPECT_EQ(test, x.locked, 0u);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, p0, &x), 0);
	KUNIT_EXPECT_EQ(test, x.locked, 1u);
	KUNIT_EXPECT_NE(test, walk_raw(htable_hat_top_pa(c->hat), c->p->levels, p0).pte, 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* ---- an allocation failure at every allocation point ----------------------------------------
 *
 * For k = 0, 1, ...: set up fresh hats, make the k-th allocation of the
 * operation fail (htable_test_fail_allocs(k, 1)), run it.  It must either
 * succeed with the right result, or return -ENOMEM and leave every hat as
 * it was: raw tables, table and extent counts, translations, invariants.
 * The loop ends once the operation succeeds without reaching the injected
 * failure.  A second pass fails every allocation from the k-th on, with the
 * reserve emptied (target 0): nothing can cover for the allocator there, so
 * the partial-construction undo paths run; it ends at the first success.
 */

#define FAIL_MAX_K 64
#define FAIL_PROBES 6

struct fail_run {
	const struct hkt_param *p;
	struct htable_hat *hat[2];	/* [0]: the one operated on; [1]: a share source */
	int nhats;
	u64 probes[FAIL_PROBES];	/* VAs whose translations must not change */
	int nprobes;
	u64 size;			/* leaf size */
	u64 span;			/* of the table holding the leaves */
	u64 b;				/* a boundary between two leaf tables */
	u64 pa;				/* never dereferenced: no CR3 load here */
	hx_paddr_t pas[2];
	u32 create_flags;
	struct htable_hat *created;
};

struct hat_snap {
	struct raw_state raw[2];
	u64 tables[2], extents[2];
	int err[2][FAIL_PROBES];
	struct htable_xlate x[2][FAIL_PROBES];
	u64 tables_live, hats_live;
};

struct fail_op {
	const char *name;
	void (*setup)(struct kunit *test, struct fail_run *r);
	int (*run)(struct fail_run *r);
	void (*check_done)(struct kunit *test, struct fail_run *r);
	/*
	 * A failed lock may leave leaves resident (a cache) and its extents
	 * split at the range ends (the same mappings in more pieces).
	 */
	bool resident_may_grow;
	u32 create_flags;
};

static void snap_take(struct kunit *test, struct fail_run *r, struct hat_snap *s)
{
	int h, i;

	memset(s, 0, sizeof(*s));
	for (h = 0; h < r->nhats; h++) {
		s->raw[h] = raw_state(htable_hat_top_pa(r->hat[h]), r->p->levels);
		s->tables[h] = htable_hat_nr_tables(r->hat[h]);
		s->extents[h] = htable_hat_nr_extents(r->hat[h]);
		for (i = 0; i < r->nprobes; i++)
			s->err[h][i] = htable_hat_translate(r->hat[h], r->probes[i], &s->x[h][i]);
	}
	s->tables_live = hkt_stat(test, "tables_live");
	s->hats_live = hkt_stat(test, "hats_live");
}

static void snap_expect_same(struct kunit *test, const struct fail_op *op, struct fail_run *r,
			     const struct hat_snap *a, const struct hat_snap *b, unsigned int k)
{
	int h, i;

	for (h = 0; h < r->nhats; h++) {
		if (!op->resident_may_grow) {
			KUNIT_EXPECT_EQ_MSG(test, a->raw[h].hash, b->raw[h].hash,
					    "%s k=%u hat %d: raw entries changed", op->name, k, h);
			KUNIT_EXPECT_EQ_MSG(test, a->raw[h].tables, b->raw[h].tables,
					    "%s k=%u hat %d", op->name, k, h);
			KUNIT_EXPECT_EQ_MSG(test, a->tables[h], b->tables[h],
					    "%s k=%u hat %d", op->name, k, h);
		}
		KUNIT_EXPECT_GE_MSG(test, b->raw[h].leaves, a->raw[h].leaves,
				    "%s k=%u hat %d: resident leaves lost", op->name, k, h);
		if (!op->resident_may_grow)
			KUNIT_EXPECT_EQ_MSG(test, a->extents[h], b->extents[h],
					    "%s k=%u hat %d", op->name, k, h);
		for (i = 0; i < r->nprobes; i++) {
			const struct htable_xlate *x = &a->x[h][i], *y = &b->x[h][i];

			KUNIT_EXPECT_EQ_MSG(test, a->err[h][i], b->err[h][i],
					    "%s k=%u hat %d va %#llx", op->name, k, h, r->probes[i]);
			KUNIT_EXPECT_TRUE_MSG(test, x->pa == y->pa && x->page_size == y->page_size &&
					      x->prot == y->prot && x->locked == y->locked &&
					      x->shared == y->shared,
					      "%s k=%u hat %d va %#llx: pa %#llx/%#llx size %#llx/%#llx prot %u/%u locked %u/%u shared %u/%u",
					      op->name, k, h, r->probes[i], (u64)x->pa, (u64)y->pa,
					      (u64)x->page_size, (u64)y->page_size, x->prot, y->prot,
					      x->locked, y->locked, x->shared, y->shared);
		}
	}
	KUNIT_EXPECT_EQ_MSG(test, a->hats_live, b->hats_live, "%s k=%u", op->name, k);
	if (!op->resident_may_grow)
		KUNIT_EXPECT_EQ_MSG(test, a->tables_live, b->tables_live, "%s k=%u", op->name, k);
}

static void fail_every_point(struct kunit *test, const struct fail_op *op, bool exhaust)
{
	struct alloc_ctx *c = test->priv;
	struct fail_run *r = kunit_kzalloc(test, sizeof(*r), GFP_KERNEL);
	struct hat_snap *before = kunit_kzalloc(test, sizeof(*before), GFP_KERNEL);
	struct hat_snap *after = kunit_kzalloc(test, sizeof(*after), GFP_KERNEL);
	unsigned int k, ll = hkt_leaf_level(c->p->page_size);
	bool done = false;
	int h;

	KUNIT_ASSERT_NOT_NULL(test, r);
	KUNIT_ASSERT_NOT_NULL(test, before);
	KUNIT_ASSERT_NOT_NULL(test, after);
	if (exhaust)
		htable_reserve_set(0);
	for (k = 0; k < FAIL_MAX_K && !done; k++) {
		bool armed = true;
		int err;

		memset(r, 0, sizeof(*r));
		r->p = c->p;
		r->size = c->p->page_size;
		r->span = hkt_table_span(ll);
		r->b = 5 * SZ_512G_ + 2 * r->span;
		r->pa = 64 * r->size;
		r->create_flags = op->create_flags;
		op->setup(test, r);
		snap_take(test, r, before);

		htable_test_fail_allocs(k, exhaust ? ~0ull : 1);
		err = op->run(r);
		if (!exhaust && !err)
			armed = hkt_fail_still_armed(k);
		htable_test_fail_allocs(0, 0);

		KUNIT_EXPECT_TRUE_MSG(test, err == 0 || err == -ENOMEM, "%s k=%u: %d",
				      op->name, k, err);
		if (err) {
			snap_take(test, r, after);
			snap_expect_same(test, op, r, before, after, k);
		} else {
			op->check_done(test, r);
		}
		for (h = 0; h < r->nhats; h++)
			KUNIT_EXPECT_EQ_MSG(test, htable_hat_check(r->hat[h]), 0, "%s k=%u",
					    op->name, k);
		done = !err && armed;
		for (h = 0; h < r->nhats; h++)
			hkt_hat_destroy(test, r->hat[h]);
		if (test->status == KUNIT_FAILURE)
			break;
	}
	if (test->status != KUNIT_FAILURE)
		KUNIT_EXPECT_TRUE_MSG(test, done, "%s: no success after %u allocation points",
				      op->name, k);
	if (exhaust)
		htable_reserve_set(c->reserve_target);
}

static u64 fail_pa_at(struct fail_run *r, u64 first_va, u64 va)
{
	return r->pa + (va - first_va);
}

/* Empty the hat's cache: a reload must then allocate. */
static void fail_drop_and_drain(struct kunit *test, struct htable_hat *hat)
{
	KUNIT_ASSERT_GT(test, htable_hat_drop_tables(hat), 0ull);
	htable_reap(htable_hat_nr_cached(hat));
	KUNIT_ASSERT_EQ(test, htable_hat_nr_cached(hat), 0ull);
}

/* create: nothing but the (failed or new) hat */
static void fail_create_setup(struct kunit *test, struct fail_run *r)
{
}

static int fail_create_run(struct fail_run *r)
{
	return htable_hat_create_flags(r->p->levels, r->create_flags, &r->created);
}

static void fail_create_done(struct kunit *test, struct fail_run *r)
{
	hkt_hat_adopt(test, r->created);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(r->created), 1ull);
	KUNIT_EXPECT_EQ(test, htable_hat_levels(r->created), r->p->levels);
	if (!r->create_flags)
		KUNIT_EXPECT_EQ(test, raw_count_valid(htable_hat_top_pa(r->created), 0, 512), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_check(r->created), 0);
	hkt_hat_destroy(test, r->created);
}

/* map: two leaves from an array, across a leaf-table boundary, next to a mapped leaf */
static void fail_map_setup(struct kunit *test, struct fail_run *r)
{
	r->hat[0] = hkt_hat_new(test, r->p->levels);
	r->nhats = 1;
	KUNIT_ASSERT_EQ(test, htable_hat_map(r->hat[0], r->b - 2 * r->size, r->pa + 8 * r->size,
					     r->size, HTABLE_P_READ), 0);
	/*
	 * Locked, so that a refill's steal cannot evict it: the raw tables are
	 * then the operation's alone to change.
	 */
	KUNIT_ASSERT_EQ(test, htable_hat_lock(r->hat[0], r->b - 2 * r->size, r->size, 1), 0);
	r->pas[0] = r->pa;
	r->pas[1] = r->pa + 3 * r->size;
	r->probes[r->nprobes++] = r->b - 2 * r->size;
	r->probes[r->nprobes++] = r->b - r->size;
	r->probes[r->nprobes++] = r->b;
	r->probes[r->nprobes++] = r->b + r->size - SZ_4K_;
}

static int fail_map_run(struct fail_run *r)
{
	return htable_hat_map_range(r->hat[0], r->b - r->size, 2 * r->size, r->size,
				    HTABLE_P_READ | HTABLE_P_WRITE, 0, r->pas);
}

static void fail_map_done(struct kunit *test, struct fail_run *r)
{
	unsigned int ll = hkt_leaf_level(r->size);
	struct walk_result w;
	struct htable_xlate x;
	int i;

	for (i = 0; i < 2; i++) {
		u64 va = r->b - r->size + i * r->size;

		KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], va + 8, &x), 0);
		KUNIT_EXPECT_EQ(test, x.pa, r->pas[i] + 8);
		/* A refill's steal may have evicted what the map installed. */
		KUNIT_ASSERT_EQ(test, htable_hat_fault(r->hat[0], va), 0);
		w = walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels, va);
		KUNIT_EXPECT_EQ(test, w.level, (int)ll);
		KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, ll), r->pas[i]);
	}
	w = walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels, r->b - 2 * r->size);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, ll), r->pa + 8 * r->size);
}

/* unmap, protect, lock, fault: four contiguous leaves around the boundary */
static void fail_range_setup(struct kunit *test, struct fail_run *r)
{
	u64 va = r->b - 2 * r->size;

	r->hat[0] = hkt_hat_new(test, r->p->levels);
	r->nhats = 1;
	KUNIT_ASSERT_EQ(test, htable_hat_map_range(r->hat[0], va, 4 * r->size, r->size,
						   HTABLE_P_READ, r->pa, NULL), 0);
	r->probes[r->nprobes++] = va;
	r->probes[r->nprobes++] = r->b - 2 * SZ_4K_;
	r->probes[r->nprobes++] = r->b - SZ_4K_;
	r->probes[r->nprobes++] = r->b;
	r->probes[r->nprobes++] = r->b + SZ_4K_;
	r->probes[r->nprobes++] = r->b + 2 * r->size - SZ_4K_;
}

/* Cuts the last 4 KiB of one leaf and the first of the next: splits or demotes both. */
static int fail_unmap_run(struct fail_run *r)
{
	return htable_hat_unmap(r->hat[0], r->b - SZ_4K_, 2 * SZ_4K_);
}

static void fail_unmap_done(struct kunit *test, struct fail_run *r)
{
	u64 first = r->b - 2 * r->size;
	struct htable_xlate x;

	KUNIT_EXPECT_EQ(test, htable_hat_translate(r->hat[0], r->b - SZ_4K_, &x), -ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_translate(r->hat[0], r->b, &x), -ENOENT);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels,
				       r->b - SZ_4K_).level, -1);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels, r->b).level, -1);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b - 2 * SZ_4K_, &x), 0);
	KUNIT_EXPECT_EQ(test, x.pa, fail_pa_at(r, first, r->b - 2 * SZ_4K_));
	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b + SZ_4K_, &x), 0);
	KUNIT_EXPECT_EQ(test, x.pa, fail_pa_at(r, first, r->b + SZ_4K_));
	/* A cut large leaf comes back as 4 KiB leaves. */
	KUNIT_ASSERT_EQ(test, htable_hat_fault(r->hat[0], r->b + SZ_4K_), 0);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels,
						  r->b + SZ_4K_).pte, 0),
			fail_pa_at(r, first, r->b + SZ_4K_));
}

static int fail_protect_run(struct fail_run *r)
{
	return htable_hat_protect(r->hat[0], r->b - SZ_4K_, 2 * SZ_4K_,
				  HTABLE_P_READ | HTABLE_P_WRITE);
}

static void fail_protect_done(struct kunit *test, struct fail_run *r)
{
	const u32 rw = HTABLE_P_READ | HTABLE_P_WRITE;
	u64 first = r->b - 2 * r->size;
	struct htable_xlate x;

	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b - SZ_4K_, &x), 0);
	KUNIT_EXPECT_EQ(test, x.prot, rw);
	KUNIT_EXPECT_EQ(test, x.pa, fail_pa_at(r, first, r->b - SZ_4K_));
	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b, &x), 0);
	KUNIT_EXPECT_EQ(test, x.prot, rw);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b - 2 * SZ_4K_, &x), 0);
	KUNIT_EXPECT_EQ(test, x.prot, (u32)HTABLE_P_READ);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b + SZ_4K_, &x), 0);
	KUNIT_EXPECT_EQ(test, x.prot, (u32)HTABLE_P_READ);
	/* Resident or reloaded, the entry says read-write now. */
	KUNIT_ASSERT_EQ(test, htable_hat_fault(r->hat[0], r->b), 0);
	KUNIT_EXPECT_TRUE(test, walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels,
					 r->b).pte & _PAGE_RW);
}

/* lock and fault start with nothing resident and an empty cache */
static void fail_range_dropped_setup(struct kunit *test, struct fail_run *r)
{
	fail_range_setup(test, r);
	fail_drop_and_drain(test, r->hat[0]);
}

/* The two middle leaves, whole. */
static int fail_lock_run(struct fail_run *r)
{
	return htable_hat_lock(r->hat[0], r->b - r->size, 2 * r->size, 1);
}

static void fail_lock_done(struct kunit *test, struct fail_run *r)
{
	unsigned int ll = hkt_leaf_level(r->size);
	struct htable_xlate x;

	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b - r->size, &x), 0);
	KUNIT_EXPECT_EQ(test, x.locked, 1u);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b, &x), 0);
	KUNIT_EXPECT_EQ(test, x.locked, 1u);
	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], r->b - 2 * r->size, &x), 0);
	KUNIT_EXPECT_EQ(test, x.locked, 0u);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels,
				       r->b - r->size).level, (int)ll);
	KUNIT_EXPECT_EQ(test, walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels, r->b).level,
			(int)ll);
	KUNIT_EXPECT_EQ(test, htable_hat_lock(r->hat[0], r->b - r->size, 2 * r->size, 0), 0);
}

static int fail_fault_run(struct fail_run *r)
{
	return htable_hat_fault(r->hat[0], r->b + 8);
}

static void fail_fault_done(struct kunit *test, struct fail_run *r)
{
	unsigned int ll = hkt_leaf_level(r->size);
	struct walk_result w = walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels, r->b);

	KUNIT_EXPECT_EQ(test, w.level, (int)ll);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, ll), r->pa + 2 * r->size);
}

/* share: A's leaf table below the boundary into B, which maps elsewhere */
static void fail_share_setup(struct kunit *test, struct fail_run *r)
{
	r->hat[1] = hkt_hat_new(test, r->p->levels);	/* A, the source */
	r->hat[0] = hkt_hat_new(test, r->p->levels);	/* B */
	r->nhats = 2;
	KUNIT_ASSERT_EQ(test, htable_hat_map_range(r->hat[1], r->b - 2 * r->size, 2 * r->size,
						   r->size, HTABLE_P_READ, r->pa, NULL), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_map(r->hat[0], r->b + r->span, r->pa, r->size,
					     HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_lock(r->hat[0], r->b + r->span, r->size, 1), 0);
	r->probes[r->nprobes++] = r->b - 2 * r->size;
	r->probes[r->nprobes++] = r->b - r->size;
	r->probes[r->nprobes++] = r->b + r->span;
}

static int fail_share_run(struct fail_run *r)
{
	return htable_hat_share(r->hat[0], r->hat[1], r->b - r->span, hkt_leaf_level(r->size));
}

static void fail_share_done(struct kunit *test, struct fail_run *r)
{
	u64 va = r->b - r->size;
	struct walk_result wa, wb;
	struct htable_xlate x;

	KUNIT_ASSERT_EQ(test, htable_hat_translate(r->hat[0], va, &x), 0);
	KUNIT_EXPECT_EQ(test, x.shared, 1u);
	KUNIT_EXPECT_EQ(test, x.pa, r->pa + r->size);
	wa = walk_raw(htable_hat_top_pa(r->hat[1]), r->p->levels, va);
	wb = walk_raw(htable_hat_top_pa(r->hat[0]), r->p->levels, va);
	KUNIT_EXPECT_NE(test, wa.pte, 0ull);
	KUNIT_EXPECT_EQ(test, wa.pte, wb.pte);
}

static const struct fail_op fail_ops[] = {
	{ "create", fail_create_setup, fail_create_run, fail_create_done },
	{ "create+copied-top", fail_create_setup, fail_create_run, fail_create_done, false,
	  HTABLE_HAT_COPIED_TOP },
	{ "map", fail_map_setup, fail_map_run, fail_map_done },
	{ "unmap", fail_range_setup, fail_unmap_run, fail_unmap_done },
	{ "protect", fail_range_setup, fail_protect_run, fail_protect_done },
	{ "lock", fail_range_dropped_setup, fail_lock_run, fail_lock_done, true },
	{ "share", fail_share_setup, fail_share_run, fail_share_done },
	{ "fault", fail_range_dropped_setup, fail_fault_run, fail_fault_done },
};

static void fail_op_both_ways(struct kunit *test, const char *name)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(fail_ops); i++) {
		if (strncmp(fail_ops[i].name, name, strlen(name)))
			continue;
		fail_every_point(test, &fail_ops[i], false);
		fail_every_point(test, &fail_ops[i], true);
	}
}

static void htable_alloc_create_fails_cleanly_at_every_allocation(struct kunit *test)
{
	fail_op_both_ways(test, "create");
}

static void htable_alloc_map_fails_cleanly_at_every_allocation(struct kunit *test)
{
	fail_op_both_ways(test, "map");
}

static void htable_alloc_unmap_fails_cleanly_at_every_allocation(struct kunit *test)
{
	fail_op_both_ways(test, "unmap");
}

static void htable_alloc_protect_fails_cleanly_at_every_allocation(struct kunit *test)
{
	fail_op_both_ways(test, "protect");
}

static void htable_alloc_lock_fails_cleanly_at_every_allocation(struct kunit *test)
{
	fail_op_both_ways(test, "lock");
}

static void htable_alloc_share_fails_cleanly_at_every_allocation(struct kunit *test)
{
	fail_op_both_ways(test, "share");
}

static void htable_alloc_fault_fails_cleanly_at_every_allocation(struct kunit *test)
{
	fail_op_both_ways(test, "fault");
}

static struct kunit_case htable_alloc_cases[] = {
	KUNIT_CASE_PARAM(htable_alloc_map_builds_hierarchy, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_unmap_frees_empty_tables, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_map_existing_is_eexist, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_neighbours_share_tables, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_rejects_bad_args, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_unmap_inside_large_leaf_demotes, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_protect_whole_large_leaf_keeps_it, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_protect_keeps_locked_large_leaf_resident, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_failed_lock_keeps_earlier_lock, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_create_fails_cleanly_at_every_allocation, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_map_fails_cleanly_at_every_allocation, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_unmap_fails_cleanly_at_every_allocation, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_protect_fails_cleanly_at_every_allocation, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_lock_fails_cleanly_at_every_allocation, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_share_fails_cleanly_at_every_allocation, alloc_gen_params),
	KUNIT_CASE_PARAM(htable_alloc_fault_fails_cleanly_at_every_allocation, alloc_gen_params),
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
