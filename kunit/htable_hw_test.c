// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_hw — the tables as the MMU reads them.  A job (module/
 * runner.c) switches a CPU's CR3 onto the hat and copies a pattern through
 * the hat's VAs; the bytes are then checked through the kernel's own
 * mapping of the physical pages (page_address()), so a wrong PA, level or
 * permission in any entry shows up as data in the wrong place, or a fault.
 */
#include <kunit/test.h>
#include <asm/io.h>
#include <linux/cpumask.h>
#include <linux/mm.h>
#include <linux/string.h>

#include "../arch/x86/arch.h"
#include "../module/internal.h"
#include "test_util.h"

#define HW_VA 0x10000000ull		/* 256 MiB: three 4 KiB pages */
#define HW_VA_2M (5 * SZ_1G_)		/* a 2 MiB leaf */
#define HW_PAGES 3

struct hw_ctx {
	unsigned int levels;
	struct htable_hat *hat;
	struct page *pg;		/* 4 pages: 0..2 mapped (permuted), 3 never */
	u8 *mem;
	struct htable_job *job;
};

/* VA page i -> physical page hw_perm[i] of ctx->pg. */
static const unsigned int hw_perm[HW_PAGES] = { 2, 0, 1 };

static int hw_init(struct kunit *test)
{
	struct hw_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, c);
	test->priv = c;
	c->levels = pgtable_l5_enabled() ? 5 : 4;
	c->hat = hkt_hat_new(test, c->levels);
	/* The kernel keeps running in the window on this copy of its half. */
	htable_hat_copy_kernel_half(c->hat, htable_arch_kernel_top());
	c->pg = hkt_alloc_pages(test, 2);
	KUNIT_ASSERT_NOT_NULL(test, c->pg);
	c->mem = page_address(c->pg);
	c->job = kunit_kzalloc(test, sizeof(*c->job), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, c->job);
	return 0;
}

static void hw_map_pages(struct kunit *test, struct hw_ctx *c)
{
	hx_paddr_t pas[HW_PAGES];
	int i;

	for (i = 0; i < HW_PAGES; i++)
		pas[i] = page_to_phys(c->pg) + hw_perm[i] * PAGE_SIZE;
	KUNIT_ASSERT_EQ(test, htable_hat_map_range(c->hat, HW_VA, HW_PAGES * SZ_4K_, SZ_4K_,
						   HTABLE_P_READ | HTABLE_P_WRITE, 0, pas), 0);
}

static struct htable_job *hw_run(struct kunit *test, struct hw_ctx *c, u32 op, unsigned int cpu,
				 u64 va, u64 len, u64 seed)
{
	struct htable_job *j = c->job;

	memset(j, 0, sizeof(*j));
	j->op = op;
	j->cpu = cpu;
	j->va = va;
	j->length = len;
	j->seed = seed;
	KUNIT_ASSERT_EQ(test, htable_run_job(c->hat, j), 0);
	KUNIT_EXPECT_EQ(test, j->ran_on_cpu, cpu);
	return j;
}

/* First mismatch of @p[0, len) against pattern(seed, off + i), or len. */
static u64 hw_first_bad(const u8 *p, u64 len, u64 seed, u64 off)
{
	u64 i;

	for (i = 0; i < len; i++)
		if (p[i] != htable_pattern_byte(seed, off + i))
			return i;
	return len;
}

/* VA page i of the job holds pattern(seed) at its offsets; page 3 is untouched. */
static void hw_expect_pages(struct kunit *test, struct hw_ctx *c, u64 seed, int skip_page)
{
	int i;

	for (i = 0; i < HW_PAGES; i++) {
		if (i == skip_page)
			continue;
		KUNIT_EXPECT_EQ_MSG(test, hw_first_bad(c->mem + hw_perm[i] * PAGE_SIZE, PAGE_SIZE,
						       seed, i * PAGE_SIZE), (u64)PAGE_SIZE,
				    "VA page %d (physical page %u), seed %llu", i, hw_perm[i], seed);
	}
	KUNIT_EXPECT_NULL(test, memchr_inv(c->mem + 3 * PAGE_SIZE, 0, PAGE_SIZE));
}

