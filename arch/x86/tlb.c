// SPDX-License-Identifier: GPL-2.0
/*
 * TLB invalidation for private hierarchies.
 *
 * A CPU caches translations of a hat only while its CR3 points at the hat's
 * top table, which happens inside a runner's window with interrupts off
 * (module/runner.c).  The shootdown IPI is therefore normally taken right
 * after the window, when the runner's restore of the original CR3 has
 * already flushed every non-global entry of the hat (our entries are never
 * global; with PCID the hat runs as PCID 0, which is flushed by the next
 * window's CR3 load).  The handler still checks whether the hat is loaded
 * and invalidates by address if it is, so the guarantee "no CPU in the set
 * holds a stale entry once hx_flush_tlb_range() returns" does not depend on
 * how long a runner keeps CR3.
 */
#include <linux/atomic.h>
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

static atomic64_t htable_shootdowns_received = ATOMIC64_INIT(0);

u64 htable_arch_shootdowns_received(void)
{
	return atomic64_read(&htable_shootdowns_received);
}

static void htable_flush_func(void *info)
{
	const struct flush_args *a = info;
	unsigned long cr3 = __read_cr3();
	u64 off;

	atomic64_inc(&htable_shootdowns_received);
	if ((cr3 & CR3_ADDR_MASK) != a->top_pa)
		return;
	if (a->len >> PAGE_SHIFT > HTABLE_FLUSH_ALL_PAGES) {
		native_write_cr3(cr3);
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
