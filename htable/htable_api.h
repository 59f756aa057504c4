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

/* Same values as HTABLE_PROT_* in include/uapi/linux/htable.h. */
#define HTABLE_P_READ	(1u << 0)
#define HTABLE_P_WRITE	(1u << 1)
#define HTABLE_P_EXEC	(1u << 2)

struct htable_xlate {
	hx_paddr_t pa;		/* physical address of the byte at va */
	hx_u64 page_size;	/* leaf size */
	hx_u32 level;		/* leaf level, 0 = 4 KiB */
	hx_u32 prot;		/* HTABLE_P_* */
};

/** htable_core_init() - global state; 0 or -errno.  Call before anything. */
int htable_core_init(void);
/** htable_core_exit() - warns when hats or tables are still alive. */
void htable_core_exit(void);

/**
 * htable_hat_create() - a new hat with an empty (user half) top table.
 * @levels: 4 or 5.  Returns 0, -EINVAL, -ENOMEM.  May sleep.
 */
int htable_hat_create(unsigned int levels, struct htable_hat **out);

/**
 * htable_hat_destroy() - htable_purge_hat(): free every table of the hat.
 * No CPU may be running on it (a WARN if one is).  May sleep.
 */
void htable_hat_destroy(struct htable_hat *hat);

/**
 * htable_hat_map() - map one leaf: [va, va + page_size) -> pa.
 * @page_size: 4 KiB, 2 MiB or 1 GiB (the latter only with pdpe1gb).
 * Returns 0; -EINVAL (alignment, range, prot); -EOPNOTSUPP (size); -EEXIST
 * (something already mapped there, nothing changed); -ENOMEM (no table
 * could be allocated; tables allocated by this call are given back).
 */
int htable_hat_map(struct htable_hat *hat, hx_u64 va, hx_paddr_t pa,
		   hx_u64 page_size, hx_u32 prot);

/**
 * htable_hat_unmap() - remove every leaf in [va, va + len), flush the TLBs of
 * the CPUs on the hat once, then free the tables left empty.  Holes are
 * fine.  Returns 0 or -EINVAL (alignment, range, or the range cuts a large
 * leaf: splitting one is not supported yet).  May sleep.
 */
int htable_hat_unmap(struct htable_hat *hat, hx_u64 va, hx_u64 len);

/** htable_hat_translate() - 0 and *out, or -ENOENT when unmapped, -EINVAL. */
int htable_hat_translate(struct htable_hat *hat, hx_u64 va, struct htable_xlate *out);

/** htable_hat_levels() - 4 or 5. */
unsigned int htable_hat_levels(const struct htable_hat *hat);

/** htable_hat_top_pa() - physical address of the top table, for CR3. */
hx_paddr_t htable_hat_top_pa(const struct htable_hat *hat);

/** htable_hat_nr_tables() - page-table pages the hat holds, top included. */
hx_u64 htable_hat_nr_tables(const struct htable_hat *hat);

/**
 * htable_hat_copy_kernel_half() - copy entries 256..511 of @src_top (the
 * live kernel top table) into the hat's top table, so the kernel keeps
 * running when CR3 points at the hat.  The core never walks or frees them.
 */
void htable_hat_copy_kernel_half(struct htable_hat *hat, const void *src_top);

/*
 * The hat's CPU set: a CPU is in it while it may hold translations of the
 * hat, i.e. from just before it loads the hat's CR3 until it restored its
 * own.  TLB shootdowns of the hat go to exactly these CPUs.
 */
void htable_hat_cpu_enter(struct htable_hat *hat, unsigned int cpu);
void htable_hat_cpu_leave(struct htable_hat *hat, unsigned int cpu);

/** htable_user_va_end() - end of the mappable (lower) half for @levels. */
hx_u64 htable_user_va_end(unsigned int levels);

/** htable_page_sizes() - bitmap of supported leaf sizes (bit n = 1 << n). */
hx_u64 htable_page_sizes(void);

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
	HTABLE_STAT_NR_EXT
};
void htable_stat_add(enum htable_ext_stat which, hx_s64 delta);

#ifdef __cplusplus
}
#endif

#endif /* HTABLE_API_H */
