// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_vlp — hats with a copied top level (seed: VLP).  The top
 * table lives in kernel memory and never goes into CR3; a CPU entering the
 * hat copies its user half (entries 0..255) into a per-CPU top table whose
 * kernel half it owns.
 */
#include <kunit/test.h>
#include <asm/io.h>
#include <linux/cpumask.h>
#include <linux/mm.h>

#include "../arch/x86/arch.h"
#include "../module/internal.h"
#include "test_util.h"

#define VLP_JUNK 0x5a5a000000000001ull

static void vlp_load_top(struct kunit *test, struct htable_hat *hat, u64 *top)
{
	htable_hat_load_top(hat, top);
}

struct vlp_ctx {
	const struct hkt_param *p;
	struct htable_hat *hat;
	u64 *top;		/* a per-CPU-like top table, filled with junk */
};

static int vlp_init(struct kunit *test)
{
	struct vlp_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);
	int i;

	KUNIT_ASSERT_NOT_NULL(test, c);
	test->priv = c;
	c->p = test->param_value;
	if (!c->p)	/* a case that makes its own hat */
		return 0;
	c->hat = hkt_hat_new_flags(test, c->p->levels, HTABLE_HAT_COPIED_TOP);
	c->top = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, c->top);
	for (i = 0; i < 512; i++)
		c->top[i] = VLP_JUNK + ((u64)i << 12);
	return 0;
}

/* The user half of @c->top after a load, walked as the MMU would. */
static struct walk_result vlp_walk(struct kunit *test, struct vlp_ctx *c, u64 va)
{
	vlp_load_top(test, c->hat, c->top);
	return walk_raw_top(c->top, c->p->levels, va);
}

/* No top PA (nothing to put in CR3), one table (the copied top), flagged. */
static void htable_vlp_hat_has_no_top_pa(struct kunit *test)
{
	struct vlp_ctx *c = test->priv;

	KUNIT_EXPECT_EQ(test, htable_hat_top_pa(c->hat), 0ull);
	KUNIT_EXPECT_TRUE(test, htable_hat_copied_top(c->hat));
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
	KUNIT_EXPECT_EQ(test, htable_hat_levels(c->hat), c->p->levels);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* load_top: entries 0..255 become the hat's (zeros included), 256..511 are left alone. */
static void htable_vlp_load_top_copies_only_user_half(struct kunit *test)
{
	struct vlp_ctx *c = test->priv;
	u64 va = 7 * SZ_512G_ + 0x1000;
	unsigned int top_entry = (va >> (12 + 9 * (c->p->levels - 1))) & 511;
	int i;

	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, 0x77000, SZ_4K_, HTABLE_P_READ), 0);
	vlp_load_top(test, c->hat, c->top);
	for (i = 0; i < 256; i++) {
		if (i == (int)top_entry)
			KUNIT_EXPECT_TRUE_MSG(test, c->top[i] & 1, "entry %d", i);
		else
			KUNIT_EXPECT_EQ_MSG(test, c->top[i], 0ull, "entry %d", i);
	}
	for (i = 256; i < 512; i++)
		KUNIT_EXPECT_EQ_MSG(test, c->top[i], VLP_JUNK + ((u64)i << 12), "entry %d", i);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(walk_raw_top(c->top, c->p->levels, va).pte, 0), 0x77000ull);
}

/*
 * map, translate, unmap on a copied top, checked through a loaded copy
 * through the per-CPU-like copy that htable_hat_load_top() fills.
 */
static void htable_vlp_map_unmap_translate(struct kunit *test)
{
	struct vlp_ctx *c = test->priv;
	u64 va = 2 * SZ_512G_ + 3 * SZ_1G_, pa = 0x40000000ull;
	unsigned int ll = hkt_leaf_level(c->p->page_size);
	struct htable_xlate x;
	struct walk_result w;
	int i;

	hkt_require_size(test, c->p->page_size);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, va, pa, c->p->page_size,
					     HTABLE_P_READ | HTABLE_P_WRITE), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), (u64)(c->p->levels - ll));
	KUNIT_ASSERT_EQ(test, htable_hat_translate(c->hat, va + 8, &x), 0);
	KUNIT_EXPECT_EQ(test, x.pa, pa + 8);
	KUNIT_EXPECT_EQ(test, x.page_size, c->p->page_size);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
	w = vlp_walk(test, c, va + 8);
	KUNIT_EXPECT_EQ(test, w.level, (int)ll);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, ll), pa);

	/* Dropped and reloaded: the copy sees it again. */
	htable_hat_drop_tables(c->hat);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
	KUNIT_EXPECT_EQ(test, vlp_walk(test, c, va).level, -1);
	KUNIT_ASSERT_EQ(test, htable_hat_fault(c->hat, va), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), (u64)(c->p->levels - ll));
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(vlp_walk(test, c, va).pte, ll), pa);

	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, va, c->p->page_size), 0);
	KUNIT_EXPECT_EQ(test, htable_hat_translate(c->hat, va, &x), -ENOENT);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
	KUNIT_EXPECT_EQ(test, vlp_walk(test, c, va).level, -1);
	for (i = 0; i < 256; i++)
		KUNIT_EXPECT_EQ_MSG(test, c->top[i], 0ull, "entry %d", i);
}

