// SPDX-License-Identifier: GPL-2.0
/*
 * TLB invalidation for private hierarchies.
 *
 * A CPU caches translations of a hat only while its CR3 points at the hat's
 * top table (or, for a copied-top hat, at the CPU's own top table holding
 * the hat's entries), which happens inside a runner's window with
 * interrupts off (module/runner.c).  The shootdown IPI is therefore
 * normally taken right after the window, when the runner's restore of the
 * original CR3 has already flushed every non-global entry of the hat (with
 * PCID the hat runs as PCID 0, which the next window's CR3 load flushes).
 * The handler still invalidates the range by address on whatever CR3 is
 * loaded -- cheap, harmless for another address space, and it keeps the
 * guarantee "no CPU in the set holds a stale entry or paging-structure
 * cache entry once hx_flush_tlb_range() returns" independent of how long a
 * runner keeps CR3.  Entries made with the global attribute (tests only)
 * are covered too: INVLPG drops global entries of the address.
 */
#include <linux/atomic.h>
#include <linux/percpu.h>
#include <linux/smp.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>

#include "../../htable/shim.h"
#include "arch.h"

/* Past this many pages one CR3 reload is cheaper than INVLPGs (Linux uses 33). */
#define HTABLE_FLUSH_ALL_PAGES	33

struct flush_args {
	hx_paddr_t top_pa;
	u64 va;
	u64 len;
};

static DEFINE_PER_CPU(u64, htable_shootdowns_rx);

/* Shootdowns taken by @cpu, or by every CPU for -1. */
u64 htable_arch_shootdowns_received(int cpu)
{
	u64 n = 0;
	int c;

	if (cpu >= 0)
		return READ_ONCE(per_cpu(htable_shootdowns_rx, cpu));
	for_each_possible_cpu(c)
		n += READ_ONCE(per_cpu(htable_shootdowns_rx, c));
	return n;
}

static void htable_flush_func(void *info)
{
	const struct flush_args *a = info;
	u64 off;

	this_cpu_inc(htable_shootdowns_rx);
	if (a->len >> PAGE_SHIFT > HTABLE_FLUSH_ALL_PAGES) {
		/* Every entry, global ones included, and all paging-structure caches. */
		__flush_tlb_all();
		return;
	}
	for (off = 0; off < a->len; off += PAGE_SIZE)
		asm volatile("invlpg (%0)" :: "r" (a->va + off) : "memory");
}

void hx_flush_tlb_range(const unsigned long *cpus, hx_paddr_t top_pa, hx_u64 va, hx_u64 len)
{
	struct flush_args a = { .top_pa = top_pa, .va = va, .len = len };

	on_each_cpu_mask(to_cpumask(cpus), htable_flush_func, &a, true);
}
