// SPDX-License-Identifier: GPL-2.0
/* Helpers shared by the htable KUnit suites: see test_util.h. */
#include <kunit/resource.h>
#include <kunit/test.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <asm/io.h>
#include <asm/pgtable_types.h>

#include "test_util.h"

const struct hkt_param hkt_params_all[6] = {
	{ 4, SZ_4K_, "4-level/4K" }, { 4, SZ_2M_, "4-level/2M" }, { 4, SZ_1G_, "4-level/1G" },
	{ 5, SZ_4K_, "5-level/4K" }, { 5, SZ_2M_, "5-level/2M" }, { 5, SZ_1G_, "5-level/1G" },
};

const struct hkt_param hkt_params_levels[2] = {
	{ 4, SZ_4K_, "4-level" }, { 5, SZ_4K_, "5-level" },
};

void hkt_param_desc(const struct hkt_param *p, char *desc)
{
	strscpy(desc, p->name, KUNIT_PARAM_DESC_SIZE);
}

void hkt_require_size(struct kunit *test, u64 page_size)
{
	if (!(htable_page_sizes() & page_size))
		kunit_skip(test, "CPU has no %llu KiB pages", page_size >> 10);
}

/* ---- raw walks ------------------------------------------------------------ */

struct walk_result walk_raw_top(const u64 *top, unsigned int levels, u64 va)
{
	struct walk_result r = { .pte = 0, .level = -1, .tables = 0 };
	const u64 *entries = top;
	int level;

	for (level = levels - 1; level >= 0; level--) {
		u64 e = READ_ONCE(entries[(va >> (12 + 9 * level)) & 511]);

		r.tables++;
		if (!(e & _PAGE_PRESENT))
			return r;
		if (level == 0 || (e & _PAGE_PSE)) {
			r.pte = e;
			r.level = level;
			return r;
		}
		entries = __va(e & HKT_PADDR);
	}
	return r;
}

struct walk_result walk_raw(phys_addr_t top_pa, unsigned int levels, u64 va)
{
	return walk_raw_top(__va(top_pa), levels, va);
}

int raw_count_valid(phys_addr_t table, int from, int to)
{
	const u64 *entries = __va(table);
	int i, n = 0;

	for (i = from; i < to; i++)
		n += !!(READ_ONCE(entries[i]) & _PAGE_PRESENT);
	return n;
}

static u64 mix64(u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static void raw_state_table(const u64 *entries, int level, u64 base, int nr,
			    struct raw_state *s)
{
	int i;

	for (i = 0; i < nr; i++) {
		u64 e = READ_ONCE(entries[i]);
		u64 va = base + i * hkt_level_size(level);

		if (!(e & _PAGE_PRESENT))
			continue;
		if (level == 0 || (e & _PAGE_PSE)) {
			s->leaves++;
			s->hash += mix64(mix64(va ^ level) ^ e);
			continue;
		}
		s->tables++;
		raw_state_table(__va(e & HKT_PADDR), level - 1, va, 512, s);
		/* Thousands of tables under KASAN and TCG: let the watchdog see us. */
		cond_resched();
	}
}

struct raw_state raw_state_top(const u64 *top, unsigned int levels)
{
	struct raw_state s = {};

	raw_state_table(top, levels - 1, 0, 256, &s);
	return s;
}

struct raw_state raw_state(phys_addr_t top_pa, unsigned int levels)
{
	return raw_state_top(__va(top_pa), levels);
}

/* ---- hats and pages ------------------------------------------------------------ */

static void hkt_hat_destroy_action(void *hat)
{
	htable_hat_destroy(hat);
}

struct htable_hat *hkt_hat_new_flags(struct kunit *test, unsigned int levels, u32 flags)
{
	struct htable_hat *hat = NULL;

	KUNIT_ASSERT_EQ(test, htable_hat_create_flags(levels, flags, &hat), 0);
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, hkt_hat_destroy_action, hat), 0);
	return hat;
}

struct htable_hat *hkt_hat_new(struct kunit *test, unsigned int levels)
{
	return hkt_hat_new_flags(test, levels, 0);
}

void hkt_hat_adopt(struct kunit *test, struct htable_hat *hat)
{
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, hkt_hat_destroy_action, hat), 0);
}

void hkt_hat_destroy(struct kunit *test, struct htable_hat *hat)
{
	kunit_release_action(test, hkt_hat_destroy_action, hat);
}

struct cpu_slot {
	struct htable_hat *hat;
	unsigned int cpu;
};

static void hkt_cpu_leave_action(void *p)
{
	struct cpu_slot *s = p;

	htable_hat_cpu_leave(s->hat, s->cpu);
}

void hkt_cpu_enter(struct kunit *test, struct htable_hat *hat, unsigned int cpu)
{
	struct cpu_slot *s = kunit_kzalloc(test, sizeof(*s), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, s);
	s->hat = hat;
	s->cpu = cpu;
	htable_hat_cpu_enter(hat, cpu);
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, hkt_cpu_leave_action, s), 0);
}

void hkt_cpu_leave(struct kunit *test, struct htable_hat *hat, unsigned int cpu)
{
	struct cpu_slot s = { .hat = hat, .cpu = cpu };

	/* Leaving twice is harmless: the cleanup action clears the bit again. */
	hkt_cpu_leave_action(&s);
}

struct page_slot {
	struct page *page;
	unsigned int order;
};

static void hkt_free_pages_action(void *p)
{
	struct page_slot *s = p;

	__free_pages(s->page, s->order);
}

struct page *hkt_alloc_pages(struct kunit *test, unsigned int order)
{
	struct page_slot *s = kunit_kzalloc(test, sizeof(*s), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, s);
	s->page = alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, order);
	if (!s->page)
		return NULL;
	s->order = order;
	KUNIT_ASSERT_EQ(test, kunit_add_action_or_reset(test, hkt_free_pages_action, s), 0);
	return s->page;
}

/* ---- counters ------------------------------------------------------------------ */

#define HKT_MAX_STATS 64

u64 hkt_stat(struct kunit *test, const char *name)
{
	struct htable_stat *s = kcalloc(HKT_MAX_STATS, sizeof(*s), GFP_KERNEL);
	unsigned int i, n;
	u64 v = 0;
	bool found = false;

	KUNIT_ASSERT_NOT_NULL(test, s);
	n = min_t(unsigned int, htable_stats_snapshot(s, HKT_MAX_STATS), HKT_MAX_STATS);
	for (i = 0; i < n; i++) {
		if (!strcmp(s[i].name, name)) {
			v = s[i].value;
			found = true;
			break;
		}
	}
	kfree(s);
	KUNIT_ASSERT_TRUE_MSG(test, found, "no counter %s", name);
	return v;
}

/* ---- allocation failure injection ------------------------------------------------ */

bool hkt_fail_still_armed(unsigned int k)
{
	u32 target = htable_reserve_target();
	u64 want = htable_reserve_count() + k + 2;
	bool armed;

	htable_reserve_set(want);
	armed = htable_reserve_count() < want;
	htable_test_fail_allocs(0, 0);
	htable_reserve_set(target);
	return armed;
}
