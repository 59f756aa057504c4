/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The core's C API: what module/ and kunit/ call.  Implemented in C++
 * (htable/capi.cpp); plain C types only, negative errno on failure.
 */
#ifndef HTABLE_API_H
#define HTABLE_API_H

#include "shim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct htable_hat;	/* a private address space: htable::Hat */

/* Attribute bits: the same values as HTABLE_PROT_* in the uapi header. */
#define HTABLE_P_READ		(1u << 0)
#define HTABLE_P_WRITE		(1u << 1)
#define HTABLE_P_EXEC		(1u << 2)
#define HTABLE_A_GLOBAL		(1u << 3)	/* G bit; tests only, see paging.h */
#define HTABLE_A_CACHE(pat)	((unsigned int)(pat) << 4)	/* PAT index 0..7 */
#define HTABLE_A_ALL		0x7fu

/* htable_hat_create_flags() */
#define HTABLE_HAT_COPIED_TOP	(1u << 0)	/* VLP: top level copied per CPU */

struct htable_xlate {
	hx_paddr_t pa;		/* physical address of the byte at va */
	hx_u64 page_size;	/* leaf size */
	hx_u32 level;		/* leaf level, 0 = 4 KiB */
	hx_u32 prot;		/* HTABLE_P_* | HTABLE_A_* */
	hx_u32 locked;		/* not stealable */
	hx_u32 shared;		/* in a range linked from another hat */
};

struct htable_mapping {
	hx_u64 va;
	hx_u64 len;		/* physically contiguous from pa */
	hx_paddr_t pa;		/* 0 for a shared range */
	hx_u32 attrs;
	hx_u32 level;
	hx_u32 locked;
	hx_u32 shared;
};

/** htable_core_init() - global state and the initial reserve; 0 or -errno. */
int htable_core_init(hx_u32 reserve_amount);
/** htable_core_exit() - frees the reserve; warns if hats or tables remain. */
void htable_core_exit(void);

/**
 * htable_hat_create() - a new hat with an empty (user half) top table.
 * @levels: 4 or 5.  Returns 0, -EINVAL, -ENOMEM.  May sleep.
 */
int htable_hat_create(unsigned int levels, struct htable_hat **out);
/** htable_hat_create_flags() - the same, with HTABLE_HAT_* flags. */
int htable_hat_create_flags(unsigned int levels, hx_u32 flags, struct htable_hat **out);

/**
 * htable_hat_destroy() - drop the creator's reference.  Hats that link
 * tables of this one lose those ranges first (they become holes: the memory
 * behind them is the creator's, about to be released); then the hat's
 * tables and record are freed.  No CPU may be running on it (a WARN if one
 * is).  May sleep.
 */
void htable_hat_destroy(struct htable_hat *hat);

/**
 * htable_hat_map() - map one leaf: [va, va + page_size) -> pa.
 * @page_size: 4 KiB, 2 MiB or 1 GiB (the latter only with pdpe1gb).
 * Returns 0; -EINVAL (alignment, range, attributes); -EOPNOTSUPP (size);
 * -EEXIST (something already mapped there, nothing changed); -ENOMEM
 * (nothing changed).
 */
int htable_hat_map(struct htable_hat *hat, hx_u64 va, hx_paddr_t pa,
		   hx_u64 page_size, hx_u32 prot);

/**
 * htable_hat_map_range() - map [va, va + len) in leaves of @page_size, from
 * a contiguous @pa or, if @pas is not NULL, from one address per leaf.
 * Errors as htable_hat_map(); all or nothing.
 */
int htable_hat_map_range(struct htable_hat *hat, hx_u64 va, hx_u64 len, hx_u64 page_size,
			 hx_u32 attrs, hx_paddr_t pa, const hx_paddr_t *pas);

/**
 * htable_hat_unmap() - remove every mapping in [va, va + len) (holes are
 * fine), flush the TLBs of the CPUs on the hat and its sharers once, then
 * free the tables left empty.  A large leaf cut by the range is broken up.
 * Returns 0; -EINVAL (alignment, range, or cuts a shared range); -EBUSY
 * (would break up a locked large leaf); -ENOMEM (nothing changed).
 */
int htable_hat_unmap(struct htable_hat *hat, hx_u64 va, hx_u64 len);

