// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: x86pte — the entry primitives (seed: x86pte_*) on a raw table page.
 *
 * Expected entries are built here from the kernel's own _PAGE_* bits, not
 * from arch/x86/paging.h, so a wrong bit in the core's encoding shows up.
 */
#include <kunit/test.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <asm/io.h>
#include <asm/pgtable_types.h>

#include "test_util.h"

struct pte_ctx {
	struct page *page;
	u64 *table;		/* 512 entries */
};

static int x86pte_init(struct kunit *test)
{
	struct pte_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, c);
	c->page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	KUNIT_ASSERT_NOT_NULL(test, c->page);
	c->table = page_address(c->page);
	test->priv = c;
	return 0;
}

static void x86pte_exit(struct kunit *test)
{
	struct pte_ctx *c = test->priv;

	if (c && c->page)
		__free_page(c->page);
}

static bool nx_supported(void)
{
	return (__supported_pte_mask & _PAGE_NX) != 0;
}

/* The leaf the hardware needs for @attrs, from the SDM's bit layout. */
static u64 expected_leaf(u64 pa, unsigned int level, u32 attrs)
{
	u64 e = pa | _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;
	unsigned int cache = (attrs >> 4) & 7;

	if (attrs & HTABLE_P_WRITE)
		e |= _PAGE_RW | _PAGE_DIRTY;
	if (!(attrs & HTABLE_P_EXEC) && nx_supported())
		e |= _PAGE_NX;
	if (attrs & HTABLE_A_GLOBAL)
		e |= _PAGE_GLOBAL;
	if (cache & 1)
		e |= _PAGE_PWT;
	if (cache & 2)
		e |= _PAGE_PCD;
	if (cache & 4)
		e |= level ? _PAGE_PAT_LARGE : _PAGE_PAT;
	if (level)
		e |= _PAGE_PSE;
	return e;
}

struct level_param {
	unsigned int level;
	const char *name;
};

static const struct level_param level_params[] = {
	{ 0, "4K leaf" }, { 1, "2M leaf" }, { 2, "1G leaf" },
};

static void level_param_desc(const struct level_param *p, char *desc)
{
	strscpy(desc, p->name, KUNIT_PARAM_DESC_SIZE);
}
KUNIT_ARRAY_PARAM(level, level_params, level_param_desc);

/*
 * Every attribute combination: P, US and A always; RW and D iff WRITE; NX
 * iff !EXEC (when NX exists); G iff GLOBAL; PWT/PCD/PAT from the PAT index,
 * PAT at bit 7 for a 4 KiB leaf and bit 12 for a large one; PS above level 0.
 */
static void htable_x86pte_make_leaf_encodes_every_attr(struct kunit *test)
{
	const struct level_param *p = test->param_value;
	u64 size = hkt_level_size(p->level);
	/* Address bits set from the leaf size up to bit 51. */
	u64 pas[] = { size, 0x000ffffffffff000ull & ~(size - 1), 37 * size };
	unsigned int i;
	u32 attrs;

	for (i = 0; i < ARRAY_SIZE(pas); i++) {
		for (attrs = 0; attrs <= HTABLE_A_ALL; attrs++) {
			u64 e;

			if (!(attrs & HTABLE_P_READ))
				continue;
			e = htable_pte_make_leaf(pas[i], p->level, attrs);
			KUNIT_EXPECT_EQ_MSG(test, e, expected_leaf(pas[i], p->level, attrs),
					    "pa %#llx attrs %#x", pas[i], attrs);
			/* The address still reads back through the leaf format. */
			KUNIT_EXPECT_EQ(test, hkt_leaf_pa(e, p->level), pas[i]);
		}
	}
}

/* A few spot checks that do not depend on expected_leaf() being right. */
static void htable_x86pte_make_leaf_pat_bit_moves_with_level(struct kunit *test)
{
	u32 wc_pat = HTABLE_P_READ | HTABLE_A_CACHE(4);

	KUNIT_EXPECT_TRUE(test, htable_pte_make_leaf(SZ_2M_, 0, wc_pat) & (1ull << 7));
	KUNIT_EXPECT_FALSE(test, htable_pte_make_leaf(SZ_2M_, 0, wc_pat) & (1ull << 12));
	KUNIT_EXPECT_TRUE(test, htable_pte_make_leaf(SZ_2M_, 1, wc_pat) & (1ull << 12));
	KUNIT_EXPECT_TRUE(test, htable_pte_make_leaf(SZ_1G_, 2, wc_pat) & (1ull << 12));
	/* Bit 7 of a large leaf is PS, whatever the cache index. */
	KUNIT_EXPECT_TRUE(test, htable_pte_make_leaf(SZ_2M_, 1, HTABLE_P_READ) & (1ull << 7));
	KUNIT_EXPECT_FALSE(test, htable_pte_make_leaf(SZ_4K_, 0, HTABLE_P_READ) & (1ull << 7));
	/* Read-only: neither RW nor D; read-write: both. */
	KUNIT_EXPECT_EQ(test, htable_pte_make_leaf(0, 0, HTABLE_P_READ) & (_PAGE_RW | _PAGE_DIRTY),
			0ull);
	KUNIT_EXPECT_EQ(test, htable_pte_make_leaf(0, 0, HTABLE_P_READ | HTABLE_P_WRITE) &
			(_PAGE_RW | _PAGE_DIRTY), (u64)(_PAGE_RW | _PAGE_DIRTY));
	if (nx_supported()) {
		KUNIT_EXPECT_TRUE(test, htable_pte_make_leaf(0, 0, HTABLE_P_READ) & _PAGE_NX);
		KUNIT_EXPECT_FALSE(test, htable_pte_make_leaf(0, 0, HTABLE_P_READ | HTABLE_P_EXEC) &
				   _PAGE_NX);
	}
}

