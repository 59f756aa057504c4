// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: htable_tlb — TLB shootdowns are batched: one per operation, sent
 * only when a CPU may hold the hat's entries (its CPU set, or that of a
 * hat linking its tables).  A CPU is put in the set by hand
 * (htable_hat_cpu_enter()): an online CPU that is not actually on the hat,
 * so the shootdown IPI it receives is harmless.
 */
#include <kunit/test.h>
#include <linux/cpumask.h>

#include "test_util.h"

#define TLB_BASE (9 * SZ_1G_)
#define TLB_PAGES 16

struct tlb_ctx {
	const struct hkt_param *p;
	struct htable_hat *hat;
	unsigned int cpu;
};

static int tlb_init(struct kunit *test)
{
	struct tlb_ctx *c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, c);
	test->priv = c;
	c->p = test->param_value;
	c->cpu = cpumask_first(cpu_online_mask);
	c->hat = hkt_hat_new(test, c->p->levels);
	/* 16 pages in one level-0 table, and a 2 MiB leaf. */
	KUNIT_ASSERT_EQ(test, htable_hat_map_range(c->hat, TLB_BASE, TLB_PAGES * SZ_4K_, SZ_4K_,
						   HTABLE_P_READ, 0x300000, NULL), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, TLB_BASE + SZ_1G_, 0x40000000, SZ_2M_,
					     HTABLE_P_READ), 0);
	return 0;
}

struct tlb_count {
	u64 shootdowns, pages;
};

static struct tlb_count tlb_now(struct kunit *test)
{
	struct tlb_count t = {
		.shootdowns = hkt_stat(test, "shootdowns"),
		.pages = hkt_stat(test, "shootdown_pages"),
	};
	return t;
}

/*
 * Unmapping 8 pages: one shootdown covering the 8.  Protecting what is
 * left of the 16: one.  Unmapping it all, tables freed too: one.
 */
static void htable_tlb_one_shootdown_per_operation(struct kunit *test)
{
	struct tlb_ctx *c = test->priv;
	struct tlb_count t0, t1;

	hkt_cpu_enter(test, c->hat, c->cpu);

	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE + 2 * SZ_4K_, 8 * SZ_4K_), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns - t0.shootdowns, 1ull);
	KUNIT_EXPECT_GE(test, t1.pages - t0.pages, 8ull);
	KUNIT_EXPECT_LE(test, t1.pages - t0.pages, 512ull);

	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_protect(c->hat, TLB_BASE, TLB_PAGES * SZ_4K_,
						 HTABLE_P_READ | HTABLE_P_WRITE), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns - t0.shootdowns, 1ull);
	/* From the first changed page to the last: pages 0 .. 15. */
	KUNIT_EXPECT_GE(test, t1.pages - t0.pages, (u64)TLB_PAGES);

	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE, 2 * SZ_1G_), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns - t0.shootdowns, 1ull);
	KUNIT_EXPECT_GE(test, t1.pages - t0.pages, (u64)(SZ_1G_ + SZ_2M_) >> 12);
	KUNIT_EXPECT_EQ(test, htable_hat_nr_tables(c->hat), 1ull);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* Cutting a large leaf (a demotion and a split) is still one operation. */
static void htable_tlb_demotion_is_one_shootdown(struct kunit *test)
{
	struct tlb_ctx *c = test->priv;
	struct tlb_count t0, t1;

	hkt_cpu_enter(test, c->hat, c->cpu);
	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE + SZ_1G_ + (SZ_2M_ / 2), SZ_4K_), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns - t0.shootdowns, 1ull);
	KUNIT_EXPECT_GE(test, t1.pages - t0.pages, (u64)SZ_2M_ >> 12);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/* Nobody on the hat: changes need no shootdown; and a new mapping never does. */
static void htable_tlb_no_shootdown_without_cpus(struct kunit *test)
{
	struct tlb_ctx *c = test->priv;
	struct tlb_count t0 = tlb_now(test), t1;

	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE, 4 * SZ_4K_), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_protect(c->hat, TLB_BASE, TLB_PAGES * SZ_4K_,
						 HTABLE_P_READ | HTABLE_P_WRITE), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE + SZ_1G_ + (SZ_2M_ / 2), SZ_4K_), 0);
	htable_hat_drop_tables(c->hat);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns, t0.shootdowns);

	/* A CPU on the hat; maps and reloads (empty -> valid) flush nothing. */
	hkt_cpu_enter(test, c->hat, c->cpu);
	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_map(c->hat, TLB_BASE + 5 * SZ_1G_, 0x1000, SZ_4K_,
					     HTABLE_P_READ), 0);
	KUNIT_ASSERT_EQ(test, htable_hat_fault(c->hat, TLB_BASE + 8 * SZ_4K_), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns, t0.shootdowns);

	/* Left again: nothing more. */
	hkt_cpu_leave(test, c->hat, c->cpu);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE, 2 * SZ_1G_), 0);
	KUNIT_EXPECT_EQ(test, tlb_now(test).shootdowns, t0.shootdowns);
	KUNIT_EXPECT_EQ(test, htable_hat_check(c->hat), 0);
}

/*
 * A's table linked into B, only B has a CPU: A's changes there must reach
 * B's CPU -- one shootdown each.
 */
static void htable_tlb_share_flushes_linker_cpus(struct kunit *test)
{
	struct tlb_ctx *c = test->priv;
	struct htable_hat *b = hkt_hat_new(test, c->p->levels);
	struct tlb_count t0, t1;

	KUNIT_ASSERT_EQ(test, htable_hat_share(b, c->hat, TLB_BASE, 0), 0);
	hkt_cpu_enter(test, b, c->cpu);

	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE + 3 * SZ_4K_, SZ_4K_), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns - t0.shootdowns, 1ull);
	KUNIT_EXPECT_GE(test, t1.pages - t0.pages, 1ull);

	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_protect(c->hat, TLB_BASE, 2 * SZ_4K_,
						 HTABLE_P_READ | HTABLE_P_WRITE), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_EQ(test, t1.shootdowns - t0.shootdowns, 1ull);

	/* B unlinks (its own CPU flushed); after that A's changes are A's alone. */
	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(b, TLB_BASE, SZ_2M_), 0);
	t1 = tlb_now(test);
	KUNIT_EXPECT_GE(test, t1.shootdowns - t0.shootdowns, 1ull);
	t0 = tlb_now(test);
	KUNIT_ASSERT_EQ(test, htable_hat_unmap(c->hat, TLB_BASE + 5 * SZ_4K_, SZ_4K_), 0);
	KUNIT_EXPECT_EQ(test, tlb_now(test).shootdowns, t0.shootdowns);
	KUNIT_EXPECT_EQ(test, htable_hat_check(b), 0);
}

KUNIT_ARRAY_PARAM(tlb_levels, hkt_params_levels, hkt_param_desc);

static struct kunit_case tlb_cases[] = {
	KUNIT_CASE_PARAM(htable_tlb_one_shootdown_per_operation, tlb_levels_gen_params),
	KUNIT_CASE_PARAM(htable_tlb_demotion_is_one_shootdown, tlb_levels_gen_params),
	KUNIT_CASE_PARAM(htable_tlb_no_shootdown_without_cpus, tlb_levels_gen_params),
	KUNIT_CASE_PARAM(htable_tlb_share_flushes_linker_cpus, tlb_levels_gen_params),
	{}
};

static struct kunit_suite tlb_suite = {
	.name = "htable_tlb",
	.init = tlb_init,
	.test_cases = tlb_cases,
};
kunit_test_suite(tlb_suite);