/*
 * A copied-top hat runs jobs: each CPU loads the user half into its own
 * top table.  At the CPU's paging depth, on every online CPU.
 */
static void htable_vlp_hardware_job_runs(struct kunit *test)
{
	unsigned int levels = pgtable_l5_enabled() ? 5 : 4;
	struct htable_hat *hat = hkt_hat_new_flags(test, levels, HTABLE_HAT_COPIED_TOP);
	struct page *pg = hkt_alloc_pages(test, 1);
	struct htable_job *job = kunit_kzalloc(test, sizeof(*job), GFP_KERNEL);
	u64 va = 0x7000000000ull;
	unsigned int cpu, i;
	u8 *p;

	KUNIT_ASSERT_NOT_NULL(test, pg);
	KUNIT_ASSERT_NOT_NULL(test, job);
	KUNIT_ASSERT_EQ(test, htable_hat_map(hat, va, page_to_phys(pg), SZ_4K_,
					     HTABLE_P_READ | HTABLE_P_WRITE), 0);
	p = page_address(pg);
	for_each_online_cpu(cpu) {
		memset(job, 0, sizeof(*job));
		job->op = HTABLE_JOB_FILL;
		job->cpu = cpu;
		job->va = va;
		job->length = SZ_4K_;
		job->seed = 0x1234 + cpu;
		KUNIT_ASSERT_EQ(test, htable_run_job(hat, job), 0);
		KUNIT_EXPECT_EQ(test, job->ran_on_cpu, cpu);
		KUNIT_EXPECT_EQ(test, job->faults, 0ull);
		KUNIT_EXPECT_EQ(test, job->bytes, SZ_4K_);
		for (i = 0; i < SZ_4K_; i++)
			if (p[i] != htable_pattern_byte(job->seed, i))
				break;
		KUNIT_EXPECT_EQ_MSG(test, i, (unsigned int)SZ_4K_, "cpu %u: byte %u", cpu, i);
		/* The neighbouring page was never mapped. */
		KUNIT_EXPECT_NULL(test, memchr_inv(p + PAGE_SIZE, 0, PAGE_SIZE));
	}

	/* Dropped: the next job reloads through the per-CPU copy. */
	htable_hat_drop_tables(hat);
	memset(job, 0, sizeof(*job));
	job->op = HTABLE_JOB_VERIFY;
	job->cpu = cpumask_last(cpu_online_mask);
	job->va = va;
	job->length = SZ_4K_;
	job->seed = 0x1234 + cpumask_last(cpu_online_mask);
	KUNIT_ASSERT_EQ(test, htable_run_job(hat, job), 0);
	KUNIT_EXPECT_GT(test, job->reloads, 0ull);
	KUNIT_EXPECT_EQ(test, job->faults, 0ull);
	KUNIT_EXPECT_EQ(test, job->result, 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(hat), 0);
}

KUNIT_ARRAY_PARAM(vlp, hkt_params_all, hkt_param_desc);
KUNIT_ARRAY_PARAM(vlp_levels, hkt_params_levels, hkt_param_desc);

static struct kunit_case vlp_cases[] = {
	KUNIT_CASE_PARAM(htable_vlp_hat_has_no_top_pa, vlp_levels_gen_params),
	KUNIT_CASE_PARAM(htable_vlp_load_top_copies_only_user_half, vlp_levels_gen_params),
	KUNIT_CASE_PARAM(htable_vlp_map_unmap_translate, vlp_gen_params),
	KUNIT_CASE(htable_vlp_hardware_job_runs),
	{}
};

static struct kunit_suite vlp_suite = {
	.name = "htable_vlp",
	.init = vlp_init,
	.test_cases = vlp_cases,
};
kunit_test_suite(vlp_suite);