/* before: e[3] = a ; cas(a -> b) succeeds, returns a ; cas(a -> c) fails, returns b */
static void htable_x86pte_cas_returns_found_entry(struct kunit *test)
{
	struct pte_ctx *c = test->priv;
	u64 a = htable_pte_make_leaf(0x1000, 0, HTABLE_P_READ);
	u64 b = htable_pte_make_leaf(0x2000, 0, HTABLE_P_READ);
	u64 d = htable_pte_make_leaf(0x3000, 0, HTABLE_P_READ);

	c->table[3] = a;
	KUNIT_EXPECT_EQ(test, htable_pte_cas(c->table, 3, a, b), a);
	KUNIT_EXPECT_EQ(test, c->table[3], b);
	KUNIT_EXPECT_EQ(test, htable_pte_cas(c->table, 3, a, d), b);
	KUNIT_EXPECT_EQ(test, c->table[3], b);
	/* From empty, as link_ptp and install_leaf do; the last entry too. */
	KUNIT_EXPECT_EQ(test, htable_pte_cas(c->table, 511, 0, d), 0ull);
	KUNIT_EXPECT_EQ(test, c->table[511], d);
	KUNIT_EXPECT_EQ(test, htable_pte_cas(c->table, 511, 0, a), d);
	KUNIT_EXPECT_EQ(test, c->table[511], d);
	/* Neighbours untouched. */
	KUNIT_EXPECT_EQ(test, c->table[2], 0ull);
	KUNIT_EXPECT_EQ(test, c->table[4], 0ull);
	KUNIT_EXPECT_EQ(test, c->table[510], 0ull);
}

/*
 * x86pte_update: the hardware may have set A or D since @expected was read;
 * that alone does not fail it.  Any other difference does.
 */
static void htable_x86pte_update_ignores_only_accessed_dirty(struct kunit *test)
{
	struct pte_ctx *c = test->priv;
	u64 old = htable_pte_make_leaf(0x5000, 0, HTABLE_P_READ | HTABLE_P_WRITE);
	u64 new = htable_pte_make_leaf(0x5000, 0, HTABLE_P_READ);
	u64 bare = old & ~(u64)(_PAGE_ACCESSED | _PAGE_DIRTY);

	/* The entry has A/D, the caller expected none: success, old returned. */
	c->table[7] = old;
	KUNIT_EXPECT_EQ(test, htable_pte_update(c->table, 7, bare, new), old);
	KUNIT_EXPECT_EQ(test, c->table[7], new);

	/* The caller expected A/D, the entry has them cleared: success too. */
	c->table[8] = bare;
	KUNIT_EXPECT_EQ(test, htable_pte_update(c->table, 8, old, new), bare);
	KUNIT_EXPECT_EQ(test, c->table[8], new);

	/* Another page: failure, the entry found is returned and kept. */
	c->table[9] = old;
	KUNIT_EXPECT_EQ(test, htable_pte_update(c->table, 9, old + 0x1000, new), old);
	KUNIT_EXPECT_EQ(test, c->table[9], old);

	/* Another permission (RW) or NX: failure. */
	KUNIT_EXPECT_EQ(test, htable_pte_update(c->table, 9, old & ~(u64)_PAGE_RW, new), old);
	KUNIT_EXPECT_EQ(test, htable_pte_update(c->table, 9, old ^ _PAGE_NX, new), old);
	KUNIT_EXPECT_EQ(test, htable_pte_update(c->table, 9, old ^ _PAGE_GLOBAL, new), old);
	KUNIT_EXPECT_EQ(test, c->table[9], old);

	/* Empty entry, non-empty expectation: failure, returns 0. */
	KUNIT_EXPECT_EQ(test, htable_pte_update(c->table, 10, old, new), 0ull);
	KUNIT_EXPECT_EQ(test, c->table[10], 0ull);
}

