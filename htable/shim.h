/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The shim: the only interface between the C++ core and its environment.
 *
 * The core (htable/ and the arch/x86 headers) never includes a kernel header.  It sees
 * this plain C header, implemented twice:
 *   - module/shim_*.c   thin wrappers over the kernel API, one file per area,
 *                       each keeping the kernel's name in its own (hx_X wraps X);
 *   - tests/host/shim_host.cpp   a userspace implementation with leak counters
 *                       and fail-on-demand allocation, for host tests.
 *
 * Fixed-width types come from the compiler's predefined macros, since the
 * kernel build passes -nostdinc.  Errors are negative errno values, which have
 * the same numbers in the kernel and in glibc on x86-64.
 */
#ifndef HTABLE_SHIM_H
#define HTABLE_SHIM_H

typedef __UINT8_TYPE__ hx_u8;
typedef __UINT16_TYPE__ hx_u16;
typedef __UINT32_TYPE__ hx_u32;
typedef __UINT64_TYPE__ hx_u64;
typedef __INT64_TYPE__ hx_s64;
typedef __SIZE_TYPE__ hx_size_t;
typedef __UINTPTR_TYPE__ hx_uptr;
typedef hx_u64 hx_paddr_t;

#define HX_EPERM	1
#define HX_ENOENT	2
#define HX_EFAULT	14
#define HX_EBUSY	16
#define HX_EEXIST	17
#define HX_EINVAL	22
#define HX_ENOSPC	28
#define HX_ERANGE	34
#define HX_ENOMEM	12
#define HX_EAGAIN	11
#define HX_EOPNOTSUPP	95

#define HX_PAGE_SHIFT	12
#define HX_PAGE_SIZE	(1ull << HX_PAGE_SHIFT)

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pages (module/shim_mm.c) ------------------------------------------ */

/* hx_alloc_pages() flags */
#define HX_ALLOC_ACCOUNT	(1u << 0)	/* charge to the caller's memcg */
#define HX_ALLOC_NOWAIT		(1u << 1)	/* atomic context: GFP_NOWAIT */

/**
 * hx_alloc_pages() - allocate 2^order zeroed, physically contiguous pages.
 * @order: 0 for one page; the top table uses 1, see htable/hat.cpp.
 * @flags: HX_ALLOC_*.
 *
 * Wraps alloc_pages(GFP_KERNEL | __GFP_ZERO [| __GFP_ACCOUNT]).  Returns the
 * kernel virtual address of the first page (direct map) or NULL.  May sleep
 * unless HX_ALLOC_NOWAIT.
 */
void *hx_alloc_pages(unsigned int order, unsigned int flags);

/** hx_free_pages() - free what hx_alloc_pages() returned, same order. */
void hx_free_pages(void *kva, unsigned int order);

/** hx_virt_to_phys() - physical address of a direct-map address. */
hx_paddr_t hx_virt_to_phys(const void *kva);

/** hx_phys_to_virt() - direct-map address of a physical address. */
void *hx_phys_to_virt(hx_paddr_t pa);

/** hx_kzalloc() - kzalloc(GFP_KERNEL); NULL on failure.  May sleep. */
void *hx_kzalloc(hx_size_t size);

/** hx_kvzalloc() - kvzalloc(GFP_KERNEL) for large arrays; NULL on failure. */
void *hx_kvzalloc(hx_size_t size);

/** hx_kfree() - kfree(); NULL is a no-op. */
void hx_kfree(const void *p);

/** hx_kvfree() - kvfree(); NULL is a no-op. */
void hx_kvfree(const void *p);

/* ---- locks (module/shim_lock.c) ---------------------------------------- */

/*
 * A lock class key, sized for the kernel's struct lock_class_key (checked by
 * a static assert in shim_lock.c).  Each lock site declares its own static
 * key through HX_MUTEX_INIT(), so lockdep sees one class per site rather than
 * one class for every lock the core creates.
 */
typedef struct hx_lock_key {
	hx_u64 opaque[4];
} hx_lock_key;

typedef struct hx_mutex hx_mutex;	/* opaque; a struct mutex */

/** hx_mutex_create() - allocate and __mutex_init() a mutex.  NULL on ENOMEM. */
hx_mutex *hx_mutex_create(const char *name, hx_lock_key *key);
void hx_mutex_destroy(hx_mutex *m);
void hx_mutex_lock(hx_mutex *m);
void hx_mutex_unlock(hx_mutex *m);
/** hx_mutex_trylock() - mutex_trylock(): 1 when taken.  Never sleeps. */
int hx_mutex_trylock(hx_mutex *m);
/** hx_mutex_assert_held() - lockdep_assert_held() in the kernel build. */
void hx_mutex_assert_held(hx_mutex *m);

typedef struct hx_spinlock hx_spinlock;	/* opaque; a spinlock_t */

/** hx_spin_lock_create() - allocate and __spin_lock_init().  NULL on ENOMEM. */
hx_spinlock *hx_spin_lock_create(const char *name, hx_lock_key *key);
void hx_spin_lock_destroy(hx_spinlock *l);
void hx_spin_lock(hx_spinlock *l);
void hx_spin_unlock(hx_spinlock *l);

/** hx_cond_resched() - cond_resched(): a preemption point in long loops. */
void hx_cond_resched(void);

/* ---- CPUs and cross-CPU calls (module/shim_cpu.c) ----------------------- */

/** hx_nr_cpu_ids() - nr_cpu_ids: CPU numbers are below it. */
unsigned int hx_nr_cpu_ids(void);

/** hx_smp_processor_id() - raw_smp_processor_id(). */
unsigned int hx_smp_processor_id(void);

/** hx_cpumask_bytes() - cpumask_size(): bytes of a CPU bitmap the kernel's
 * cpumask operations may read; the core allocates its CPU sets this big. */
hx_size_t hx_cpumask_bytes(void);

/**
 * hx_flush_tlb_range() - invalidate [va, va + len) of the hierarchy whose top
 * table is at @top_pa on every CPU set in @cpus (hx_cpumask_bytes() long),
 * and wait for all of them.  Covers the TLB and the paging-structure caches
 * (INVLPG drops both for an address).
 *
 * Kernel: arch/x86/tlb.c, an IPI through on_each_cpu_mask().  Must be
 * called where sleeping is allowed.
 */
void hx_flush_tlb_range(const unsigned long *cpus, hx_paddr_t top_pa, hx_u64 va, hx_u64 len);

/* ---- CPU paging facts (arch/x86/cpu.c) --------------------------------- */

/** hx_paging_levels() - 5 when CR4.LA57 is set, else 4. */
unsigned int hx_paging_levels(void);
/** hx_cpu_has_gbpages() - boot_cpu_has(X86_FEATURE_GBPAGES). */
int hx_cpu_has_gbpages(void);
/** hx_cpu_has_nx() - __supported_pte_mask & _PAGE_NX. */
int hx_cpu_has_nx(void);

/* ---- logging and invariants (module/shim_log.c) ------------------------ */

#define HX_LOG_ERR	3
#define HX_LOG_WARN	4
#define HX_LOG_INFO	6
#define HX_LOG_DEBUG	7

/** hx_log() - printk at @level with the "htable: " prefix. */
void hx_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * hx_warn() - report a broken invariant: WARN(1, ...) in the kernel (a
 * backtrace, and a failed guest run), a counted failure on the host.  The
 * caller's HX_WARN_ONCE() limits it to once per site; the caller then
 * returns an error, it never stops the machine.
 */
void hx_warn(const char *file, int line, const char *what);

#ifdef __cplusplus
}
#endif

#endif /* HTABLE_SHIM_H */