/** htable_hat_protect() - new attributes for the mappings of the range. */
int htable_hat_protect(struct htable_hat *hat, hx_u64 va, hx_u64 len, hx_u32 attrs);

/**
 * htable_hat_lock() - @lock 1: make the range resident and keep its tables
 * from being stolen; 0: release.  -EINVAL if the range cuts a large leaf.
 */
int htable_hat_lock(struct htable_hat *hat, hx_u64 va, hx_u64 len, int lock);

/**
 * htable_hat_share() - link @src's table covering @va at @level (0 = a
 * 4 KiB-leaf table) into @dst: both see the same entries below it.
 * -EINVAL (alignment, level, hats of different depth, @src's range holds
 * shared ranges itself), -ENOENT (nothing mapped there in @src), -EEXIST
 * (@dst has mappings there), -ENOMEM.
 */
int htable_hat_share(struct htable_hat *dst, struct htable_hat *src, hx_u64 va,
		     unsigned int level);

/**
 * htable_hat_fault() - put the translation of @va back from the record
 * after a fault (a stolen table).  0, -ENOENT (a hole), -ENOMEM.
 */
int htable_hat_fault(struct htable_hat *hat, hx_u64 va);

/** htable_hat_translate() - from the record: 0 and *out, -ENOENT, -EINVAL. */
int htable_hat_translate(struct htable_hat *hat, hx_u64 va, struct htable_xlate *out);

/** htable_hat_next_mapping() - first mapping at or above @va, below @end. */
int htable_hat_next_mapping(struct htable_hat *hat, hx_u64 va, hx_u64 end,
			    struct htable_mapping *out);

/** htable_hat_getpte() - the resident leaf entry of @va (0 if none). */
hx_u64 htable_hat_getpte(struct htable_hat *hat, hx_u64 va, unsigned int *level);

/** htable_hat_walk() - next resident leaf at or above *va below @end (0: none). */
hx_u64 htable_hat_walk(struct htable_hat *hat, hx_u64 *va, hx_u64 end, unsigned int *level);

/** htable_hat_drop_tables() - free all tables below the top (tests). */
hx_u64 htable_hat_drop_tables(struct htable_hat *hat);

/** htable_hat_check() - every invariant; 0 or -EINVAL with a warning. */
int htable_hat_check(struct htable_hat *hat);

/** htable_hat_dump() - hat_dump(): one line per table through @emit. */
void htable_hat_dump(struct htable_hat *hat, void (*emit)(void *arg, const char *line),
		     void *arg, int show_pa);

/** htable_hat_levels() - 4 or 5. */
unsigned int htable_hat_levels(const struct htable_hat *hat);

/** htable_hat_top_pa() - physical address of the top table, for CR3 (0
 * for a copied-top hat: use htable_hat_load_top()). */
hx_paddr_t htable_hat_top_pa(const struct htable_hat *hat);

/** htable_hat_copied_top() - true for HTABLE_HAT_COPIED_TOP hats. */
int htable_hat_copied_top(const struct htable_hat *hat);

/**
 * htable_hat_load_top() - copy a copied-top hat's user-half top entries
 * into @dst (a per-CPU top table whose kernel half the caller filled).
 * Call after htable_hat_cpu_enter(), with interrupts off.
 */
void htable_hat_load_top(struct htable_hat *hat, void *dst);

/** htable_hat_nr_tables() - page-table pages the hat holds, top included. */
hx_u64 htable_hat_nr_tables(const struct htable_hat *hat);
/** htable_hat_nr_cached() - free tables in the hat's cache. */
hx_u64 htable_hat_nr_cached(const struct htable_hat *hat);
/** htable_hat_nr_extents() - extents in the hat's record. */
hx_u64 htable_hat_nr_extents(const struct htable_hat *hat);

/**
 * htable_hat_copy_kernel_half() - copy entries 256..511 of @src_top (the
 * live kernel top table) into the hat's top table, so the kernel keeps
 * running when CR3 points at the hat.  The core never walks or frees them.
 */
void htable_hat_copy_kernel_half(struct htable_hat *hat, const void *src_top);

/*
 * The hat's CPU set: a CPU is in it while it may hold translations of the
 * hat, i.e. from just before it loads the hat's CR3 until it restored its
 * own.  TLB shootdowns of the hat go to exactly these CPUs (and those of
 * hats sharing its tables).
 */
