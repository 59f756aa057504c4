/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the htable KUnit suites (kunit/test_util.c).
 *
 * The raw walkers read x86-64 entries from a top table through the direct
 * map with the kernel's own _PAGE_* definitions; they share no code with
 * the core under test, so they check it rather than repeat it.
 */
#ifndef HTABLE_KUNIT_TEST_UTIL_H
#define HTABLE_KUNIT_TEST_UTIL_H

#include <kunit/test.h>
#include <linux/types.h>

#include "../htable/htable_api.h"

#define SZ_4K_ (1ull << 12)
#define SZ_2M_ (1ull << 21)
#define SZ_1G_ (1ull << 30)
#define SZ_512G_ (1ull << 39)

/* Physical address bits of an entry (51..12), and of a large leaf. */
#define HKT_PADDR 0x000ffffffffff000ull

static inline unsigned int hkt_leaf_level(u64 page_size)
{
	return page_size == SZ_4K_ ? 0 : page_size == SZ_2M_ ? 1 : 2;
}

/* Bytes one entry at @level maps, and one table at @level spans. */
static inline u64 hkt_level_size(unsigned int level)
{
	return 1ull << (12 + 9 * level);
}

static inline u64 hkt_table_span(unsigned int level)
{
	return hkt_level_size(level) * 512;
}

/* The page address of a raw leaf entry at @level (PAT bit 12 excluded). */
static inline u64 hkt_leaf_pa(u64 pte, int level)
{
	return pte & HKT_PADDR & ~(hkt_level_size(level > 0 ? level : 0) - 1);
}

/* A (levels, page size) pair for KUNIT_CASE_PARAM. */
struct hkt_param {
	unsigned int levels;
	u64 page_size;
	const char *name;
};

extern const struct hkt_param hkt_params_all[6];	/* {4,5} x {4K,2M,1G} */
extern const struct hkt_param hkt_params_levels[2];	/* {4,5} x 4K */
void hkt_param_desc(const struct hkt_param *p, char *desc);

/* kunit_skip() when the CPU cannot map @page_size. */
void hkt_require_size(struct kunit *test, u64 page_size);

/* ---- raw walks ------------------------------------------------------------ */

struct walk_result {
	u64 pte;		/* the leaf entry, 0 if none */
	int level;		/* its level, -1 if none */
	int tables;		/* tables visited, top included */
};

/* CR3-style walk of @va from the top table at @top_pa, as the MMU does. */
struct walk_result walk_raw(phys_addr_t top_pa, unsigned int levels, u64 va);
/* The same from a top table in kernel memory (a copied top). */
struct walk_result walk_raw_top(const u64 *top, unsigned int levels, u64 va);

/* Valid entries in [from, to) of the table at @table. */
int raw_count_valid(phys_addr_t table, int from, int to);

/* Everything reachable from the user half of a top table. */
struct raw_state {
	u64 hash;		/* of every (va, level, leaf entry), order independent */
	u32 tables;		/* tables below the top */
	u32 leaves;
};
struct raw_state raw_state_top(const u64 *top, unsigned int levels);
struct raw_state raw_state(phys_addr_t top_pa, unsigned int levels);

/* ---- hats and pages with automatic cleanup ------------------------------------ */

/* A new hat, destroyed when the test ends (or by hkt_hat_destroy()). */
struct htable_hat *hkt_hat_new(struct kunit *test, unsigned int levels);
struct htable_hat *hkt_hat_new_flags(struct kunit *test, unsigned int levels, u32 flags);
void hkt_hat_destroy(struct kunit *test, struct htable_hat *hat);
/* Destroy a hat made by htable_hat_create*() directly when the test ends. */
void hkt_hat_adopt(struct kunit *test, struct htable_hat *hat);
/* htable_hat_cpu_enter(), left again when the test ends. */
void hkt_cpu_enter(struct kunit *test, struct htable_hat *hat, unsigned int cpu);
void hkt_cpu_leave(struct kunit *test, struct htable_hat *hat, unsigned int cpu);
/* Zeroed pages freed when the test ends; NULL if the allocator said no. */
struct page *hkt_alloc_pages(struct kunit *test, unsigned int order);

/* ---- counters ------------------------------------------------------------------ */

/* The counter @name of htable_stats_snapshot(); fails the test if unknown. */
u64 hkt_stat(struct kunit *test, const char *name);

/* ---- allocation failure injection ------------------------------------------------ */

/*
 * After an operation run under htable_test_fail_allocs(skip, n) with
 * skip <= @k: true if the injected failure was not reached (the hook is
 * still armed).  Probes by growing the reserve by k + 2 pages (2k + 4
 * allocations, more than any skip left), then disarms the hook and puts
 * the reserve target back.
 */
bool hkt_fail_still_armed(unsigned int k);

#endif /* HTABLE_KUNIT_TEST_UTIL_H */