/* FILL on every CPU: the pattern lands in exactly the mapped physical pages. */
static void htable_hw_fill_lands_in_mapped_pages(struct kunit *test)
{
	struct hw_ctx *c = test->priv;
	struct htable_job *j;
	unsigned int cpu;

	hw_map_pages(test, c);
	for_each_online_cpu(cpu) {
		u64 seed = 0x1000 + cpu;

		j = hw_run(test, c, HTABLE_JOB_FILL, cpu, HW_VA, HW_PAGES * SZ_4K_, seed);
		KUNIT_EXPECT_EQ(test, j->faults, 0ull);
		KUNIT_EXPECT_EQ(test, j->bytes, HW_PAGES * SZ_4K_);
		hw_expect_pages(test, c, seed, -1);

		j = hw_run(test, c, HTABLE_JOB_VERIFY, cpu, HW_VA, HW_PAGES * SZ_4K_, seed);
		KUNIT_EXPECT_EQ(test, j->result, 0ull);
		KUNIT_EXPECT_EQ(test, j->faults, 0ull);
		/* And a wrong seed is noticed: the job reads real memory. */
		j = hw_run(test, c, HTABLE_JOB_VERIFY, cpu, HW_VA, HW_PAGES * SZ_4K_, seed + 1);
		KUNIT_EXPECT_GT(test, j->result, 0ull);
	}
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/*
 * Tables taken away -- all dropped, then stolen by htable_reap() -- fault
 * and are reloaded from the record inside the job; the data is right.
 */
static void htable_hw_reloads_after_drop_and_steal(struct kunit *test)
{
	struct hw_ctx *c = test->priv;
	struct htable_job *j;
	unsigned int cpu;

	hw_map_pages(test, c);
	j = hw_run(test, c, HTABLE_JOB_FILL, cpumask_first(cpu_online_mask), HW_VA,
		   HW_PAGES * SZ_4K_, 1);
	KUNIT_EXPECT_EQ(test, j->reloads, 0ull);

	for_each_online_cpu(cpu) {
		KUNIT_ASSERT_GT(test, htable_hat_drop_tables(c->hat), 0ull);
		KUNIT_ASSERT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
		j = hw_run(test, c, HTABLE_JOB_FILL, cpu, HW_VA, HW_PAGES * SZ_4K_, 20 + cpu);
		KUNIT_EXPECT_GT(test, j->reloads, 0ull);
		KUNIT_EXPECT_EQ(test, j->faults, 0ull);
		KUNIT_EXPECT_EQ(test, j->bytes, HW_PAGES * SZ_4K_);
		hw_expect_pages(test, c, 20 + cpu, -1);

		KUNIT_ASSERT_GT(test, htable_reap(~0ull), 0ull);
		KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
		j = hw_run(test, c, HTABLE_JOB_VERIFY, cpu, HW_VA, HW_PAGES * SZ_4K_, 20 + cpu);
		KUNIT_EXPECT_GT(test, j->reloads, 0ull);
		KUNIT_EXPECT_EQ(test, j->faults, 0ull);
		KUNIT_EXPECT_EQ(test, j->result, 0ull);
	}
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* An unmapped page faults once and is skipped; its physical page keeps the old data. */
static void htable_hw_unmapped_page_faults(struct kunit *test)
{
	struct hw_ctx *c = test->priv;
	struct htable_job *j;
	u64 holes;

	hw_map_pages(test, c);
	hw_run(test, c, HTABLE_JOB_FILL, cpumask_first(cpu_online_mask), HW_VA,
	       HW_PAGES * SZ_4K_, 7);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, HW_VA + SZ_4K_, SZ_4K_), 0);

	holes = hkt_stat(test, "holes");
	j = hw_run(test, c, HTABLE_JOB_FILL, cpumask_last(cpu_online_mask), HW_VA,
		   HW_PAGES * SZ_4K_, 8);
	KUNIT_EXPECT_EQ(test, j->faults, 1ull);
	KUNIT_EXPECT_EQ(test, j->bytes, (HW_PAGES - 1) * SZ_4K_);
	KUNIT_EXPECT_GE(test, hkt_stat(test, "holes") - holes, 1ull);
	hw_expect_pages(test, c, 8, 1);
	/* VA page 1 is physical page 0: still the first job's bytes. */
	KUNIT_EXPECT_EQ(test, hw_first_bad(c->mem + hw_perm[1] * PAGE_SIZE, PAGE_SIZE, 7, PAGE_SIZE),
			(u64)PAGE_SIZE);

	j = hw_run(test, c, HTABLE_JOB_VERIFY, cpumask_first(cpu_online_mask), HW_VA,
		   HW_PAGES * SZ_4K_, 8);
	KUNIT_EXPECT_EQ(test, j->faults, 1ull);
	KUNIT_EXPECT_EQ(test, j->result, 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* A 2 MiB leaf over an order-9 allocation: the whole 2 MiB, through one entry. */
static void htable_hw_2m_leaf_maps_order9_block(struct kunit *test)
{
	struct hw_ctx *c = test->priv;
	struct page *big = hkt_alloc_pages(test, 9);
	struct htable_job *j;
	struct walk_result w;
	u8 *p;

	if (!big)
		kunit_skip(test, "no order-9 block free");
	p = page_address(big);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, HW_VA_2M, page_to_phys(big), SZ_2M_,
					     HTABLE_P_READ | HTABLE_P_WRITE), 0);
	w = walk_raw(htable_hat_top_pa(c->hat), c->levels, HW_VA_2M + SZ_1M);
	KUNIT_ASSERT_EQ(test, w.level, 1);
	KUNIT_EXPECT_EQ(test, hkt_leaf_pa(w.pte, 1), (u64)page_to_phys(big));

	j = hw_run(test, c, HTABLE_JOB_FILL, cpumask_first(cpu_online_mask), HW_VA_2M, SZ_2M_, 99);
	KUNIT_EXPECT_EQ(test, j->faults, 0ull);
	KUNIT_EXPECT_EQ(test, j->bytes, SZ_2M_);
	KUNIT_EXPECT_EQ(test, hw_first_bad(p, SZ_2M_, 99, 0), SZ_2M_);

	/*
	 * Dropped: the first window faults on each of its (at most four)
	 * pages; the leaf reloaded for the first serves the whole 2 MiB.
	 */
	htable_hat_drop_tables(c->hat);
	j = hw_run(test, c, HTABLE_JOB_VERIFY, cpumask_last(cpu_online_mask), HW_VA_2M, SZ_2M_, 99);
	KUNIT_EXPECT_GE(test, j->reloads, 1ull);
	KUNIT_EXPECT_LE(test, j->reloads, 4ull);
	KUNIT_EXPECT_EQ(test, j->faults, 0ull);
	KUNIT_EXPECT_EQ(test, j->result, 0ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

static struct kunit_case hw_cases[] = {
	KUNIT_CASE(htable_hw_fill_lands_in_mapped_pages),
	KUNIT_CASE(htable_hw_reloads_after_drop_and_steal),
	KUNIT_CASE(htable_hw_unmapped_page_faults),
	KUNIT_CASE(htable_hw_2m_leaf_maps_order9_block),
	{}
};

static struct kunit_suite hw_suite = {
	.name = "htable_hw",
	.init = hw_init,
	.test_cases = hw_cases,
};
kunit_test_suite(hw_suite);