void htable_hat_cpu_enter(struct htable_hat *hat, unsigned int cpu);
void htable_hat_cpu_leave(struct htable_hat *hat, unsigned int cpu);

/** htable_user_va_end() - end of the mappable (lower) half for @levels. */
hx_u64 htable_user_va_end(unsigned int levels);

/** htable_page_sizes() - bitmap of supported leaf sizes (bit n = 1 << n). */
hx_u64 htable_page_sizes(void);

/* ---- reclaim --------------------------------------------------------------- */

/** htable_reap() - give up to @nr tables back; returns how many (shrinker). */
hx_u64 htable_reap(hx_u64 nr);
/** htable_reclaimable() - tables htable_reap() could take now. */
hx_u64 htable_reclaimable(void);
/**
 * htable_purge_dead() - free the hats whose last reference went in a steal.
 * htable_reap() cannot (in reclaim, taking a hat lock would order it after
 * fs_reclaim), and every other call does it on its way out, so a hat closed
 * during a steal waits for this.  Takes hat locks: call it with no lock
 * held, outside reclaim.  htable_dead_pending() (racy) says if there is any.
 */
void htable_purge_dead(void);
int htable_dead_pending(void);
/**
 * htable_steal_hold() - @hold 1: no table is stolen (REAP, the shrinker, a
 * refill's steal) until the matching @hold 0.  A translation put back by
 * htable_hat_fault() while held stays resident until then.  Counted; may be
 * nested; never sleeps.
 */
void htable_steal_hold(int hold);
/** htable_reserve_count() / htable_reserve_target() - the reserve. */
hx_u64 htable_reserve_count(void);
hx_u32 htable_reserve_target(void);
/** htable_reserve_set() - new target (htable_reserve_amount), then adjust. */
void htable_reserve_set(hx_u32 amount);
/** htable_test_fail_allocs() - let @skip allocations through, fail @count. */
void htable_test_fail_allocs(hx_u64 skip, hx_u64 count);

/* ---- the x86pte primitives on a raw table page (tests) ---------------------- */

/** htable_pte_make_leaf() - the leaf entry the core writes for these attrs. */
hx_u64 htable_pte_make_leaf(hx_paddr_t pa, unsigned int level, hx_u32 attrs);
/** x86pte_cas(): returns the entry found (@expected on success). */
hx_u64 htable_pte_cas(void *table, unsigned int entry, hx_u64 expected, hx_u64 v);
/** x86pte_update(): like cas, but A/D changes of the old entry do not fail it. */
hx_u64 htable_pte_update(void *table, unsigned int entry, hx_u64 expected, hx_u64 v);
/** x86pte_invalidate_pfn(): clear the entry if it maps @pa; returns the old one or 0. */
hx_u64 htable_pte_invalidate_pfn(void *table, unsigned int level, unsigned int entry,
				 hx_paddr_t pa);
/** x86pte_copy() / x86pte_zero(): @count entries from @entry. */
void htable_pte_copy(void *src, void *dst, unsigned int entry, unsigned int count);
void htable_pte_zero(void *table, unsigned int entry, unsigned int count);

/* ---- counters ---------------------------------------------------------------- */

struct htable_stat {
	const char *name;
	hx_u64 value;
};

/** htable_stats_snapshot() - fill up to @max counters; returns how many exist. */
unsigned int htable_stats_snapshot(struct htable_stat *out, unsigned int max);

/** htable_stat_add() - bump a counter owned by module/ (jobs, windows...). */
enum htable_ext_stat {
	HTABLE_STAT_JOBS,
	HTABLE_STAT_JOB_FAULTS,
	HTABLE_STAT_WINDOWS,
	HTABLE_STAT_MAX_WINDOW_NS,	/* a maximum, not a sum */
	HTABLE_STAT_PINNED_PAGES,	/* signed delta */
	HTABLE_STAT_PAGES_LIVE,		/* signed delta: pages held from the page allocator */
	HTABLE_STAT_OBJECTS_LIVE,	/* signed delta: kernel-heap objects held */
	HTABLE_STAT_NR_EXT
};
void htable_stat_add(enum htable_ext_stat which, hx_s64 delta);
/** htable_stat_read() - one of those counters (also after htable_core_exit()). */
hx_s64 htable_stat_read(enum htable_ext_stat which);

#ifdef __cplusplus
}
#endif

#endif /* HTABLE_API_H */
