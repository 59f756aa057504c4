// SPDX-License-Identifier: GPL-2.0
/*
 * Shim: pages and kernel memory for the C++ core.
 *
 * Everything the module holds is counted (debugfs stats pages_live and
 * objects_live) so that tests can cross-check it against the kernel's own
 * counters, and so that unload can say when something was not given back.
 *
 * The core's small objects come from htable's own slab caches, one per
 * power-of-two size, rather than from kmalloc's:
 *  - they are unmergeable, so failslab can be aimed at them alone: writing 1
 *    to /sys/kernel/slab/htable-<size>/failslab (refused for merged caches;
 *    kmem_cache_create() does not take SLAB_FAILSLAB) plus failslab's
 *    cache-filter injects failures into exactly the core's allocations and
 *    no one else's (kmemleak's own metadata in particular: when that fails,
 *    kmemleak turns itself off).  `htablectl fuzz --inject` does this;
 *  - kmem_cache_destroy() at unload checks that each one is empty: the slab
 *    allocator's own leak report, independent of ours;
 *  - SLAB_ACCOUNT: like the table pages, charged to the caller's memcg;
 *  - /proc/slabinfo shows the core's footprint by size.
 * kfree() frees them (SLUB finds the cache from the page), so the core
 * does not need to know where an object came from.
 */
#include <linux/gfp.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <asm/page.h>

#include "internal.h"
#include "../htable/shim.h"

#define HX_MIN_CACHE_SHIFT	5	/* 32 bytes */
#define HX_MAX_CACHE_SHIFT	PAGE_SHIFT
#define HX_NR_CACHES		(HX_MAX_CACHE_SHIFT - HX_MIN_CACHE_SHIFT + 1)

#ifdef SLAB_NO_MERGE
#define HX_CACHE_NO_MERGE	SLAB_NO_MERGE
#else
#define HX_CACHE_NO_MERGE	0	/* < 6.5: may merge; the leak check is ours alone */
#endif

static struct kmem_cache *hx_caches[HX_NR_CACHES];
static char hx_cache_names[HX_NR_CACHES][16];

int htable_mem_init(void)
{
	unsigned int i;

	for (i = 0; i < HX_NR_CACHES; i++) {
		unsigned int size = 1u << (HX_MIN_CACHE_SHIFT + i);

		snprintf(hx_cache_names[i], sizeof(hx_cache_names[i]), "htable-%u", size);
		hx_caches[i] = kmem_cache_create(hx_cache_names[i], size, 0,
						 SLAB_ACCOUNT | HX_CACHE_NO_MERGE, NULL);
		if (!hx_caches[i]) {
			htable_mem_exit();
			return -ENOMEM;
		}
	}
	return 0;
}

/*
 * After everything else is gone: what is still counted was leaked.  That is
 * a broken invariant (every path gives back what it took), not something to
 * recover from, hence the WARN; the caches' destroy reports the slab side.
 */
void htable_mem_exit(void)
{
	s64 pages = htable_stat_read(HTABLE_STAT_PAGES_LIVE);
	s64 objects = htable_stat_read(HTABLE_STAT_OBJECTS_LIVE);
	unsigned int i;

	WARN(pages || objects, "htable: unloading with %lld pages and %lld objects not given back\n",
	     pages, objects);
	for (i = 0; i < HX_NR_CACHES; i++) {
		kmem_cache_destroy(hx_caches[i]);
		hx_caches[i] = NULL;
	}
}

void htable_pages_account(long nr)
{
	htable_stat_add(HTABLE_STAT_PAGES_LIVE, nr);
}

void *hx_alloc_pages(unsigned int order, unsigned int flags)
{
	gfp_t gfp = (flags & HX_ALLOC_NOWAIT) ? GFP_NOWAIT : GFP_KERNEL;
	struct page *page;

	gfp |= __GFP_ZERO | __GFP_NOWARN;
	/*
	 * Page tables made for a caller are charged to its memory cgroup; at
	 * the cgroup's limit the core falls back to its reserve and to
	 * stealing, then fails the call with ENOMEM: no OOM kill.
	 */
	if (flags & HX_ALLOC_ACCOUNT)
		gfp |= __GFP_ACCOUNT | __GFP_RETRY_MAYFAIL;
	page = alloc_pages(gfp, order);
	if (!page)
		return NULL;
	htable_pages_account(1L << order);
	return page_address(page);
}

void hx_free_pages(void *kva, unsigned int order)
{
	if (!kva)
		return;
	htable_pages_account(-(1L << order));
	free_pages((unsigned long)kva, order);
}

hx_paddr_t hx_virt_to_phys(const void *kva)
{
	return __pa(kva);
}

void *hx_phys_to_virt(hx_paddr_t pa)
{
	return __va(pa);
}

/*
 * The core's bookkeeping (struct htable, extents, per-page arrays, the
 * hash): charged to the caller's memcg like the tables (the caches are
 * SLAB_ACCOUNT too), and refused like them at its limit -- no OOM kill;
 * the core fails the call cleanly on NULL.
 */
#define HX_GFP_CALLER (GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL | __GFP_NOWARN)

void *hx_kzalloc(hx_size_t size)
{
	unsigned int shift = size <= 1 ? 0 : order_base_2(size);
	void *p;

	shift = max_t(unsigned int, shift, HX_MIN_CACHE_SHIFT);
	if (shift <= HX_MAX_CACHE_SHIFT && hx_caches[shift - HX_MIN_CACHE_SHIFT])
		p = kmem_cache_zalloc(hx_caches[shift - HX_MIN_CACHE_SHIFT], HX_GFP_CALLER);
	else
		p = kzalloc(size, HX_GFP_CALLER);
	if (p)
		htable_stat_add(HTABLE_STAT_OBJECTS_LIVE, 1);
	return p;
}

void *hx_kvzalloc(hx_size_t size)
{
	void *p = kvzalloc(size, HX_GFP_CALLER);

	if (p)
		htable_stat_add(HTABLE_STAT_OBJECTS_LIVE, 1);
	return p;
}

void hx_kfree(const void *p)
{
	if (!p)
		return;
	htable_stat_add(HTABLE_STAT_OBJECTS_LIVE, -1);
	kfree(p);
}

void hx_kvfree(const void *p)
{
	if (!p)
		return;
	htable_stat_add(HTABLE_STAT_OBJECTS_LIVE, -1);
	kvfree(p);
}
