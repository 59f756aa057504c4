// SPDX-License-Identifier: GPL-2.0
/* Shim: pages and kernel memory for the C++ core.  Wrappers only. */
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <asm/page.h>

#include "../htable/shim.h"

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
	return page ? page_address(page) : NULL;
}

void hx_free_pages(void *kva, unsigned int order)
{
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
 * The core's bookkeeping (tables, extents, per-page arrays): charged like the
 * tables, and refused like them -- the core fails the call cleanly on NULL.
 */
#define HX_GFP_CALLER (GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL | __GFP_NOWARN)

void *hx_kzalloc(hx_size_t size)
{
	return kzalloc(size, HX_GFP_CALLER);
}

void *hx_kvzalloc(hx_size_t size)
{
	return kvzalloc(size, HX_GFP_CALLER);
}

void hx_kfree(const void *p)
{
	kfree(p);
}

void hx_kvfree(const void *p)
{
	kvfree(p);
}