/* before: e = leaf(pa) ; invalidate(other) keeps it ; invalidate(pa) clears it */
static void htable_x86pte_invalidate_pfn_clears_only_matching_pa(struct kunit *test)
{
	const struct level_param *p = test->param_value;
	struct pte_ctx *c = test->priv;
	u64 size = hkt_level_size(p->level);
	u64 pa = 5 * size;
	u64 e = htable_pte_make_leaf(pa, p->level, HTABLE_P_READ | HTABLE_A_CACHE(7));

	c->table[20] = e;
	KUNIT_EXPECT_EQ(test, htable_pte_invalidate_pfn(c->table, p->level, 20, pa + size), 0ull);
	KUNIT_EXPECT_EQ(test, htable_pte_invalidate_pfn(c->table, p->level, 20, pa - size), 0ull);
	if (p->level) {
		/* The large leaf's PAT bit (bit 12) is not an address bit. */
		KUNIT_EXPECT_EQ(test, htable_pte_invalidate_pfn(c->table, p->level, 20,
								pa | SZ_4K_), 0ull);
	}
	KUNIT_EXPECT_EQ(test, c->table[20], e);
	KUNIT_EXPECT_EQ(test, htable_pte_invalidate_pfn(c->table, p->level, 20, pa), e);
	KUNIT_EXPECT_EQ(test, c->table[20], 0ull);

	/* A not-present entry holding the address bits is left alone. */
	c->table[21] = e & ~(u64)_PAGE_PRESENT;
	KUNIT_EXPECT_EQ(test, htable_pte_invalidate_pfn(c->table, p->level, 21, pa), 0ull);
	KUNIT_EXPECT_EQ(test, c->table[21], e & ~(u64)_PAGE_PRESENT);
	KUNIT_EXPECT_EQ(test, htable_pte_invalidate_pfn(c->table, p->level, 22, 0), 0ull);
	KUNIT_EXPECT_EQ(test, c->table[22], 0ull);
}

/* copy(src -> dst, [10, 30)) ; copy([500, 600)) stops at 511 */
static void htable_x86pte_copy_copies_only_the_range(struct kunit *test)
{
	struct pte_ctx *c = test->priv;
	u64 *dst = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	unsigned int i;

	KUNIT_ASSERT_NOT_NULL(test, dst);
	for (i = 0; i < 512; i++) {
		c->table[i] = htable_pte_make_leaf((u64)(i + 1) << 12, 0, HTABLE_P_READ);
		dst[i] = 0xdead000ull + i;
	}
	htable_pte_copy(c->table, dst, 10, 20);
	for (i = 0; i < 512; i++)
		KUNIT_EXPECT_EQ_MSG(test, dst[i], i >= 10 && i < 30 ? c->table[i] : 0xdead000ull + i,
				    "entry %u", i);
	htable_pte_copy(c->table, dst, 500, 100);
	for (i = 490; i < 512; i++)
		KUNIT_EXPECT_EQ_MSG(test, dst[i], i >= 500 ? c->table[i] : 0xdead000ull + i,
				    "entry %u", i);
	/* The source is never written. */
	for (i = 0; i < 512; i++)
		KUNIT_EXPECT_EQ(test, c->table[i],
				htable_pte_make_leaf((u64)(i + 1) << 12, 0, HTABLE_P_READ));
}

/* zero([100, 110)) ; zero([505, 1000)) stops at 511 */
static void htable_x86pte_zero_zeroes_only_the_range(struct kunit *test)
{
	struct pte_ctx *c = test->priv;
	unsigned int i;

	for (i = 0; i < 512; i++)
		c->table[i] = 0xbeef000ull + i;
	htable_pte_zero(c->table, 100, 10);
	htable_pte_zero(c->table, 505, 495);
	for (i = 0; i < 512; i++) {
		bool zeroed = (i >= 100 && i < 110) || i >= 505;

		KUNIT_EXPECT_EQ_MSG(test, c->table[i], zeroed ? 0ull : 0xbeef000ull + i,
				    "entry %u", i);
	}
	htable_pte_zero(c->table, 0, 512);
	KUNIT_EXPECT_EQ(test, raw_count_valid(page_to_phys(c->page), 0, 512), 0);
}

static struct kunit_case x86pte_cases[] = {
	KUNIT_CASE_PARAM(htable_x86pte_make_leaf_encodes_every_attr, level_gen_params),
	KUNIT_CASE(htable_x86pte_make_leaf_pat_bit_moves_with_level),
	KUNIT_CASE(htable_x86pte_cas_returns_found_entry),
	KUNIT_CASE(htable_x86pte_update_ignores_only_accessed_dirty),
	KUNIT_CASE_PARAM(htable_x86pte_invalidate_pfn_clears_only_matching_pa, level_gen_params),
	KUNIT_CASE(htable_x86pte_copy_copies_only_the_range),
	KUNIT_CASE(htable_x86pte_zero_zeroes_only_the_range),
	{}
};

static struct kunit_suite x86pte_suite = {
	.name = "x86pte",
	.init = x86pte_init,
	.exit = x86pte_exit,
	.test_cases = x86pte_cases,
};
kunit_test_suite(x86pte_suite);
